import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** A redis-server process this test run started, on its own port and directory. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** A new client of this server (the caller closes it). */
  client(): Redis;
  /**
   * Holds every client command for `ms` (CLIENT PAUSE ALL), as a stuck
   * Redis would; resolves to a function that waits until the pause is over.
   * The pause cannot be lifted early: Redis 7.0 holds CLIENT UNPAUSE too.
   */
  pause(ms: number): Promise<() => Promise<void>>;
  /** Kills the process at once (SIGKILL), as an outage would. */
  kill(): Promise<void>;
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

/**
 * Starts a private redis-server on a free port and resolves once it answers
 * PING. Never touches a server it did not start.
 */
export async function startRedisServer(
  extraArgs: readonly string[] = [],
  { busPort = false } = {},
): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-redis-"));
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; !child && attempt < 5; attempt++) {
    port = await freePort({ busPort });
    child = await launch(port, dir, extraArgs).catch(() => undefined);
  }
  if (!child) throw new Error("could not start redis-server on a free port");
  let current: ChildProcess | undefined = child;

  const stopProcess = async (signal: NodeJS.Signals) => {
    const proc = current;
    current = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill(signal);
    await exited;
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client: () => new Redis({ port, host: "127.0.0.1", lazyConnect: false }),
    pause: async (ms) => {
      const admin = new Redis({ port, host: "127.0.0.1" });
      try {
        await admin.client("PAUSE", ms, "ALL");
      } finally {
        admin.disconnect();
      }
      return async () => {
        await waitFor(`the pause of port ${port} to end`, () => ping(port), {
          timeoutMs: ms + 5000,
        });
      };
    },
    kill: () => stopProcess("SIGKILL"),
    restart: async () => {
      current = await waitFor(`redis-server to restart on port ${port}`, () =>
        launch(port, dir, extraArgs).catch(() => undefined),
      );
    },
    stop: async () => {
      await stopProcess("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Spawns redis-server and waits until it answers; rejects if it exits first. */
async function launch(
  port: number,
  dir: string,
  extraArgs: readonly string[],
): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--dir", dir, ...BASE_ARGS, ...extraArgs],
    { stdio: "ignore" },
  );
  const exited = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  const ready = waitFor(`redis-server on port ${port}`, () => ping(port), { timeoutMs: 10_000 });
  try {
    await Promise.race([ready, exited]);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  exited.catch(() => {});
  return child;
}

async function ping(port: number): Promise<boolean> {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
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
 * resolves once every node reports the cluster as ok.
 */
export async function startRedisCluster(size = 3): Promise<RedisCluster> {
  const nodes = await Promise.all(
    Array.from({ length: size }, () =>
      startRedisServer(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"], {
        busPort: true,
      }),
    ),
  );
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const create = spawnSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-yes"],
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
