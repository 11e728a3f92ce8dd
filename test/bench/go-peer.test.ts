import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { rawGrpcClient, statusName } from "../../bench/load.js";
import { GO_PEER_PACKAGES, startGoPeer } from "../../bench/processes.js";
import { benchSession, methodPath, requests, TTL_MS } from "../../bench/workload.js";
import {
  GetRequestSchema,
  GetResponseSchema,
  TouchRequestSchema,
  UpsertRequestSchema,
  UpsertResponseSchema,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { startRedisServer } from "../../harness/redis-server.js";
import { createLogger } from "../../src/observability/logger.js";
import { encodeSession } from "../../src/service/session-codec.js";
import { createSessionStoreHandlers } from "../../src/service/session-store-service.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { RedisSessionStore, scriptSource } from "../../src/store/redis/redis-session-store.js";
import { ownedForBlock } from "../support/owned.js";

// The benchmark's Go peer (bench/go-peer), built as the benchmark builds it,
// against a Redis of its own, next to the service's handlers and store on
// the same Redis: what one writes the other reads, and both answer the
// same bytes, so that the benchmark compares the same work.

/** The Go toolchain, when installed (.ci/run installs it). */
const GO = spawnSync("go", ["version"]).status === 0;

// The issue allows this one skip: without Go there is nothing to build.
describe.skipIf(!GO)(`the Go peer (needs: ${GO_PEER_PACKAGES})`, () => {
  const redis = ownedForBlock(() => startRedisServer());
  const goPeer = ownedForBlock(async () => {
    const started = await startGoPeer(redis().url);
    if ("unavailable" in started) throw new Error(started.unavailable);
    return started;
  }, 180_000);
  /** The service's handlers and store, in this process, on the same Redis and key prefix. */
  const service = ownedForBlock(async () => {
    const store = new RedisSessionStore({
      redis: await connectRedis(
        { url: redis().url, cluster: false, commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
        createLogger("silent"),
      ),
      keyPrefix: "sessionstore",
      maxSessionsPerUser: 0,
    });
    const handlers = createSessionStoreHandlers({
      store,
      maxTtlSeconds: 34_560_000,
      maxPayloadBytes: 65_536,
      logger: createLogger("silent"),
    });
    return {
      store,
      /** What the service answers an encoded Upsert, as its gRPC fast path calls the handler. */
      upsert: async (request: Buffer) =>
        (
          await handlers.upsert(fromBinary(UpsertRequestSchema, request), undefined, request)
        ).binary(),
      /** What the service answers an encoded Get. */
      get: async (request: Buffer) =>
        (await handlers.get(fromBinary(GetRequestSchema, request))).binary(),
      stop: () => store.close(),
    };
  });
  const client = ownedForBlock(async () => {
    const grpc = rawGrpcClient(goPeer().port);
    return { call: grpc.call, stop: async () => grpc.close() };
  });
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
  /** The gRPC status a call to the Go peer ends with. */
  const statusOf = (method: string, request: Uint8Array) =>
    client()
      .call(methodPath(method), Buffer.from(request))
      .then(() => "OK", statusName);

  // Braces and "%" in the user id: the key's hash tag is escaped alike.
  const userId = "user {tag} 100%";

  it("answers Get for a session the service stored with the service's own bytes", async () => {
    const session = benchSession(userId, "stored-by-service");
    await service().upsert(requests.upsert(session));
    const request = requests.get(userId, "stored-by-service");

    const answer = await client().call(methodPath("Get"), request);

    expect(hex(answer)).toBe(hex(await service().get(request)));
    const got = fromBinary(GetResponseSchema, answer).session;
    expect(got?.id).toBe("stored-by-service");
    expect(got?.refreshTokenId).toBe(session.refreshTokenId);
    expect(got?.version).toBe(1n);
  });

  it("stores an Upsert the service reads back, and answers it as the service does", async () => {
    const session = benchSession(userId, "stored-by-go");
    const request = requests.upsert(session);
    await client().call(methodPath("Upsert"), request);

    const answer = await client().call(methodPath("Upsert"), request);

    const stored = await service().store.get(userId, "stored-by-go");
    expect(stored?.version).toBe(2n);
    expect(hex(stored?.data ?? new Uint8Array())).toBe(hex(encodeSession(session)));
    const answered = fromBinary(UpsertResponseSchema, answer).session;
    expect(answered?.version).toBe(2n);
    const expiresMs = Number(answered?.storageExpiresAt?.seconds) * 1000;
    expect(Math.abs(expiresMs - (Date.now() + TTL_MS))).toBeLessThan(60_000);
    // The service's Get of what the Go peer stored is the Go peer's Upsert
    // answer; the service's Upsert answer is the Go peer's Get answer.
    const get = requests.get(userId, "stored-by-go");
    expect(hex(answer)).toBe(hex(await service().get(get)));
    const serviceAnswer = await service().upsert(request);
    expect(hex(await client().call(methodPath("Get"), get))).toBe(hex(serviceAnswer));
  });

  it("runs the store's own scripts, by the same SHA", async () => {
    const admin = redis().client();
    try {
      await admin.script("FLUSH");
      expect(await statusOf("Get", requests.get(userId, "after-flush"))).toBe("NOT_FOUND");
      expect(await statusOf("Upsert", requests.upsert(benchSession(userId, "after-flush")))).toBe(
        "OK",
      );
      const sha = (name: string) => createHash("sha1").update(scriptSource(name)).digest("hex");
      expect(await admin.script("EXISTS", sha("get"), sha("upsert"))).toEqual([1, 1]);
      expect(await admin.info("memory")).toMatch(/^number_of_cached_scripts:2\r?$/m);
    } finally {
      admin.disconnect();
    }
  });

  it("answers NOT_FOUND for a session that is not stored", async () => {
    expect(await statusOf("Get", requests.get(userId, "never-stored"))).toBe("NOT_FOUND");
  });

  it("refuses requests the service refuses, with the service's status codes", async () => {
    expect(await statusOf("Get", requests.get("", "s1"))).toBe("INVALID_ARGUMENT");
    expect(await statusOf("Upsert", requests.upsert(benchSession("", "s1")))).toBe(
      "INVALID_ARGUMENT",
    );
    const noTtl = create(UpsertRequestSchema, { session: benchSession(userId, "s1") });
    expect(await statusOf("Upsert", toBinary(UpsertRequestSchema, noTtl))).toBe("INVALID_ARGUMENT");
    const tooLong = create(UpsertRequestSchema, {
      session: benchSession(userId, "s1"),
      ttl: durationFromMs(34_560_001_000),
    });
    expect(await statusOf("Upsert", toBinary(UpsertRequestSchema, tooLong))).toBe(
      "INVALID_ARGUMENT",
    );
    const staleVersion = create(UpsertRequestSchema, {
      session: benchSession(userId, "stored-by-service"),
      ttl: durationFromMs(TTL_MS),
      expectedVersion: 99n,
    });
    expect(await statusOf("Upsert", toBinary(UpsertRequestSchema, staleVersion))).toBe("ABORTED");
  });

  it("answers UNIMPLEMENTED for the methods it does not serve", async () => {
    const touch = create(TouchRequestSchema, {
      userId,
      sessionId: "s1",
      ttl: durationFromMs(TTL_MS),
    });
    expect(await statusOf("Touch", toBinary(TouchRequestSchema, touch))).toBe("UNIMPLEMENTED");
  });
});
