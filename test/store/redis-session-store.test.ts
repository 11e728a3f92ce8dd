import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { createLogger } from "../../src/observability/logger.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { describeStoreContract } from "./session-store-contract.js";

const logger = createLogger("silent");
let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedisServer();
});

afterAll(async () => {
  await redis?.stop();
});

async function openStore(
  server: RedisServer,
  { maxSessionsPerUser = 0, keyPrefix = "sessionstore", commandTimeoutMs = 1000 } = {},
) {
  const client = await connectRedis(
    { url: server.url, cluster: false, commandTimeoutMs, connectTimeoutMs: 5000 },
    logger,
  );
  return new RedisSessionStore({ redis: client, keyPrefix, maxSessionsPerUser });
}

/** How often each command ran on the server, from INFO commandstats. */
async function commandCounts(client: Redis): Promise<Map<string, number>> {
  const info = await client.info("commandstats");
  const counts = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    counts.set(match[1] as string, Number(match[2]));
  }
  return counts;
}

describeStoreContract("redis, RESP3", (options) => openStore(redis, options));

describeStoreContract("redis, RESP2", async ({ maxSessionsPerUser }) => {
  const client = new Redis(redis.url, { protocol: 2 });
  await waitFor("RESP2 client ready", () => client.status === "ready");
  return new RedisSessionStore({ redis: client, keyPrefix: "resp2", maxSessionsPerUser });
});

describe("request paths", () => {
  it("never issued SCAN or KEYS while serving the contract", async () => {
    const admin = redis.client();
    try {
      const counts = await commandCounts(admin);
      expect(counts.get("evalsha")).toBeGreaterThan(0);
      expect(counts.get("get")).toBeGreaterThan(0);
      expect(counts.has("scan")).toBe(false);
      expect(counts.has("keys")).toBe(false);
    } finally {
      admin.disconnect();
    }
  });
});

describe("RedisSessionStore layout", () => {
  let store: RedisSessionStore;
  let admin: Redis;
  const input = (userId: string, sessionId: string, ttlMs: number) => ({
    userId,
    sessionId,
    data: Buffer.from("payload|with|separators"),
    ttlMs,
    expiresAtMs: undefined,
    expectedVersion: undefined,
  });

  beforeAll(async () => {
    store = await openStore(redis, { keyPrefix: "layout" });
    admin = redis.client();
  });

  afterAll(async () => {
    await store?.close();
    admin?.disconnect();
  });

  it("keeps one user's keys under one hash tag that the ids cannot break out of", () => {
    const keys = userKeys("p", "a{b}c%");
    expect(keys.index).toBe("p:{a%7Bb%7Dc%25}:i");
    expect(keys.sessionPrefix).toBe("p:{a%7Bb%7Dc%25}:s:");
  });

  it("stores a versioned header and the data as given, expiring with the session", async () => {
    const stored = await store.upsert(input("u1", "s1", 60_000));
    const keys = userKeys("layout", "u1");
    const record = await admin.getBuffer(`${keys.sessionPrefix}s1`);
    expect(record?.toString()).toBe(`1|1|${stored.storageExpiresAtMs}|0|payload|with|separators`);
    expect(Number(await admin.pexpiretime(`${keys.sessionPrefix}s1`))).toBe(
      stored.storageExpiresAtMs,
    );
    expect(await admin.zscore(keys.index, "s1")).toBe(String(stored.storageExpiresAtMs));
  });

  it("gives the index the TTL of its longest-lived session, and no longer", async () => {
    const keys = userKeys("layout", "u2");
    await store.upsert(input("u2", "long", 60_000));
    const short = await store.upsert(input("u2", "short", 20_000));
    const long = await store.get("u2", "long");
    expect(Number(await admin.pexpiretime(keys.index))).toBe(long?.storageExpiresAtMs);
    await store.delete("u2", "long", undefined);
    expect(Number(await admin.pexpiretime(keys.index))).toBe(short.storageExpiresAtMs);
    const touched = await store.touch("u2", "short", 5_000);
    expect(Number(await admin.pexpiretime(keys.index))).toBe(touched.storageExpiresAtMs);
    await store.delete("u2", "short", undefined);
    expect(await admin.exists(keys.index)).toBe(0);
  });

  it("leaves nothing behind for an idle user once the sessions expire", async () => {
    const keys = userKeys("layout", "idle");
    await store.upsert(input("idle", "a", 100));
    await store.upsert(input("idle", "b", 150));
    expect(await admin.exists(keys.index, `${keys.sessionPrefix}a`, `${keys.sessionPrefix}b`)).toBe(
      3,
    );
    // Redis' own expiry removes the keys; nothing of ours runs.
    await waitFor(
      "Redis to expire the idle user's keys",
      async () =>
        (await admin.exists(keys.index, `${keys.sessionPrefix}a`, `${keys.sessionPrefix}b`)) === 0,
      { timeoutMs: 5000, intervalMs: 50 },
    );
  });

  it("prunes index entries of expired sessions on the next write", async () => {
    const keys = userKeys("layout", "prune");
    await store.upsert(input("prune", "gone", 30));
    await waitFor(
      "the session to expire",
      async () => (await store.get("prune", "gone")) === undefined,
    );
    await store.upsert(input("prune", "new", 60_000));
    expect(await admin.zrange(keys.index, "0", "-1")).toEqual(["new"]);
  });

  it("reloads its scripts after the script cache is flushed", async () => {
    await admin.script("FLUSH");
    const stored = await store.upsert(input("flush", "s", 60_000));
    expect(stored.version).toBe(1n);
    expect(
      (await store.listByUser("flush", { after: undefined, limit: 10 })).sessions,
    ).toHaveLength(1);
  });

  it("does not send a command once the signal has aborted, and stops waiting when it aborts", async () => {
    const before = (await commandCounts(admin)).get("get") ?? 0;
    const aborted = new AbortController();
    aborted.abort(new Error("deadline exceeded"));
    await expect(store.get("u1", "s1", aborted.signal)).rejects.toThrow("deadline exceeded");
    expect((await commandCounts(admin)).get("get") ?? 0).toBe(before);

    const controller = new AbortController();
    const resumed = await redis.pause(700);
    const started = Date.now();
    const pending = store.get("u1", "s1", controller.signal);
    setTimeout(() => controller.abort(new Error("cancelled")), 50);
    await expect(pending).rejects.toThrow("cancelled");
    expect(Date.now() - started).toBeLessThan(600);
    await resumed();
  });
});

describe("RedisSessionStore when Redis fails", () => {
  let flaky: RedisServer;

  beforeAll(async () => {
    flaky = await startRedisServer();
  });

  afterAll(async () => {
    await flaky?.stop();
  });

  it("fails fast with StoreUnavailableError while Redis is down, then recovers", async () => {
    const client = await connectRedis(
      { url: flaky.url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
      logger,
    );
    const store = new RedisSessionStore({ redis: client, keyPrefix: "x", maxSessionsPerUser: 0 });
    try {
      await store.upsert({
        userId: "u",
        sessionId: "s",
        data: Buffer.from("x"),
        ttlMs: 60_000,
        expiresAtMs: undefined,
        expectedVersion: undefined,
      });
      await flaky.kill();
      // Once the reconnect backoff has grown to its cap, a queued command
      // would wait up to half a second for the next attempt; ours fail at once.
      await new Promise<void>((resolve) => {
        const onReconnecting = (delay: number) => {
          if (delay < 500) return;
          client.off("reconnecting", onReconnecting);
          resolve();
        };
        client.on("reconnecting", onReconnecting);
      });
      const started = Date.now();
      await expect(store.get("u", "s")).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.listByUser("u", { after: undefined, limit: 1 })).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
      expect(Date.now() - started).toBeLessThan(100);
      await flaky.restart();
      // A fresh server has no data (nothing is persisted), but answers again
      // within the capped backoff.
      const back = Date.now();
      await waitFor(
        "the store to reconnect",
        async () => (await store.get("u", "s")) === undefined,
        {
          timeoutMs: 3000,
        },
      );
      expect(Date.now() - back).toBeLessThan(1500);
    } finally {
      await store.close();
    }
  });

  it("times a stuck command out as StoreUnavailableError", async () => {
    const store = await openStore(flaky, { commandTimeoutMs: 200 });
    try {
      const resumed = await flaky.pause(1000);
      const started = Date.now();
      await expect(store.get("u", "s")).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(900);
      await resumed();
    } finally {
      await store.close();
    }
  });

  it("gives up connecting after the connect timeout", async () => {
    const down = await startRedisServer();
    const url = down.url;
    await down.stop();
    const started = Date.now();
    await expect(
      connectRedis({ url, cluster: false, commandTimeoutMs: 100, connectTimeoutMs: 300 }, logger),
    ).rejects.toThrow("Redis was not ready within 300 ms");
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
