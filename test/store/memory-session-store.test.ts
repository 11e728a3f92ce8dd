import { describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

describeStoreContract(
  "memory",
  async ({ maxSessionsPerUser }) =>
    new MemorySessionStore({ maxSessionsPerUser, sweepIntervalMs: 0 }),
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
});
