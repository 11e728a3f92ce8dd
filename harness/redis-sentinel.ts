import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { onFreePorts } from "./free-port.js";
import {
  type HarnessClientOptions,
  type RedisServer,
  type RedisServerTls,
  spawnAnswering,
  startRedisServer,
} from "./redis-server.js";
import { waitFor } from "./wait-for.js";

/** The master group name the fixture's sentinels monitor. */
export const SENTINEL_GROUP = "sessionstore";

/** One sentinel process this test run started. */
export interface Sentinel {
  readonly port: number;
  /** How the harness's clients connect (host, port, and TLS for a TLS set), for clients of one's own. */
  readonly clientOptions: HarnessClientOptions;
  /** A new client of this sentinel (the caller closes it). */
  client(): Redis;
  /** The host:port this sentinel names as the group's primary now. */
  primaryAddress(): Promise<string>;
  /**
   * Freezes the process (SIGSTOP): connections to it open, as the kernel
   * accepts them, but nothing answers, as a stuck host would.
   */
  suspend(): void;
  /** Lets a suspended sentinel run again (SIGCONT). */
  resume(): void;
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
  /** The TLS the set serves (every node and sentinel), if any. */
  readonly tls: RedisServerTls | undefined;
  /** The host:port the (first) sentinel names as the primary now. */
  primaryAddress(): Promise<string>;
  /** The data node the (first) sentinel names as the primary now. */
  primaryServer(): Promise<RedisServer>;
  /**
   * SENTINEL FAILOVER, resolving with the server the sentinels name as the
   * primary afterwards, once they do (not yet once it takes writes).
   */
  failover(): Promise<RedisServer>;
  /**
   * Resolves with the server the (first) sentinel names as the primary once
   * it is another than `old` (after `old` was killed: their own failover).
   */
  promotedOver(old: RedisServer, options?: { timeoutMs?: number }): Promise<RedisServer>;
  /**
   * Resolves with the primary once the group is whole again, ready for the
   * next failover: every sentinel names it, every other data node is its
   * replica in sync, and every sentinel sees each replica as one, up and
   * linked. After a failover the old primary rejoins as a replica only when
   * a sentinel reconfigures it, about 8 s after it is seen claiming to be a
   * primary (a fixed delay of Sentinel's), and then resynchronises.
   */
  whole(options?: { timeoutMs?: number }): Promise<RedisServer>;
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
 *
 * With `tls`, every data node and every sentinel serves TLS only (their
 * plain ports closed) with its certificate and key, and they reach each
 * other over TLS too (`tls-replication yes`): replication, the sentinels'
 * links to the data nodes and to each other. So every address a sentinel
 * names, the primary's included, is a TLS port. With `tls.authClients`,
 * every one of them asks its clients for a certificate, and shows
 * `tls.clientCertFile` itself when it connects to another (a certificate
 * issued for servers only would be refused as a client's).
 */
export async function startRedisSentinelSet({
  replicas = 1,
  sentinels = 3,
  tls,
}: {
  replicas?: number;
  sentinels?: number;
  tls?: RedisServerTls;
} = {}): Promise<RedisSentinelSet> {
  const started: { stop(): Promise<void> }[] = [];
  const stop = async () => {
    await Promise.all(started.map((process) => process.stop()));
  };
  try {
    const nodeArgs = tls ? ["--tls-replication", "yes", ...clientCertArgs(tls)] : [];
    const primary = await startRedisServer(nodeArgs, tls ? { tls } : {});
    started.push(primary);
    const replicaServers: RedisServer[] = [];
    for (let i = 0; i < replicas; i++) {
      const replica = await startRedisServer(
        ["--replicaof", "127.0.0.1", String(primary.port), ...nodeArgs],
        tls ? { tls } : {},
      );
      started.push(replica);
      replicaServers.push(replica);
    }
    await waitFor(
      "the replicas to be in sync",
      async () => {
        const info = await primary.info("replication");
        return (info.match(/^slave\d+:.*state=online/gm) ?? []).length === replicas;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    const quorum = Math.floor(sentinels / 2) + 1;
    const sentinelProcesses: Sentinel[] = [];
    for (let i = 0; i < sentinels; i++) {
      const sentinel = await startSentinel(primary.port, quorum, tls);
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
    const serverAt = (address: string) => {
      const server = servers.find((candidate) => `127.0.0.1:${candidate.port}` === address);
      if (!server) throw new Error("the sentinels name a primary the fixture did not start");
      return server;
    };
    const primaryServer = async () => serverAt(await primaryAddress());
    const promotedOver = async (old: RedisServer, { timeoutMs = 20_000 } = {}) =>
      serverAt(
        await waitFor(
          "the sentinels to name another primary",
          async () => {
            const address = await primaryAddress();
            return address === `127.0.0.1:${old.port}` ? undefined : address;
          },
          { timeoutMs, intervalMs: 10 },
        ),
      );
    const whole = async ({ timeoutMs = 60_000 } = {}) =>
      waitFor(
        "the group to be whole again",
        async () => {
          const named = await Promise.all(sentinelProcesses.map((s) => s.primaryAddress()));
          if (new Set(named).size !== 1) return undefined;
          const current = serverAt(named[0] as string);
          const info = await current.info("replication");
          const inSync = info.match(/^slave\d+:.*state=online/gm) ?? [];
          if (!info.includes("role:master") || inSync.length !== replicas) return undefined;
          for (const sentinel of sentinelProcesses) {
            if (!(await seesReplicasUp(sentinel, replicas))) return undefined;
          }
          return current;
        },
        { timeoutMs, intervalMs: 100 },
      );
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
        { timeoutMs: 20_000, intervalMs: 10 },
      );
      return serverAt(after);
    };
    return {
      primary,
      replicas: replicaServers,
      sentinels: sentinelProcesses,
      name: SENTINEL_GROUP,
      addresses,
      tls,
      primaryAddress,
      primaryServer,
      failover,
      promotedOver,
      whole,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Whether `sentinel` lists `replicas` replicas of the group, none of them
 * down or disconnected: what it needs to fail over to one of them. (What a
 * replica reports of itself, role and link, a sentinel reads only every
 * 10 s; the primary's own INFO tells sooner that they are in sync.)
 */
async function seesReplicasUp(sentinel: Sentinel, replicas: number): Promise<boolean> {
  const client = sentinel.client();
  try {
    const listed = (await client.call("SENTINEL", "REPLICAS", SENTINEL_GROUP)) as string[][];
    const up = listed.filter((fields) => fields[fields.indexOf("flags") + 1] === "slave");
    return listed.length === replicas && up.length === replicas;
  } finally {
    client.disconnect();
  }
}

/**
 * The settings that make a node or sentinel show the client certificate
 * when it connects to another (under tls-auth-clients), as name and value.
 */
function clientCertSettings(tls: RedisServerTls): [string, string][] {
  if (!tls.authClients) return [];
  if (!(tls.clientCertFile && tls.clientKeyFile)) {
    throw new Error("tls.authClients needs tls.clientCertFile and tls.clientKeyFile");
  }
  return [
    ["tls-client-cert-file", tls.clientCertFile],
    ["tls-client-key-file", tls.clientKeyFile],
  ];
}

/** clientCertSettings as redis-server arguments. */
function clientCertArgs(tls: RedisServerTls): string[] {
  return clientCertSettings(tls).flatMap(([name, value]) => [`--${name}`, value]);
}

/** A sentinel's configuration lines that serve TLS only, on `port`, and speak it to the others. */
function sentinelTlsLines(port: number, tls: RedisServerTls | undefined): string[] {
  if (!tls) return [`port ${port}`];
  return [
    "port 0",
    `tls-port ${port}`,
    `tls-cert-file ${tls.certFile}`,
    `tls-key-file ${tls.keyFile}`,
    `tls-ca-cert-file ${tls.caFile}`,
    `tls-auth-clients ${tls.authClients ? "yes" : "no"}`,
    // The sentinels' own links, to the data nodes and to each other, over TLS.
    "tls-replication yes",
    ...clientCertSettings(tls).map(([name, value]) => `${name} ${value}`),
  ];
}

/** How the harness's clients reach a sentinel: over TLS with the set's CA (and client certificate). */
function sentinelClientOptions(
  port: number,
  tls: RedisServerTls | undefined,
): HarnessClientOptions {
  if (!tls) return { host: "127.0.0.1", port };
  return {
    host: "127.0.0.1",
    port,
    tls: {
      ca: readFileSync(tls.caFile),
      ...(tls.clientCertFile ? { cert: readFileSync(tls.clientCertFile) } : {}),
      ...(tls.clientKeyFile ? { key: readFileSync(tls.clientKeyFile) } : {}),
    },
  };
}

/**
 * Starts one sentinel on a free port, watching the primary on
 * `primaryPort`. A sentinel rewrites its configuration file as it learns
 * the group, so each gets a file of its own in a directory of its own.
 */
async function startSentinel(
  primaryPort: number,
  quorum: number,
  tls: RedisServerTls | undefined,
): Promise<Sentinel> {
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-sentinel-"));
  const file = join(dir, "sentinel.conf");
  try {
    return await onFreePorts(1, async ([port = 0]) => {
      writeFileSync(
        file,
        [
          ...sentinelTlsLines(port, tls),
          "bind 127.0.0.1",
          "protected-mode no",
          `dir ${dir}`,
          `sentinel monitor ${SENTINEL_GROUP} 127.0.0.1 ${primaryPort} ${quorum}`,
          `sentinel down-after-milliseconds ${SENTINEL_GROUP} ${DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${SENTINEL_GROUP} ${FAILOVER_TIMEOUT_MS}`,
          "",
        ].join("\n"),
      );
      const options = sentinelClientOptions(port, tls);
      const child = await spawnAnswering([file, "--sentinel"], options).catch(() => undefined);
      return child && sentinelProcess(child, options, dir);
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The running sentinel `child`, reached with `options`, whose directory `dir` goes when it stops. */
function sentinelProcess(
  child: ChildProcess,
  options: HarnessClientOptions,
  dir: string,
): Sentinel {
  const client = () => new Redis(options);
  return {
    port: options.port,
    clientOptions: options,
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
    suspend: () => {
      child.kill("SIGSTOP");
    },
    resume: () => {
      child.kill("SIGCONT");
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        // A suspended process ignores SIGTERM until it runs again.
        child.kill("SIGCONT");
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
