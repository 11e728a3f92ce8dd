import { randomUUID } from "node:crypto";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Redis } from "ioredis";
import {
  DeleteByUserRequestSchema,
  GetRequestSchema,
  ListByUserRequestSchema,
  RefreshRequestSchema,
  type Session,
  SessionSchema,
  TokenTransport,
  TouchRequestSchema,
  UpsertRequestSchema,
} from "../gen/sessionstore/v1/session_store_pb.js";
import { DEFAULT_KEY_PREFIX } from "../src/config.js";
import { encodeSession } from "../src/service/session-codec.js";
import type { UpsertInput } from "../src/store/session-store.js";

/**
 * A session as an auth library stores one: ids, timestamps, an IP and a
 * small application payload (about 330 bytes of protobuf).
 */
export function benchSession(userId: string, id: string): Session {
  const now = Date.now();
  return create(SessionSchema, {
    id,
    userId,
    refreshTokenId: randomUUID(),
    createdAt: timestampFromMs(now - 3_600_000),
    refreshedAt: timestampFromMs(now),
    lastKnownIp: "203.0.113.42",
    tokenSignatureTransport: TokenTransport.COOKIE,
    expiresAt: timestampFromMs(now + 30 * 24 * 3_600_000),
    extraPayload: {
      roles: ["user", "billing"],
      locale: "en-GB",
      device: { os: "iOS", app: "3.14.1", trusted: true },
      mfa: true,
    },
  });
}

/** The path of a SessionStoreService method, as gRPC clients call it. */
export function methodPath(method: string): string {
  return `/sessionstore.v1.SessionStoreService/${method}`;
}

function encode<T extends DescMessage>(schema: T, init: MessageInitShape<T>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

export const TTL_MS = 3_600_000;

/** The service's default KEY_PREFIX: the bench's own stores write what the service reads. */
export const KEY_PREFIX = DEFAULT_KEY_PREFIX;

/** How many sessions each user of the repeatable methods (Get, Upsert, Touch) holds, and their calls cycle through. */
export const SESSIONS_PER_KEYED_USER = 100;

/** A store upsert of a bench session, kept for TTL_MS: how the benches seed Redis directly. */
export function benchInput(userId: string, sessionId: string): UpsertInput {
  return {
    userId,
    sessionId,
    data: encodeSession(benchSession(userId, sessionId)),
    ttlMs: TTL_MS,
    expiresAtMs: undefined,
    expectedVersion: undefined,
  };
}

/** Redis's used_memory, in bytes. */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

/** Runs `task` for every item with up to `concurrency` in flight. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++] as T);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Binary request bodies, built once so the load generator only sends bytes. */
export const requests = {
  get: (userId: string, sessionId: string) => encode(GetRequestSchema, { userId, sessionId }),
  upsert: (session: Session) =>
    encode(UpsertRequestSchema, { session, ttl: durationFromMs(TTL_MS) }),
  touch: (userId: string, sessionId: string) =>
    encode(TouchRequestSchema, { userId, sessionId, ttl: durationFromMs(TTL_MS) }),
  refresh: (userId: string, sessionId: string, presented: string, next: string) =>
    encode(RefreshRequestSchema, {
      userId,
      sessionId,
      presentedRefreshTokenId: presented,
      newRefreshTokenId: next,
      ttl: durationFromMs(TTL_MS),
    }),
  listByUser: (userId: string) => encode(ListByUserRequestSchema, { userId, pageSize: 10 }),
  deleteByUser: (userId: string) => encode(DeleteByUserRequestSchema, { userId }),
};
