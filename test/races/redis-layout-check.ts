import type { Cluster, Redis } from "ioredis";
import { sessionKey, userKeys } from "../../src/store/redis/redis-keys.js";

// What the races check of Redis itself once they are over. Everything here
// goes through the store's own key helpers (redis-keys.ts), so a change of
// layout changes this one file: the checks ("every key expires", "nothing
// outside the prefix", "no index entry without its session, no session
// without its index entry") stay what the races assert.

/** The sessions a race used, by user: what the keys under the prefix may belong to. */
export interface RacedUser {
  readonly userId: string;
  readonly sessionIds: readonly string[];
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
 * - a key under the prefix that no raced user's index or session maps to;
 * - an orphan index entry: an entry that says its session is live (scored
 *   at or after now) while the session's key is gone;
 * - a session key missing from its user's index, or indexed with another
 *   expiry than the key's own.
 * Entries of expired sessions may stay in an index until the user's next
 * write prunes them; they are counted, not flagged.
 */
export async function inspectRedisLayout(
  redis: RedisUnderTest,
  prefix: string,
  users: readonly RacedUser[],
): Promise<LayoutReport> {
  const violations: string[] = [];
  const expected = new Set<string>();
  for (const { userId, sessionIds } of users) {
    const keys = userKeys(prefix, userId);
    expected.add(keys.index);
    for (const id of sessionIds) expected.add(sessionKey(keys, id));
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
  for (const { userId, sessionIds } of users) {
    const keys = userKeys(prefix, userId);
    const entries = await redis.keys.zrange(keys.index, "0", "-1", "WITHSCORES");
    const scores = new Map<string, number>();
    for (let i = 0; i + 1 < entries.length; i += 2) {
      scores.set(entries[i] as string, Number(entries[i + 1]));
    }
    const expiries = new Map<string, number>();
    for (const id of new Set([...sessionIds, ...scores.keys()])) {
      expiries.set(id, Number(await redis.keys.pexpiretime(sessionKey(keys, id))));
    }
    // Read after the keys: an entry scored at or after this time had a live
    // session when its key was read, so a missing key then is an orphan,
    // not a session that expired meanwhile.
    const now = await redisNowMs(clock);
    for (const [id, score] of scores) {
      const expiry = expiries.get(id) ?? -2;
      if (expiry === -2) {
        if (score >= now) violations.push(`orphan index entry: ${userId}/${id} (score ${score})`);
        else staleIndexEntries++;
      } else if (expiry !== score) {
        violations.push(
          `index entry ${userId}/${id} scored ${score}, its key expires at ${expiry}`,
        );
      }
    }
    for (const [id, expiry] of expiries) {
      if (expiry >= 0 && !scores.has(id))
        violations.push(`session not in its index: ${userId}/${id}`);
    }
  }
  return { keysUnderPrefix, staleIndexEntries, violations };
}
