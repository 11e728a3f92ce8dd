import { describe, expect, it } from "vitest";
import { waitFor } from "../harness/wait-for.js";
import { MemorySessionStore } from "../src/store/memory/memory-session-store.js";
import { describeSessionStoreContract, grpcClient } from "./contract/session-store-contract.js";

const openMemory = async ({ maxSessionsPerUser }: { maxSessionsPerUser: number }) =>
  new MemorySessionStore({ maxSessionsPerUser, sweepIntervalMs: 0 });

describeSessionStoreContract("memory", openMemory);

// The same contract through the real server over gRPC, which serves plain
// gRPC unary calls on its own fast path rather than through connect-node.
describeSessionStoreContract("memory, over gRPC", openMemory, grpcClient);

describe("MemorySessionStore", () => {
  const input = (userId: string, sessionId: string, ttlMs: number) => ({
    userId,
    sessionId,
    data: new Uint8Array([1, 2, 3]),
    ttlMs,
    expiresAtMs: undefined,
    expectedVersion: undefined,
  });

  it("forgets expired sessions of idle users on its sweep timer", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 20 });
    try {
      await store.upsert(input("idle-1", "a", 30));
      await store.upsert(input("idle-2", "b", 30));
      await store.upsert(input("busy", "c", 60_000));
      expect(store.size).toBe(3);
      await waitFor("the sweep to drop expired sessions", () => store.size === 1);
      expect(await store.get("busy", "c")).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it("drops a user's expired sessions when that user is written to", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    await store.upsert(input("u", "old", 20));
    await waitFor("the session to expire", async () => (await store.get("u", "old")) === undefined);
    expect(store.size).toBe(1);
    await store.upsert(input("u", "new", 60_000));
    expect(store.size).toBe(1);
    await store.close();
  });

  it("keeps its own copy of the data it is given", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    const data = new Uint8Array([1, 2, 3]);
    await store.upsert({ ...input("u", "s", 60_000), data });
    data[0] = 9;
    expect([...((await store.get("u", "s"))?.data ?? [])]).toEqual([1, 2, 3]);
    await store.close();
  });

  it("rejects at once with the abort reason when the signal has aborted", async () => {
    const store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    const controller = new AbortController();
    const reason = new Error("deadline");
    controller.abort(reason);
    await expect(store.upsert(input("u", "s", 60_000), controller.signal)).rejects.toBe(reason);
    expect(store.size).toBe(0);
    await store.close();
  });
});
