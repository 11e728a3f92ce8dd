import { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisCluster, startRedisCluster } from "../../harness/redis-server.js";
import { createLogger } from "../../src/observability/logger.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { describeStoreContract } from "./session-store-contract.js";

const logger = createLogger("silent");
let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
});

afterAll(async () => {
  await cluster?.stop();
});

async function openStore({ maxSessionsPerUser }: { maxSessionsPerUser: number }) {
  const client = await connectRedis(
    { url: cluster.url, cluster: true, commandTimeoutMs: 2000, connectTimeoutMs: 10_000 },
    logger,
  );
  expect(client).toBeInstanceOf(Cluster);
  return new RedisSessionStore({ redis: client, keyPrefix: "sessionstore", maxSessionsPerUser });
}

describe("on a three-node Redis Cluster", () => {
  describeStoreContract("redis cluster", openStore);

  it("puts all of a user's keys in one slot and spreads users over the nodes", async () => {
    const store = await openStore({ maxSessionsPerUser: 0 });
    const admin = cluster.nodes[0]?.client();
    try {
      const users = Array.from({ length: 12 }, (_, i) => `spread-${i}:{x}`);
      for (const userId of users) {
        for (const sessionId of ["a", "b:{c}"]) {
          await store.upsert({
            userId,
            sessionId,
            data: Buffer.from("x"),
            ttlMs: 60_000,
            expiresAtMs: undefined,
            expectedVersion: undefined,
          });
        }
      }
      const slots = new Set<number>();
      for (const userId of users) {
        const keys = userKeys("sessionstore", userId);
        const userSlots = new Set(
          await Promise.all(
            [keys.index, `${keys.sessionPrefix}a`, `${keys.sessionPrefix}b:{c}`].map((key) =>
              admin?.cluster("KEYSLOT", key),
            ),
          ),
        );
        expect(userSlots.size).toBe(1);
        slots.add(Number([...userSlots][0]));
      }
      // Each node holds keys of some user: the hash tag spreads users, not one node.
      const perNode = await Promise.all(
        cluster.nodes.map(async (node) => {
          const client = node.client();
          try {
            return await client.dbsize();
          } finally {
            client.disconnect();
          }
        }),
      );
      expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1);
      expect(slots.size).toBeGreaterThan(1);
    } finally {
      admin?.disconnect();
      await store.close();
    }
  });
});
