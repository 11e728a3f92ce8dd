import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { Redis } from "ioredis";
import { freePort } from "./free-port.js";
import { waitFor } from "./wait-for.js";

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

/** A Redis Cluster of several master nodes, all started by this test run. */
export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** Comma-separated node URLs, as REDIS_URL takes them in cluster mode. */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Starts `size` cluster-enabled redis-servers, joins them into one cluster
 * with `redis-cli --cluster create` (slots spread evenly, no replicas) and
 * resolves once every node reports the cluster as ok. Every node gets the
 * same ACL `users`.
 */
export async function startRedisCluster(
  size = 3,
  { users }: Pick<RedisServerOptions, "users"> = {},
): Promise<RedisCluster> {
  const nodes = await Promise.all(
    Array.from({ length: size }, () =>
      startRedisServer(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"], {
        busPort: true,
        ...(users ? { users } : {}),
      }),
    ),
  );
  const admin = users?.find((user) => user.name === "default");
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const create = spawnSync(
      "redis-cli",
      [
        ...(admin ? ["--no-auth-warning", "-a", admin.password] : []),
        "--cluster",
        "create",
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        "--cluster-yes",
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    await Promise.all(
      nodes.map(async (node) => {
        const client = node.client();
        try {
          await waitFor(
            `cluster state ok on port ${node.port}`,
            async () => (await client.cluster("INFO")).includes("cluster_state:ok"),
            { timeoutMs: 20_000, intervalMs: 50 },
          );
        } finally {
          client.disconnect();
        }
      }),
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, url: nodes.map((n) => n.url).join(","), stop };
}
