import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { waitFor } from "../../harness/wait-for.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

// The Redis store with its primary found through Redis Sentinel (a primary,
// a replica and three sentinels, all started here): the whole contract,
// then a failover the store must follow.

let set: RedisSentinelSet;

beforeAll(async () => {
  set = await startRedisSentinelSet();
}, 60_000);

afterAll(async () => {
  await set?.stop();
});

async function openStore(options: RedisStoreOptions) {
  const { redis, store } = await openRedisStore(
    {
      sentinel: { addresses: set.addresses, name: set.name },
      commandTimeoutMs: 2000,
      connectTimeoutMs: 10_000,
    },
    options,
  );
  expect(redis).toBeInstanceOf(Redis);
  return store;
}

describe("through Redis Sentinel (a primary, a replica, three sentinels)", () => {
  describeStoreContract("redis sentinel", openStore);

  it("follows SENTINEL FAILOVER to the new primary, keeping what was replicated", async () => {
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: "failover" });
    const primary = set.primary.client();
    try {
      const before = await store.upsert(upsertInput("failover-user", "before"));
      // Acknowledged by the replica too, so the failover cannot lose it.
      expect(await primary.wait(1, 5000)).toBe(1);
      const promotedServer = await set.failover();
      expect(promotedServer).toBe(set.replicas[0]);
      // Writes reach the new primary once the store has followed it. Until
      // then they fail (UNAVAILABLE to a client, never anything else), or
      // land on the old primary before the sentinels demote it, where they
      // are lost: acknowledged writes a failover can lose without WAIT
      // (counted here; the scale-out issue measures them under load).
      const promoted = promotedServer.client();
      try {
        const startedAt = performance.now();
        const refusals: string[] = [];
        let acknowledgedElsewhere = 0;
        let attempt = 0;
        await waitFor(
          "a write through the store to reach the new primary",
          async () => {
            const sessionId = `after-${attempt++}`;
            try {
              await store.upsert(upsertInput("failover-user", sessionId));
            } catch (error) {
              refusals.push(error instanceof StoreUnavailableError ? "unavailable" : String(error));
              return false;
            }
            if ((await promoted.hexists("failover:{failover-user}:h", sessionId)) === 1)
              return true;
            acknowledgedElsewhere++;
            return false;
          },
          { timeoutMs: 10_000, intervalMs: 50 },
        );
        const figures = {
          onNewPrimaryAfterMs: Math.round(performance.now() - startedAt),
          refusals: refusals.length,
          acknowledgedElsewhere,
        };
        console.info(`sentinel failover: ${JSON.stringify(figures)}`);
        expect(refusals.filter((refusal) => refusal !== "unavailable")).toEqual([]);
        expect(await promoted.info("replication")).toMatch(/role:master/);
        // What the replica had acknowledged before the failover is there.
        expect((await store.get("failover-user", "before"))?.version).toBe(before.version);
      } finally {
        promoted.disconnect();
      }
    } finally {
      primary.disconnect();
      await store.close();
    }
  }, 60_000);
});
