import { setImmediate as yieldToOthers } from "node:timers/promises";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { SessionNotFoundError, VersionMismatchError } from "../../src/store/errors.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import type { SessionStore, StoreSignal, UpsertInput } from "../../src/store/session-store.js";
import { casRace, deleteRace } from "./race-scenarios.js";
import { portTarget } from "./race-target.js";
import { inspectRedisLayout } from "./redis-layout-check.js";

// The races pass on every real store; these tests show they would not pass
// on a broken one, so that a green race means something. The broken store
// makes the classic mistake: it checks, awaits, then acts, so another
// caller's operation can run in between.

/**
 * A store whose conditional upsert and touch read first and write after
 * another turn of the event loop, as a store built from separate GET and SET
 * round trips would.
 */
class CheckThenActStore implements SessionStore {
  private readonly inner = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });

  get = this.inner.get.bind(this.inner);
  delete = this.inner.delete.bind(this.inner);
  listByUser = this.inner.listByUser.bind(this.inner);
  deleteByUser = this.inner.deleteByUser.bind(this.inner);
  refresh = this.inner.refresh.bind(this.inner);
  readEvents = this.inner.readEvents.bind(this.inner);
  watch = this.inner.watch.bind(this.inner);
  ping = this.inner.ping.bind(this.inner);
  close = this.inner.close.bind(this.inner);

  async upsert(input: UpsertInput, signal?: StoreSignal) {
    if (input.expectedVersion === undefined || input.expectedVersion === 0n) {
      return this.inner.upsert(input, signal);
    }
    const current = await this.inner.get(input.userId, input.sessionId);
    if (!current) throw new SessionNotFoundError();
    if (current.version !== input.expectedVersion) throw new VersionMismatchError();
    await yieldToOthers();
    return this.inner.upsert({ ...input, expectedVersion: undefined }, signal);
  }

  async touch(userId: string, sessionId: string, ttlMs: number) {
    const current = await this.inner.get(userId, sessionId);
    if (!current) throw new SessionNotFoundError();
    await yieldToOthers();
    // Writes the session back whole: after a delete in between, this
    // brings it back.
    return this.inner.upsert({
      userId,
      sessionId,
      data: current.data,
      ttlMs,
      expiresAtMs: current.expiresAtMs,
      expectedVersion: undefined,
    });
  }
}

describe("the races catch a store that checks, then acts", () => {
  it("CAS race: two winners of one version, or versions skipped", async () => {
    const store = new CheckThenActStore();
    const report = await casRace(portTarget("check-then-act", store, 1), {
      writers: 32,
      rounds: 50,
    });
    expect(report.anomalies.count).toBeGreaterThan(0);
    expect(report.anomalies.first.join("\n")).toMatch(/won by|made version/);
  });

  it("delete race: a deleted session readable again", async () => {
    const store = new CheckThenActStore();
    const report = await deleteRace(portTarget("check-then-act", store, 1), {
      rounds: 60,
      lanes: 4,
      casWriters: 3,
      touchers: 2,
      readers: 1,
    });
    expect(report.anomalies.first.join("\n")).toMatch(/sent after .* answered OK/);
  });
});

describe("the Redis layout check catches", () => {
  let redis: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    redis = await startRedisServer();
    admin = redis.client();
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  it("orphan index entries, unindexed sessions, keys without a TTL and keys outside the prefix", async () => {
    const keys = userKeys("p", "u");
    const now = Date.now();
    const live = now + 60_000;
    // An entry for a session whose record is gone, though it should live on.
    await admin.zadd(keys.byExpiry, live, "orphan");
    // A live record with no index entries.
    await admin.hset(keys.sessions, "unindexed", `2|1|${live}|0|||0|0|x`);
    // Every key but the record hash expires: the hash has no TTL.
    await admin.pexpireat(keys.byExpiry, live);
    await admin.zadd(keys.byId, 0, "orphan-by-id");
    await admin.pexpireat(keys.byId, live);
    // A key the store never writes.
    await admin.set("elsewhere", "x", "PX", 60_000);

    const report = await inspectRedisLayout({ nodes: [admin], keys: admin }, "p", [
      { userId: "u" },
    ]);
    const found = report.violations.join("\n");
    expect(found).toContain("orphan index entry: u/orphan");
    expect(found).toContain("session not in its index: u/unindexed");
    expect(found).toContain("orphan by-id entry: u/orphan-by-id");
    expect(found).toContain(`key without a TTL: ${keys.sessions}`);
    expect(found).toContain("key outside the prefix: elsewhere");
    expect(report.violations).toHaveLength(5);
  });
});
