import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type RedisServer, startRedisCluster } from "../../harness/redis-server.js";
import { ownedForBlock } from "./owned.js";

// The Cluster fixture the scale-out tests build on: three masters with a
// replica each, on free loopback ports, whose masters fail over to their
// replicas when killed.

const cluster = ownedForBlock(() => startRedisCluster(3, { replicas: 1 }), 60_000);

/**
 * The pids of the redis-server processes this test process started (its
 * children, from /proc): the fixture's own, never a Redis someone else runs.
 */
function ownRedisServers(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((pid) => {
      try {
        // pid (comm) state ppid ...: comm may hold spaces, so split after it.
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return comm === "redis-server" && state !== "Z" && Number(ppid) === process.pid
          ? [Number(pid)]
          : [];
      } catch {
        return []; // Ended while listed.
      }
    });
}

describe("the Cluster fixture with replicas", () => {
  it("runs six processes: three masters covering every slot once, each with a replica in sync", async () => {
    expect(cluster().nodes).toHaveLength(6);
    expect(ownRedisServers()).toHaveLength(6);
    expect(cluster().nodes.map((node) => node.port)).not.toContain(6379);
    expect(cluster().url.split(",")).toHaveLength(6);

    const shards = await cluster().shards();
    expect(shards).toHaveLength(3);
    const ranges = shards.flatMap((shard) => shard.slots);
    expect(ranges[0]?.[0]).toBe(0);
    expect(ranges.at(-1)?.[1]).toBe(16383);
    for (let i = 1; i < ranges.length; i++) {
      expect(ranges[i]?.[0]).toBe((ranges[i - 1]?.[1] ?? Number.NaN) + 1);
    }
    const roles = new Set<RedisServer>();
    for (const shard of shards) {
      expect(await shard.master.info("replication")).toMatch(/^role:master$/m);
      expect(shard.replicas).toHaveLength(1);
      const [replica] = shard.replicas as [RedisServer];
      const replication = await replica.info("replication");
      expect(replication).toMatch(/^role:slave$/m);
      expect(replication).toMatch(new RegExp(`^master_port:${shard.master.port}$`, "m"));
      expect(replication).toMatch(/^master_link_status:up$/m);
      roles.add(shard.master).add(replica);
    }
    // Every node has exactly one role.
    expect(roles.size).toBe(6);
  });

  it("finds the master of a key's slot: it takes the write, replicates it, and the others redirect", async () => {
    const key = "fixture:{located}";
    const slot = await cluster().keySlot(key);
    const shard = await cluster().shardOf(slot);
    expect(shard.slots.some(([first, last]) => first <= slot && slot <= last)).toBe(true);
    const master = shard.master.client();
    const replica = shard.replicas[0]?.client();
    const others = (await cluster().shards())
      .filter((other) => other !== shard && other.master !== shard.master)
      .map((other) => other.master.client());
    try {
      expect(await master.set(key, "on its master")).toBe("OK");
      expect(await master.wait(1, 5000)).toBe(1);
      // A replica answers only READONLY clients; the others send the client on.
      expect(await replica?.call("READONLY")).toBe("OK");
      expect(await replica?.get(key)).toBe("on its master");
      expect(others).toHaveLength(2);
      for (const other of others) {
        await expect(other.get(key)).rejects.toThrow(
          `MOVED ${slot} 127.0.0.1:${shard.master.port}`,
        );
      }
    } finally {
      for (const client of [master, replica, ...others]) client?.disconnect();
    }
  });

  it("promotes a killed master's replica, which keeps what was replicated; the master rejoins as its replica", async () => {
    const key = "fixture:{failover}";
    const before = await cluster().shardOf(await cluster().keySlot(key));
    const writer = before.master.client();
    try {
      await writer.set(key, "before the failover");
      expect(await writer.wait(1, 5000)).toBe(1);
    } finally {
      writer.disconnect();
    }
    const started = Date.now();
    const promoted = await cluster().failover(before.master);
    const tookMs = Date.now() - started;
    console.info(`cluster failover: replica promoted and cluster ok ${tookMs} ms after SIGKILL`);
    expect(promoted).toBe(before.replicas[0]);
    expect(before.master.running).toBe(false);
    expect(ownRedisServers()).toHaveLength(5);

    const after = await cluster().shardOf(await cluster().keySlot(key));
    expect(after.master).toBe(promoted);
    expect(after.slots).toEqual(before.slots);
    expect(await promoted.info("replication")).toMatch(/^role:master$/m);
    const reader = promoted.client();
    try {
      expect(await reader.get(key)).toBe("before the failover");
    } finally {
      reader.disconnect();
    }

    await before.master.restart();
    await cluster().ready();
    const rejoined = await cluster().shardOf(await cluster().keySlot(key));
    expect(rejoined.master).toBe(promoted);
    expect(rejoined.replicas).toEqual([before.master]);
    expect(await before.master.info("replication")).toMatch(/^master_link_status:up$/m);
  }, 60_000);

  it("stops every process it started", async () => {
    expect(ownRedisServers()).toHaveLength(6);
    await cluster().stop();
    expect(ownRedisServers()).toEqual([]);
    expect(cluster().nodes.filter((node) => node.running)).toEqual([]);
  });
});
