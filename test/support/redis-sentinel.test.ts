import { describe, expect, it } from "vitest";
import { startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { waitFor } from "../../harness/wait-for.js";
import { ownedForBlock } from "./owned.js";

// The Sentinel fixture the scale-out tests build on: a primary, a replica
// and three sentinels, started on free loopback ports, able to fail over.

const set = ownedForBlock(() => startRedisSentinelSet(), 60_000);

describe("the Sentinel fixture", () => {
  it("has every sentinel name the primary, which replicates to the replica", async () => {
    expect(set().sentinels).toHaveLength(3);
    expect(set().replicas).toHaveLength(1);
    for (const sentinel of set().sentinels) {
      expect(await sentinel.primaryAddress()).toBe(`127.0.0.1:${set().primary.port}`);
    }
    const primary = set().primary.client();
    const replica = set().replicas[0]?.client();
    try {
      await primary.set("fixture:written", "on the primary");
      await waitFor(
        "the write to reach the replica",
        async () => (await replica?.get("fixture:written")) === "on the primary",
      );
      await expect(replica?.set("fixture:other", "x")).rejects.toThrow(/READONLY/);
    } finally {
      primary.disconnect();
      replica?.disconnect();
    }
  });

  it("fails over on SENTINEL FAILOVER: the replica becomes the primary", async () => {
    const promotedServer = await set().failover();
    expect(promotedServer).toBe(set().replicas[0]);
    expect(await set().primaryAddress()).toBe(`127.0.0.1:${promotedServer.port}`);
    const promoted = promotedServer.client();
    try {
      // Writes fail READONLY until the promotion reaches the replica itself.
      await waitFor(
        "the replica to take writes",
        async () => (await promoted.set("fixture:after-failover", "x")) === "OK",
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      expect(await promoted.info("replication")).toMatch(/role:master/);
    } finally {
      promoted.disconnect();
    }
  }, 40_000);
});
