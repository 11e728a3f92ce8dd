import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { clusterSlot } from "../../src/store/redis/cluster-slot.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";

// clusterSlot against Redis's own answer: a cluster-enabled node answers
// CLUSTER KEYSLOT without being part of a formed cluster.

let node: RedisServer;

beforeAll(async () => {
  node = await startRedisServer(["--cluster-enabled", "yes"], { busPort: true });
});

afterAll(async () => {
  await node?.stop();
});

describe("clusterSlot", () => {
  it("agrees with CLUSTER KEYSLOT, hash tags and all", async () => {
    const client = node.client();
    try {
      const keys = [
        "123456789",
        "",
        "{}",
        "{}x",
        "a{b}c",
        "a{}{b}",
        "{a",
        "a}b{",
        "é{ü}",
        ...Array.from({ length: 300 }, (_, i) => userKeys("p", `user-${i}-\u{1F600}`).sessions),
        ...Array.from({ length: 300 }, (_, i) => `plain-${i}`),
      ];
      const slots = new Set<number>();
      for (const key of keys) {
        const slot = clusterSlot(key);
        expect(slot, key).toBe(await client.cluster("KEYSLOT", key));
        slots.add(slot);
      }
      expect(slots.size).toBeGreaterThan(500);
    } finally {
      client.disconnect();
    }
  });
});
