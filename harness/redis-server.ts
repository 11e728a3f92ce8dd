import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort } from "./free-port.js";
import { waitFor } from "./wait-for.js";

const execFileAsync = promisify(execFile);

/** Throws, saying how to install them, when redis-server or redis-cli cannot be run. */
export function assertRedisServerInstalled(): void {
  for (const command of ["redis-server", "redis-cli"]) {
    const probe = spawnSync(command, ["--version"], { encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
      throw new Error(
        `${command} was not found on PATH. The tests start their own Redis servers; install Redis 6.2+ ` +
          "(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run the tests again.",
      );
    }
  }
}

/**
 * Serve TLS only: the plain port is closed and `port` is the TLS port. The
 * server's certificate must name 127.0.0.1 (an IP SAN), where every client
 * connects.
 */
export interface RedisServerTls {
  /** PEM files of the server's certificate and key. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA certificates: clients verify the server against them, and the server its clients. */
  readonly caFile: string;
  /** Require a client certificate signed by caFile (tls-auth-clients yes); default false. */
  readonly authClients?: boolean;
  /** The certificate and key the harness's own clients show: needed with authClients. */
  readonly clientCertFile?: string;
  readonly clientKeyFile?: string;
}

/** An ACL user, written to the server's aclfile. */
export interface RedisUser {
  readonly name: string;
  /** Stored as its SHA-256 only, so any characters work and the aclfile holds no password. */
  readonly password: string;
  /** ACL rules, as after `ACL SETUSER <name>`; the user is then switched on with the password. */
  readonly rules: string;
}

/** How to start a redis-server besides its free port and directory. */
export interface RedisServerOptions {
  /** Also keep port + 10000 free, for a Redis Cluster bus. */
  readonly busPort?: boolean;
  readonly tls?: RedisServerTls;
  /**
   * ACL users. Unless one is named "default", the default user stays open
   * (no password, every command): the harness's own clients (readiness ping,
   * client(), pause) connect as it, with its password when one is given.
   */
  readonly users?: readonly RedisUser[];
}

/** Where and how the harness's clients connect to one of its servers; ioredis options. */
export interface HarnessClientOptions {
  readonly host: string;
  readonly port: number;
  /** The default user's password, when the server's users give it one. */
  readonly password?: string;
  /** TLS options for a TLS-only server: its CA, and a client certificate if it asks for one. */
  readonly tls?: ConnectionOptions;
}

/** A redis-server process this test run started, on its own port and directory. */
export interface RedisServer {
  /** The port clients connect to: the TLS port of a TLS-only server. */
  readonly port: number;
  /** redis://127.0.0.1:<port>, or rediss:// for a TLS-only server; without credentials. */
  readonly url: string;
  /** A new client of this server as the default user, over TLS if it serves TLS (the caller closes it). */
  client(): Redis;
  /** One section of INFO (e.g. "replication"), asked on a connection of its own. */
  info(section: string): Promise<string>;
  /** How the harness's clients connect (host, port, TLS, the default user's password), for clients of one's own. */
  readonly clientOptions: HarnessClientOptions;
  /**
   * Holds every client command for `ms` (CLIENT PAUSE ALL), as a stuck
   * Redis would; resolves to a function that waits until the pause is over.
   * The pause cannot be lifted early: Redis 7.0 holds CLIENT UNPAUSE too.
   */
  pause(ms: number): Promise<() => Promise<void>>;
  /** Kills the process at once (SIGKILL), as an outage would. */
  kill(): Promise<void>;
  /**
   * Freezes the process (SIGSTOP): connections stay open and the kernel
   * keeps accepting bytes, but nothing answers, as a stuck host would.
   */
  suspend(): void;
  /** Lets a suspended process run again (SIGCONT). */
  resume(): void;
  /** Starts the process again on the same port, after kill(). */
  restart(): Promise<void>;
  /**
   * Whether the process runs now: not killed, stopped or exited (a
   * suspended one runs), so a fixture can skip the nodes a test took down.
   */
  readonly running: boolean;
  /** Stops the process and removes its directory. */
  stop(): Promise<void>;
}

const BASE_ARGS = [
  "--bind",
  "127.0.0.1",
  "--save",
  "",
  "--appendonly",
  "no",
  "--protected-mode",
  "no",
  // Redis 7 waits 5 s for more replicas before a diskless full sync; a
  // replica here (Sentinel sets, clusters, tests of their own) syncs at once.
  "--repl-diskless-sync-delay",
  "0",
];

/** The redis-server arguments that serve TLS only, on `port`. */
function tlsArgs(port: number, tls: RedisServerTls | undefined): string[] {
  if (!tls) return ["--port", String(port)];
  return [
    "--port",
    "0",
    "--tls-port",
    String(port),
    "--tls-cert-file",
    tls.certFile,
    "--tls-key-file",
    tls.keyFile,
    "--tls-ca-cert-file",
    tls.caFile,
    "--tls-auth-clients",
    tls.authClients ? "yes" : "no",
  ];
}

/** Writes the users to an aclfile in `dir`; returns the arguments that load it. */
function aclArgs(dir: string, users: readonly RedisUser[] | undefined): string[] {
  if (!users || users.length === 0) return [];
  const file = join(dir, "users.acl");
  const lines = users.map((user) => {
    if (!/^[!-~]+$/.test(user.name)) throw new Error(`invalid ACL user name ${user.name}`);
    const hash = createHash("sha256").update(user.password).digest("hex");
    return `user ${user.name} ${user.rules} on #${hash}\n`;
  });
  writeFileSync(file, lines.join(""), { mode: 0o600 });
  return ["--aclfile", file];
}

/** Connection options for the harness's own clients of a server. */
function connectOptions(
  port: number,
  tls: RedisServerTls | undefined,
  users: readonly RedisUser[] | undefined,
): HarnessClientOptions {
  const admin = users?.find((user) => user.name === "default");
  return {
    host: "127.0.0.1",
    port,
    ...(admin ? { password: admin.password } : {}),
    ...(tls
      ? {
          tls: {
            ca: readFileSync(tls.caFile),
            ...(tls.clientCertFile ? { cert: readFileSync(tls.clientCertFile) } : {}),
            ...(tls.clientKeyFile ? { key: readFileSync(tls.clientKeyFile) } : {}),
          },
        }
      : {}),
  };
}

/**
 * Starts a private redis-server on a free port and resolves once it answers
 * PING. Never touches a server it did not start. With `tls` it serves TLS
 * only; with `users` it loads them as its ACL.
 */
export async function startRedisServer(
  extraArgs: readonly string[] = [],
  { busPort = false, tls, users }: RedisServerOptions = {},
): Promise<RedisServer> {
  if (tls?.authClients && !(tls.clientCertFile && tls.clientKeyFile)) {
    throw new Error(
      "tls.authClients needs tls.clientCertFile and tls.clientKeyFile for the harness's clients",
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-redis-"));
  let args: string[];
  try {
    args = [...aclArgs(dir, users), ...extraArgs];
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let port = 0;
  let options: HarnessClientOptions = { host: "127.0.0.1", port };
  let child: ChildProcess | undefined;
  for (let attempt = 0; !child && attempt < 5; attempt++) {
    port = await freePort({ busPort });
    options = connectOptions(port, tls, users);
    child = await launch(options, [...tlsArgs(port, tls), ...args], dir).catch(() => undefined);
  }
  if (!child) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error("could not start redis-server on a free port");
  }
  let current: ChildProcess | undefined = child;

  const stopProcess = async (signal: NodeJS.Signals) => {
    const proc = current;
    current = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    // A suspended process ignores SIGTERM until it runs again.
    proc.kill("SIGCONT");
    proc.kill(signal);
    await exited;
  };

  const clientOptions = options;
  return {
    port,
    url: `${tls ? "rediss" : "redis"}://127.0.0.1:${port}`,
    clientOptions,
    client: () => new Redis({ ...clientOptions, lazyConnect: false }),
    info: async (section) => {
      const client = new Redis(clientOptions);
      try {
        return await client.info(section);
      } finally {
        client.disconnect();
      }
    },
    pause: async (ms) => {
      const admin = new Redis(clientOptions);
      try {
        await admin.client("PAUSE", ms, "ALL");
      } finally {
        admin.disconnect();
      }
      return async () => {
        await waitFor(`the pause of port ${port} to end`, () => ping(clientOptions), {
          timeoutMs: ms + 5000,
        });
      };
    },
    kill: () => stopProcess("SIGKILL"),
    suspend: () => {
      current?.kill("SIGSTOP");
    },
    resume: () => {
      current?.kill("SIGCONT");
    },
    get running() {
      return current !== undefined && current.exitCode === null && current.signalCode === null;
    },
    restart: async () => {
      current = await waitFor(`redis-server to restart on port ${port}`, () =>
        launch(clientOptions, [...tlsArgs(port, tls), ...args], dir).catch(() => undefined),
      );
    },
    stop: async () => {
      await stopProcess("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Spawns redis-server with `args` (its port among them) and waits until a
 * client with `options` gets an answer; rejects if it exits first.
 */
function launch(
  options: HarnessClientOptions,
  args: readonly string[],
  dir: string,
): Promise<ChildProcess> {
  return spawnAnswering(["--dir", dir, ...BASE_ARGS, ...args], options);
}

/**
 * Spawns `redis-server argv` (a data node, or a sentinel) and resolves once
 * a client with `options` gets an answer to PING; kills it and rejects if
 * it exits first or does not answer within 10 s.
 */
export async function spawnAnswering(
  argv: readonly string[],
  options: HarnessClientOptions,
): Promise<ChildProcess> {
  const child = spawn("redis-server", argv, { stdio: "ignore" });
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  const ready = waitFor(`redis-server on port ${options.port}`, () => ping(options), {
    timeoutMs: 10_000,
  });
  try {
    await Promise.race([ready, exited]);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  exited.catch(() => {});
  return child;
}

/**
 * Whether Redis answers PING. A Redis still loading its data answers
 * LOADING, which counts as no: the caller polls again soon (ioredis's own
 * ready check would wait a whole second, or the load's estimate, instead).
 */
async function ping(options: HarnessClientOptions): Promise<boolean> {
  const client = new Redis({
    ...options,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * How long a cluster node may be silent before the others count it down
 * (cluster-node-timeout): short, so that a killed master's replica takes
 * over within seconds in the tests, not the default 15 s.
 */
export const CLUSTER_NODE_TIMEOUT_MS = 2000;

/** One master of a Redis Cluster as the cluster sees it now: its replicas and its slots. */
export interface ClusterShard {
  readonly master: RedisServer;
  readonly replicas: readonly RedisServer[];
  /** The slot ranges it serves, [first, last] each, in slot order. */
  readonly slots: readonly (readonly [number, number])[];
}

/**
 * A Redis Cluster of several masters, with replicas of them if asked for,
 * all started by this test run. Roles change when a replica takes over, so
 * they are asked of the cluster when needed (shards()), never remembered.
 */
export interface RedisCluster {
  /** Every node, masters and replicas, in the order they were started. */
  readonly nodes: readonly RedisServer[];
  /** Comma-separated node URLs, as REDIS_URL takes them in cluster mode. */
  readonly url: string;
  /** A node's cluster id, as redis-cli --cluster reshard takes it; restart() keeps it. */
  nodeId(node: RedisServer): string;
  /**
   * The masters now, each with its replicas and slots, in order of their
   * first slot (masters without slots last), as a running node's CLUSTER
   * NODES says. A killed master stays in it until its replica takes over.
   */
  shards(): Promise<ClusterShard[]>;
  /** The hash slot of `key` (CLUSTER KEYSLOT): with shardOf, the node that serves a key. */
  keySlot(key: string): Promise<number>;
  /** The shard serving `slot` now. */
  shardOf(slot: number): Promise<ClusterShard>;
  /**
   * Resolves once every running node reports cluster_state:ok and the same
   * layout (which master serves which slots, which replicates which), and
   * every running replica master_link_status:up: the state
   * startRedisCluster resolves in, and the one to wait for after a
   * restart() or a reshard.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** Resolves once `replica` reports role:master and the cluster is ready() again. */
  promoted(replica: RedisServer, timeoutMs?: number): Promise<void>;
  /**
   * SIGKILLs `master` and resolves with its (running) replica once that
   * replica has taken over: promoted(). For a test that times the takeover
   * itself, kill() and promoted() do the same in two steps.
   */
  failover(master: RedisServer): Promise<RedisServer>;
  stop(): Promise<void>;
}

/** How startRedisCluster forms the cluster, besides how many masters it has. */
export interface RedisClusterOptions {
  /** Replicas of every master (`redis-cli --cluster create --cluster-replicas`); default 0. */
  readonly replicas?: number;
  /** ACL users every node gets (see RedisServerOptions.users). */
  readonly users?: readonly RedisUser[];
}

/**
 * Starts `masters` × (1 + `replicas`) cluster-enabled redis-servers on free
 * ports (each with its bus port), joins them with `redis-cli --cluster
 * create` (slots spread evenly over the masters, `replicas` replicas of
 * each) and resolves once the cluster is ready(): every node reports it ok
 * and every replica has synced with its master. Everything it started is
 * stopped if it fails.
 */
export async function startRedisCluster(
  masters = 3,
  { replicas = 0, users }: RedisClusterOptions = {},
): Promise<RedisCluster> {
  const args = [
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    String(CLUSTER_NODE_TIMEOUT_MS),
  ];
  const started = await Promise.allSettled(
    Array.from({ length: masters * (1 + replicas) }, () =>
      startRedisServer(args, { busPort: true, ...(users ? { users } : {}) }),
    ),
  );
  const nodes = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
    const admin = users?.find((user) => user.name === "default");
    await redisCli([
      ...(admin ? ["--no-auth-warning", "-a", admin.password] : []),
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ]);
    const ids = new Map<RedisServer, string>();
    for (const node of nodes) {
      ids.set(node, String(await ask(node, (client) => client.cluster("MYID"))));
    }
    const cluster = clusterOf(nodes, ids, stop);
    // Once every node agrees on the layout, it is the one redis-cli made.
    await cluster.ready(30_000);
    const shards = await cluster.shards();
    if (shards.length !== masters || shards.some((s) => s.replicas.length !== replicas)) {
      throw new Error(
        `the cluster formed ${shards.length} masters, not ${masters} with ${replicas} replicas each`,
      );
    }
    return cluster;
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The RedisCluster of `nodes`, whose cluster ids are `ids`. */
function clusterOf(
  nodes: readonly RedisServer[],
  ids: ReadonlyMap<RedisServer, string>,
  stop: () => Promise<void>,
): RedisCluster {
  const byId = new Map([...ids].map(([node, id]) => [id, node]));
  const running = () => {
    const live = nodes.filter((node) => node.running);
    if (live.length === 0) throw new Error("no node of the cluster runs");
    return live;
  };
  const shards = async () => {
    const table = parseClusterNodes(
      await ask(running()[0] as RedisServer, (c) => c.cluster("NODES") as Promise<string>),
    );
    const node = (id: string) => {
      const found = byId.get(id);
      if (!found) throw new Error(`the cluster has a node the fixture did not start: ${id}`);
      return found;
    };
    return table
      .filter((entry) => entry.role === "master" && (entry.slots.length > 0 || !entry.failed))
      .sort((a, b) => (a.slots[0]?.[0] ?? 16384) - (b.slots[0]?.[0] ?? 16384))
      .map((entry) => ({
        master: node(entry.id),
        replicas: table.filter((r) => r.masterId === entry.id).map((r) => node(r.id)),
        slots: entry.slots,
      }));
  };
  const ready = async (timeoutMs = 20_000) => {
    await waitFor(
      "every node to report the cluster ok, with one slot map, and every replica in sync",
      async () => {
        const views = await Promise.all(running().map(nodeView));
        return views.every((view) => view.ok) && new Set(views.map((v) => v.layout)).size === 1;
      },
      { timeoutMs, intervalMs: 50 },
    );
  };
  const promoted = async (replica: RedisServer, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    await waitFor(
      `the replica on port ${replica.port} to report role:master`,
      async () => /^role:master$/m.test(await ask(replica, (c) => c.info("replication"))),
      { timeoutMs, intervalMs: 50 },
    );
    await ready(Math.max(0, deadline - Date.now()));
  };
  return {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    nodeId: (node) => {
      const id = ids.get(node);
      if (!id) throw new Error(`port ${node.port} is not a node of this cluster`);
      return id;
    },
    shards,
    keySlot: async (key) =>
      Number(await ask(running()[0] as RedisServer, (c) => c.cluster("KEYSLOT", key))),
    shardOf: async (slot) => {
      const shard = (await shards()).find((s) =>
        s.slots.some(([first, last]) => first <= slot && slot <= last),
      );
      if (!shard) throw new Error(`no master serves slot ${slot}`);
      return shard;
    },
    ready,
    promoted,
    failover: async (master) => {
      const shard = (await shards()).find((s) => s.master === master);
      const replica = shard?.replicas.find((r) => r.running);
      if (!replica) throw new Error(`port ${master.port} is not a master with a running replica`);
      await master.kill();
      await promoted(replica);
      return replica;
    },
    stop,
  };
}

/**
 * What one node says of the cluster: whether it is ok for it (cluster
 * state ok and, for a replica, its link to its master up), and its
 * layout (slots and replicas), for comparing with the others'.
 */
async function nodeView(node: RedisServer): Promise<{ ok: boolean; layout: string }> {
  return ask(node, async (client) => {
    const [info, replication, table] = await Promise.all([
      client.cluster("INFO"),
      client.info("replication"),
      client.cluster("NODES") as Promise<string>,
    ]);
    const ok =
      /^cluster_state:ok$/m.test(info) &&
      (/^role:master$/m.test(replication) || /^master_link_status:up$/m.test(replication));
    // Who serves which slots and who replicates whom; not the failure
    // flags, which each node sets on its own first.
    const layout = parseClusterNodes(table)
      .map((entry) => `${entry.id} ${entry.masterId ?? "-"} ${entry.slots.join(" ")}`)
      .sort()
      .join("\n");
    return { ok, layout };
  });
}

/** One line of CLUSTER NODES, the parts the fixture uses. */
interface ClusterNodesEntry {
  readonly id: string;
  readonly role: "master" | "replica";
  /** Marked failing (fail, or fail? for suspected). */
  readonly failed: boolean;
  /** A replica's master's id. */
  readonly masterId: string | undefined;
  readonly slots: [number, number][];
}

/**
 * Parses CLUSTER NODES: `<id> <ip:port@bus> <flags> <master> <ping> <pong>
 * <epoch> <link> <slot ranges...>`, where a slot being moved shows as
 * `[slot->-id]` or `[slot-<-id]` (skipped: it is still served by the node
 * whose range holds it).
 */
function parseClusterNodes(text: string): ClusterNodesEntry[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const [id = "", , flags = "", master = "-", , , , , ...slots] = line.trim().split(" ");
      const flagSet = new Set(flags.split(","));
      return {
        id,
        role: flagSet.has("slave") ? "replica" : "master",
        failed: flagSet.has("fail") || flagSet.has("fail?"),
        masterId: master === "-" ? undefined : master,
        slots: slots
          .filter((slot) => !slot.startsWith("["))
          .map((slot) => {
            const [first = "", last = first] = slot.split("-");
            return [Number(first), Number(last)];
          }),
      };
    });
}

/**
 * Runs `use` with a short-lived admin client of `node` that gives up
 * rather than waiting: a node killed or suspended meanwhile fails the
 * call, and a readiness poll simply asks again.
 */
async function ask<T>(node: RedisServer, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    ...node.clientOptions,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    commandTimeout: 2000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/**
 * Runs redis-cli with `args` (without blocking the event loop, as
 * `--cluster` commands take seconds) and resolves with its output; rejects
 * with the output if it fails or takes over `timeoutMs`.
 */
export async function redisCli(args: readonly string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync("redis-cli", args, {
      encoding: "utf8",
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    // Not the error itself as the cause: its message holds the whole
    // command line, a password given with -a included.
    const {
      stdout = "",
      stderr = "",
      code,
      signal,
    } = error as {
      stdout?: string;
      stderr?: string;
      code?: unknown;
      signal?: unknown;
    };
    const cluster = args.indexOf("--cluster");
    const what = cluster >= 0 ? `--cluster ${args[cluster + 1]}` : "";
    throw new Error(`redis-cli ${what} failed (${String(signal ?? code)}): ${stdout}${stderr}`);
  }
}
