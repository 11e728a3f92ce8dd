import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../../observability/logger.js";

/** How to reach Redis. */
export interface RedisClientOptions {
  /** One redis:// or rediss:// URL, or comma-separated seed nodes of a cluster. */
  readonly url: string;
  readonly cluster: boolean;
  /** How long a command may wait for its reply before failing. */
  readonly commandTimeoutMs: number;
  /** How long to wait for the first connection before giving up. */
  readonly connectTimeoutMs: number;
}

/**
 * Reconnect quickly after a blip, then twice a second: health reports
 * SERVING again within a second of Redis coming back.
 */
function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** (attempt - 1), 500);
}

/**
 * Options that make a Redis outage fail fast instead of queueing RPCs behind
 * it: no resend of commands whose connection dropped (a write may have
 * happened; the caller decides whether to retry), no retry of them on
 * reconnect, and a per-command timeout. With the offline queue disabled as
 * well (set per client kind below), commands fail at once while
 * disconnected.
 */
function failFastOptions(options: RedisClientOptions) {
  return {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: Math.min(options.connectTimeoutMs, 2000),
    connectionName: "sessionstore",
  } satisfies RedisOptions;
}

/**
 * Connects to Redis (standalone or Cluster) and resolves once it is ready.
 * Connection state changes are logged without credentials or data.
 *
 * @throws Error when Redis is not ready within connectTimeoutMs.
 */
export async function connectRedis(
  options: RedisClientOptions,
  logger: Logger,
): Promise<Redis | Cluster> {
  const client = options.cluster
    ? createCluster(options)
    : new Redis(options.url, {
        ...failFastOptions(options),
        enableOfflineQueue: false,
        retryStrategy: reconnectDelay,
      });
  let connected = false;
  client.on("ready", () => {
    connected = true;
    logger.info("connected to Redis");
  });
  client.on("error", (err: Error) => {
    // While disconnected every reconnect attempt fails; say so once.
    if (connected) logger.warn({ err }, "lost connection to Redis, reconnecting");
    else logger.debug({ err }, "Redis connection attempt failed");
    connected = false;
  });
  try {
    await waitUntilReady(client, options.connectTimeoutMs);
  } catch (error) {
    client.disconnect();
    throw error;
  }
  return client;
}

function createCluster(options: RedisClientOptions): Cluster {
  const urls = options.url.split(",").map((url) => new URL(url.trim()));
  const first = urls[0] as URL;
  const nodes = urls.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) }));
  const redisOptions = {
    ...failFastOptions(options),
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === "rediss:" ? { tls: {} } : {}),
  };
  return new Cluster(nodes, {
    redisOptions,
    enableOfflineQueue: false,
    clusterRetryStrategy: reconnectDelay,
    clusterNodeRetryStrategy: reconnectDelay,
  });
}

function waitUntilReady(client: Redis | Cluster, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off("ready", onReady);
      reject(new Error(`Redis was not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once("ready", onReady);
  });
}
