import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisCluster, startRedisCluster } from "../../harness/redis-server.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { uniqueUserId } from "../support/ids.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

// The Redis store on a Cluster of three masters with a replica each, the
// shape the README recommends: the whole contract, then where the keys of
// many users land. The contract runs here only, not also on a Cluster
// without replicas: the store writes to and reads from masters alone, so
// the replicas change nothing it can see, and one run keeps npm test lean.

let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster(3, { replicas: 1 });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function openStore(options: RedisStoreOptions) {
  const { redis, store } = await openRedisStore(
    { url: cluster.url, cluster: true, commandTimeoutMs: 2000, connectTimeoutMs: 10_000 },
    options,
  );
  expect(redis).toBeInstanceOf(Cluster);
  return store;
}

describe("on a Redis Cluster of three masters with a replica each", () => {
  describeStoreContract("redis cluster with replicas", openStore);

  it("keeps each user's keys in one slot, on its master and its replica, and spreads 300 users over every master", async () => {
    // A prefix of its own: the keys checked below are this test's only.
    const prefix = "spread";
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: prefix });
    const shards = await cluster.shards();
    const masters = shards.map((shard) => shard.master.client());
    const replicas = shards.map((shard) => shard.replicas[0]?.client());
    try {
      // Ids with hash-tag braces of their own: the store's escaping must
      // keep them from choosing the slot.
      const users = Array.from({ length: 300 }, (_, i) =>
        i % 2 === 0 ? uniqueUserId() : `{shared}-${i}:{x}`,
      );
      await Promise.all(
        users.map(async (userId) => {
          await store.upsert(upsertInput(userId, "a"));
          await store.upsert(upsertInput(userId, "b:{c}"));
        }),
      );
      for (const master of masters) expect(await master.wait(1, 5000)).toBe(1);
      for (const replica of replicas) expect(await replica?.call("READONLY")).toBe("OK");

      const usersPerMaster = shards.map(() => 0);
      await Promise.all(
        users.map(async (userId) => {
          const keys = userKeys(prefix, userId);
          const names = [keys.sessions, keys.byExpiry, keys.byId];
          const slots = await Promise.all(names.map((key) => cluster.keySlot(key)));
          expect(new Set(slots).size).toBe(1);
          const slot = slots[0] as number;
          const holder = shards.findIndex((shard) =>
            shard.slots.some(([first, last]) => first <= slot && slot <= last),
          );
          expect(holder).toBeGreaterThanOrEqual(0);
          // One multi-key EXISTS answers only if the three share a slot
          // the node serves; the replica has them too.
          expect(await masters[holder]?.exists(...names)).toBe(3);
          expect(await replicas[holder]?.exists(...names)).toBe(3);
          usersPerMaster[holder] = (usersPerMaster[holder] ?? 0) + 1;
        }),
      );
      console.info(`users per master: ${usersPerMaster.join(", ")}`);
      // About a third each (100 ± 8 for a fair spread): a hash tag that
      // piled users on one node, or on a few slots, would fail this.
      for (const count of usersPerMaster) expect(count).toBeGreaterThanOrEqual(60);
    } finally {
      for (const client of [...masters, ...replicas]) client?.disconnect();
      await store.close();
    }
  });
});
