import type { Redis } from "ioredis";

/**
 * The design SessionStore replaces, rebuilt here as the reference: the Redis
 * session store of YipyipExAuth v0.3.1 (shared/reference), which kept each
 * session under `SESSION_STORE_.<user_id>.<session_id>` with SETEX and found
 * a user's sessions with SCAN MATCH over the whole keyspace (default COUNT,
 * as the original), then MGET.
 */
const PREFIX = "SESSION_STORE_";

export function seedKey(userId: string, sessionId: string): string {
  return `${PREFIX}.${userId}.${sessionId}`;
}

/** upsert(session, ttl): one SETEX per session. */
export function seedUpsert(
  redis: Redis,
  userId: string,
  sessionId: string,
  data: Buffer,
  ttlSeconds: number,
) {
  return redis.setex(seedKey(userId, sessionId), ttlSeconds, data);
}

/** get_all(user_id): SCAN MATCH until the cursor returns to 0, then MGET. */
export async function seedGetAll(redis: Redis, userId: string): Promise<Buffer[]> {
  const keys = new Set<string>();
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", seedKey(userId, "*"));
    for (const key of batch) keys.add(key);
    cursor = next;
  } while (cursor !== "0");
  if (keys.size === 0) return [];
  const values = await redis.mgetBuffer(...keys);
  return values.filter((value): value is Buffer => value !== null);
}
