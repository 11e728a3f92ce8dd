import { randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionSchema } from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import {
  ExpiresAtPassedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
  SessionExistsError,
  SessionNotFoundError,
  VersionMismatchError,
} from "../../src/store/errors.js";
import { refreshTokenDigest } from "../../src/store/refresh-state.js";
import type {
  RefreshInput,
  SessionStore,
  StoredSession,
  UpsertInput,
} from "../../src/store/session-store.js";
import { idsThatMustStayApart, uniqueUserId } from "../support/ids.js";
import { byUtf8, hex, payload, upsertInput, view } from "./fixtures.js";

/** Opens a store over the backend under test; the contract closes it. */
export type OpenStore = (options: { maxSessionsPerUser: number }) => Promise<SessionStore>;

/** The per-user cap of the contract's capped store. */
const CAP = 3;

/**
 * The ttl of sessions a test waits to see expire: long enough that a slow
 * machine still reads them before they go, short enough to wait out.
 */
const SHORT_TTL_MS = 400;

/**
 * The SessionStore port's semantics, as session-store.ts documents them,
 * checked on the port itself: no service, no client, no validation (the port
 * assumes validated input). Every adapter runs it, so the embedded store and
 * every Redis deployment behave the same. Each test uses its own user ids, so
 * several runs may share one backend.
 */
export function describeStoreContract(name: string, open: OpenStore): void {
  describe(`SessionStore port contract: ${name}`, () => {
    let store: SessionStore;
    let capped: SessionStore;

    beforeAll(async () => {
      store = await open({ maxSessionsPerUser: 0 });
      capped = await open({ maxSessionsPerUser: CAP });
    });

    afterAll(async () => {
      await store?.close();
      await capped?.close();
    });

    function put(userId: string, sessionId: string, overrides: Partial<UpsertInput> = {}) {
      return store.upsert(upsertInput(userId, sessionId, overrides));
    }

    /**
     * Runs `writes` at once; exactly one must win and every other must fail
     * with `lost`. Resolves to the winner.
     */
    async function exactlyOneWins(
      writes: UpsertInput[],
      lost: new () => Error,
    ): Promise<UpsertInput> {
      const results = await Promise.allSettled(writes.map((w) => store.upsert(w)));
      const winners = writes.filter((_, i) => results[i]?.status === "fulfilled");
      expect(winners).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect(r.reason).toBeInstanceOf(lost);
      }
      return winners[0] as UpsertInput;
    }

    /** Polls until the session reads as gone; expiry may lag its time a little. */
    async function waitUntilGone(userId: string, sessionId: string) {
      await waitFor(
        "the session to expire",
        async () => (await store.get(userId, sessionId)) === undefined,
        { timeoutMs: 10_000 },
      );
    }

    /**
     * One page of a user's ids, checked for what every page promises: in
     * order, after the cursor, and full whenever more remain. A page that
     * broke any of these would make a pager skip or repeat sessions, or
     * never finish.
     */
    async function idsPage(
      userId: string,
      after: string | undefined,
      limit: number,
      target = store,
    ) {
      const { sessions, hasMore } = await target.listByUser(userId, { after, limit });
      const ids = sessions.map((s) => s.sessionId);
      expect(ids).toEqual([...ids].sort(byUtf8));
      if (after !== undefined && ids[0] !== undefined) {
        expect(byUtf8(ids[0], after)).toBeGreaterThan(0);
      }
      if (hasMore) expect(ids).toHaveLength(limit);
      return { ids, hasMore };
    }

    /** Every id of a user, page by page, following the `after` cursor. */
    async function listAll(userId: string, limit = 100, target = store) {
      const all: string[] = [];
      let after: string | undefined;
      for (;;) {
        const { ids, hasMore } = await idsPage(userId, after, limit, target);
        all.push(...ids);
        if (!hasMore) return all;
        after = ids.at(-1);
      }
    }

    it("ping resolves while the store can serve", async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    describe("get", () => {
      it("returns what upsert stored: ids, data byte for byte, version and both expiries", async () => {
        const userId = uniqueUserId();
        const expiresAtMs = Date.now() + 3_600_000 + 7;
        // Every byte value, then enough random bytes to span several
        // network reads.
        const data = Buffer.concat([
          Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
          randomBytes(70_000),
        ]);
        const stored = await put(userId, "s1", { data, expiresAtMs });
        expect(view(stored)).toEqual({
          userId,
          sessionId: "s1",
          data: hex(data),
          version: 1n,
          storageExpiresAtMs: expect.any(Number),
          expiresAtMs,
        });
        expect(view(await store.get(userId, "s1"))).toEqual(view(stored));
      });

      it("stores exactly the bytes of the view it is given, and empty data as empty", async () => {
        const userId = uniqueUserId();
        const inner = payload("inner");
        const whole = Buffer.concat([Buffer.from("before|"), inner, Buffer.from("|after")]);
        const slice = new Uint8Array(whole.buffer, whole.byteOffset + 7, inner.byteLength);
        await put(userId, "view", { data: slice });
        await put(userId, "empty", { data: new Uint8Array(0) });
        expect(view(await store.get(userId, "view"))?.data).toBe(hex(inner));
        expect(view(await store.get(userId, "empty"))?.data).toBe("");
      });

      it("returns undefined for a session that does not exist, or exists under another user", async () => {
        const owner = uniqueUserId();
        await put(owner, "shared-id");
        expect(await store.get(uniqueUserId(), "shared-id")).toBeUndefined();
        expect(await store.get(owner, "other-id")).toBeUndefined();
        expect(await store.get(owner, "shared-id")).toBeDefined();
      });

      it("returns undefined once storageExpiresAtMs has passed, and not before", async () => {
        const userId = uniqueUserId();
        const stored = await put(userId, "short", { ttlMs: SHORT_TTL_MS });
        expect(await store.get(userId, "short")).toBeDefined();
        await waitUntilGone(userId, "short");
        // Both clocks are this machine's: the store kept it until its time.
        expect(Date.now()).toBeGreaterThanOrEqual(stored.storageExpiresAtMs);
        expect(await listAll(userId)).toEqual([]);
      });

      it("returns undefined once expiresAtMs has passed, whatever the ttl", async () => {
        const userId = uniqueUserId();
        const expiresAtMs = Date.now() + SHORT_TTL_MS;
        const stored = await put(userId, "abs", { ttlMs: 3_600_000, expiresAtMs });
        expect(stored.storageExpiresAtMs).toBe(expiresAtMs);
        await waitUntilGone(userId, "abs");
        expect(Date.now()).toBeGreaterThanOrEqual(expiresAtMs);
      });
    });

    describe("upsert", () => {
      it("assigns version 1 on insert and the previous version + 1 on every update", async () => {
        const userId = uniqueUserId();
        expect((await put(userId, "v", { data: payload("first") })).version).toBe(1n);
        expect((await put(userId, "v", { data: payload("second") })).version).toBe(2n);
        expect((await put(userId, "v", { data: payload("third") })).version).toBe(3n);
        const got = await store.get(userId, "v");
        expect(got?.version).toBe(3n);
        expect(view(got)?.data).toBe(hex(payload("third")));
      });

      it("keeps the session until now + ttlMs, to the millisecond", async () => {
        const userId = uniqueUserId();
        for (const ttlMs of [1, 250, 1_234, 86_400_001]) {
          const before = Date.now();
          const stored = await put(userId, `ttl-${ttlMs}`, { ttlMs });
          const after = Date.now();
          expect(Number.isInteger(stored.storageExpiresAtMs)).toBe(true);
          expect(stored.storageExpiresAtMs).toBeGreaterThanOrEqual(before + ttlMs);
          expect(stored.storageExpiresAtMs).toBeLessThanOrEqual(after + ttlMs);
          expect(stored.expiresAtMs).toBeUndefined();
        }
        const kept = await store.get(userId, "ttl-1234");
        const listed = (await store.listByUser(userId, { after: "ttl-1", limit: 1 })).sessions[0];
        expect(view(listed)).toEqual(view(kept));
      });

      it("keeps the session until min(now + ttlMs, expiresAtMs) and returns expiresAtMs", async () => {
        const userId = uniqueUserId();
        const expiresAtMs = Date.now() + 30_007;
        const capped = await put(userId, "cap", { ttlMs: 3_600_000, expiresAtMs });
        expect(capped.storageExpiresAtMs).toBe(expiresAtMs);
        expect(capped.expiresAtMs).toBe(expiresAtMs);
        const before = Date.now();
        const byTtl = await put(userId, "cap", { ttlMs: 10_000, expiresAtMs });
        const after = Date.now();
        expect(byTtl.storageExpiresAtMs).toBeGreaterThanOrEqual(before + 10_000);
        expect(byTtl.storageExpiresAtMs).toBeLessThanOrEqual(after + 10_000);
        expect(byTtl.expiresAtMs).toBe(expiresAtMs);
        expect(view(await store.get(userId, "cap"))).toEqual(view(byTtl));
      });

      it("rejects an expiresAtMs not after now with ExpiresAtPassedError and changes nothing", async () => {
        const userId = uniqueUserId();
        const kept = await put(userId, "past");
        await expect(
          put(userId, "past", { expiresAtMs: Date.now() - 1000, data: payload("changed") }),
        ).rejects.toBeInstanceOf(ExpiresAtPassedError);
        // The store reads its clock after this one, so this is not after its now.
        await expect(put(userId, "never", { expiresAtMs: Date.now() })).rejects.toBeInstanceOf(
          ExpiresAtPassedError,
        );
        expect(view(await store.get(userId, "past"))).toEqual(view(kept));
        expect(await store.get(userId, "never")).toBeUndefined();
        expect(await listAll(userId)).toEqual(["past"]);
      });

      it("without expectedVersion inserts or replaces unconditionally", async () => {
        const userId = uniqueUserId();
        expect((await put(userId, "u", { data: payload("a") })).version).toBe(1n);
        expect((await put(userId, "u", { data: payload("b") })).version).toBe(2n);
        expect(view(await store.get(userId, "u"))?.data).toBe(hex(payload("b")));
      });

      it("with expectedVersion 0 inserts only: SessionExistsError when the session is live", async () => {
        const userId = uniqueUserId();
        const inserted = await put(userId, "once", { expectedVersion: 0n });
        expect(inserted.version).toBe(1n);
        await expect(
          put(userId, "once", { expectedVersion: 0n, data: payload("again") }),
        ).rejects.toBeInstanceOf(SessionExistsError);
        expect(view(await store.get(userId, "once"))).toEqual(view(inserted));
      });

      it("with expectedVersion 0 inserts again, at version 1, once the session has expired", async () => {
        const userId = uniqueUserId();
        await put(userId, "again", { ttlMs: SHORT_TTL_MS });
        await put(userId, "again", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "again");
        const reinserted = await put(userId, "again", { expectedVersion: 0n });
        expect(reinserted.version).toBe(1n);
      });

      it("with expectedVersion N replaces only version N: VersionMismatchError otherwise", async () => {
        const userId = uniqueUserId();
        await put(userId, "cas");
        expect((await put(userId, "cas", { expectedVersion: 1n })).version).toBe(2n);
        for (const expectedVersion of [1n, 3n, 2n ** 64n - 1n]) {
          await expect(
            put(userId, "cas", { expectedVersion, data: payload("lost") }),
          ).rejects.toBeInstanceOf(VersionMismatchError);
        }
        const got = await store.get(userId, "cas");
        expect(got?.version).toBe(2n);
        expect(view(got)?.data).toBe(hex(payload("cas")));
      });

      it("with expectedVersion N throws SessionNotFoundError when the session never was, was deleted or expired", async () => {
        const userId = uniqueUserId();
        await expect(put(userId, "never", { expectedVersion: 1n })).rejects.toBeInstanceOf(
          SessionNotFoundError,
        );
        await put(userId, "deleted");
        await store.delete(userId, "deleted", undefined);
        await expect(put(userId, "deleted", { expectedVersion: 1n })).rejects.toBeInstanceOf(
          SessionNotFoundError,
        );
        await put(userId, "expired", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "expired");
        await expect(put(userId, "expired", { expectedVersion: 1n })).rejects.toBeInstanceOf(
          SessionNotFoundError,
        );
        expect(await listAll(userId)).toEqual([]);
      });

      it("lets exactly one of many concurrent writers of one version win", async () => {
        const userId = uniqueUserId();
        await put(userId, "race");
        for (let version = 1n; version <= 5n; version++) {
          const winner = await exactlyOneWins(
            Array.from({ length: 8 }, (_, i) =>
              upsertInput(userId, "race", { expectedVersion: version, data: payload(`w${i}`) }),
            ),
            VersionMismatchError,
          );
          const got = await store.get(userId, "race");
          expect(got?.version).toBe(version + 1n);
          expect(view(got)?.data).toBe(hex(winner.data));
        }
      });

      it("lets exactly one of many concurrent insert-only writers win", async () => {
        const userId = uniqueUserId();
        const winner = await exactlyOneWins(
          Array.from({ length: 8 }, (_, i) =>
            upsertInput(userId, "first", { expectedVersion: 0n, data: payload(`w${i}`) }),
          ),
          SessionExistsError,
        );
        const got = await store.get(userId, "first");
        expect(got?.version).toBe(1n);
        expect(view(got)?.data).toBe(hex(winner.data));
      });

      it("never brings back a session that a racing delete removed", async () => {
        const userId = uniqueUserId();
        for (let round = 0; round < 20; round++) {
          const id = `refresh-${round}`;
          const stored = await put(userId, id);
          const [refresh, logout] = await Promise.allSettled([
            put(userId, id, { expectedVersion: stored.version }),
            store.delete(userId, id, undefined),
          ]);
          // Whichever ran first, the session existed when the delete ran.
          expect(logout).toEqual({ status: "fulfilled", value: true });
          if (refresh.status === "rejected") {
            expect(refresh.reason).toBeInstanceOf(SessionNotFoundError);
          }
          expect(await store.get(userId, id)).toBeUndefined();
        }
        expect(await listAll(userId)).toEqual([]);
      });
    });

    describe("refresh", () => {
      /** A session whose refresh token is `token`. */
      function putWithToken(userId: string, sessionId: string, token: string, target = store) {
        return target.upsert(
          upsertInput(userId, sessionId, { refreshDigest: refreshTokenDigest(token) }),
        );
      }

      /** A refresh of (userId, s) presenting `presented` and issuing `next`. */
      function refresh(
        userId: string,
        presented: string,
        next: string,
        overrides: Partial<RefreshInput> = {},
        target = store,
      ) {
        return target.refresh({
          userId,
          sessionId: "s",
          presentedDigest: refreshTokenDigest(presented),
          newTokenId: next,
          newDigest: refreshTokenDigest(next),
          ttlMs: 120_000,
          graceMs: 60_000,
          revokeAllOnReuse: false,
          ...overrides,
        });
      }

      /** What a rotation appended to the stored data, decoded as a Session. */
      function rotatedFields(session: StoredSession, original: Uint8Array) {
        expect(hex(session.data).startsWith(hex(original))).toBe(true);
        const tail = fromBinary(SessionSchema, session.data.subarray(original.byteLength));
        return {
          refreshTokenId: tail.refreshTokenId,
          refreshedAtMs: tail.refreshedAt ? timestampMs(tail.refreshedAt) : undefined,
        };
      }

      it("rotates the current token: new token and refreshed_at in the data, version + 1, expiry moved", async () => {
        const userId = uniqueUserId();
        const stored = await putWithToken(userId, "s", "r1");
        const before = Date.now();
        const { rotated, session } = await refresh(userId, "r1", "r2");
        const after = Date.now();
        expect(rotated).toBe(true);
        expect(session.version).toBe(2n);
        expect(session.storageExpiresAtMs).toBeGreaterThanOrEqual(before + 120_000);
        expect(session.storageExpiresAtMs).toBeLessThanOrEqual(after + 120_000);
        const fields = rotatedFields(session, stored.data);
        expect(fields.refreshTokenId).toBe("r2");
        expect(fields.refreshedAtMs).toBeGreaterThanOrEqual(before);
        expect(fields.refreshedAtMs).toBeLessThanOrEqual(after);
        expect(view(await store.get(userId, "s"))).toEqual(view(session));
      });

      it("replaces the last rotation's bytes rather than adding to them", async () => {
        const userId = uniqueUserId();
        const stored = await putWithToken(userId, "s", "r1");
        await refresh(userId, "r1", "r2");
        const { session } = await refresh(userId, "r2", "r3");
        expect(rotatedFields(session, stored.data).refreshTokenId).toBe("r3");
        // Exactly one tail: a token id of the same length, a time of the same size.
        const first = await refresh(userId, "r3", "r4");
        expect(first.session.data.byteLength).toBe(session.data.byteLength);
      });

      it("answers the previous token within its grace with the current session, changing nothing", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        const first = await refresh(userId, "r1", "r2");
        const second = await refresh(userId, "r1", "r2-other");
        expect(second.rotated).toBe(false);
        expect(view(second.session)).toEqual(view(first.session));
        expect(view(await store.get(userId, "s"))).toEqual(view(first.session));
        // The current token still rotates.
        expect((await refresh(userId, "r2", "r3")).session.version).toBe(3n);
      });

      it("deletes the session when the previous token comes back after its grace", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await put(userId, "other");
        const { session } = await refresh(userId, "r1", "r2", { graceMs: 1 });
        await waitFor(
          "the grace to end",
          async () => Date.now() > session.storageExpiresAtMs - 120_000 + 20,
        );
        await expect(refresh(userId, "r1", "r3")).rejects.toBeInstanceOf(RefreshTokenReusedError);
        expect(await store.get(userId, "s")).toBeUndefined();
        expect(await listAll(userId)).toEqual(["other"]);
        // Gone: the current token cannot bring it back.
        await expect(refresh(userId, "r2", "r3")).rejects.toBeInstanceOf(SessionNotFoundError);
      });

      it("with no grace, the rotated token is reuse at once", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await refresh(userId, "r1", "r2", { graceMs: 0 });
        await expect(refresh(userId, "r1", "r3")).rejects.toBeInstanceOf(RefreshTokenReusedError);
        expect(await store.get(userId, "s")).toBeUndefined();
      });

      it("deletes the session when a token older than the previous one comes back", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await refresh(userId, "r1", "r2");
        await refresh(userId, "r2", "r3");
        await expect(refresh(userId, "r1", "r9")).rejects.toBeInstanceOf(RefreshTokenReusedError);
        expect(await store.get(userId, "s")).toBeUndefined();
      });

      it("deletes the session when a token it never had is presented", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await expect(refresh(userId, "stolen?", "r2")).rejects.toBeInstanceOf(
          RefreshTokenReusedError,
        );
        expect(await store.get(userId, "s")).toBeUndefined();
      });

      it("deletes every session of the user on reuse when asked to, and no one else's", async () => {
        const userId = uniqueUserId();
        const otherUser = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await put(userId, "laptop");
        await put(otherUser, "s");
        await expect(
          refresh(userId, "r0", "r2", { revokeAllOnReuse: true }),
        ).rejects.toBeInstanceOf(RefreshTokenReusedError);
        expect(await listAll(userId)).toEqual([]);
        expect(await store.get(otherUser, "s")).toBeDefined();
      });

      it("throws SessionNotFoundError for a missing session and creates nothing", async () => {
        const userId = uniqueUserId();
        await expect(refresh(userId, "r1", "r2")).rejects.toBeInstanceOf(SessionNotFoundError);
        expect(await listAll(userId)).toEqual([]);
      });

      it("throws RefreshStateMissingError for a session stored without a refresh token, changing nothing", async () => {
        const userId = uniqueUserId();
        const stored = await put(userId, "s");
        await expect(refresh(userId, "r1", "r2")).rejects.toBeInstanceOf(RefreshStateMissingError);
        expect(view(await store.get(userId, "s"))).toEqual(view(stored));
      });

      it("keeps the grace across an Upsert that keeps the token and a Touch, and ends it with an Upsert of another token", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r1");
        await refresh(userId, "r1", "r2");
        await putWithToken(userId, "s", "r2");
        await store.touch(userId, "s", 90_000);
        expect((await refresh(userId, "r1", "x")).rotated).toBe(false);
        await putWithToken(userId, "s", "r7");
        await expect(refresh(userId, "r1", "x")).rejects.toBeInstanceOf(RefreshTokenReusedError);
      });

      it("rotates exactly once among concurrent refreshes presenting the same token", async () => {
        for (const callers of [2, 4, 16]) {
          const userId = uniqueUserId();
          await putWithToken(userId, "s", "r1");
          const results = await Promise.all(
            Array.from({ length: callers }, (_, i) => refresh(userId, "r1", `r2-${i}`)),
          );
          const winners = results.filter((r) => r.rotated);
          expect(winners).toHaveLength(1);
          const winner = winners[0] as (typeof results)[number];
          // Every caller holds the session the winner made: one token, version 2.
          for (const r of results) expect(view(r.session)).toEqual(view(winner.session));
          expect(winner.session.version).toBe(2n);
        }
      });

      it("never brings back a session deleted while it rotates", async () => {
        for (let round = 0; round < 10; round++) {
          const userId = uniqueUserId();
          await putWithToken(userId, "s", "r1");
          const [rotation, deletion] = await Promise.allSettled([
            refresh(userId, "r1", "r2"),
            store.delete(userId, "s", undefined),
          ]);
          expect(deletion).toEqual({ status: "fulfilled", value: true });
          if (rotation.status === "rejected") {
            expect(rotation.reason).toBeInstanceOf(SessionNotFoundError);
          }
          expect(await store.get(userId, "s")).toBeUndefined();
          expect(await listAll(userId)).toEqual([]);
        }
      });

      it("counts every rotation in the version, with no gaps", async () => {
        const userId = uniqueUserId();
        await putWithToken(userId, "s", "r0");
        const versions: bigint[] = [];
        for (let i = 1; i <= 10; i++) {
          versions.push((await refresh(userId, `r${i - 1}`, `r${i}`)).session.version);
        }
        expect(versions).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 2)));
      });
    });

    describe("touch", () => {
      it("moves storageExpiresAtMs to now + ttlMs, keeping data, version and expiresAtMs", async () => {
        const userId = uniqueUserId();
        const expiresAtMs = Date.now() + 3_600_000;
        const stored = await put(userId, "t", { ttlMs: 60_000, expiresAtMs });
        const before = Date.now();
        const touched = await store.touch(userId, "t", 120_001);
        const after = Date.now();
        expect(touched.storageExpiresAtMs).toBeGreaterThanOrEqual(before + 120_001);
        expect(touched.storageExpiresAtMs).toBeLessThanOrEqual(after + 120_001);
        expect(view(touched)).toEqual({
          ...view(stored),
          storageExpiresAtMs: touched.storageExpiresAtMs,
        });
        expect(view(await store.get(userId, "t"))).toEqual(view(touched));
        // Touch did not count as an update.
        expect((await put(userId, "t")).version).toBe(2n);
      });

      it("can shorten the storage time, and the session then expires", async () => {
        const userId = uniqueUserId();
        await put(userId, "t", { ttlMs: 60_000 });
        const touched = await store.touch(userId, "t", SHORT_TTL_MS);
        await waitUntilGone(userId, "t");
        expect(Date.now()).toBeGreaterThanOrEqual(touched.storageExpiresAtMs);
        expect(await listAll(userId)).toEqual([]);
        expect(await store.delete(userId, "t", undefined)).toBe(false);
      });

      it("caps storageExpiresAtMs at expiresAtMs", async () => {
        const userId = uniqueUserId();
        const expiresAtMs = Date.now() + 30_003;
        await put(userId, "t", { ttlMs: 1_000, expiresAtMs });
        const touched = await store.touch(userId, "t", 3_600_000);
        expect(touched.storageExpiresAtMs).toBe(expiresAtMs);
        expect(touched.expiresAtMs).toBe(expiresAtMs);
      });

      it("throws SessionNotFoundError for a missing or expired session and creates nothing", async () => {
        const userId = uniqueUserId();
        await expect(store.touch(userId, "none", 60_000)).rejects.toBeInstanceOf(
          SessionNotFoundError,
        );
        await put(userId, "expired", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "expired");
        await expect(store.touch(userId, "expired", 60_000)).rejects.toBeInstanceOf(
          SessionNotFoundError,
        );
        expect(await store.get(userId, "none")).toBeUndefined();
        expect(await store.get(userId, "expired")).toBeUndefined();
        expect(await listAll(userId)).toEqual([]);
      });
    });

    describe("delete", () => {
      it("resolves true once, then false, and a new insert starts again at version 1", async () => {
        const userId = uniqueUserId();
        await put(userId, "d");
        await put(userId, "d");
        expect(await store.delete(userId, "d", undefined)).toBe(true);
        expect(await store.delete(userId, "d", undefined)).toBe(false);
        expect(await store.get(userId, "d")).toBeUndefined();
        expect(await listAll(userId)).toEqual([]);
        expect((await put(userId, "d")).version).toBe(1n);
      });

      it("with expectedVersion deletes only that version: VersionMismatchError otherwise", async () => {
        const userId = uniqueUserId();
        await put(userId, "d");
        const current = await put(userId, "d");
        await expect(store.delete(userId, "d", 1n)).rejects.toBeInstanceOf(VersionMismatchError);
        await expect(store.delete(userId, "d", 3n)).rejects.toBeInstanceOf(VersionMismatchError);
        expect(view(await store.get(userId, "d"))).toEqual(view(current));
        expect(await store.delete(userId, "d", 2n)).toBe(true);
        // Gone is not a mismatch: there is nothing to protect any more.
        expect(await store.delete(userId, "d", 2n)).toBe(false);
        expect(await store.delete(userId, "never", 1n)).toBe(false);
      });

      it("does not count an expired session as deleted, whatever the expected version", async () => {
        const userId = uniqueUserId();
        await put(userId, "old", { ttlMs: SHORT_TTL_MS });
        await put(userId, "old2", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "old");
        await waitUntilGone(userId, "old2");
        expect(await store.delete(userId, "old", undefined)).toBe(false);
        expect(await store.delete(userId, "old2", 7n)).toBe(false);
      });

      it("deletes only the session named", async () => {
        const userId = uniqueUserId();
        const other = uniqueUserId();
        await put(userId, "a");
        await put(userId, "b");
        await put(other, "a");
        expect(await store.delete(userId, "a", undefined)).toBe(true);
        expect(await listAll(userId)).toEqual(["b"]);
        expect(await listAll(other)).toEqual(["a"]);
      });
    });

    describe("listByUser", () => {
      it("orders sessions by the bytes of their UTF-8 ids, on every page size", async () => {
        const userId = uniqueUserId();
        // Above U+FFFF, UTF-16 code units (surrogates, 0xD800-0xDFFF) sort
        // before U+E000-U+FFFF; UTF-8 bytes sort them after.
        const ids = ["b", "a", "B", "aa", "é", "\uFFFD", "\uE000", "😀", "𐀀", "z", "0", "a0", "~"];
        for (const id of ids) await put(userId, id);
        const expected = [...ids].sort(byUtf8);
        expect(expected).not.toEqual([...ids].sort());
        for (const limit of [1, 2, 3, 5, ids.length - 1, ids.length, ids.length + 1, 1000]) {
          expect(await listAll(userId, limit)).toEqual(expected);
        }
        // Listed sessions are whole, as get returns them.
        const { sessions } = await store.listByUser(userId, { after: undefined, limit: 1000 });
        for (const listed of sessions) {
          expect(view(listed)).toEqual(view(await store.get(userId, listed.sessionId)));
        }
      });

      it("returns the sessions sorting after `after`, whether or not that id exists", async () => {
        const userId = uniqueUserId();
        for (const id of ["a", "c", "e", "\uFFFD", "😀"]) await put(userId, id);
        const idsAfter = async (cursor: string) => (await idsPage(userId, cursor, 10)).ids;
        expect(await idsAfter("0")).toEqual(["a", "c", "e", "\uFFFD", "😀"]);
        expect(await idsAfter("a")).toEqual(["c", "e", "\uFFFD", "😀"]);
        expect(await idsAfter("b")).toEqual(["c", "e", "\uFFFD", "😀"]);
        expect(await idsAfter("e")).toEqual(["\uFFFD", "😀"]);
        expect(await idsAfter("\uE000")).toEqual(["\uFFFD", "😀"]);
        expect(await idsAfter("\uFFFD")).toEqual(["😀"]);
        expect(await idsAfter("😀")).toEqual([]);
        expect(await idsAfter("😀a")).toEqual([]);
      });

      it("returns at most `limit` sessions and says whether more remain", async () => {
        const userId = uniqueUserId();
        for (const id of ["a", "b", "c"]) await put(userId, id);
        const page = (after: string | undefined, limit: number) => idsPage(userId, after, limit);
        expect(await page(undefined, 2)).toEqual({ ids: ["a", "b"], hasMore: true });
        expect(await page(undefined, 3)).toEqual({ ids: ["a", "b", "c"], hasMore: false });
        expect(await page(undefined, 4)).toEqual({ ids: ["a", "b", "c"], hasMore: false });
        expect(await page("a", 1)).toEqual({ ids: ["b"], hasMore: true });
        expect(await page("b", 1)).toEqual({ ids: ["c"], hasMore: false });
        expect(await page("c", 1)).toEqual({ ids: [], hasMore: false });
      });

      it("pages through more sessions than one page holds", async () => {
        const userId = uniqueUserId();
        const ids = Array.from({ length: 1001 }, (_, i) => `s${String(i).padStart(4, "0")}`);
        await Promise.all(ids.map((id) => put(userId, id)));
        const first = await store.listByUser(userId, { after: undefined, limit: 1000 });
        expect(first.sessions.map((s) => s.sessionId)).toEqual(ids.slice(0, 1000));
        expect(first.hasMore).toBe(true);
        const rest = await store.listByUser(userId, { after: "s0999", limit: 1000 });
        expect(rest.sessions.map((s) => s.sessionId)).toEqual(["s1000"]);
        expect(rest.hasMore).toBe(false);
        expect(await store.deleteByUser(userId, [])).toBe(1001);
      });

      it("returns an empty page without more for a user without sessions", async () => {
        const page = await store.listByUser(uniqueUserId(), { after: undefined, limit: 10 });
        expect(page).toEqual({ sessions: [], hasMore: false });
      });

      it("neither lists expired sessions nor counts them in hasMore", async () => {
        const userId = uniqueUserId();
        await put(userId, "keep", { ttlMs: 60_000 });
        await put(userId, "zz-fade", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "zz-fade");
        const page = await store.listByUser(userId, { after: undefined, limit: 1 });
        expect(page.sessions.map((s) => s.sessionId)).toEqual(["keep"]);
        expect(page.hasMore).toBe(false);
      });

      it("returns every session present for the whole listing exactly once while others change", async () => {
        const userId = uniqueUserId();
        const stable = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, "0")}`);
        for (const id of stable) await put(userId, id);
        for (let i = 0; i < 10; i++) await put(userId, `x${i}`);
        const seen: string[] = [];
        let after: string | undefined;
        for (let round = 0; ; round++) {
          const { ids, hasMore } = await idsPage(userId, after, 4);
          seen.push(...ids);
          if (!hasMore) break;
          after = ids.at(-1);
          // Churn between pages: new sessions on both sides of the cursor,
          // deletions of volatile ones (the cursor's own among them), updates
          // of stable ones.
          await put(userId, `a-new-${round}`);
          await put(userId, `z-new-${round}`);
          await store.delete(userId, `x${round}`, undefined);
          if (after !== undefined && !stable.includes(after)) {
            await store.delete(userId, after, undefined);
          }
          await put(userId, stable[round % stable.length] as string);
        }
        for (const id of stable) expect(seen.filter((s) => s === id)).toHaveLength(1);
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen).toEqual([...seen].sort(byUtf8));
      });
    });

    describe("deleteByUser", () => {
      it("deletes all of a user's sessions except the listed ones and counts them", async () => {
        const userId = uniqueUserId();
        const other = uniqueUserId();
        for (const id of ["a", "b", "c", "d"]) await put(userId, id);
        await put(other, "a");
        expect(await store.deleteByUser(userId, ["b", "missing"])).toBe(3);
        expect(await listAll(userId)).toEqual(["b"]);
        for (const id of ["a", "c", "d"]) expect(await store.get(userId, id)).toBeUndefined();
        expect(await store.get(userId, "b")).toBeDefined();
        expect(await listAll(other)).toEqual(["a"]);
        expect(await store.deleteByUser(userId, ["b"])).toBe(0);
        expect(await store.deleteByUser(userId, [])).toBe(1);
        expect(await store.deleteByUser(userId, [])).toBe(0);
        expect(await store.get(userId, "b")).toBeUndefined();
      });

      it("resolves 0 for a user without sessions", async () => {
        expect(await store.deleteByUser(uniqueUserId(), [])).toBe(0);
      });

      it("does not count expired sessions", async () => {
        const userId = uniqueUserId();
        await put(userId, "live");
        await put(userId, "dead", { ttlMs: SHORT_TTL_MS });
        await waitUntilGone(userId, "dead");
        expect(await store.deleteByUser(userId, [])).toBe(1);
      });

      it("leaves no session readable that was stored before it began, despite concurrent writes", async () => {
        const userId = uniqueUserId();
        const before = Array.from({ length: 50 }, (_, i) => `old-${i}`);
        await Promise.all(before.map((id) => put(userId, id)));
        const concurrent = Array.from({ length: 20 }, (_, i) => put(userId, `new-${i}`));
        const deleted = await store.deleteByUser(userId, []);
        await Promise.all(concurrent);
        expect(deleted).toBeGreaterThanOrEqual(50);
        expect(deleted).toBeLessThanOrEqual(70);
        for (const id of before) expect(await store.get(userId, id)).toBeUndefined();
        const left = await listAll(userId);
        expect(left.every((id) => id.startsWith("new-"))).toBe(true);
        expect(left).toHaveLength(70 - deleted);
      });
    });

    describe(`maxSessionsPerUser = ${CAP}`, () => {
      function putCapped(userId: string, id: string, ttlMs: number, expectedVersion?: bigint) {
        return capped.upsert(upsertInput(userId, id, { ttlMs, expectedVersion }));
      }
      const listCapped = (userId: string) => listAll(userId, 100, capped);

      it("evicts the user's session that expires soonest when inserting past the cap", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "s20", 20_000);
        await putCapped(userId, "s10", 10_000);
        await putCapped(userId, "s30", 30_000);
        await putCapped(userId, "s40", 40_000);
        expect(await listCapped(userId)).toEqual(["s20", "s30", "s40"]);
        expect(await capped.get(userId, "s10")).toBeUndefined();
        await putCapped(userId, "s50", 50_000, 0n);
        expect(await listCapped(userId)).toEqual(["s30", "s40", "s50"]);
      });

      it("never evicts the session being inserted, even when it expires soonest", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", 20_000);
        await putCapped(userId, "b", 30_000);
        await putCapped(userId, "c", 40_000);
        const inserted = await putCapped(userId, "new", 1_000);
        expect(await listCapped(userId)).toEqual(["b", "c", "new"]);
        expect(view(await capped.get(userId, "new"))).toEqual(view(inserted));
      });

      it("never evicts on an update of an existing session", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", 20_000);
        await putCapped(userId, "b", 30_000);
        await putCapped(userId, "c", 40_000);
        // "a" expires soonest: updates of the others must not evict it.
        expect((await putCapped(userId, "c", 50_000)).version).toBe(2n);
        expect((await putCapped(userId, "b", 60_000, 1n)).version).toBe(2n);
        await capped.touch(userId, "c", 70_000);
        expect(await listCapped(userId)).toEqual(["a", "b", "c"]);
      });

      it("does not count expired sessions against the cap", async () => {
        const userId = uniqueUserId();
        await putCapped(userId, "a", SHORT_TTL_MS);
        await putCapped(userId, "b", 60_000);
        await putCapped(userId, "c", 60_000);
        await waitFor(
          "the short session to expire",
          async () => (await capped.get(userId, "a")) === undefined,
          { timeoutMs: 10_000 },
        );
        await putCapped(userId, "d", 60_000);
        expect(await listCapped(userId)).toEqual(["b", "c", "d"]);
      });

      it("leaves other users' sessions alone", async () => {
        const userId = uniqueUserId();
        const other = uniqueUserId();
        for (const id of ["a", "b", "c"]) await putCapped(other, id, 10_000);
        for (const id of ["a", "b", "c", "d"]) await putCapped(userId, id, 60_000);
        expect(await listCapped(other)).toEqual(["a", "b", "c"]);
        expect(await listCapped(userId)).toHaveLength(CAP);
      });
    });

    it("keeps sessions apart whatever separators, braces and percent signs their ids contain", async () => {
      const base = uniqueUserId();
      const pairs = idsThatMustStayApart(base);
      for (const [userId, id] of pairs) {
        await put(userId, id, { data: payload(`${userId}/${id}`) });
      }
      for (const [userId, id] of pairs) {
        const got = await store.get(userId, id);
        expect(view(got)?.data).toBe(hex(payload(`${userId}/${id}`)));
        expect(got?.version).toBe(1n);
      }
      for (const userId of new Set(pairs.map(([u]) => u))) {
        const expected = pairs.filter(([u]) => u === userId).map(([, id]) => id);
        expect(await listAll(userId)).toEqual(expected.sort(byUtf8));
      }
      const ofBase = pairs.filter(([u]) => u === base).length;
      expect(await store.deleteByUser(base, [])).toBe(ofBase);
      expect(await listAll(`${base}:a`)).toEqual(["b"]);
      expect(await listAll(`{${base}}`)).toEqual(["s"]);
    });

    it("rejects every operation with the reason of an already-aborted signal and changes nothing", async () => {
      const userId = uniqueUserId();
      const stored = await put(userId, "s");
      const controller = new AbortController();
      const reason = new Error("deadline exceeded");
      controller.abort(reason);
      const { signal } = controller;
      const calls: [string, () => Promise<unknown>][] = [
        ["get", () => store.get(userId, "s", signal)],
        ["upsert", () => store.upsert(upsertInput(userId, "s", { data: payload("x") }), signal)],
        ["insert", () => store.upsert(upsertInput(userId, "new"), signal)],
        ["touch", () => store.touch(userId, "s", 1_000, signal)],
        ["delete", () => store.delete(userId, "s", undefined, signal)],
        ["listByUser", () => store.listByUser(userId, { after: undefined, limit: 10 }, signal)],
        ["deleteByUser", () => store.deleteByUser(userId, [], signal)],
        ["ping", () => store.ping(signal)],
      ];
      for (const [operation, call] of calls) {
        await expect(call(), operation).rejects.toBe(reason);
      }
      expect(view(await store.get(userId, "s"))).toEqual(view(stored));
      expect(await listAll(userId)).toEqual(["s"]);
    });
  });
}
