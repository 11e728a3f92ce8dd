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
 * Where Redis is, for logs: host:port of each URL, never credentials.
 */
function redisTargets(options: RedisClientOptions): string {
  return options.url
    .split(",")
    .map((url) => {
      const { hostname, port } = new URL(url.trim());
      return `${hostname}:${port || 6379}`;
    })
    .join(",");
}

/**
 * Connects to Redis (standalone or Cluster) and resolves once it is ready.
 * Connection state changes are logged without credentials or data: while
 * the first connection fails, once per distinct cause at warn, naming the
 * address it waits for and why (ECONNREFUSED, a DNS failure, an auth
 * error), so a wrong REDIS_URL shows at once rather than at the timeout.
 *
 * @throws Error when Redis is not ready within connectTimeoutMs, naming the
 *   address and the last cause.
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
  const target = redisTargets(options);
  let connected = false;
  let everConnected = false;
  let lastCause: string | undefined;
  client.on("ready", () => {
    connected = true;
    everConnected = true;
    logger.info({ redis: target }, "connected to Redis");
  });
  client.on("error", (err: Error) => {
    const cause = causeOf(err);
    if (connected) {
      logger.warn({ err, redis: target }, "lost connection to Redis, reconnecting");
    } else if (!everConnected && cause !== lastCause) {
      // Every retry fails the same way while Redis stays away: say it once.
      logger.warn({ redis: target, cause }, "waiting for Redis");
    } else {
      logger.debug({ err }, "Redis connection attempt failed");
    }
    lastCause = cause;
    connected = false;
  });
  try {
    await waitUntilReady(client, options.connectTimeoutMs);
  } catch {
    client.disconnect();
    throw new Error(
      `Redis at ${target} was not ready within ${options.connectTimeoutMs} ms` +
        (lastCause ? ` (${lastCause})` : ""),
    );
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

/** A connection error's cause, safe to log: its code (ECONNREFUSED) or its message. */
function causeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : error.message;
}

function waitUntilReady(client: Redis | Cluster, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off("ready", onReady);
      reject(new Error("timed out"));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once("ready", onReady);
  });
}
