import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import {
  NotReplicatedError,
  SessionNotFoundError,
  VersionMismatchError,
} from "../../src/store/errors.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import type { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { clientPool } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { startTestServer } from "../support/test-server.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

// Writes that wait for a replica (REDIS_WAIT_REPLICAS): a primary and one
// replica of it, both started here. The replica is frozen (SIGSTOP) to make
// WAIT run out, as a replica that lags or is cut off would.

const WAIT_TIMEOUT_MS = 400;

let primary: RedisServer;
let replica: RedisServer;

beforeAll(async () => {
  primary = await startRedisServer();
  replica = await startRedisServer(["--replicaof", "127.0.0.1", String(primary.port)]);
  const client = replica.client();
  try {
    await waitFor(
      "the replica to be in sync with its primary",
      async () => (await client.info("replication")).includes("master_link_status:up"),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
  } finally {
    client.disconnect();
  }
});

afterAll(async () => {
  replica?.resume();
  await Promise.all([replica?.stop(), primary?.stop()]);
});

/**
 * A store whose writes wait for one replica, with the given key prefix. Its
 * command timeout leaves room for five WAITs in a row (see "leave reads
 * free").
 */
async function openStore(options: RedisStoreOptions) {
  const { store } = await openRedisStore(
    { url: primary.url, cluster: false, commandTimeoutMs: 5000, connectTimeoutMs: 5000 },
    { ...options, waitReplicas: { replicas: 1, timeoutMs: WAIT_TIMEOUT_MS } },
  );
  return store;
}

describe("writes that wait for a replica", () => {
  describeStoreContract("redis, writes waiting for a replica", openStore);

  let opened: RedisSessionStore | undefined;
  afterEach(async () => {
    replica.resume();
    await opened?.close();
    opened = undefined;
  });

  /** openStore, closed after the test. */
  async function openTestStore(keyPrefix: string) {
    opened = await openStore({ maxSessionsPerUser: 0, keyPrefix });
    return opened;
  }

  /** Runs `call` and says how long it took, ms. */
  async function timed<T>(call: () => Promise<T>): Promise<[T, number]> {
    const startedAt = performance.now();
    const result = await call();
    return [result, performance.now() - startedAt];
  }

  it("are on the replica as soon as they are acknowledged", async () => {
    const store = await openTestStore("acked");
    const onReplica = replica.client();
    try {
      for (let i = 0; i < 50; i++) {
        const userId = uniqueUserId();
        await store.upsert(upsertInput(userId, `s${i}`));
        // Read from the replica at once, no polling: WAIT has already seen it there.
        expect(await onReplica.hexists(userKeys("acked", userId).sessions, `s${i}`)).toBe(1);
        const touched = await store.touch(userId, `s${i}`, 120_000);
        expect(await onReplica.zscore(userKeys("acked", userId).byExpiry, `s${i}`)).toBe(
          String(touched.storageExpiresAtMs),
        );
      }
    } finally {
      onReplica.disconnect();
    }
  });

  it("fail NotReplicatedError when the replica does not acknowledge in time, and stay applied", async () => {
    const store = await openTestStore("unacked");
    const userId = uniqueUserId();
    const before = await store.upsert(upsertInput(userId, "s"));
    replica.suspend();
    const [failure, waitedMs] = await timed(() =>
      store.upsert(upsertInput(userId, "s")).catch((error: unknown) => error),
    );
    expect(failure).toBeInstanceOf(NotReplicatedError);
    expect((failure as NotReplicatedError).message).toBe(
      "the write may have been applied: 0 of 1 replicas acknowledged it in time",
    );
    expect(waitedMs).toBeGreaterThanOrEqual(WAIT_TIMEOUT_MS - 5);
    // The primary has it: "may have been applied" is no figure of speech.
    expect((await store.get(userId, "s"))?.version).toBe(before.version + 1n);
    await expect(store.delete(userId, "s", undefined)).rejects.toBeInstanceOf(NotReplicatedError);
    expect(await store.get(userId, "s")).toBeUndefined();
  });

  it("do not wait when nothing was written", async () => {
    const store = await openTestStore("nowrite");
    const userId = uniqueUserId();
    await store.upsert(upsertInput(userId, "s"));
    replica.suspend();
    const refusals = [
      () => store.upsert(upsertInput(userId, "s", { expectedVersion: 99n })),
      () => store.touch(userId, "missing", 60_000),
      () => store.delete(userId, "s", 99n),
    ];
    for (const refusal of refusals) {
      const [failure, tookMs] = await timed(() => refusal().catch((error: unknown) => error));
      expect(failure).toSatisfy(
        (error) => error instanceof VersionMismatchError || error instanceof SessionNotFoundError,
      );
      expect(tookMs).toBeLessThan(WAIT_TIMEOUT_MS / 2);
    }
    const [deleted, deleteMs] = await timed(() => store.delete(userId, "missing", undefined));
    expect(deleted).toBe(false);
    const [count, deleteByUserMs] = await timed(() => store.deleteByUser(uniqueUserId(), []));
    expect(count).toBe(0);
    expect(Math.max(deleteMs, deleteByUserMs)).toBeLessThan(WAIT_TIMEOUT_MS / 2);
  });

  it("leave reads free while writes wait", async () => {
    const store = await openTestStore("reads");
    const userId = uniqueUserId();
    await store.upsert(upsertInput(userId, "s"));
    replica.suspend();
    const waiting = Array.from({ length: 5 }, (_, i) =>
      store.upsert(upsertInput(userId, `w${i}`)).catch((error: unknown) => error),
    );
    // Five writes queue behind each other's WAIT on the writes' connection
    // (each runs out in turn, 2 s in all); reads go on their own connection,
    // at once.
    const [session, readMs] = await timed(() => store.get(userId, "s"));
    expect(session?.sessionId).toBe("s");
    expect(readMs).toBeLessThan(WAIT_TIMEOUT_MS / 2);
    const [listed, listMs] = await timed(() =>
      store.listByUser(userId, { limit: 10, after: undefined }),
    );
    expect(listed?.sessions.length).toBeGreaterThanOrEqual(1);
    expect(listMs).toBeLessThan(WAIT_TIMEOUT_MS / 2);
    for (const outcome of await Promise.all(waiting)) {
      expect(outcome).toBeInstanceOf(NotReplicatedError);
    }
  });

  it("reach a client as UNAVAILABLE saying the write may have been applied and what to do", async () => {
    const store = await openTestStore("rpc");
    const server = await startTestServer(store);
    const pool = clientPool(server.baseUrl);
    try {
      const userId = uniqueUserId();
      const sessions = pool.sessions();
      await sessions.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
      replica.suspend();
      await expectCode(
        sessions.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }),
        Code.Unavailable,
        "the write may have been applied: 0 of 1 replicas acknowledged it in time - read the session again, or retry with expected_version set to the version you know",
      );
    } finally {
      pool.close();
      await server.stop();
    }
  });
});
