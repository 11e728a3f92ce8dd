import { createLogger } from "../../src/observability/logger.js";
import {
  connectRedisSessionStore,
  type RedisStoreSettings,
} from "../../src/store/redis/connect-store.js";
import type { RedisClientOptions } from "../../src/store/redis/redis-client.js";
import type { StoredSession, UpsertInput } from "../../src/store/session-store.js";

/**
 * Session data that a store which parsed, trimmed or re-encoded what it keeps
 * would mangle: a look-alike of the Redis record header, separators, NUL,
 * CR LF and bytes that are not UTF-8, then `label`, so that every session's
 * data differs and a mix-up between sessions shows.
 */
export function payload(label: string): Uint8Array {
  return Buffer.concat([
    Buffer.from("1|7|0|0|"),
    Buffer.of(0x00, 0x7c, 0x0d, 0x0a, 0x80, 0xfe, 0xff),
    Buffer.from(label),
  ]);
}

/**
 * An unconditional upsert of one session with a minute to live and no
 * absolute end; `overrides` changes any of that.
 */
export function upsertInput(
  userId: string,
  sessionId: string,
  overrides: Partial<UpsertInput> = {},
): UpsertInput {
  return {
    userId,
    sessionId,
    data: payload(sessionId),
    ttlMs: 60_000,
    expiresAtMs: undefined,
    expectedVersion: undefined,
    ...overrides,
  };
}

/**
 * Bytes as hex, so that assertions compare bytes whatever view type a store
 * returns (Buffer, Uint8Array, a slice of a larger buffer) and print a
 * readable diff.
 */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** A stored session with its data as {@link hex}, for `toEqual`. */
export function view(session: StoredSession | undefined) {
  return session && { ...session, data: hex(session.data) };
}

/** Bytewise order of the UTF-8 encodings: the order listByUser promises. */
export function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * What a test's store is opened with: the contract's cap, and a key prefix
 * of its own and replicas to wait for if it wants them.
 */
export interface RedisStoreOptions extends Pick<RedisStoreSettings, "waitReplicas" | "events"> {
  readonly maxSessionsPerUser: number;
  readonly keyPrefix?: string;
}

/**
 * A RedisSessionStore connected from `client` as the server connects it;
 * the client is returned too, for a test to check what kind it is.
 */
export function openRedisStore(
  client: RedisClientOptions,
  { keyPrefix = "sessionstore", ...options }: RedisStoreOptions,
) {
  return connectRedisSessionStore(client, { keyPrefix, ...options }, createLogger("silent"));
}
