import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { createLogger } from "../../src/observability/logger.js";
import { connectRedis, type RedisClientOptions } from "../../src/store/redis/redis-client.js";
import { uniqueUserId } from "../support/ids.js";
import {
  createTestPki,
  type Issued,
  mutualRedisTls,
  type TestCa,
  type TestPki,
} from "../support/pki.js";
import { LogCapture } from "../support/test-server.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { expectFailoverFollowed } from "./sentinel-failover.js";

// The Redis store through Redis Sentinel over TLS: the sentinels and the
// data nodes (a primary and a replica) serve TLS only and ask for client
// certificates (tls-auth-clients), all with one private CA. Operations,
// a failover followed over TLS, and the failures an operator must be able
// to tell apart: a CA that does not sign the servers, no client certificate.

let pki: TestPki;
let ca: TestCa;
let client: Issued;
let set: RedisSentinelSet;

beforeAll(async () => {
  pki = createTestPki();
  ca = pki.ca("sentinel-tls-ca");
  const files = mutualRedisTls(ca, "sentinel-tls");
  client = files.client;
  set = await startRedisSentinelSet({ tls: files.tls });
}, 60_000);

afterAll(async () => {
  await set?.stop();
  pki?.remove();
});

/** The sentinels and the data nodes over TLS, as REDIS_SENTINEL_TLS=true and REDIS_TLS=true ask. */
function sentinelOverTls(extra: Partial<RedisClientOptions> = {}): RedisClientOptions {
  return {
    sentinel: { addresses: set.addresses, name: set.name, tls: true, nodesTls: true },
    tls: { ca: ca.cert, cert: client.cert, key: client.key },
    commandTimeoutMs: 2000,
    connectTimeoutMs: 10_000,
    ...extra,
  } as RedisClientOptions;
}

async function openStore(options: RedisStoreOptions) {
  const { redis, store } = await openRedisStore(sentinelOverTls(), options);
  expect(redis).toBeInstanceOf(Redis);
  return store;
}

/** A distinctive password, so a leak of it cannot be a coincidence. */
function password(): string {
  return `pw-${randomBytes(12).toString("hex")}`;
}

/** What connectRedis rejects with for `options`, and everything it logged meanwhile. */
async function connectFailure(options: RedisClientOptions) {
  const logs = new LogCapture();
  const error = await connectRedis(options, createLogger("debug", logs)).then(
    (redis) => {
      redis.disconnect();
      return undefined;
    },
    (e: unknown) => e as Error,
  );
  expect(error, "the connection to fail").toBeInstanceOf(Error);
  return { message: (error as Error).message, logs: logs.text };
}

describe("through Redis Sentinel over TLS, with client certificates", () => {
  it("serves the store's operations, from the primary", async () => {
    const store = await openStore({ maxSessionsPerUser: 2, keyPrefix: "sentinel-tls" });
    const primary = set.primary.client();
    try {
      const userId = uniqueUserId();
      expect((await store.upsert(upsertInput(userId, "a"))).version).toBe(1n);
      await store.upsert(upsertInput(userId, "b"));
      await store.upsert(upsertInput(userId, "c")); // one of a and b goes: the cap is 2
      expect((await store.touch(userId, "c", 30_000)).sessionId).toBe("c");
      expect((await store.get(userId, "c"))?.version).toBe(1n);
      const page = await store.listByUser(userId, { after: undefined, limit: 10 });
      expect(page.sessions.map((session) => session.sessionId)).toHaveLength(2);
      expect(page.sessions.map((session) => session.sessionId)).toContain("c");
      // Kept on the primary, which the client reached over TLS (it has no other port).
      expect(await primary.hexists(`sentinel-tls:{${userId}}:h`, "c")).toBe(1);
      expect(await store.delete(userId, "c", undefined)).toBe(true);
      expect(await store.deleteByUser(userId, [])).toBe(1);
      expect(await primary.exists(`sentinel-tls:{${userId}}:h`)).toBe(0);
      await store.ping();
    } finally {
      primary.disconnect();
      await store.close();
    }
  });

  it("fails when it does not trust the CA, naming the sentinel and the TLS cause, never a password", async () => {
    const rogue = pki.ca("sentinel-tls-rogue-ca");
    const sentinelPassword = password();
    const dataPassword = password();
    const options = sentinelOverTls({
      tls: { ca: rogue.cert, cert: client.cert, key: client.key },
    });
    if (!("sentinel" in options)) throw new Error("not a Sentinel location");
    const { message, logs } = await connectFailure({
      ...options,
      sentinel: { ...options.sentinel, password: sentinelPassword },
      password: dataPassword,
      connectTimeoutMs: 1500,
    });
    // Node names what failed: SELF_SIGNED_CERT_IN_CHAIN when Redis sends its
    // CA along, UNABLE_TO_VERIFY_LEAF_SIGNATURE when it does not.
    const sentinels = set.addresses.replaceAll(".", "\\.");
    expect(message).toMatch(
      new RegExp(
        `^Redis at the primary of ${set.name} via sentinels ${sentinels} was not ready within 1500 ms ` +
          `\\(sentinel 127\\.0\\.0\\.1:\\d+: TLS: the server's certificate is not trusted \\([A-Z_]+\\)\\)$`,
      ),
    );
    expect(logs).toContain("TLS: the server's certificate is not trusted");
    for (const secret of [sentinelPassword, dataPassword]) {
      expect(message).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  it("is refused without a client certificate (tls-auth-clients), saying so", async () => {
    const { message } = await connectFailure(
      sentinelOverTls({ tls: { ca: ca.cert }, connectTimeoutMs: 1500 }),
    );
    // The sentinel's TLS alert, as Node reports it, or the reset that
    // follows it when the alert loses the race (on a busy machine).
    expect(message).toMatch(
      /was not ready within 1500 ms \(sentinel 127\.0\.0\.1:\d+: (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)\)$/,
    );
  });

  it("follows SENTINEL FAILOVER to the new primary over TLS, keeping what was replicated", async () => {
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: "tls-failover" });
    try {
      await expectFailoverFollowed(store, set, "tls-failover");
    } finally {
      await store.close();
    }
  }, 60_000);
});
