import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { createLogger } from "../../src/observability/logger.js";
import {
  RefreshStateMissingError,
  SessionNotFoundError,
  StoreUnavailableError,
} from "../../src/store/errors.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { refreshTokenDigest, rotationTail } from "../../src/store/refresh-state.js";
import type { EventRetention } from "../../src/store/session-events.js";
import { uniqueUserId } from "../support/ids.js";
import { ownedForBlock } from "../support/owned.js";
import { hex, upsertInput, view } from "./fixtures.js";
import { describeEventContract } from "./session-events-contract.js";
import { describeStoreContract } from "./session-store-contract.js";

const logger = createLogger("silent");

/** A redis-server of its own for the enclosing block (see ownedForBlock). */
function ownRedisServer(): () => RedisServer {
  return ownedForBlock(() => startRedisServer());
}

const shared = ownRedisServer();

/** A client as the server makes it (connectRedis), which speaks RESP3. */
function connectResp3(server: RedisServer, commandTimeoutMs = 1000) {
  return connectRedis(
    { url: server.url, cluster: false, commandTimeoutMs, connectTimeoutMs: 5000 },
    logger,
  );
}

/** A client that speaks RESP2, as Redis before 6 and many proxies do. */
async function connectResp2(server: RedisServer) {
  const client = new Redis(server.url, { protocol: 2 });
  try {
    await waitFor("the RESP2 client to be ready", () => client.status === "ready");
  } catch (error) {
    client.disconnect();
    throw error;
  }
  return client;
}

async function openStore(
  server: RedisServer,
  {
    maxSessionsPerUser = 0,
    keyPrefix = "sessionstore",
    commandTimeoutMs = 1000,
    events,
  }: {
    maxSessionsPerUser?: number;
    keyPrefix?: string;
    commandTimeoutMs?: number;
    events?: EventRetention;
  } = {},
) {
  const client = await connectResp3(server, commandTimeoutMs);
  return new RedisSessionStore({
    redis: client,
    keyPrefix,
    maxSessionsPerUser,
    ...(events ? { events } : {}),
  });
}

/** How often each command ran on the server (scripts' calls included), from INFO commandstats. */
async function commandCounts(client: Redis): Promise<Map<string, number>> {
  const info = await client.info("commandstats");
  const counts = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    counts.set(match[1] as string, Number(match[2]));
  }
  return counts;
}

describeStoreContract("redis, RESP3", (options) => openStore(shared(), options));

describeEventContract("redis", (options) => openStore(shared(), options));

describeStoreContract("redis, RESP2", async ({ maxSessionsPerUser }) => {
  const client = await connectResp2(shared());
  return new RedisSessionStore({ redis: client, keyPrefix: "resp2", maxSessionsPerUser });
});

describe("the contract's clients", () => {
  it("speak the protocol each run is named after", async () => {
    for (const [connect, resp] of [
      [connectResp3, 3],
      [connectResp2, 2],
    ] as const) {
      const client = await connect(shared());
      try {
        expect(String(await client.call("CLIENT", "INFO"))).toMatch(
          new RegExp(`\\bresp=${resp}\\b`),
        );
      } finally {
        client.disconnect();
      }
    }
  });
});

describe("request paths", () => {
  // A server of its own, so its counters hold this test's commands only,
  // whichever tests ran before.
  const own = ownRedisServer();

  it("serve every operation with scripts, never SCAN or KEYS", async () => {
    const admin = own().client();
    const store = await openStore(own(), { maxSessionsPerUser: 2 });
    try {
      await admin.config("RESETSTAT");
      const userId = uniqueUserId();
      const all = { after: undefined, limit: 100 };

      // Inserts past the cap (eviction), updates, conditional writes, reads.
      await store.upsert(upsertInput(userId, "a"));
      await store.upsert(upsertInput(userId, "b", { expectedVersion: 0n }));
      await store.upsert(upsertInput(userId, "c", { ttlMs: 120_000 }));
      await store.upsert(upsertInput(userId, "c", { expectedVersion: 1n }));
      await store.get(userId, "c");
      await store.touch(userId, "c", 90_000);
      await store.listByUser(userId, { after: undefined, limit: 1 });
      await store.listByUser(userId, { after: "b", limit: 1 });
      await store.delete(userId, "b", 1n);
      await store.ping();

      // Every operation again once a session has expired, so the paths that
      // prune expired index entries run too.
      const short = (id: string) => store.upsert(upsertInput(userId, id, { ttlMs: 30 }));
      const expired = async (id: string) => (await store.get(userId, id)) === undefined;
      await short("x");
      await waitFor("the session to expire", () => expired("x"));
      await store.listByUser(userId, all);
      await expect(store.touch(userId, "x", 1_000)).rejects.toBeInstanceOf(SessionNotFoundError);
      await store.touch(userId, "c", 80_000);
      await short("y");
      await waitFor("the session to expire", () => expired("y"));
      await store.delete(userId, "y", undefined);
      await short("z");
      await waitFor("the session to expire", () => expired("z"));
      await store.upsert(upsertInput(userId, "d"));
      await short("w");
      await waitFor("the session to expire", () => expired("w"));
      await store.deleteByUser(userId, ["c"]);

      // After a script cache flush, scripts are sent in full again.
      await admin.script("FLUSH");
      await store.upsert(upsertInput(userId, "e"));
      await store.listByUser(userId, all);
      await store.deleteByUser(userId, []);

      const counts = await commandCounts(admin);
      expect(counts.get("evalsha")).toBeGreaterThan(0);
      expect(counts.get("eval")).toBeGreaterThan(0);
      // The pruning and eviction paths did run.
      expect(counts.get("hdel")).toBeGreaterThan(0);
      expect(counts.get("zcount")).toBeGreaterThan(0);
      expect(counts.get("unlink")).toBeGreaterThan(0);
      expect(counts.get("scan") ?? 0, "SCAN calls").toBe(0);
      expect(counts.get("keys") ?? 0, "KEYS calls").toBe(0);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });
});

describe("RedisSessionStore layout", () => {
  let store: RedisSessionStore;
  let admin: Redis;
  const input = (userId: string, sessionId: string, ttlMs: number) =>
    upsertInput(userId, sessionId, { ttlMs, data: Buffer.from("payload|with|separators") });

  beforeAll(async () => {
    store = await openStore(shared(), { keyPrefix: "layout" });
    admin = shared().client();
  });

  afterAll(async () => {
    await store?.close();
    admin?.disconnect();
  });

  it("keeps one user's keys under one hash tag that the ids cannot break out of", () => {
    const keys = userKeys("p", "a{b}c%");
    expect(keys).toEqual({
      sessions: "p:{a%7Bb%7Dc%25}:h",
      byExpiry: "p:{a%7Bb%7Dc%25}:e",
      byId: "p:{a%7Bb%7Dc%25}:l",
      events: "p:{a%7Bb%7Dc%25}:x",
    });
  });

  it("stores a versioned header and the data as given, indexed by expiry and by id", async () => {
    const userId = uniqueUserId();
    const stored = await store.upsert(input(userId, "s1", 60_000));
    const keys = userKeys("layout", userId);
    const record = await admin.hgetBuffer(keys.sessions, "s1");
    expect(record?.toString()).toBe(
      `2|1|${stored.storageExpiresAtMs}|0|||0|0|payload|with|separators`,
    );
    expect(await admin.zscore(keys.byExpiry, "s1")).toBe(String(stored.storageExpiresAtMs));
    expect(await admin.zscore(keys.byId, "s1")).toBe("0");
  });

  it("keeps refresh tokens as digests, the rotated-away one with its deadline, and the rotation's bytes counted", async () => {
    const userId = uniqueUserId();
    const keys = userKeys("layout", userId);
    const [r1, r2] = [refreshTokenDigest("r1"), refreshTokenDigest("r2")];
    await store.upsert({ ...input(userId, "s1", 60_000), refreshDigest: r1 });
    const header = async () =>
      (await admin.hgetBuffer(keys.sessions, "s1"))?.toString("latin1").split("|").slice(0, 8);
    expect(await header()).toEqual(["2", "1", expect.any(String), "0", r1, "", "0", "0"]);
    const { session } = await store.refresh({
      userId,
      sessionId: "s1",
      presentedDigest: r1,
      newTokenId: "r2",
      newDigest: r2,
      ttlMs: 60_000,
      graceMs: 5_000,
      revokeAllOnReuse: false,
    });
    const rotatedAt = session.storageExpiresAtMs - 60_000;
    const tail = rotationTail("r2", rotatedAt);
    expect(await header()).toEqual([
      "2",
      "2",
      String(session.storageExpiresAtMs),
      "0",
      r2,
      r1,
      String(rotatedAt + 5_000),
      String(tail.byteLength),
    ]);
    expect(hex(session.data)).toBe(
      hex(Buffer.concat([Buffer.from("payload|with|separators"), tail])),
    );
    // Neither token id is kept in clear outside the session's own data.
    const record = (await admin.hgetBuffer(keys.sessions, "s1"))?.toString("latin1") ?? "";
    expect(record.indexOf("r1")).toBe(-1);
  });

  it("reads records of format 1, written before refresh tokens were recorded, and rewrites them as format 2", async () => {
    const userId = uniqueUserId();
    const keys = userKeys("layout", userId);
    const expiry = Date.now() + 60_000;
    await admin.hset(keys.sessions, "old", `1|4|${expiry}|0|payload|with|separators`);
    await admin.zadd(keys.byExpiry, expiry, "old");
    await admin.zadd(keys.byId, 0, "old");
    const read = await store.get(userId, "old");
    expect(read?.version).toBe(4n);
    expect(Buffer.from(read?.data ?? []).toString()).toBe("payload|with|separators");
    await expect(
      store.refresh({
        userId,
        sessionId: "old",
        presentedDigest: refreshTokenDigest("r1"),
        newTokenId: "r2",
        newDigest: refreshTokenDigest("r2"),
        ttlMs: 60_000,
        graceMs: 0,
        revokeAllOnReuse: false,
      }),
    ).rejects.toBeInstanceOf(RefreshStateMissingError);
    const touched = await store.touch(userId, "old", 30_000);
    expect(
      (await admin.hget(keys.sessions, "old"))?.startsWith(
        `2|4|${touched.storageExpiresAtMs}|0|||0|0|`,
      ),
    ).toBe(true);
    expect(view(await store.get(userId, "old"))).toEqual(view(touched));
  });

  it("gives the user's keys the TTL of the longest-lived session, and no longer", async () => {
    const userId = uniqueUserId();
    const keys = userKeys("layout", userId);
    const all = [keys.sessions, keys.byExpiry, keys.byId];
    const expiries = () =>
      Promise.all(all.map(async (key) => Number(await admin.pexpiretime(key))));
    await store.upsert(input(userId, "long", 60_000));
    const short = await store.upsert(input(userId, "short", 20_000));
    const long = await store.get(userId, "long");
    expect(await expiries()).toEqual(all.map(() => long?.storageExpiresAtMs));
    await store.delete(userId, "long", undefined);
    expect(await expiries()).toEqual(all.map(() => short.storageExpiresAtMs));
    const touched = await store.touch(userId, "short", 5_000);
    expect(await expiries()).toEqual(all.map(() => touched.storageExpiresAtMs));
    await store.delete(userId, "short", undefined);
    expect(await admin.exists(...all)).toBe(0);
  });

  it("leaves nothing behind for an idle user once the sessions expire", async () => {
    const userId = uniqueUserId();
    const keys = userKeys("layout", userId);
    const all = [keys.sessions, keys.byExpiry, keys.byId];
    await store.upsert(input(userId, "a", 300));
    await store.upsert(input(userId, "b", 400));
    expect(await admin.exists(...all)).toBe(3);
    // Redis' own expiry removes the keys; nothing of ours runs.
    await waitFor(
      "Redis to expire the idle user's keys",
      async () => (await admin.exists(...all)) === 0,
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  });

  it("prunes expired sessions on the next write", async () => {
    const userId = uniqueUserId();
    const keys = userKeys("layout", userId);
    // A longer-lived session keeps the keys themselves from expiring with
    // the short one, so only pruning can remove the short one.
    await store.upsert(input(userId, "keep", 60_000));
    await store.upsert(input(userId, "gone", 30));
    await waitFor(
      "the session to expire",
      async () => (await store.get(userId, "gone")) === undefined,
    );
    const held = async () => [
      await admin.hkeys(keys.sessions),
      await admin.zrange(keys.byExpiry, "0", "-1"),
      await admin.zrange(keys.byId, "0", "-1"),
    ];
    expect(await held()).toEqual([
      expect.arrayContaining(["gone", "keep"]),
      ["gone", "keep"],
      ["gone", "keep"],
    ]);
    await store.upsert(input(userId, "new", 60_000));
    expect(await held()).toEqual([
      expect.arrayContaining(["keep", "new"]),
      ["keep", "new"],
      ["keep", "new"],
    ]);
    expect((await held())[0]).toHaveLength(2);
  });

  it("reloads its scripts after the script cache is flushed", async () => {
    const userId = uniqueUserId();
    await admin.script("FLUSH");
    const stored = await store.upsert(input(userId, "s", 60_000));
    expect(stored.version).toBe(1n);
    expect((await store.listByUser(userId, { after: undefined, limit: 10 })).sessions).toHaveLength(
      1,
    );
  });

  it("does not send a command once the signal has aborted", async () => {
    const before = (await commandCounts(admin)).get("hget") ?? 0;
    const aborted = new AbortController();
    aborted.abort(new Error("deadline exceeded"));
    await expect(store.get(uniqueUserId(), "s", aborted.signal)).rejects.toThrow(
      "deadline exceeded",
    );
    expect((await commandCounts(admin)).get("hget") ?? 0).toBe(before);
  });

  it("stops waiting for a command already sent when the signal aborts", async () => {
    const userId = uniqueUserId();
    await store.upsert(input(userId, "s", 60_000));
    // Loads the Get script (a test above flushed the cache), so that the
    // held command is the script itself rather than a NOSCRIPT round first.
    await store.get(userId, "s");
    const before = (await commandCounts(admin)).get("hget") ?? 0;
    const controller = new AbortController();
    // Redis holds the command: a reply would settle it with the session.
    const resumed = await shared().pause(1000);
    const pending = store.get(userId, "s", controller.signal);
    controller.abort(new Error("cancelled"));
    await expect(pending).rejects.toThrow("cancelled");
    await resumed();
    // It had been sent (a sent command cannot be recalled) and ran later.
    expect((await commandCounts(admin)).get("hget") ?? 0).toBe(before + 1);
  });
});

describe("RedisSessionStore when Redis fails", () => {
  // Killed and paused by these tests, so apart from the shared one.
  const flaky = ownRedisServer();

  it("fails fast with StoreUnavailableError while Redis is down, then recovers", async () => {
    const client = await connectResp3(flaky());
    const store = new RedisSessionStore({ redis: client, keyPrefix: "x", maxSessionsPerUser: 0 });
    const delays: number[] = [];
    client.on("reconnecting", (delay: number) => delays.push(delay));
    try {
      await store.upsert(upsertInput("u", "s"));
      await flaky().kill();
      // Once the backoff has reached its cap, the next reconnect attempt is
      // a quarter of a second away. A command queued until then would only fail
      // when that attempt does; ours must fail before it is made.
      await waitFor("the reconnect backoff to reach its cap", () => delays.at(-1) === 250);
      const attempts = delays.length;
      await expect(store.get("u", "s")).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.listByUser("u", { after: undefined, limit: 1 })).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
      expect(delays).toHaveLength(attempts);
      await flaky().restart();
      // A fresh server has no data (nothing is persisted), but answers again.
      await waitFor(
        "the store to reconnect",
        async () => (await store.get("u", "s")) === undefined,
        { timeoutMs: 10_000 },
      );
      // It never waited longer than the cap between attempts.
      expect(Math.max(...delays)).toBe(250);
    } finally {
      await store.close();
    }
  });

  it("times a stuck command out as StoreUnavailableError", async () => {
    const store = await openStore(flaky(), { commandTimeoutMs: 200 });
    try {
      // Held for far longer than the command timeout: a reply would settle
      // the get with undefined, so only the timeout can reject it.
      const resumed = await flaky().pause(1000);
      const error = await store.get("u", "s").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as Error).cause).toMatchObject({
        message: expect.stringMatching(/timed out/i),
      });
      await resumed();
    } finally {
      await store.close();
    }
  });

  it("gives up connecting after the connect timeout, naming the address and the cause", async () => {
    const down = await startRedisServer();
    const url = `redis://:not-in-the-message@127.0.0.1:${down.port}`;
    await down.stop();
    const failure = await connectRedis(
      { url, cluster: false, commandTimeoutMs: 100, connectTimeoutMs: 300 },
      logger,
    ).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toBe(
      `Redis at 127.0.0.1:${down.port} was not ready within 300 ms (ECONNREFUSED)`,
    );
  });
});
