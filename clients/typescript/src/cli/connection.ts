/**
 * Where sessionstore-ctl connects and as whom: the only reader of its
 * environment and files. Every option falls back to its environment
 * variable (GLOBAL_OPTIONS names them), and everything is checked before
 * the first call, so a mistake is a usage error (exit 2) rather than a
 * failed call.
 */
import { readFileSync } from "node:fs";
import { type Client, createClient } from "@connectrpc/connect";
import { assertBearerToken } from "../bearer-token.js";
import { Health } from "../gen/health/v1/health_pb.js";
import { SessionStoreService } from "../gen/sessionstore/v1/session_store_pb.js";
import {
  createNodeTransport,
  type SessionStoreClientOptions,
  type SessionStoreProtocol,
} from "../node-transport.js";
import {
  GLOBAL_OPTIONS,
  type OptionSpec,
  type OptionValues,
  stringOption,
  UsageError,
} from "./command-line.js";
import { parseDurationMs } from "./duration.js";

/** The environment as main passes it. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** The clients of one run, over one connection. */
export interface Connection {
  readonly sessions: Client<typeof SessionStoreService>;
  readonly health: Client<typeof Health>;
  /** The deadline of each call, ms. */
  readonly timeoutMs: number;
}

const PROTOCOLS: readonly SessionStoreProtocol[] = ["grpc", "grpc-web", "connect"];
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The clients for the target of `values` and `env`.
 *
 * @throws UsageError for a missing or malformed target, a bad protocol or
 *   timeout, a file that cannot be read, a token that is not a bearer
 *   token, or TLS settings that cannot work; the message never contains
 *   the token.
 */
export function connect(values: OptionValues, env: Environment): Connection {
  const setting = (name: keyof typeof GLOBAL_OPTIONS): string | undefined => {
    const spec: OptionSpec = GLOBAL_OPTIONS[name];
    return stringOption(values, name) ?? (spec.env ? env[spec.env] || undefined : undefined);
  };
  const target = setting("target");
  if (target === undefined) {
    throw new UsageError("no target: pass --target <url> or set SESSIONSTORE_TARGET");
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new UsageError(`the target "${target}" is not a URL such as http://localhost:50051`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(
      `the target must be http:// (cleartext) or https:// (TLS), not ${url.protocol}`,
    );
  }

  const protocol = setting("protocol") ?? "grpc";
  if (!PROTOCOLS.includes(protocol as SessionStoreProtocol)) {
    throw new UsageError(`the protocol must be one of ${PROTOCOLS.join(", ")}, not "${protocol}"`);
  }
  const timeout = setting("timeout");
  const timeoutMs = timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDurationMs(timeout);
  if (timeoutMs === undefined) {
    throw new UsageError(`the timeout "${timeout}" is not a duration such as 500ms, 10s or 1m`);
  }

  const ca = setting("ca");
  const cert = setting("cert");
  const key = setting("key");
  const options: SessionStoreClientOptions = {
    baseUrl: target,
    protocol: protocol as SessionStoreProtocol,
    token: token(values, env),
    tls:
      ca === undefined && cert === undefined && key === undefined
        ? undefined
        : {
            ca: ca === undefined ? undefined : readFile(ca, "--ca"),
            cert: cert === undefined ? undefined : readFile(cert, "--cert"),
            key: key === undefined ? undefined : readFile(key, "--key"),
          },
  };
  try {
    const transport = createNodeTransport(options);
    return {
      sessions: createClient(SessionStoreService, transport),
      health: createClient(Health, transport),
      timeoutMs,
    };
  } catch (error) {
    // TLS settings that cannot work (TLS over http://, a cert without its key).
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}

/**
 * The bearer token: from --token-file or --token, else from
 * SESSIONSTORE_TOKEN_FILE or SESSIONSTORE_TOKEN; two at the same level are
 * ambiguous. A file's trailing newline is dropped.
 */
function token(values: OptionValues, env: Environment): string | undefined {
  const fromFlags = pick(
    stringOption(values, "token-file"),
    stringOption(values, "token"),
    "--token-file and --token",
  );
  const chosen =
    fromFlags ??
    pick(
      env.SESSIONSTORE_TOKEN_FILE || undefined,
      env.SESSIONSTORE_TOKEN || undefined,
      "SESSIONSTORE_TOKEN_FILE and SESSIONSTORE_TOKEN",
    );
  if (!chosen) return undefined;
  const value =
    chosen.from === "file"
      ? readFile(chosen.value, "the token file")
          .toString("utf8")
          .replace(/\r?\n$/, "")
      : chosen.value;
  try {
    assertBearerToken(value);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  return value;
}

function pick(
  file: string | undefined,
  value: string | undefined,
  both: string,
): { from: "file" | "value"; value: string } | undefined {
  if (file !== undefined && value !== undefined)
    throw new UsageError(`${both}: give one, not both`);
  if (file !== undefined) return { from: "file", value: file };
  if (value !== undefined) return { from: "value", value };
  return undefined;
}

/** The file's bytes; an unreadable file is a usage error naming it and why (never its content). */
function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new UsageError(`cannot read ${what} ${path}: ${reason}`);
  }
}
