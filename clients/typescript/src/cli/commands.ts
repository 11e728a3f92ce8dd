/**
 * The commands of sessionstore-ctl: each makes its calls over the run's
 * connection, prints the outcome (a table, or JSON with --json) and
 * returns the exit code. A call that fails rejects, and run.ts reports it.
 */
import type { CallOptions } from "@connectrpc/connect";
import {
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../gen/health/v1/health_pb.js";
import {
  DeleteByUserResponseSchema,
  DeleteResponseSchema,
  GetResponseSchema,
  type Session,
  SessionEventSchema,
  SessionSchema,
  TouchResponseSchema,
} from "../gen/sessionstore/v1/session_store_pb.js";
import { listSessions } from "../list.js";
import { watchSessionEvents, watchUserEvents } from "../watch.js";
import {
  type CommandName,
  listOption,
  type OptionValues,
  stringOption,
  UsageError,
} from "./command-line.js";
import type { Connection } from "./connection.js";
import { durationOfMs, parseDurationMs } from "./duration.js";
import { EXIT } from "./exit-codes.js";
import {
  eventLine,
  jsonLine,
  jsonValue,
  SESSION_COLUMNS,
  sessionDetails,
  sessionRow,
  table,
} from "./output.js";

/** What a command works with. */
export interface CommandContext {
  readonly connection: Connection;
  readonly args: readonly string[];
  readonly values: OptionValues;
  readonly json: boolean;
  /** Writes one line to stdout. */
  readonly print: (line: string) => void;
  /** Writes one line to stderr. */
  readonly warn: (line: string) => void;
  /** A signal that aborts on Ctrl-C or SIGTERM, asked for only by commands that run until stopped. */
  readonly untilStopped: () => AbortSignal;
}

type Command = (context: CommandContext) => Promise<number>;

/** The positional argument at `index`, which the parser has made sure is there. */
function arg(context: CommandContext, index: number): string {
  const value = context.args[index];
  if (value === undefined) throw new UsageError(`argument ${index + 1} is missing`);
  return value;
}

function deadline(context: CommandContext): CallOptions {
  return { timeoutMs: context.connection.timeoutMs };
}

const get: Command = async (context) => {
  const response = await context.connection.sessions.get(
    { userId: arg(context, 0), sessionId: arg(context, 1) },
    deadline(context),
  );
  if (context.json) context.print(jsonLine(GetResponseSchema, response));
  else if (response.session) context.print(sessionDetails(response.session));
  return EXIT.ok;
};

const list: Command = async (context) => {
  const userId = arg(context, 0);
  const pageSizeText = stringOption(context.values, "page-size");
  const pageSize = pageSizeText === undefined ? 100 : Number(pageSizeText);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new UsageError("--page-size must be a whole number from 1 to 1000", "list");
  }
  const sessions: Session[] = [];
  const pages = listSessions(context.connection.sessions, userId, {
    pageSize,
    ...deadline(context),
  });
  for await (const session of pages) sessions.push(session);
  if (context.json) {
    const document = { sessions: sessions.map((session) => jsonValue(SessionSchema, session)) };
    context.print(JSON.stringify(document));
  } else {
    context.print(table(SESSION_COLUMNS, sessions.map(sessionRow)));
  }
  return EXIT.ok;
};

const revoke: Command = async (context) => {
  const [userId, sessionId] = [arg(context, 0), arg(context, 1)];
  const response = await context.connection.sessions.delete(
    { userId, sessionId },
    deadline(context),
  );
  if (context.json) context.print(jsonLine(DeleteResponseSchema, response));
  if (!response.deleted) {
    context.warn(`no session ${sessionId} of user ${userId}: nothing was revoked`);
    return EXIT.notFound;
  }
  if (!context.json) context.print(`revoked session ${sessionId} of user ${userId}`);
  return EXIT.ok;
};

const revokeAll: Command = async (context) => {
  const userId = arg(context, 0);
  const except = listOption(context.values, "except");
  const response = await context.connection.sessions.deleteByUser(
    { userId, exceptSessionIds: except },
    deadline(context),
  );
  if (context.json) {
    context.print(jsonLine(DeleteByUserResponseSchema, response));
  } else {
    const kept = except.length > 0 ? ` (kept ${except.join(", ")})` : "";
    context.print(`revoked ${response.deletedCount} session(s) of user ${userId}${kept}`);
  }
  return EXIT.ok;
};

const touch: Command = async (context) => {
  const ttlText = stringOption(context.values, "ttl");
  if (ttlText === undefined) throw new UsageError("touch needs --ttl <duration>", "touch");
  const ttlMs = parseDurationMs(ttlText);
  if (ttlMs === undefined) {
    throw new UsageError(`--ttl "${ttlText}" is not a duration such as 30m, 1h or 7d`, "touch");
  }
  const response = await context.connection.sessions.touch(
    { userId: arg(context, 0), sessionId: arg(context, 1), ttl: durationOfMs(ttlMs) },
    deadline(context),
  );
  if (context.json) context.print(jsonLine(TouchResponseSchema, response));
  else if (response.session) context.print(sessionDetails(response.session));
  return EXIT.ok;
};

const health: Command = async (context) => {
  const response = await context.connection.health.check(
    { service: context.args[0] ?? "" },
    deadline(context),
  );
  if (context.json) context.print(jsonLine(HealthCheckResponseSchema, response));
  else context.print(HealthCheckResponse_ServingStatus[response.status] ?? String(response.status));
  return response.status === HealthCheckResponse_ServingStatus.SERVING ? EXIT.ok : EXIT.unavailable;
};

const watch: Command = async (context) => {
  const userId = arg(context, 0);
  const sessionId = stringOption(context.values, "session");
  const afterEventId = stringOption(context.values, "after");
  const { sessions } = context.connection;
  // The iterators retry UNAVAILABLE forever, which outlives a restart but
  // would leave a wrong target waiting in silence: one health check first,
  // within the deadline, makes that fail at once.
  await context.connection.health.check({ service: "" }, deadline(context));
  const signal = context.untilStopped();
  const options = { signal, ...(afterEventId === undefined ? {} : { afterEventId }) };
  const events =
    sessionId === undefined
      ? watchUserEvents(sessions, userId, options)
      : watchSessionEvents(sessions, userId, sessionId, options);
  for await (const event of events) {
    context.print(context.json ? jsonLine(SessionEventSchema, event) : eventLine(event));
  }
  return EXIT.ok;
};

export const COMMAND_RUNNERS: Record<CommandName, Command> = {
  get,
  list,
  revoke,
  "revoke-all": revokeAll,
  touch,
  health,
  watch,
};
