import { describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { processClock } from "../../src/clock.js";
import { ExpiresAtPassedError } from "../../src/store/errors.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { upsertInput } from "./fixtures.js";
import { describeEventContract } from "./session-events-contract.js";
import { describeStoreContract } from "./session-store-contract.js";

describeStoreContract(
  "memory",
  async ({ maxSessionsPerUser }) =>
    new MemorySessionStore({ maxSessionsPerUser, sweepIntervalMs: 0 }),
);

describeEventContract(
  "memory",
  async ({ maxSessionsPerUser, events }) =>
    new MemorySessionStore({
      maxSessionsPerUser,
      sweepIntervalMs: 0,
      ...(events ? { events } : {}),
    }),
);

describe("MemorySessionStore", () => {
  it("forgets expired sessions of idle users on its sweep timer", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 20 });
    try {
      await store.upsert(upsertInput("idle-1", "a", { ttlMs: 30 }));
      await store.upsert(upsertInput("idle-2", "b", { ttlMs: 30 }));
      await store.upsert(upsertInput("busy", "c"));
      expect(store.size).toBe(3);
      await waitFor("the sweep to drop expired sessions", () => store.size === 1);
      expect(await store.get("busy", "c")).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it("drops a user's expired sessions when that user is written to", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    try {
      await store.upsert(upsertInput("u", "old", { ttlMs: 20 }));
      await waitFor(
        "the session to expire",
        async () => (await store.get("u", "old")) === undefined,
      );
      // Reading does not prune: the expired session is still held.
      expect(store.size).toBe(1);
      await store.upsert(upsertInput("u", "new"));
      expect(store.size).toBe(1);
    } finally {
      await store.close();
    }
  });

  it("keeps its own copy of the data it is given", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    try {
      const data = new Uint8Array([1, 2, 3]);
      await store.upsert(upsertInput("u", "s", { data }));
      data[0] = 9;
      expect([...((await store.get("u", "s"))?.data ?? [])]).toEqual([1, 2, 3]);
    } finally {
      await store.close();
    }
  });

  it("holds nothing after a write rejected for an aborted signal", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    try {
      const controller = new AbortController();
      controller.abort(new Error("deadline"));
      await expect(store.upsert(upsertInput("u", "s"), controller.signal)).rejects.toThrow(
        "deadline",
      );
      expect(store.size).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("decides expiry, expiry times and expires_at by the clock it is given, sweep included", async () => {
    let now = 1_000_000;
    const store = new MemorySessionStore({
      maxSessionsPerUser: 0,
      sweepIntervalMs: 0,
      now: () => now,
    });
    try {
      const stored = await store.upsert(upsertInput("u", "s", { ttlMs: 2000 }));
      expect(stored.storageExpiresAtMs).toBe(1_002_000);
      await expect(
        store.upsert(upsertInput("u", "late", { expiresAtMs: now })),
      ).rejects.toBeInstanceOf(ExpiresAtPassedError);
      const capped = await store.upsert(upsertInput("u", "end", { expiresAtMs: now + 500 }));
      expect(capped.storageExpiresAtMs).toBe(1_000_500);
      now += 1000;
      expect((await store.touch("u", "s", 2000)).storageExpiresAtMs).toBe(1_003_000);
      // Every time here is in 1970: by the wall clock, all of it expired long ago.
      store.sweep();
      expect(store.size).toBe(1);
      now = 1_003_000; // live up to and including its expiry, as Redis keys are
      expect(await store.get("u", "s")).toBeDefined();
      expect((await store.listByUser("u", { after: undefined, limit: 10 })).sessions).toHaveLength(
        1,
      );
      now += 1;
      expect(await store.get("u", "s")).toBeUndefined();
      expect((await store.listByUser("u", { after: undefined, limit: 10 })).sessions).toEqual([]);
      // Still held (touch pruned "end" at 1_001_000), until a sweep by this clock.
      expect(store.size).toBe(1);
      store.sweep();
      expect(store.size).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("follows an offset process clock (SESSIONSTORE_TEST_CLOCK_OFFSET_MS)", async () => {
    const offsetMs = 5 * 60_000;
    const store = new MemorySessionStore({
      maxSessionsPerUser: 0,
      sweepIntervalMs: 0,
      now: processClock(offsetMs),
    });
    try {
      const before = Date.now();
      const stored = await store.upsert(upsertInput("u", "s", { ttlMs: 1000 }));
      const after = Date.now();
      expect(stored.storageExpiresAtMs).toBeGreaterThanOrEqual(before + offsetMs + 1000);
      expect(stored.storageExpiresAtMs).toBeLessThanOrEqual(after + offsetMs + 1000);
      // An end 10 s from now by the wall clock has passed by this store's.
      await expect(
        store.upsert(upsertInput("u", "t", { expiresAtMs: Date.now() + 10_000 })),
      ).rejects.toBeInstanceOf(ExpiresAtPassedError);
    } finally {
      await store.close();
    }
  });
});
