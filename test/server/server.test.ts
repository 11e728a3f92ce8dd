import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RefreshOutcome } from "../../gen/sessionstore/v1/session_store_pb.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { createLogger } from "../../src/observability/logger.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

let redis: RedisServer;
let admin: Redis;
let store: RedisSessionStore;
let running: RunningServer;
let pool: ClientPool;

beforeAll(async () => {
  redis = await startRedisServer();
  admin = redis.client();
  const client = await connectRedis(
    { url: redis.url, cluster: false, commandTimeoutMs: 3000, connectTimeoutMs: 5000 },
    createLogger("silent"),
  );
  store = new RedisSessionStore({
    redis: client,
    keyPrefix: "sessionstore",
    maxSessionsPerUser: 0,
  });
  running = await startTestServer(store);
  pool = clientPool(running.baseUrl);
});

afterAll(async () => {
  pool?.close();
  await running?.stop();
  await store?.close();
  admin?.disconnect();
  await redis?.stop();
});

/**
 * Waits out a Redis pause while `call` runs; resolves to whether the call
 * settled while Redis was still paused, i.e. at its own deadline rather
 * than when Redis answered.
 */
async function settlesDuringPause(call: () => Promise<unknown>): Promise<boolean> {
  const resumed = await redis.pause(1500);
  let over = false;
  const waiting = resumed().then(() => {
    over = true;
  });
  try {
    await call();
    return !over;
  } finally {
    await waiting;
  }
}

const kinds: [string, ClientKind][] = [
  ["gRPC", { protocol: "grpc" }],
  ["Connect", { protocol: "connect" }],
  ["Connect JSON", { protocol: "connect", binary: false }],
  ["gRPC-Web", { protocol: "grpc-web" }],
];

describe.each(kinds)("a connect-node client over %s", (_name, kind) => {
  const client = () => pool.sessions(kind);

  it("calls every RPC", async () => {
    const c = client();
    const userId = uniqueUserId();
    const session = sessionFixture(userId, "s1", {
      expiresAt: timestampFromMs(Date.now() + 3_600_000),
    });
    const inserted = await c.upsert({ session, ttl: ttl(60_000), expectedVersion: 0n });
    expect(inserted.session?.version).toBe(1n);
    expect((await c.get({ sessionId: "s1", userId })).session).toEqual(inserted.session);
    const touched = await c.touch({ sessionId: "s1", userId, ttl: ttl(120_000) });
    expect(touched.session?.version).toBe(1n);
    const updated = await c.upsert({ session, ttl: ttl(60_000), expectedVersion: 1n });
    expect(updated.session?.version).toBe(2n);
    const refreshed = await c.refresh({
      sessionId: "s1",
      userId,
      presentedRefreshTokenId: session.refreshTokenId,
      newRefreshTokenId: "rt-next",
      ttl: ttl(60_000),
    });
    expect(refreshed.outcome).toBe(RefreshOutcome.ROTATED);
    expect(refreshed.session?.refreshTokenId).toBe("rt-next");
    expect(refreshed.session?.version).toBe(3n);
    expect((await c.get({ sessionId: "s1", userId })).session).toEqual(refreshed.session);
    await c.upsert({ session: sessionFixture(userId, "s2"), ttl: ttl(60_000) });
    const page = await c.listByUser({ userId, pageSize: 1 });
    expect(page.sessions.map((s) => s.id)).toEqual(["s1"]);
    const next = await c.listByUser({ userId, pageSize: 1, pageToken: page.nextPageToken });
    expect(next.sessions.map((s) => s.id)).toEqual(["s2"]);
    expect(next.nextPageToken).toBe("");
    expect((await c.delete({ sessionId: "s2", userId, expectedVersion: 1n })).deleted).toBe(true);
    expect((await c.delete({ sessionId: "s2", userId })).deleted).toBe(false);
    expect((await c.deleteByUser({ userId, exceptSessionIds: [] })).deletedCount).toBe(1n);
  });

  it("reports NOT_FOUND, ALREADY_EXISTS, ABORTED and INVALID_ARGUMENT", async () => {
    const c = client();
    const userId = uniqueUserId();
    await expectCode(c.get({ sessionId: "none", userId }), Code.NotFound, "session not found");
    await c.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    await expectCode(
      c.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000), expectedVersion: 0n }),
      Code.AlreadyExists,
    );
    await expectCode(c.delete({ sessionId: "s", userId, expectedVersion: 9n }), Code.Aborted);
    await expectCode(c.touch({ sessionId: "s", userId }), Code.InvalidArgument, "ttl is required");
    await expectCode(c.listByUser({ userId, pageSize: -1 }), Code.InvalidArgument, "page_size");
    const keep = Array.from({ length: 101 }, (_, i) => `keep-${i}`);
    await expectCode(
      c.deleteByUser({ userId, exceptSessionIds: keep }),
      Code.InvalidArgument,
      "except_session_ids must list at most 100 ids",
    );
    await expect(c.get({ sessionId: "s", userId })).resolves.toBeDefined();
  });

  it("stops waiting at the client's deadline", async () => {
    const c = client();
    const atDeadline = await settlesDuringPause(() =>
      expectCode(
        c.get({ sessionId: "s", userId: uniqueUserId() }, { timeoutMs: 200 }),
        Code.DeadlineExceeded,
      ),
    );
    expect(atDeadline).toBe(true);
  });

  it("rejects a request body over MAX_REQUEST_BYTES with RESOURCE_EXHAUSTED", async () => {
    const c = client();
    const userId = uniqueUserId();
    await expectCode(
      c.upsert({
        session: sessionFixture(userId, "huge", {
          extraPayload: { blob: "x".repeat(1024 * 1024) },
        }),
        ttl: ttl(60_000),
      }),
      Code.ResourceExhausted,
    );
    await expectCode(c.get({ sessionId: "huge", userId }), Code.NotFound);
  });
});

describe("JSON clients", () => {
  it("cannot smuggle an unpaired surrogate into an id", async () => {
    const c = pool.sessions({ protocol: "connect", binary: false });
    await expectCode(
      c.get({ sessionId: "a\ud800b", userId: "u" }),
      Code.InvalidArgument,
      "request is not a valid sessionstore.v1.GetRequest: cannot decode field sessionstore.v1.GetRequest.session_id",
    );
  });
});

describe("a plain @grpc/grpc-js client", () => {
  let grpcClient: GrpcJsClient;

  beforeAll(() => {
    grpcClient = createGrpcJsClient(running.port);
  });

  afterAll(() => {
    grpcClient?.close();
  });

  function expectStatus(error: unknown, code: grpc.status, text?: string) {
    const e = error as grpc.ServiceError;
    expect(grpc.status[e.code]).toBe(grpc.status[code]);
    if (text) expect(e.details).toBe(text);
  }

  it("calls every RPC with protobuf.js encoding on the wire", async () => {
    const userId = uniqueUserId();
    const session = {
      id: "s1",
      userId,
      refreshTokenId: "rt-1",
      createdAt: { seconds: "1700000000", nanos: 5 },
      lastKnownIp: "198.51.100.2",
      tokenSignatureTransport: "TOKEN_TRANSPORT_BEARER",
      extraPayload: { fields: { role: { stringValue: "admin" }, n: { numberValue: 3 } } },
    };
    type R = { session: Record<string, unknown> & { version: string } };
    const inserted = await grpcClient.call<R>("Upsert", {
      session,
      ttl: { seconds: "60", nanos: 0 },
      expectedVersion: "0",
    });
    expect(inserted.session.version).toBe("1");
    const got = await grpcClient.call<R>("Get", { sessionId: "s1", userId });
    expect(got.session).toMatchObject({ ...session, version: "1" });
    const touched = await grpcClient.call<R>("Touch", {
      sessionId: "s1",
      userId,
      ttl: { seconds: "90" },
    });
    expect(touched.session.version).toBe("1");
    const updated = await grpcClient.call<R>("Upsert", {
      session,
      ttl: { seconds: "60" },
      expectedVersion: "1",
    });
    expect(updated.session.version).toBe("2");
    // A rotation appends refresh_token_id and refreshed_at to the stored
    // bytes: protobuf.js must read the later values.
    const before = Math.floor(Date.now() / 1000);
    const refreshed = await grpcClient.call<R & { outcome: string }>("Refresh", {
      sessionId: "s1",
      userId,
      presentedRefreshTokenId: "rt-1",
      newRefreshTokenId: "rt-2",
      ttl: { seconds: "60" },
    });
    expect(refreshed.outcome).toBe("REFRESH_OUTCOME_ROTATED");
    expect(refreshed.session).toMatchObject({ ...session, refreshTokenId: "rt-2", version: "3" });
    const refreshedAt = refreshed.session.refreshedAt as { seconds: string; nanos: number };
    expect(Number(refreshedAt.seconds)).toBeGreaterThanOrEqual(before);
    expect(Number(refreshedAt.seconds)).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(await grpcClient.call<R>("Get", { sessionId: "s1", userId })).toEqual({
      session: refreshed.session,
    });
    const list = await grpcClient.call<{ sessions: { id: string }[]; nextPageToken: string }>(
      "ListByUser",
      {
        userId,
        pageSize: 10,
      },
    );
    expect(list.sessions.map((s) => s.id)).toEqual(["s1"]);
    expect(list.nextPageToken).toBe("");
    expect(
      await grpcClient.call("Delete", { sessionId: "s1", userId, expectedVersion: "3" }),
    ).toEqual({
      deleted: true,
    });
    await grpcClient.call("Upsert", { session: { ...session, id: "s2" }, ttl: { seconds: "60" } });
    expect(await grpcClient.call("DeleteByUser", { userId, exceptSessionIds: [] })).toEqual({
      deletedCount: "1",
    });
  });

  it("gets the documented status codes", async () => {
    const userId = uniqueUserId();
    const session = { id: "s", userId };
    expectStatus(
      await grpcClient.call("Get", { sessionId: "s", userId }).catch((e) => e),
      grpc.status.NOT_FOUND,
    );
    await grpcClient.call("Upsert", { session, ttl: { seconds: "60" } });
    expectStatus(
      await grpcClient
        .call("Upsert", { session, ttl: { seconds: "60" }, expectedVersion: "0" })
        .catch((e) => e),
      grpc.status.ALREADY_EXISTS,
    );
    expectStatus(
      await grpcClient
        .call("Upsert", { session, ttl: { seconds: "60" }, expectedVersion: "5" })
        .catch((e) => e),
      grpc.status.ABORTED,
    );
    expectStatus(
      await grpcClient.call("Upsert", { session, ttl: { seconds: "0" } }).catch((e) => e),
      grpc.status.INVALID_ARGUMENT,
      "ttl must be positive",
    );
    expectStatus(
      await grpcClient.call("Get", { sessionId: "", userId }).catch((e) => e),
      grpc.status.INVALID_ARGUMENT,
      "session_id is required",
    );
    expectStatus(
      await grpcClient
        .call("Upsert", {
          session: {
            ...session,
            extraPayload: { fields: { b: { stringValue: "x".repeat(1_100_000) } } },
          },
          ttl: { seconds: "60" },
        })
        .catch((e) => e),
      grpc.status.RESOURCE_EXHAUSTED,
    );
  });

  it("gets DEADLINE_EXCEEDED at its deadline while Redis is stuck", async () => {
    const atDeadline = await settlesDuringPause(async () =>
      expectStatus(
        await grpcClient
          .call("Get", { sessionId: "s", userId: "u" }, { deadlineMs: 200 })
          .catch((e) => e),
        grpc.status.DEADLINE_EXCEEDED,
      ),
    );
    expect(atDeadline).toBe(true);
  });
});

describe("REVOKE_ALL_ON_REUSE", () => {
  it("makes a reused refresh token delete every session of its user", async () => {
    const revoking = await startTestServer(store, { revokeAllOnReuse: true });
    const revokingPool = clientPool(revoking.baseUrl);
    try {
      const c = revokingPool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      const bystander = uniqueUserId();
      for (const [user, id] of [
        [userId, "phone"],
        [userId, "laptop"],
        [bystander, "phone"],
      ] as const) {
        await c.upsert({
          session: sessionFixture(user, id, { refreshTokenId: "rt-1" }),
          ttl: ttl(60_000),
        });
      }
      const reuse = {
        sessionId: "phone",
        userId,
        presentedRefreshTokenId: "rt-0",
        newRefreshTokenId: "rt-2",
        ttl: ttl(60_000),
      };
      await expectCode(c.refresh(reuse), Code.PermissionDenied);
      expect((await c.listByUser({ userId })).sessions).toEqual([]);
      expect((await c.listByUser({ userId: bystander })).sessions).toHaveLength(1);
      // The default server deletes only the session presented.
      await c.upsert({ session: sessionFixture(userId, "laptop"), ttl: ttl(60_000) });
      await c.upsert({ session: sessionFixture(userId, "phone"), ttl: ttl(60_000) });
      await expectCode(pool.sessions({ protocol: "grpc" }).refresh(reuse), Code.PermissionDenied);
      expect((await c.listByUser({ userId })).sessions.map((s) => s.id)).toEqual(["laptop"]);
    } finally {
      revokingPool.close();
      await revoking.stop();
    }
  });
});

describe("unexpected failures", () => {
  it("are INTERNAL with a generic message; the cause is logged without ids", async () => {
    const userId = uniqueUserId();
    const sessionId = `corrupt-${uniqueUserId()}`;
    await admin.hset(userKeys("sessionstore", userId).sessions, sessionId, "not a record");
    const error = await expectCode(pool.sessions().get({ sessionId, userId }), Code.Internal);
    expect(error.rawMessage).toBe("internal error");
    const logged = running.logs.lines.find((line) => line.includes("malformed session record"));
    expect(logged).toBeDefined();
    expect(JSON.parse(logged ?? "{}")).toMatchObject({
      level: "error",
      method: "Get",
      msg: "unexpected error",
    });
    expect(running.logs.text).not.toContain(userId);
    expect(running.logs.text).not.toContain(sessionId);
  });
});

describe("a Redis outage", () => {
  it("is UNAVAILABLE, never NOT_FOUND, and service resumes when Redis returns", async () => {
    const flaky = await startRedisServer();
    const client = await connectRedis(
      { url: flaky.url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
      createLogger("silent"),
    );
    const flakyStore = new RedisSessionStore({
      redis: client,
      keyPrefix: "x",
      maxSessionsPerUser: 0,
    });
    const flakyServer = await startTestServer(flakyStore);
    const grpcClient = createGrpcJsClient(flakyServer.port);
    const flakyPool = clientPool(flakyServer.baseUrl);
    try {
      const c = flakyPool.sessions();
      const userId = uniqueUserId();
      await c.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
      await flaky.kill();
      await expectCode(
        c.get({ sessionId: "s", userId }),
        Code.Unavailable,
        "session storage is unavailable",
      );
      await expectCode(c.listByUser({ userId }), Code.Unavailable);
      const e = (await grpcClient
        .call("Get", { sessionId: "s", userId })
        .catch((x) => x)) as grpc.ServiceError;
      expect(grpc.status[e.code]).toBe("UNAVAILABLE");
      expect(e.details).toBe("session storage is unavailable - retry later");
      expect(flakyServer.logs.text).toContain("session storage unavailable");
      expect(flakyServer.logs.text).not.toContain(userId);
      await flaky.restart();
      await expect
        .poll(
          () =>
            c.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }).then(
              () => true,
              () => false,
            ),
          { timeout: 10_000, interval: 20 },
        )
        .toBe(true);
    } finally {
      grpcClient.close();
      flakyPool.close();
      await flakyServer.stop();
      await flakyStore.close();
      await flaky.stop();
    }
  });
});

describe("close()", () => {
  it("ends idle client connections with GOAWAY instead of waiting out the grace period", async () => {
    const other = await startTestServer(store);
    const grpcClient = createGrpcJsClient(other.port);
    const otherPool = clientPool(other.baseUrl);
    try {
      await expectCode(otherPool.sessions().get({ sessionId: "s", userId: "u" }), Code.NotFound);
      await grpcClient.call("Get", { sessionId: "s", userId: "u" }).catch(() => undefined);
      expect(other.server.connections).toBe(2);
      const graceMs = 30_000;
      const started = Date.now();
      await other.server.close(graceMs);
      // Closing waits for every connection to end; the idle ones ended on
      // GOAWAY, long before the grace period would have cut them.
      expect(Date.now() - started).toBeLessThan(graceMs);
      await waitFor("the sockets to close", () => other.server.connections === 0);
    } finally {
      grpcClient.close();
      otherPool.close();
    }
  });
});
