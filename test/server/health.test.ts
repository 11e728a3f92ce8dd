import type http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { LIVENESS_SERVICE } from "../../src/grpc/health.js";
import { createLogger } from "../../src/observability/logger.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { createAdminServer } from "../../src/transport/admin-server.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { expectCode } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

let redis: RedisServer;
let store: RedisSessionStore;
let running: RunningServer;
let admin: http.Server;
let adminUrl: string;
let pool: ClientPool;

beforeAll(async () => {
  redis = await startRedisServer();
  const client = await connectRedis(
    { url: redis.url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
    createLogger("silent"),
  );
  store = new RedisSessionStore({ redis: client, keyPrefix: "health", maxSessionsPerUser: 0 });
  running = await startTestServer(store);
  admin = createAdminServer({
    health: running.server.health,
    telemetry: running.server.telemetry,
    trustsEveryCaller: running.server.trustsEveryCaller,
  });
  await new Promise<void>((resolve) => admin.listen(0, "127.0.0.1", resolve));
  adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
  pool = clientPool(running.baseUrl);
});

afterAll(async () => {
  admin?.close();
  pool?.close();
  await running?.stop();
  await store?.close();
  await redis?.stop();
});

function healthClient(clients = pool) {
  return createClient(Health, clients.transport({ protocol: "grpc" }));
}

/** The next message of a stream, failing after `ms` instead of waiting for the test timeout. */
async function nextWithin<T>(it: AsyncIterator<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms);
  });
  try {
    const result = await Promise.race([it.next(), timeout]);
    if (result.done) throw new Error("the stream ended");
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

async function metric(name: string): Promise<string[]> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text.split("\n").filter((line) => line.startsWith(name));
}

describe("grpc.health.v1.Health", () => {
  it("answers Check for the server and for SessionStoreService, NOT_FOUND otherwise", async () => {
    const health = healthClient();
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: "sessionstore.v1.SessionStoreService" })).status).toBe(
      ServingStatus.SERVING,
    );
    await expectCode(
      health.check({ service: "no.such.Service" }),
      Code.NotFound,
      "unknown service",
    );
    const { statuses } = await health.list({});
    expect(Object.keys(statuses).sort()).toEqual([
      "",
      LIVENESS_SERVICE,
      "sessionstore.v1.SessionStoreService",
    ]);
    expect((await health.check({ service: LIVENESS_SERVICE })).status).toBe(ServingStatus.SERVING);
  });

  it("reports SERVICE_UNKNOWN on Watch for an unknown service and keeps the stream open", async () => {
    const abort = new AbortController();
    const it = healthClient()
      .watch({ service: "no.such.Service" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await nextWithin(it, 2000)).status).toBe(ServingStatus.SERVICE_UNKNOWN);
    abort.abort();
  });

  // The monitor probes every 100 ms with a 500 ms timeout: under a second;
  // the polls allow five on a busy machine.
  it("goes NOT_SERVING when Redis goes away and SERVING again when it returns", async () => {
    const abort = new AbortController();
    const it = healthClient()
      .watch({ service: "" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    try {
      expect((await nextWithin(it, 2000)).status).toBe(ServingStatus.SERVING);
      expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
      expect(await metric("sessionstore_store_connected")).toContain(
        "sessionstore_store_connected 1",
      );

      await redis.kill();
      expect((await nextWithin(it, 5000)).status).toBe(ServingStatus.NOT_SERVING);
      expect((await fetch(`${adminUrl}/readyz`)).status).toBe(503);
      expect((await healthClient().check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
      // Liveness does not follow the store: a Redis outage restarts no replica.
      expect((await healthClient().check({ service: LIVENESS_SERVICE })).status).toBe(
        ServingStatus.SERVING,
      );
      expect((await healthClient().list({})).statuses[LIVENESS_SERVICE]?.status).toBe(
        ServingStatus.SERVING,
      );
      expect((await fetch(`${adminUrl}/healthz`)).status).toBe(200);
      expect(await metric("sessionstore_store_connected")).toContain(
        "sessionstore_store_connected 0",
      );
      // An RPC during the outage is UNAVAILABLE and counted as a store error.
      const sessions = pool.sessions();
      await expectCode(sessions.get({ sessionId: "s", userId: uniqueUserId() }), Code.Unavailable);
      expect(await metric('sessionstore_store_errors_total{kind="unavailable"}')).not.toEqual([]);

      await redis.restart();
      expect((await nextWithin(it, 5000)).status).toBe(ServingStatus.SERVING);
      expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
    } finally {
      abort.abort();
    }
  });
});

describe("the admin listener", () => {
  it("answers /healthz, and 404 or 405 for anything else", async () => {
    const healthz = await fetch(`${adminUrl}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.text()).toBe("ok\n");
    expect((await fetch(`${adminUrl}/nope`)).status).toBe(404);
    expect((await fetch(`${adminUrl}/healthz`, { method: "POST" })).status).toBe(405);
  });

  it("counts RPCs by method and status code on both serving paths, with latency and in-flight", async () => {
    const userId = uniqueUserId();
    const overGrpc = pool.sessions({ protocol: "grpc" });
    const overConnect = pool.sessions({ protocol: "connect" });
    const method = "sessionstore.v1.SessionStoreService/ListByUser";
    const before = await metric(
      `sessionstore_rpcs_total{method="${method}",code="OK",caller="anonymous"}`,
    );
    const count = (lines: string[]) => Number(lines[0]?.split(" ").at(-1) ?? 0);
    await overGrpc.listByUser({ userId });
    await overConnect.listByUser({ userId });
    await expectCode(overGrpc.listByUser({ userId, pageSize: -1 }), Code.InvalidArgument);
    const after = await metric(
      `sessionstore_rpcs_total{method="${method}",code="OK",caller="anonymous"}`,
    );
    expect(count(after) - count(before)).toBe(2);
    expect(
      await metric(
        `sessionstore_rpcs_total{method="${method}",code="INVALID_ARGUMENT",caller="anonymous"}`,
      ),
    ).toHaveLength(1);
    expect(
      await metric(`sessionstore_rpc_duration_seconds_count{method="${method}"}`),
    ).toHaveLength(1);
    expect(await metric("sessionstore_rpcs_in_flight")).toContain("sessionstore_rpcs_in_flight 0");
  });
});

describe("shutdown", () => {
  it("turns health NOT_SERVING, ends Watch streams and closes promptly", async () => {
    const other = await startTestServer(store);
    const otherPool = clientPool(other.baseUrl);
    const abort = new AbortController();
    const it = healthClient(otherPool)
      .watch({ service: "" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    try {
      expect((await nextWithin(it, 2000)).status).toBe(ServingStatus.SERVING);
      const graceMs = 30_000;
      const started = Date.now();
      const closed = other.server.close(graceMs);
      expect((await nextWithin(it, 5000)).status).toBe(ServingStatus.NOT_SERVING);
      expect((await it.next()).done).toBe(true);
      await closed;
      // The Watch stream ended, so nothing held the close until the grace period.
      expect(Date.now() - started).toBeLessThan(graceMs);
      expect(other.server.health.isServing).toBe(false);
    } finally {
      otherPool.close();
    }
  });
});
