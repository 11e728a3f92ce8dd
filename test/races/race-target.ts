import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import {
  SessionExistsError,
  SessionNotFoundError,
  VersionMismatchError,
} from "../../src/store/errors.js";
import type { SessionStore } from "../../src/store/session-store.js";

// The races run the same scenarios against the SessionStore port and against
// the real service over the network. This file is the one place that knows
// the difference: both are reduced to a RaceClient whose answers are plain
// values (an outcome, a version, the tag a writer stored), so a scenario
// reads the same whichever layer it races.

/**
 * How a call failed, in the API's terms: the three conditional-write
 * refusals, or anything else (INTERNAL, UNAVAILABLE, a reply naming another
 * session...), which no race may ever produce.
 */
export type Refusal = "aborted" | "not_found" | "already_exists" | `unexpected: ${string}`;

/** A call's answer: its value, or how it was refused. */
export type Answer<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly refusal: Refusal };

/** What the races read back of a session: its version and the tag its last writer stored. */
export interface SessionView {
  readonly version: bigint;
  /** Who wrote the session (a writer's label); stored in the session's data. */
  readonly tag: string;
}

/** One page of a user's sessions. */
export interface PageView {
  readonly ids: readonly string[];
  /** The cursor of the next page; undefined on the last page. */
  readonly next: string | undefined;
}

/** One upsert, in the terms the races need. */
export interface RaceWrite {
  readonly userId: string;
  readonly sessionId: string;
  readonly tag: string;
  readonly ttlMs: number;
  /** Undefined: unconditional; 0n: insert only; N: compare-and-set on N. */
  readonly expectedVersion: bigint | undefined;
}

/**
 * One caller of the API: over the network, one client connection; at the
 * port, the store itself. Every method resolves (never rejects) so that a
 * race counts outcomes instead of stopping at the first refusal.
 */
export interface RaceClient {
  upsert(write: RaceWrite): Promise<Answer<SessionView>>;
  get(userId: string, sessionId: string): Promise<Answer<SessionView>>;
  touch(userId: string, sessionId: string, ttlMs: number): Promise<Answer<SessionView>>;
  delete(
    userId: string,
    sessionId: string,
    expectedVersion: bigint | undefined,
  ): Promise<Answer<boolean>>;
  listPage(userId: string, pageSize: number, cursor: string | undefined): Promise<Answer<PageView>>;
  deleteByUser(userId: string, except: readonly string[]): Promise<Answer<number>>;
}

/**
 * What a race runs against: a name for the figures, and one client per
 * lane. Lanes are how a scenario spreads its concurrent callers over many
 * connections (and, over the network, over several protocols).
 */
export interface RaceTarget {
  readonly name: string;
  readonly lanes: number;
  client(lane: number): RaceClient;
}

/** Runs a call and turns its failure into a Refusal. */
async function answer<T>(
  call: () => Promise<T>,
  refusalOf: (error: unknown) => Refusal,
): Promise<Answer<T>> {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return { ok: false, refusal: refusalOf(error) };
  }
}

function portRefusal(error: unknown): Refusal {
  if (error instanceof VersionMismatchError) return "aborted";
  if (error instanceof SessionNotFoundError) return "not_found";
  if (error instanceof SessionExistsError) return "already_exists";
  return `unexpected: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
}

/**
 * The SessionStore port itself as a race target: every lane calls the same
 * store, so what races is the store's own atomicity (for the in-memory
 * store, every await between its operations).
 */
export function portTarget(name: string, store: SessionStore, lanes: number): RaceTarget {
  const found = (session: { version: bigint; data: Uint8Array } | undefined): SessionView => {
    if (!session) throw new SessionNotFoundError();
    return { version: session.version, tag: Buffer.from(session.data).toString("utf8") };
  };
  const client: RaceClient = {
    upsert: (w) =>
      answer(
        async () =>
          found(
            await store.upsert({
              userId: w.userId,
              sessionId: w.sessionId,
              data: Buffer.from(w.tag),
              ttlMs: w.ttlMs,
              expiresAtMs: undefined,
              expectedVersion: w.expectedVersion,
            }),
          ),
        portRefusal,
      ),
    get: (userId, sessionId) =>
      answer(async () => found(await store.get(userId, sessionId)), portRefusal),
    touch: (userId, sessionId, ttlMs) =>
      answer(async () => found(await store.touch(userId, sessionId, ttlMs)), portRefusal),
    delete: (userId, sessionId, expectedVersion) =>
      answer(() => store.delete(userId, sessionId, expectedVersion), portRefusal),
    listPage: (userId, pageSize, cursor) =>
      answer(async () => {
        const page = await store.listByUser(userId, { after: cursor, limit: pageSize });
        const ids = page.sessions.map((s) => s.sessionId);
        return { ids, next: page.hasMore ? ids.at(-1) : undefined };
      }, portRefusal),
    deleteByUser: (userId, except) => answer(() => store.deleteByUser(userId, except), portRefusal),
  };
  return { name, lanes, client: () => client };
}

/** How long one RPC of a race may take: a stuck call fails the race instead of hanging it. */
const RPC_TIMEOUT_MS = 15_000;

function rpcRefusal(error: unknown, label: string): Refusal {
  const e = ConnectError.from(error);
  // connect-node's client reports a connection reset as ABORTED (and a
  // write to a closed socket as INTERNAL): the transport failed, the
  // server refused nothing, and the call may or may not have happened.
  const failure = transportFailure(e);
  if (failure) return `unexpected: the ${label} connection failed (${failure}: ${e.rawMessage})`;
  if (e.code === Code.Aborted) return "aborted";
  if (e.code === Code.NotFound) return "not_found";
  if (e.code === Code.AlreadyExists) return "already_exists";
  return `unexpected: ${Code[e.code]}: ${e.rawMessage}`;
}

/** The Node error code (ECONNRESET, EPIPE, ...) behind a client-side failure, if any. */
function transportFailure(error: ConnectError): string | undefined {
  let cause: unknown = error.cause;
  while (cause instanceof Error) {
    const { code } = cause as NodeJS.ErrnoException;
    if (typeof code === "string") return code;
    cause = cause.cause;
  }
  return undefined;
}

/** The session a reply carries, checked to be the one asked about. */
function replied(
  session: { id: string; userId: string; version: bigint; refreshTokenId: string } | undefined,
  userId: string,
  sessionId: string,
): SessionView {
  if (!session) throw new Error("the reply carries no session");
  // A reply for another session would mean calls were mixed up between
  // streams or connections: exactly what concurrency could break.
  if (session.id !== sessionId || session.userId !== userId) {
    throw new Error("the reply names another session");
  }
  return { version: session.version, tag: session.refreshTokenId };
}

/** One client of {@link rpcTarget}, and what it is (its protocol), for anomaly reports. */
export interface LabelledClient {
  readonly label: string;
  readonly rpc: Client<typeof SessionStoreService>;
}

/**
 * The real service over the network: lane i calls through clients[i mod n],
 * each of them its own connection (or HTTP/1.1 agent), so concurrent
 * callers race through separate sockets and, with a mix of protocols,
 * through both the gRPC fast path and connect-node at once.
 */
export function rpcTarget(
  name: string,
  clients: readonly LabelledClient[],
  lanes: number,
): RaceTarget {
  const wrap = ({ label, rpc }: LabelledClient): RaceClient => {
    const options = { timeoutMs: RPC_TIMEOUT_MS };
    const refusal = (error: unknown) => rpcRefusal(error, label);
    return {
      upsert: (w) =>
        answer(async () => {
          const reply = await rpc.upsert(
            {
              session: { id: w.sessionId, userId: w.userId, refreshTokenId: w.tag },
              ttl: durationFromMs(w.ttlMs),
              ...(w.expectedVersion === undefined ? {} : { expectedVersion: w.expectedVersion }),
            },
            options,
          );
          return replied(reply.session, w.userId, w.sessionId);
        }, refusal),
      get: (userId, sessionId) =>
        answer(
          async () =>
            replied((await rpc.get({ userId, sessionId }, options)).session, userId, sessionId),
          refusal,
        ),
      touch: (userId, sessionId, ttlMs) =>
        answer(async () => {
          const reply = await rpc.touch({ userId, sessionId, ttl: durationFromMs(ttlMs) }, options);
          return replied(reply.session, userId, sessionId);
        }, refusal),
      delete: (userId, sessionId, expectedVersion) =>
        answer(async () => {
          const reply = await rpc.delete(
            {
              userId,
              sessionId,
              ...(expectedVersion === undefined ? {} : { expectedVersion }),
            },
            options,
          );
          return reply.deleted;
        }, refusal),
      listPage: (userId, pageSize, cursor) =>
        answer(async () => {
          const reply = await rpc.listByUser(
            { userId, pageSize, pageToken: cursor ?? "" },
            options,
          );
          if (reply.sessions.some((s) => s.userId !== userId)) {
            throw new Error("a listed session belongs to another user");
          }
          return {
            ids: reply.sessions.map((s) => s.id),
            next: reply.nextPageToken === "" ? undefined : reply.nextPageToken,
          };
        }, refusal),
      deleteByUser: (userId, except) =>
        answer(async () => {
          const reply = await rpc.deleteByUser({ userId, exceptSessionIds: [...except] }, options);
          return Number(reply.deletedCount);
        }, refusal),
    };
  };
  const wrapped = clients.map(wrap);
  if (wrapped.length === 0) throw new Error("rpcTarget needs at least one client");
  return { name, lanes, client: (lane) => wrapped[lane % wrapped.length] as RaceClient };
}
