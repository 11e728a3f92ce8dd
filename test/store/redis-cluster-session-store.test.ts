import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisCluster, startRedisCluster } from "../../harness/redis-server.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
});

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

describe("on a three-node Redis Cluster", () => {
  describeStoreContract("redis cluster", openStore);

  it("puts all of a user's keys in one slot and spreads users over the nodes", async () => {
    // A prefix of its own: the nodes' answers below then concern this test's keys only.
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: "spread" });
    const admins = cluster.nodes.map((node) => node.client());
    try {
      const users = Array.from({ length: 12 }, (_, i) => `spread-${i}:{x}`);
      const sessionIds = ["a", "b:{c}"];
      for (const userId of users) {
        for (const sessionId of sessionIds) await store.upsert(upsertInput(userId, sessionId));
      }
      const holders = new Set<number>();
      for (const userId of users) {
        const keys = userKeys("spread", userId);
        const userKeyNames = [keys.sessions, keys.byExpiry, keys.byId];
        const slots = new Set(
          await Promise.all(
            userKeyNames.map(async (key) => Number(await admins[0]?.cluster("KEYSLOT", key))),
          ),
        );
        expect(slots.size).toBe(1);
        // Ask every node which keys it holds in that slot: exactly one holds all of them.
        const held = await Promise.all(
          admins.map(async (admin) => {
            const inSlot = (await admin.call(
              "CLUSTER",
              "GETKEYSINSLOT",
              [...slots][0] ?? -1,
              1000,
            )) as string[];
            return userKeyNames.every((key) => inSlot.includes(key));
          }),
        );
        expect(held.filter(Boolean)).toHaveLength(1);
        holders.add(held.indexOf(true));
      }
      // The hash tag spreads users over the nodes instead of piling them on one.
      expect(holders.size).toBeGreaterThan(1);
    } finally {
      for (const admin of admins) admin.disconnect();
      await store.close();
    }
  });
});
