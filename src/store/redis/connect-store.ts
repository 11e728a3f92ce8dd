import type { Cluster, Redis } from "ioredis";
import type { Logger } from "../../observability/logger.js";
import { connectRedis, type RedisClientOptions } from "./redis-client.js";
import { RedisSessionStore, type RedisSessionStoreOptions } from "./redis-session-store.js";

/** What connectRedisSessionStore opens: the store and where, besides its client. */
export interface RedisStoreSettings
  extends Omit<RedisSessionStoreOptions, "redis" | "replication" | "connectSubscriber"> {
  /** Replicas every write waits for (Redis WAIT), and for how long; absent or 0: none. */
  readonly waitReplicas?: { readonly replicas: number; readonly timeoutMs: number };
}

/**
 * Connects to Redis and opens the store on it, as the server does. The
 * connection that subscribes to watched users' event channels is made the
 * same way, once the first watch begins. Writes
 * that wait for replicas get a second client of their own (see
 * ReplicatedWrites), connected the same way before the store is returned;
 * its log lines say which connection they concern.
 *
 * @throws Error as connectRedis does, when either client cannot connect.
 */
export async function connectRedisSessionStore(
  client: RedisClientOptions,
  { waitReplicas, ...settings }: RedisStoreSettings,
  logger: Logger,
): Promise<{ readonly redis: Redis | Cluster; readonly store: RedisSessionStore }> {
  const redis = await connectRedis(client, logger);
  // Made as the store's own client (Sentinel's following failovers too),
  // on the first watch; a Cluster's with a sharded subscriber per master.
  const connectSubscriber = () =>
    connectRedis(
      "url" in client && client.cluster ? { ...client, shardedSubscribers: true } : client,
      logger.child({ connection: "session events" }),
    );
  if (!waitReplicas || waitReplicas.replicas === 0) {
    return { redis, store: new RedisSessionStore({ ...settings, redis, connectSubscriber }) };
  }
  let writer: Redis | Cluster;
  try {
    writer = await connectRedis(client, logger.child({ connection: "writes awaiting replicas" }));
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  const replication = { ...waitReplicas, writer };
  return {
    redis,
    store: new RedisSessionStore({ ...settings, redis, replication, connectSubscriber }),
  };
}
