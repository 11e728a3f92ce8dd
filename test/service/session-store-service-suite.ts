import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  RefreshOutcome,
  type Session,
  SessionStoreService,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { createLogger } from "../../src/observability/logger.js";
import {
  createSessionStoreHandlers,
  registerSessionStoreService,
} from "../../src/service/session-store-service.js";
import { createWatchHandlers, DEFAULT_WATCH_BUFFER_EVENTS } from "../../src/service/watch.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { clientPool } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { idsThatMustStayApart, uniqueUserId } from "../support/ids.js";
import { startTestServer } from "../support/test-server.js";

type SessionStoreClient = Client<typeof SessionStoreService>;

/** A returned session's storage_expires_at in Unix ms (NaN when missing). */
function expiryOf(session: Session | undefined): number {
  return session?.storageExpiresAt ? timestampMs(session.storageExpiresAt) : Number.NaN;
}

/** Opens a store over the backend under test; the suite closes it. */
export type OpenStore = (options: { maxSessionsPerUser: number }) => Promise<SessionStore>;

export const MAX_TTL_SECONDS = 34_560_000;
export const MAX_PAYLOAD_BYTES = 65_536;
const CAP = 3;

/** How the suite reaches the service: a client, and how to let go of it. */
export interface ServiceClient {
  readonly client: SessionStoreClient;
  close(): Promise<void>;
}

/** The handlers in process, over Connect's in-memory router transport. */
export async function inProcessClient(store: SessionStore): Promise<ServiceClient> {
  const handlers = createSessionStoreHandlers({
    store,
    logger: createLogger("silent"),
    maxTtlSeconds: MAX_TTL_SECONDS,
    maxPayloadBytes: MAX_PAYLOAD_BYTES,
  });
  const watches = createWatchHandlers({
    store,
    logger: createLogger("silent"),
    watchBufferEvents: DEFAULT_WATCH_BUFFER_EVENTS,
  });
  const transport = createRouterTransport((router) =>
    registerSessionStoreService(router, handlers, watches),
  );
  return { client: createClient(SessionStoreService, transport), close: async () => {} };
}

/**
 * The real server over `store` on a free port, called over gRPC: the path
 * plain gRPC clients take (the fast path, which decodes requests and
 * encodes responses its own way).
 */
export async function grpcClient(store: SessionStore): Promise<ServiceClient> {
  const running = await startTestServer(store);
  const pool = clientPool(running.baseUrl);
  return {
    client: pool.sessions({ protocol: "grpc" }),
    close: async () => {
      pool.close();
      await running.stop();
    },
  };
}

/**
 * The behaviour of SessionStoreService through its API: validation,
 * semantics and status codes together, over whatever store and path the
 * caller picks. The store port's own contract is test/store/.
 */
export function describeSessionStoreService(
  name: string,
  open: OpenStore,
  connect: (store: SessionStore) => Promise<ServiceClient>,
): void {
  describe(`SessionStoreService: ${name}`, () => {
    let store: SessionStore;
    let cappedStore: SessionStore;
    let client: SessionStoreClient;
    let capped: SessionStoreClient;
    const connections: ServiceClient[] = [];

    beforeAll(async () => {
      store = await open({ maxSessionsPerUser: 0 });
      cappedStore = await open({ maxSessionsPerUser: CAP });
      connections.push(await connect(store), await connect(cappedStore));
      client = (connections[0] as ServiceClient).client;
      capped = (connections[1] as ServiceClient).client;
    });

    afterAll(async () => {
      for (const connection of connections) await connection.close();
      await store?.close();
      await cappedStore?.close();
    });

    async function put(userId: string, id: string, ttlMs = 60_000) {
      const res = await client.upsert({ session: sessionFixture(userId, id), ttl: ttl(ttlMs) });
      return res.session;
    }

    /** Waits until Get answers NOT_FOUND for the session. */
    async function waitUntilGone(what: string, sessionId: string, userId: string) {
      await waitFor(what, () =>
        client.get({ sessionId, userId }).then(
          () => false,
          (e: { code?: Code }) => e.code === Code.NotFound,
        ),
      );
    }

    async function listAll(userId: string, pageSize = 0) {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await client.listByUser({ userId, pageSize, pageToken });
        ids.push(...page.sessions.map((s) => s.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return ids;
    }

    describe("Get", () => {
      it("returns every field Upsert stored, with version and storage_expires_at", async () => {
        const userId = uniqueUserId();
        const session = sessionFixture(userId, "s1", {
          expiresAt: timestampFromMs(Date.now() + 3_600_000),
        });
        const upserted = await client.upsert({ session, ttl: ttl(60_000) });
        const { session: got } = await client.get({ sessionId: "s1", userId });
        expect(got).toEqual({
          ...session,
          version: 1n,
          storageExpiresAt: upserted.session?.storageExpiresAt,
        });
        expect(got?.extraPayload).toEqual({
          roles: ["admin", "dev"],
          tenant: { id: 42, name: "acme" },
          mfa: true,
        });
      });

      it("is NOT_FOUND for a session that does not exist", async () => {
        await expectCode(
          client.get({ sessionId: "nope", userId: uniqueUserId() }),
          Code.NotFound,
          "session not found",
        );
      });

      it("is NOT_FOUND for a session stored under another user", async () => {
        const owner = uniqueUserId();
        await put(owner, "shared-id");
        await expectCode(
          client.get({ sessionId: "shared-id", userId: uniqueUserId() }),
          Code.NotFound,
        );
        await expect(client.get({ sessionId: "shared-id", userId: owner })).resolves.toBeDefined();
      });

      it("is NOT_FOUND once storage_expires_at has passed", async () => {
        const userId = uniqueUserId();
        const stored = await put(userId, "short", 150);
        const expiry = expiryOf(stored);
        await expect(client.get({ sessionId: "short", userId })).resolves.toBeDefined();
        await waitUntilGone("the session to expire", "short", userId);
        // It was live until its storage_expires_at (both clocks are this machine's).
        expect(Date.now()).toBeGreaterThanOrEqual(expiry);
        expect(await listAll(userId)).toEqual([]);
      });

      it("is NOT_FOUND once expires_at has passed, whatever the ttl", async () => {
        const userId = uniqueUserId();
        const expiresAt = Date.now() + 200;
        const { session } = await client.upsert({
          session: sessionFixture(userId, "abs", { expiresAt: timestampFromMs(expiresAt) }),
          ttl: ttl(3_600_000),
        });
        expect(expiryOf(session)).toBe(expiresAt);
        await waitUntilGone("the session to pass expires_at", "abs", userId);
        expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
      });
    });

    describe("Upsert", () => {
      it("assigns version 1 on insert and previous + 1 on every update, ignoring client values", async () => {
        const userId = uniqueUserId();
        const first = await client.upsert({
          session: sessionFixture(userId, "v", {
            version: 41n,
            storageExpiresAt: timestampFromMs(1),
          }),
          ttl: ttl(60_000),
        });
        expect(first.session?.version).toBe(1n);
        expect(expiryOf(first.session)).toBeGreaterThan(Date.now());
        const second = await client.upsert({
          session: sessionFixture(userId, "v", { lastKnownIp: "198.51.100.1", version: 7n }),
          ttl: ttl(60_000),
        });
        expect(second.session?.version).toBe(2n);
        const { session } = await client.get({ sessionId: "v", userId });
        expect(session?.version).toBe(2n);
        expect(session?.lastKnownIp).toBe("198.51.100.1");
      });

      it("sets storage_expires_at to now + ttl with millisecond precision", async () => {
        const userId = uniqueUserId();
        const before = Date.now();
        const { session } = await client.upsert({
          session: sessionFixture(userId, "ms"),
          ttl: create(DurationSchema, { seconds: 0n, nanos: 250_000_000 }),
        });
        const after = Date.now();
        const expiry = expiryOf(session);
        expect(expiry).toBeGreaterThanOrEqual(before + 250);
        expect(expiry).toBeLessThanOrEqual(after + 250);
      });

      it("rounds a fraction of a millisecond up, so a tiny ttl still stores the session", async () => {
        const userId = uniqueUserId();
        const before = Date.now();
        const { session } = await client.upsert({
          session: sessionFixture(userId, "tiny"),
          ttl: create(DurationSchema, { seconds: 0n, nanos: 1 }),
        });
        expect(expiryOf(session)).toBeGreaterThanOrEqual(before + 1);
      });

      it("caps storage_expires_at at expires_at", async () => {
        const userId = uniqueUserId();
        const expiresAt = Date.now() + 30_000;
        const early = await client.upsert({
          session: sessionFixture(userId, "cap", { expiresAt: timestampFromMs(expiresAt) }),
          ttl: ttl(3_600_000),
        });
        expect(expiryOf(early.session)).toBe(expiresAt);
        const before = Date.now();
        const late = await client.upsert({
          session: sessionFixture(userId, "cap", { expiresAt: timestampFromMs(expiresAt) }),
          ttl: ttl(10_000),
        });
        const expiry = expiryOf(late.session);
        expect(expiry).toBeGreaterThanOrEqual(before + 10_000);
        expect(expiry).toBeLessThan(expiresAt);
      });

      it("rejects an expires_at in the past with INVALID_ARGUMENT and changes nothing", async () => {
        const userId = uniqueUserId();
        await put(userId, "past");
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "past", {
              expiresAt: timestampFromMs(Date.now() - 1000),
            }),
            ttl: ttl(60_000),
          }),
          Code.InvalidArgument,
          "session.expires_at",
        );
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "never", {
              expiresAt: timestampFromMs(Date.now() - 1),
            }),
            ttl: ttl(60_000),
          }),
          Code.InvalidArgument,
          "session.expires_at",
        );
        const { session } = await client.get({ sessionId: "past", userId });
        expect(session?.version).toBe(1n);
        expect(session?.expiresAt).toBeUndefined();
        await expectCode(client.get({ sessionId: "never", userId }), Code.NotFound);
      });

      it("without expected_version writes unconditionally", async () => {
        const userId = uniqueUserId();
        await put(userId, "u");
        await put(userId, "u");
        const { session } = await client.get({ sessionId: "u", userId });
        expect(session?.version).toBe(2n);
      });

      it("with expected_version 0 inserts only, ALREADY_EXISTS otherwise", async () => {
        const userId = uniqueUserId();
        const inserted = await client.upsert({
          session: sessionFixture(userId, "once"),
          ttl: ttl(60_000),
          expectedVersion: 0n,
        });
        expect(inserted.session?.version).toBe(1n);
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "once", { lastKnownIp: "192.0.2.1" }),
            ttl: ttl(60_000),
            expectedVersion: 0n,
          }),
          Code.AlreadyExists,
        );
        const { session } = await client.get({ sessionId: "once", userId });
        expect(session?.version).toBe(1n);
        expect(session?.lastKnownIp).toBe("203.0.113.7");
      });

      it("with expected_version N writes only over version N: ABORTED on mismatch, NOT_FOUND when gone", async () => {
        const userId = uniqueUserId();
        await put(userId, "cas");
        const second = await client.upsert({
          session: sessionFixture(userId, "cas"),
          ttl: ttl(60_000),
          expectedVersion: 1n,
        });
        expect(second.session?.version).toBe(2n);
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "cas"),
            ttl: ttl(60_000),
            expectedVersion: 1n,
          }),
          Code.Aborted,
        );
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "cas"),
            ttl: ttl(60_000),
            expectedVersion: 2n ** 64n - 1n,
          }),
          Code.Aborted,
        );
        expect((await client.get({ sessionId: "cas", userId })).session?.version).toBe(2n);
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "gone"),
            ttl: ttl(60_000),
            expectedVersion: 3n,
          }),
          Code.NotFound,
        );
        await expectCode(client.get({ sessionId: "gone", userId }), Code.NotFound);
      });

      it("lets exactly one of many concurrent writers win each version", async () => {
        const userId = uniqueUserId();
        await put(userId, "race");
        for (let version = 1n; version <= 5n; version++) {
          const results = await Promise.allSettled(
            Array.from({ length: 8 }, (_, i) =>
              client.upsert({
                session: sessionFixture(userId, "race", { lastKnownIp: `192.0.2.${i}` }),
                ttl: ttl(60_000),
                expectedVersion: version,
              }),
            ),
          );
          const winners = results.filter((r) => r.status === "fulfilled");
          expect(winners).toHaveLength(1);
          for (const r of results) {
            if (r.status === "rejected")
              expect((r.reason as { code: Code }).code).toBe(Code.Aborted);
          }
          expect((await client.get({ sessionId: "race", userId })).session?.version).toBe(
            version + 1n,
          );
        }
      });

      it("lets exactly one of many concurrent insert-only writers win", async () => {
        const userId = uniqueUserId();
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () =>
            client.upsert({
              session: sessionFixture(userId, "first"),
              ttl: ttl(60_000),
              expectedVersion: 0n,
            }),
          ),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        expect((await client.get({ sessionId: "first", userId })).session?.version).toBe(1n);
      });

      it("never brings back a session that a racing Delete removed", async () => {
        const userId = uniqueUserId();
        for (let round = 0; round < 20; round++) {
          const id = `refresh-${round}`;
          const stored = await put(userId, id);
          const [refresh, logout] = await Promise.allSettled([
            client.upsert({
              session: sessionFixture(userId, id),
              ttl: ttl(60_000),
              expectedVersion: stored?.version ?? 0n,
            }),
            client.delete({ sessionId: id, userId }),
          ]);
          expect(logout.status).toBe("fulfilled");
          if (logout.status === "fulfilled") expect(logout.value.deleted).toBe(true);
          if (refresh.status === "rejected") {
            expect((refresh.reason as { code: Code }).code).toBe(Code.NotFound);
          }
          await expectCode(client.get({ sessionId: id, userId }), Code.NotFound);
        }
      });

      it("validates ttl: required, positive, at most MAX_TTL_SECONDS, a valid duration", async () => {
        const userId = uniqueUserId();
        const session = sessionFixture(userId, "ttl");
        await expectCode(client.upsert({ session }), Code.InvalidArgument, /^ttl is required/);
        await expectCode(
          client.upsert({ session, ttl: ttl(0) }),
          Code.InvalidArgument,
          /^ttl must be positive/,
        );
        await expectCode(
          client.upsert({ session, ttl: ttl(-5000) }),
          Code.InvalidArgument,
          /^ttl must be positive/,
        );
        await expectCode(
          client.upsert({
            session,
            ttl: create(DurationSchema, { seconds: BigInt(MAX_TTL_SECONDS), nanos: 1 }),
          }),
          Code.InvalidArgument,
          `ttl must be at most ${MAX_TTL_SECONDS} seconds`,
        );
        await expectCode(
          client.upsert({ session, ttl: create(DurationSchema, { seconds: 1n, nanos: -1 }) }),
          Code.InvalidArgument,
          /^ttl is not a valid duration/,
        );
        await expectCode(
          client.upsert({
            session,
            ttl: create(DurationSchema, { seconds: 0n, nanos: 1_000_000_000 }),
          }),
          Code.InvalidArgument,
          /^ttl is not a valid duration/,
        );
        await expectCode(client.get({ sessionId: "ttl", userId }), Code.NotFound);
        const longest = await client.upsert({
          session,
          ttl: create(DurationSchema, { seconds: BigInt(MAX_TTL_SECONDS) }),
        });
        expect(longest.session?.version).toBe(1n);
      });

      it("validates the session: required, with valid ids and timestamps", async () => {
        const userId = uniqueUserId();
        await expectCode(
          client.upsert({ ttl: ttl(1000) }),
          Code.InvalidArgument,
          /^session is required/,
        );
        await expectCode(
          client.upsert({ session: sessionFixture(userId, ""), ttl: ttl(1000) }),
          Code.InvalidArgument,
          /^session\.id is required/,
        );
        await expectCode(
          client.upsert({ session: sessionFixture("", "s"), ttl: ttl(1000) }),
          Code.InvalidArgument,
          /^session\.user_id is required/,
        );
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "s", { createdAt: { seconds: 0n, nanos: -1 } }),
            ttl: ttl(1000),
          }),
          Code.InvalidArgument,
          /^session\.created_at is not a valid timestamp/,
        );
        expect(await listAll(userId)).toEqual([]);
      });

      it("limits extra_payload to MAX_PAYLOAD_BYTES of protobuf encoding", async () => {
        const userId = uniqueUserId();
        const fits = await client.upsert({
          session: sessionFixture(userId, "big", {
            extraPayload: { blob: "x".repeat(MAX_PAYLOAD_BYTES - 100) },
          }),
          ttl: ttl(60_000),
        });
        expect(fits.session?.version).toBe(1n);
        await expectCode(
          client.upsert({
            session: sessionFixture(userId, "big", {
              extraPayload: { blob: "x".repeat(MAX_PAYLOAD_BYTES) },
            }),
            ttl: ttl(60_000),
          }),
          Code.InvalidArgument,
          `session.extra_payload must encode to at most ${MAX_PAYLOAD_BYTES} bytes`,
        );
        expect((await client.get({ sessionId: "big", userId })).session?.version).toBe(1n);
      });
    });

    describe("ids", () => {
      const bad: [string, string, RegExp][] = [
        ["empty", "", /is required/],
        ["129 bytes", "€".repeat(43), /must be at most 128 bytes/],
        ["NUL", "a\u0000b", /must not contain control characters/],
        ["newline", "a\nb", /must not contain control characters/],
        ["DEL", "a\u007fb", /must not contain control characters/],
        ["C1 control", "a\u0085b", /must not contain control characters/],
        ["last C1 control", "a\u009fb", /must not contain control characters/],
      ];
      for (const [what, id, message] of bad) {
        it(`rejects a ${what} id in every RPC, naming the field`, async () => {
          const userId = uniqueUserId();
          await expectCode(
            client.get({ sessionId: id, userId }),
            Code.InvalidArgument,
            new RegExp(`^session_id ${message.source}`),
          );
          await expectCode(
            client.get({ sessionId: "s", userId: id }),
            Code.InvalidArgument,
            new RegExp(`^user_id ${message.source}`),
          );
          await expectCode(
            client.upsert({ session: sessionFixture(userId, id), ttl: ttl(1000) }),
            Code.InvalidArgument,
            /^session\.id /,
          );
          await expectCode(
            client.touch({ sessionId: id, userId, ttl: ttl(1000) }),
            Code.InvalidArgument,
            /^session_id /,
          );
          await expectCode(
            client.delete({ sessionId: id, userId }),
            Code.InvalidArgument,
            /^session_id /,
          );
          await expectCode(client.listByUser({ userId: id }), Code.InvalidArgument, /^user_id /);
          await expectCode(client.deleteByUser({ userId: id }), Code.InvalidArgument, /^user_id /);
          await expectCode(
            client.deleteByUser({ userId, exceptSessionIds: ["ok", id] }),
            Code.InvalidArgument,
            /^except_session_ids\[1\] /,
          );
        });
      }

      it("accepts ids of exactly 128 bytes and any other characters", async () => {
        const userId = `${"ü".repeat(63)}xy`;
        const id = `${"€".repeat(42)}xy`;
        expect(Buffer.byteLength(userId)).toBe(128);
        expect(Buffer.byteLength(id)).toBe(128);
        await client.upsert({ session: sessionFixture(userId, id), ttl: ttl(60_000) });
        expect((await client.get({ sessionId: id, userId })).session?.id).toBe(id);
        await client.deleteByUser({ userId });
      });

      it("keeps sessions apart whatever separators and braces their ids contain", async () => {
        const base = uniqueUserId();
        const pairs = idsThatMustStayApart(base);
        for (const [userId, id] of pairs) {
          await client.upsert({
            session: sessionFixture(userId, id, { lastKnownIp: `${userId}/${id}` }),
            ttl: ttl(60_000),
          });
        }
        for (const [userId, id] of pairs) {
          const { session } = await client.get({ sessionId: id, userId });
          expect(session?.lastKnownIp).toBe(`${userId}/${id}`);
          expect(session?.version).toBe(1n);
        }
        for (const userId of new Set(pairs.map(([u]) => u))) {
          const expected = pairs.filter(([u]) => u === userId).map(([, id]) => id);
          expect((await listAll(userId)).sort()).toEqual(expected.sort());
        }
        await client.deleteByUser({ userId: base });
        expect(await listAll(`${base}:a`)).toEqual(["b"]);
      });
    });

    describe("Refresh", () => {
      /** Stores session "r" of a new user with refresh token `token`. */
      async function withToken(token: string) {
        const userId = uniqueUserId();
        const { session } = await client.upsert({
          session: sessionFixture(userId, "r", { refreshTokenId: token }),
          ttl: ttl(60_000),
        });
        return { userId, stored: session as Session };
      }

      const rotate = (userId: string, presented: string, next: string, graceMs?: number) =>
        client.refresh({
          sessionId: "r",
          userId,
          presentedRefreshTokenId: presented,
          newRefreshTokenId: next,
          ttl: ttl(120_000),
          ...(graceMs === undefined ? {} : { grace: ttl(graceMs) }),
        });

      it("rotates the current token: new refresh_token_id, refreshed_at now, version + 1, ttl applied", async () => {
        const { userId, stored } = await withToken("rt-1");
        const before = Date.now();
        const res = await rotate(userId, "rt-1", "rt-2");
        const after = Date.now();
        expect(res.outcome).toBe(RefreshOutcome.ROTATED);
        const session = res.session as Session;
        expect(session.refreshTokenId).toBe("rt-2");
        const refreshedAt = session.refreshedAt ? timestampMs(session.refreshedAt) : Number.NaN;
        expect(refreshedAt).toBeGreaterThanOrEqual(before);
        expect(refreshedAt).toBeLessThanOrEqual(after);
        expect(expiryOf(session)).toBeGreaterThanOrEqual(before + 120_000);
        expect(session.version).toBe(2n);
        // Everything else as stored.
        expect({
          ...session,
          refreshTokenId: "",
          refreshedAt: undefined,
          version: 0n,
          storageExpiresAt: undefined,
        }).toEqual({
          ...stored,
          refreshTokenId: "",
          refreshedAt: undefined,
          version: 0n,
          storageExpiresAt: undefined,
        });
        const { session: got } = await client.get({ sessionId: "r", userId });
        expect(got).toEqual(session);
      });

      it("answers ALREADY_ROTATED to the previous token within the default grace, changing nothing", async () => {
        const { userId } = await withToken("rt-1");
        const first = await rotate(userId, "rt-1", "rt-2");
        const second = await rotate(userId, "rt-1", "rt-2b");
        expect(second.outcome).toBe(RefreshOutcome.ALREADY_ROTATED);
        expect(second.session).toEqual(first.session);
        expect((await client.get({ sessionId: "r", userId })).session).toEqual(first.session);
      });

      it("rotates once among concurrent refreshes, and every caller gets the rotated session", async () => {
        const { userId } = await withToken("rt-1");
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) => rotate(userId, "rt-1", `rt-2-${i}`)),
        );
        const outcomes = results.map((r) => r.outcome);
        expect(outcomes.filter((o) => o === RefreshOutcome.ROTATED)).toHaveLength(1);
        expect(outcomes.filter((o) => o === RefreshOutcome.ALREADY_ROTATED)).toHaveLength(7);
        const sessions = new Set(results.map((r) => r.session?.refreshTokenId));
        expect(sessions.size).toBe(1);
      });

      it("is PERMISSION_DENIED for a reused token, and the session is gone", async () => {
        const { userId } = await withToken("rt-1");
        await rotate(userId, "rt-1", "rt-2", 0);
        await expectCode(
          rotate(userId, "rt-1", "rt-3"),
          Code.PermissionDenied,
          /^refresh token was already used/,
        );
        await expectCode(client.get({ sessionId: "r", userId }), Code.NotFound);
        await expectCode(rotate(userId, "rt-2", "rt-3"), Code.NotFound);
      });

      it("is NOT_FOUND for a missing session and FAILED_PRECONDITION for one without a refresh token", async () => {
        const userId = uniqueUserId();
        await expectCode(rotate(userId, "rt-1", "rt-2"), Code.NotFound);
        await client.upsert({
          session: sessionFixture(userId, "r", { refreshTokenId: "" }),
          ttl: ttl(60_000),
        });
        await expectCode(rotate(userId, "rt-1", "rt-2"), Code.FailedPrecondition);
        expect((await client.get({ sessionId: "r", userId })).session?.version).toBe(1n);
      });

      it("validates ids, ttl and grace with INVALID_ARGUMENT naming the field, changing nothing", async () => {
        const { userId, stored } = await withToken("rt-1");
        const base = {
          sessionId: "r",
          userId,
          presentedRefreshTokenId: "rt-1",
          newRefreshTokenId: "rt-2",
          ttl: ttl(60_000),
        };
        const cases: [object, RegExp][] = [
          [{ presentedRefreshTokenId: "" }, /^presented_refresh_token_id is required/],
          [{ newRefreshTokenId: "" }, /^new_refresh_token_id is required/],
          [
            { newRefreshTokenId: "x".repeat(129) },
            /^new_refresh_token_id must be at most 128 bytes/,
          ],
          [{ newRefreshTokenId: "rt-1" }, /^new_refresh_token_id must differ/],
          [{ ttl: undefined }, /^ttl is required/],
          [{ grace: create(DurationSchema, { seconds: -1n }) }, /^grace must be positive/],
          [{ grace: ttl(61_000) }, /^grace must be at most 60 seconds/],
        ];
        for (const [overrides, message] of cases) {
          await expectCode(
            client.refresh({ ...base, ...overrides }),
            Code.InvalidArgument,
            message,
          );
        }
        expect((await client.get({ sessionId: "r", userId })).session).toEqual(stored);
      });
    });

    describe("Touch", () => {
      it("moves storage_expires_at without changing version or contents", async () => {
        const userId = uniqueUserId();
        const stored = await put(userId, "t", 60_000);
        const before = Date.now();
        const { session } = await client.touch({ sessionId: "t", userId, ttl: ttl(120_000) });
        const expiry = expiryOf(session);
        expect(expiry).toBeGreaterThanOrEqual(before + 120_000);
        expect(session?.version).toBe(1n);
        expect({ ...session, storageExpiresAt: undefined }).toEqual({
          ...stored,
          storageExpiresAt: undefined,
        });
        const { session: got } = await client.get({ sessionId: "t", userId });
        expect(got?.storageExpiresAt).toEqual(session?.storageExpiresAt);
      });

      it("can shorten the storage time, and the session then expires", async () => {
        const userId = uniqueUserId();
        await put(userId, "t", 60_000);
        await client.touch({ sessionId: "t", userId, ttl: ttl(100) });
        await waitUntilGone("the touched session to expire", "t", userId);
        expect(await listAll(userId)).toEqual([]);
      });

      it("caps storage_expires_at at expires_at", async () => {
        const userId = uniqueUserId();
        const expiresAt = Date.now() + 30_000;
        await client.upsert({
          session: sessionFixture(userId, "t", { expiresAt: timestampFromMs(expiresAt) }),
          ttl: ttl(1000),
        });
        const { session } = await client.touch({ sessionId: "t", userId, ttl: ttl(3_600_000) });
        expect(expiryOf(session)).toBe(expiresAt);
      });

      it("is NOT_FOUND for a missing session and validates ttl like Upsert", async () => {
        const userId = uniqueUserId();
        await expectCode(
          client.touch({ sessionId: "none", userId, ttl: ttl(1000) }),
          Code.NotFound,
        );
        await expectCode(client.get({ sessionId: "none", userId }), Code.NotFound);
        await put(userId, "t");
        await expectCode(
          client.touch({ sessionId: "t", userId }),
          Code.InvalidArgument,
          /^ttl is required/,
        );
        await expectCode(
          client.touch({ sessionId: "t", userId, ttl: ttl(0) }),
          Code.InvalidArgument,
          /^ttl /,
        );
        await expectCode(
          client.touch({ sessionId: "t", userId, ttl: ttl((MAX_TTL_SECONDS + 1) * 1000) }),
          Code.InvalidArgument,
          /^ttl must be at most/,
        );
      });
    });

    describe("Delete", () => {
      it("is idempotent: deleted is true once, then false", async () => {
        const userId = uniqueUserId();
        await put(userId, "d");
        expect((await client.delete({ sessionId: "d", userId })).deleted).toBe(true);
        expect((await client.delete({ sessionId: "d", userId })).deleted).toBe(false);
        await expectCode(client.get({ sessionId: "d", userId }), Code.NotFound);
        expect(await listAll(userId)).toEqual([]);
      });

      it("with expected_version deletes only that version, ABORTED otherwise", async () => {
        const userId = uniqueUserId();
        await put(userId, "d");
        await put(userId, "d");
        await expectCode(
          client.delete({ sessionId: "d", userId, expectedVersion: 1n }),
          Code.Aborted,
        );
        expect((await client.get({ sessionId: "d", userId })).session?.version).toBe(2n);
        expect((await client.delete({ sessionId: "d", userId, expectedVersion: 2n })).deleted).toBe(
          true,
        );
        expect((await client.delete({ sessionId: "d", userId, expectedVersion: 2n })).deleted).toBe(
          false,
        );
        expect(
          (await client.delete({ sessionId: "never", userId, expectedVersion: 0n })).deleted,
        ).toBe(false);
      });

      it("does not count an expired session as deleted", async () => {
        const userId = uniqueUserId();
        await put(userId, "old", 50);
        await waitUntilGone("the session to expire", "old", userId);
        expect((await client.delete({ sessionId: "old", userId })).deleted).toBe(false);
      });
    });

    describe("ListByUser", () => {
      it("orders sessions by the bytes of their UTF-8 ids across pages", async () => {
        const userId = uniqueUserId();
        // UTF-16 order would put the emoji (a surrogate pair) before U+FFFD.
        const ids = ["b", "a", "B", "aa", "é", "\uFFFD", "😀", "z", "0", "a0", "~"];
        for (const id of ids) await put(userId, id);
        const expected = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        expect(expected.indexOf("\uFFFD")).toBeLessThan(expected.indexOf("😀"));
        for (const pageSize of [1, 2, 3, 5, 11, 12, 0]) {
          expect(await listAll(userId, pageSize)).toEqual(expected);
        }
        const last = await client.listByUser({ userId, pageSize: 11 });
        expect(last.sessions).toHaveLength(11);
        expect(last.nextPageToken).toBe("");
        expect(last.sessions[0]?.version).toBe(1n);
        expect(last.sessions[0]?.extraPayload).toEqual(sessionFixture(userId, "x").extraPayload);
      });

      it("uses 100 for page_size 0 and clamps page_size to 1000", async () => {
        const userId = uniqueUserId();
        await Promise.all(
          Array.from({ length: 1001 }, (_, i) =>
            client.upsert({
              session: sessionFixture(userId, `s${String(i).padStart(4, "0")}`),
              ttl: ttl(60_000),
            }),
          ),
        );
        const byDefault = await client.listByUser({ userId });
        expect(byDefault.sessions).toHaveLength(100);
        expect(byDefault.nextPageToken).not.toBe("");
        const clamped = await client.listByUser({ userId, pageSize: 5000 });
        expect(clamped.sessions).toHaveLength(1000);
        const rest = await client.listByUser({
          userId,
          pageSize: 5000,
          pageToken: clamped.nextPageToken,
        });
        expect(rest.sessions.map((s) => s.id)).toEqual(["s1000"]);
        expect(rest.nextPageToken).toBe("");
        expect((await client.deleteByUser({ userId })).deletedCount).toBe(1001n);
      });

      it("returns an empty page with no token for a user without sessions", async () => {
        const page = await client.listByUser({ userId: uniqueUserId() });
        expect(page.sessions).toEqual([]);
        expect(page.nextPageToken).toBe("");
      });

      it("rejects a negative page_size and malformed page tokens", async () => {
        const userId = uniqueUserId();
        await expectCode(
          client.listByUser({ userId, pageSize: -1 }),
          Code.InvalidArgument,
          /^page_size /,
        );
        const valid = Buffer.concat([Buffer.of(1), Buffer.from("a")]).toString("base64url");
        for (const pageToken of [
          "not a token!",
          `${valid}=`,
          Buffer.from("a").toString("base64url"),
          Buffer.of(2, 0x61).toString("base64url"),
          Buffer.of(1).toString("base64url"),
          Buffer.of(1, 0xff, 0xfe).toString("base64url"),
          Buffer.of(1, 0x61, 0x0a).toString("base64url"),
        ]) {
          await expectCode(
            client.listByUser({ userId, pageToken }),
            Code.InvalidArgument,
            /^page_token is malformed/,
          );
        }
        await expect(client.listByUser({ userId, pageToken: valid })).resolves.toBeDefined();
      });

      it("does not list expired sessions", async () => {
        const userId = uniqueUserId();
        await put(userId, "keep", 60_000);
        await put(userId, "fade", 50);
        await waitFor(
          "the short session to expire",
          async () => (await listAll(userId)).length === 1,
        );
        expect(await listAll(userId)).toEqual(["keep"]);
      });

      it("returns every session present for the whole listing exactly once while others change", async () => {
        const userId = uniqueUserId();
        const stable = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, "0")}`);
        for (const id of stable) await put(userId, id);
        for (let i = 0; i < 10; i++) await put(userId, `x${i}`);
        const seen: string[] = [];
        let pageToken = "";
        let round = 0;
        do {
          const page = await client.listByUser({ userId, pageSize: 4, pageToken });
          seen.push(...page.sessions.map((s) => s.id));
          pageToken = page.nextPageToken;
          // Churn between pages: new sessions on both sides of the cursor,
          // deletions of volatile ones, updates of stable ones.
          await put(userId, `a-new-${round}`);
          await put(userId, `z-new-${round}`);
          await client.delete({ sessionId: `x${round}`, userId });
          await put(userId, stable[round % stable.length] as string);
          round++;
        } while (pageToken !== "");
        for (const id of stable) expect(seen.filter((s) => s === id)).toHaveLength(1);
        expect(new Set(seen).size).toBe(seen.length);
        const sorted = [...seen].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        expect(seen).toEqual(sorted);
      });
    });

    describe("DeleteByUser", () => {
      it("deletes all of a user's sessions except the listed ones and counts them", async () => {
        const userId = uniqueUserId();
        const other = uniqueUserId();
        for (const id of ["a", "b", "c", "d"]) await put(userId, id);
        await put(other, "a");
        const { deletedCount } = await client.deleteByUser({
          userId,
          exceptSessionIds: ["b", "missing"],
        });
        expect(deletedCount).toBe(3n);
        expect(await listAll(userId)).toEqual(["b"]);
        for (const id of ["a", "c", "d"])
          await expectCode(client.get({ sessionId: id, userId }), Code.NotFound);
        await expect(client.get({ sessionId: "b", userId })).resolves.toBeDefined();
        await expect(client.get({ sessionId: "a", userId: other })).resolves.toBeDefined();
        expect((await client.deleteByUser({ userId, exceptSessionIds: ["b"] })).deletedCount).toBe(
          0n,
        );
        expect((await client.deleteByUser({ userId })).deletedCount).toBe(1n);
        expect((await client.deleteByUser({ userId })).deletedCount).toBe(0n);
      });

      it("keeps at most 100 listed sessions; more is INVALID_ARGUMENT and deletes nothing", async () => {
        const userId = uniqueUserId();
        const ids = Array.from({ length: 101 }, (_, i) => `s-${String(i).padStart(3, "0")}`);
        await Promise.all(ids.map((id) => put(userId, id)));
        await expectCode(
          client.deleteByUser({ userId, exceptSessionIds: ids }),
          Code.InvalidArgument,
          /^except_session_ids must list at most 100 ids$/,
        );
        expect(await listAll(userId)).toEqual(ids);
        const kept = ids.slice(0, 100);
        expect((await client.deleteByUser({ userId, exceptSessionIds: kept })).deletedCount).toBe(
          1n,
        );
        expect(await listAll(userId)).toEqual(kept);
      });

      it("does not count expired sessions", async () => {
        const userId = uniqueUserId();
        await put(userId, "live");
        await put(userId, "dead", 50);
        await waitUntilGone("the short session to expire", "dead", userId);
        expect((await client.deleteByUser({ userId })).deletedCount).toBe(1n);
      });

      it("leaves no session readable that was stored before it began, despite concurrent writes", async () => {
        const userId = uniqueUserId();
        const before = Array.from({ length: 50 }, (_, i) => `old-${i}`);
        await Promise.all(before.map((id) => put(userId, id)));
        const concurrent = Array.from({ length: 20 }, (_, i) => put(userId, `new-${i}`));
        const { deletedCount } = await client.deleteByUser({ userId });
        await Promise.all(concurrent);
        expect(deletedCount).toBeGreaterThanOrEqual(50n);
        for (const id of before)
          await expectCode(client.get({ sessionId: id, userId }), Code.NotFound);
        const left = await listAll(userId);
        expect(left.every((id) => id.startsWith("new-"))).toBe(true);
      });
    });

    describe(`MAX_SESSIONS_PER_USER = ${CAP}`, () => {
      async function putCapped(userId: string, id: string, ttlMs: number) {
        return capped.upsert({ session: sessionFixture(userId, id), ttl: ttl(ttlMs) });
      }
      async function listCapped(userId: string) {
        return (await capped.listByUser({ userId })).sessions.map((s) => s.id);
      }

      it("evicts the user's sessions that expire soonest when inserting past the cap", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "s20", 20_000);
        await putCapped(userId, "s10", 10_000);
        await putCapped(userId, "s30", 30_000);
        await putCapped(userId, "s40", 40_000);
        expect(await listCapped(userId)).toEqual(["s20", "s30", "s40"]);
        await expectCode(capped.get({ sessionId: "s10", userId }), Code.NotFound);
      });

      it("never evicts the session being inserted, even when it expires soonest", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", 20_000);
        await putCapped(userId, "b", 30_000);
        await putCapped(userId, "c", 40_000);
        await putCapped(userId, "new", 1_000);
        expect(await listCapped(userId)).toEqual(["b", "c", "new"]);
      });

      it("never evicts on an update of an existing session", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", 20_000);
        await putCapped(userId, "b", 30_000);
        await putCapped(userId, "c", 40_000);
        // "a" expires soonest: an update of another session must not evict it.
        const updated = await putCapped(userId, "c", 50_000);
        expect(updated.session?.version).toBe(2n);
        expect(await listCapped(userId)).toEqual(["a", "b", "c"]);
      });

      it("does not count expired sessions against the cap", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", 50);
        await putCapped(userId, "b", 60_000);
        await putCapped(userId, "c", 60_000);
        await waitFor(
          "the short session to expire",
          async () => (await listCapped(userId)).length === 2,
        );
        await putCapped(userId, "d", 60_000);
        expect(await listCapped(userId)).toEqual(["b", "c", "d"]);
      });

      it("keeps other users' sessions out of it", async () => {
        const userId = uniqueUserId();
        const other = uniqueUserId();
        for (const id of ["a", "b", "c"]) await putCapped(other, id, 60_000);
        for (const id of ["a", "b", "c"]) await putCapped(userId, id, 60_000);
        expect(await listCapped(other)).toEqual(["a", "b", "c"]);
      });
    });
  });
}
