import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { onFreePorts } from "./free-port.js";
import { type RedisServer, spawnAnswering, startRedisServer } from "./redis-server.js";
import { waitFor } from "./wait-for.js";

/** The master group name the fixture's sentinels monitor. */
export const SENTINEL_GROUP = "sessionstore";

/** One sentinel process this test run started. */
export interface Sentinel {
  readonly port: number;
  /** A new client of this sentinel (the caller closes it). */
  client(): Redis;
  /** The host:port this sentinel names as the group's primary now. */
  primaryAddress(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A primary, its replicas and the sentinels that watch them, all started by
 * this test run on free loopback ports.
 */
export interface RedisSentinelSet {
  /** The primary the set started with (a failover makes a replica the primary). */
  readonly primary: RedisServer;
  readonly replicas: readonly RedisServer[];
  readonly sentinels: readonly Sentinel[];
  /** The group's name, as REDIS_SENTINEL_NAME takes it. */
  readonly name: string;
  /** host:port of every sentinel, comma-separated, as REDIS_SENTINELS takes them. */
  readonly addresses: string;
  /** The host:port the (first) sentinel names as the primary now. */
  primaryAddress(): Promise<string>;
  /**
   * SENTINEL FAILOVER, resolving with the server the sentinels name as the
   * primary afterwards, once they do (not yet once it takes writes).
   */
  failover(): Promise<RedisServer>;
  stop(): Promise<void>;
}

/**
 * How soon the sentinels call a silent primary down, and how long a
 * failover may take before it is tried again: short, so that the tests'
 * failovers take seconds, not the defaults' minutes.
 */
const DOWN_AFTER_MS = 1000;
const FAILOVER_TIMEOUT_MS = 5000;

/**
 * Starts a primary, `replicas` replicas of it and `sentinels` sentinels
 * (`redis-server --sentinel`, quorum a majority of them) and resolves once
 * every sentinel knows the primary, every replica and every other
 * sentinel, so that a failover can begin at once.
 */
export async function startRedisSentinelSet({
  replicas = 1,
  sentinels = 3,
}: {
  replicas?: number;
  sentinels?: number;
} = {}): Promise<RedisSentinelSet> {
  const started: { stop(): Promise<void> }[] = [];
  const stop = async () => {
    await Promise.all(started.map((process) => process.stop()));
  };
  try {
    const primary = await startRedisServer();
    started.push(primary);
    const replicaServers: RedisServer[] = [];
    for (let i = 0; i < replicas; i++) {
      const replica = await startRedisServer(["--replicaof", "127.0.0.1", String(primary.port)]);
      started.push(replica);
      replicaServers.push(replica);
    }
    await waitFor(
      "the replicas to be in sync",
      async () => {
        const info = await infoOf(primary, "replication");
        return (info.match(/^slave\d+:.*state=online/gm) ?? []).length === replicas;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    const quorum = Math.floor(sentinels / 2) + 1;
    const sentinelProcesses: Sentinel[] = [];
    for (let i = 0; i < sentinels; i++) {
      const sentinel = await startSentinel(primary.port, quorum);
      started.push(sentinel);
      sentinelProcesses.push(sentinel);
    }
    await Promise.all(
      sentinelProcesses.map(async (sentinel) => {
        const client = sentinel.client();
        try {
          await waitFor(
            `sentinel on port ${sentinel.port} to know the group`,
            async () => {
              const master = (await client.call("SENTINEL", "MASTER", SENTINEL_GROUP)) as string[];
              const field = (name: string) => Number(master[master.indexOf(name) + 1]);
              return (
                field("num-slaves") === replicas && field("num-other-sentinels") === sentinels - 1
              );
            },
            { timeoutMs: 20_000, intervalMs: 100 },
          );
        } finally {
          client.disconnect();
        }
      }),
    );
    const addresses = sentinelProcesses.map((s) => `127.0.0.1:${s.port}`).join(",");
    const first = sentinelProcesses[0] as Sentinel;
    const primaryAddress = () => first.primaryAddress();
    const servers = [primary, ...replicaServers];
    const failover = async () => {
      const before = await primaryAddress();
      const client = first.client();
      try {
        const reply = await client.call("SENTINEL", "FAILOVER", SENTINEL_GROUP);
        if (reply !== "OK") throw new Error(`SENTINEL FAILOVER answered ${String(reply)}`);
      } finally {
        client.disconnect();
      }
      const after = await waitFor(
        "the sentinels to name another primary",
        async () => {
          const address = await primaryAddress();
          return address === before ? undefined : address;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      const promoted = servers.find((server) => `127.0.0.1:${server.port}` === after);
      if (!promoted) throw new Error("the sentinels name a primary the fixture did not start");
      return promoted;
    };
    return {
      primary,
      replicas: replicaServers,
      sentinels: sentinelProcesses,
      name: SENTINEL_GROUP,
      addresses,
      primaryAddress,
      failover,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function infoOf(server: RedisServer, section: string): Promise<string> {
  const client = server.client();
  try {
    return await client.info(section);
  } finally {
    client.disconnect();
  }
}

/**
 * Starts one sentinel on a free port, watching the primary on
 * `primaryPort`. A sentinel rewrites its configuration file as it learns
 * the group, so each gets a file of its own in a directory of its own.
 */
async function startSentinel(primaryPort: number, quorum: number): Promise<Sentinel> {
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-sentinel-"));
  const file = join(dir, "sentinel.conf");
  try {
    return await onFreePorts(1, async ([port = 0]) => {
      writeFileSync(
        file,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          "protected-mode no",
          `dir ${dir}`,
          `sentinel monitor ${SENTINEL_GROUP} 127.0.0.1 ${primaryPort} ${quorum}`,
          `sentinel down-after-milliseconds ${SENTINEL_GROUP} ${DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${SENTINEL_GROUP} ${FAILOVER_TIMEOUT_MS}`,
          "",
        ].join("\n"),
      );
      const child = await spawnAnswering([file, "--sentinel"], { host: "127.0.0.1", port }).catch(
        () => undefined,
      );
      return child && sentinelProcess(child, port, dir);
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The running sentinel `child` on `port`, whose directory `dir` goes when it stops. */
function sentinelProcess(child: ChildProcess, port: number, dir: string): Sentinel {
  const client = () => new Redis({ host: "127.0.0.1", port });
  return {
    port,
    client,
    primaryAddress: async () => {
      const sentinel = client();
      try {
        const [host, primaryPort] = (await sentinel.call(
          "SENTINEL",
          "GET-MASTER-ADDR-BY-NAME",
          SENTINEL_GROUP,
        )) as [string, string];
        return `${host}:${primaryPort}`;
      } finally {
        sentinel.disconnect();
      }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
