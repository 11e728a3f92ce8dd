import type { Cluster, Redis } from "ioredis";
import { userKeys } from "../../src/store/redis/redis-keys.js";

// What the races check of Redis itself once they are over. Everything here
// goes through the store's own key helpers (redis-keys.ts), so a change of
// layout changes this one file: the checks ("every key expires", "nothing
// outside the prefix", "no index entry without its session, no session
// without its index entry") stay what the races assert.

/** A user a race used: the keys under the prefix may belong only to these. */
export interface RacedUser {
  readonly userId: string;
}

/** How to reach the Redis under test. */
export interface RedisUnderTest {
  /** One client per server (every master of a Cluster): the keyspace is read node by node. */
  readonly nodes: readonly Redis[];
  /** A client that routes by key (the Cluster client on a Cluster), for per-user reads. */
  readonly keys: Redis | Cluster;
}

/** The figures of one inspection, with what it found wrong. */
export interface LayoutReport {
  /** Keys under the prefix, all nodes together. */
  readonly keysUnderPrefix: number;
  /** Index entries whose session had expired and that no write has pruned yet (allowed). */
  readonly staleIndexEntries: number;
  readonly violations: string[];
}

/** The current time of a Redis server in Unix ms: the clock the store's expiry follows. */
async function redisNowMs(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/**
 * Inspects the whole keyspace of every node (SCAN, which the store itself
 * never sends) and every raced user's keys. Violations:
 * - a key outside `prefix:` (nothing else may write to a Redis under test);
 * - a key under the prefix without a TTL (an idle user's keys must go on
 *   their own);
 * - a key under the prefix that is not one of a raced user's keys;
 * - an orphan index entry: a by-expiry entry that says its session is live
 *   (scored at or after now) while the session's record is gone, or a by-id
 *   entry without a record;
 * - a live record missing from either index, or indexed with another
 *   expiry than the record's own.
 * Expired sessions may stay (record and entries together) until the user's
 * next write prunes them; they are counted, not flagged.
 */
export async function inspectRedisLayout(
  redis: RedisUnderTest,
  prefix: string,
  users: readonly RacedUser[],
): Promise<LayoutReport> {
  const violations: string[] = [];
  const expected = new Set<string>();
  for (const { userId } of users) {
    const keys = userKeys(prefix, userId);
    expected.add(keys.sessions).add(keys.byExpiry).add(keys.byId).add(keys.events);
  }

  let keysUnderPrefix = 0;
  for (const node of redis.nodes) {
    let cursor = "0";
    do {
      const [next, batch] = await node.scan(cursor, "COUNT", 1000);
      cursor = next;
      const ttls = await Promise.all(batch.map((key) => node.pttl(key)));
      batch.forEach((key, i) => {
        if (!key.startsWith(`${prefix}:`)) {
          violations.push(`key outside the prefix: ${key}`);
          return;
        }
        keysUnderPrefix++;
        // -1: no expiry; -2: the key expired between SCAN and PTTL.
        if (ttls[i] === -1) violations.push(`key without a TTL: ${key}`);
        if (!expected.has(key)) violations.push(`key no raced session maps to: ${key}`);
      });
    } while (cursor !== "0");
  }

  const clock = redis.nodes[0];
  if (!clock) throw new Error("inspectRedisLayout needs at least one node");
  let staleIndexEntries = 0;
  for (const { userId } of users) {
    const keys = userKeys(prefix, userId);
    const [records, byExpiryEntries, byId] = await Promise.all([
      redis.keys.hgetall(keys.sessions),
      redis.keys.zrange(keys.byExpiry, "0", "-1", "WITHSCORES"),
      redis.keys.zrange(keys.byId, "0", "-1"),
    ]);
    const scores = new Map<string, number>();
    for (let i = 0; i + 1 < byExpiryEntries.length; i += 2) {
      scores.set(byExpiryEntries[i] as string, Number(byExpiryEntries[i + 1]));
    }
    const listed = new Set(byId);
    // Read after the keys: an entry scored at or after this time had a live
    // session when the records were read, so a missing record then is an
    // orphan, not a session that expired meanwhile.
    const now = await redisNowMs(clock);
    for (const [id, score] of scores) {
      if (records[id] !== undefined) continue;
      if (score >= now) violations.push(`orphan index entry: ${userId}/${id} (score ${score})`);
      else staleIndexEntries++;
    }
    for (const id of listed) {
      if (records[id] === undefined) violations.push(`orphan by-id entry: ${userId}/${id}`);
    }
    for (const [id, record] of Object.entries(records)) {
      // A record is "<format>|<version>|<storage expiry ms>|..." (redis-record.ts).
      const expiry = Number(record.split("|")[2]);
      if (expiry < now) continue;
      if (!scores.has(id) || !listed.has(id)) {
        violations.push(`session not in its index: ${userId}/${id}`);
      } else if (scores.get(id) !== expiry) {
        violations.push(
          `index entry ${userId}/${id} scored ${scores.get(id)}, its record expires at ${expiry}`,
        );
      }
    }
  }
  return { keysUnderPrefix, staleIndexEntries, violations };
}
