import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import type { Session, SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { type ClientKind, type ClientPool, clientPool } from "./clients.js";
import { runServer, type ServerProcess } from "./server-process.js";

/** A SessionStore client of one replica. */
export type SessionsClient = Client<typeof SessionStoreService>;

/** One server process of several serving the same store, with clients the caller closes through stop(). */
export interface Replica {
  readonly name: string;
  readonly server: ServerProcess;
  /** A client of this replica speaking `kind` (gRPC over HTTP/2 by default). */
  sessions(kind?: ClientKind): SessionsClient;
  /** Closes the clients' connections and kills the process. */
  stop(): Promise<void>;
}

/** The settings that shift a replica's clock (test-only, so the flag that allows them too). */
export function clockOffset(offsetMs: number): Record<string, string> {
  return {
    SESSIONSTORE_ALLOW_TEST_SETTINGS: "true",
    SESSIONSTORE_TEST_CLOCK_OFFSET_MS: String(offsetMs),
  };
}

/**
 * Starts the built entry point with `env` on a free loopback port and
 * resolves once it listens. The process is pushed to `started` before it
 * is awaited, so the caller's cleanup stops it even when it never listens.
 */
export async function startReplica(
  name: string,
  env: Record<string, string>,
  started: Replica[],
): Promise<Replica> {
  const server = runServer({ PORT: "0", HOST: "127.0.0.1", ...env });
  let pool: ClientPool | undefined;
  const replica: Replica = {
    name,
    server,
    sessions: (kind) => {
      if (!pool) throw new Error(`${name} is not listening yet`);
      return pool.sessions(kind);
    },
    stop: async () => {
      pool?.close();
      server.kill();
      await server.exited;
    },
  };
  started.push(replica);
  pool = clientPool(`http://127.0.0.1:${await server.port()}`);
  return replica;
}

/** Redis' clock now, in Unix ms, as the store's scripts compute it from TIME. */
export async function redisNowMs(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/** A session's storage_expires_at in Unix ms; fails when it is missing. */
export function expiryMs(session: Session | undefined): number {
  const expiresAt: Timestamp | undefined = session?.storageExpiresAt;
  if (!expiresAt) throw new Error("the response has no session with a storage_expires_at");
  return timestampMs(expiresAt);
}

/** The session Get returns, or undefined for NOT_FOUND; any other failure is thrown. */
export async function getOrAbsent(
  client: SessionsClient,
  userId: string,
  sessionId: string,
): Promise<Session | undefined> {
  try {
    return (await client.get({ userId, sessionId })).session;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
    throw error;
  }
}
