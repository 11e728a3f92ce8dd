import { afterAll, beforeAll } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { createLogger } from "../../src/observability/logger.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import {
  describeSessionStoreService,
  grpcClient,
  inProcessClient,
} from "./session-store-service-suite.js";

// The service's behaviour once per store, over Connect's in-memory
// transport; and once through the real server's gRPC fast path, which
// decodes requests and encodes responses by hand.

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis?.stop();
});

const openMemory = async ({ maxSessionsPerUser }: { maxSessionsPerUser: number }) =>
  new MemorySessionStore({ maxSessionsPerUser, sweepIntervalMs: 0 });

describeSessionStoreService("memory store, in process", openMemory, inProcessClient);

describeSessionStoreService(
  "Redis store, in process",
  async ({ maxSessionsPerUser }) =>
    new RedisSessionStore({
      redis: await connectRedis(
        { url: redis.url, cluster: false, commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
        createLogger("silent"),
      ),
      keyPrefix: `service-${maxSessionsPerUser}`,
      maxSessionsPerUser,
    }),
  inProcessClient,
);

describeSessionStoreService("memory store, over the gRPC fast path", openMemory, grpcClient);
