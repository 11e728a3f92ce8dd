import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../harness/free-port.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import {
  NotReplicatedError,
  SessionNotFoundError,
  StoreUnavailableError,
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
  // Proven by a write that WAIT sees acknowledged: a replica that reports
  // its link up, and even one its primary lists online, may not answer
  // WAIT for most of a second yet (the first WAITs of the file ran out in
  // 2 runs of 5).
  const client = primary.client();
  try {
    await waitFor(
      "the replica to acknowledge a write",
      async () => {
        await client.set("harness:replica-probe", "1");
        return (await client.wait(1, 100)) === 1;
      },
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
 * A store of the Redis at `url` (the file's primary unless given) whose
 * writes wait for one replica, with REDIS_COMMAND_TIMEOUT_MS's default.
 */
async function openStore(options: RedisStoreOptions, url = primary.url) {
  const { store } = await openRedisStore(
    { url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
    { ...options, waitReplicas: { replicas: 1, timeoutMs: WAIT_TIMEOUT_MS } },
  );
  return store;
}

describe("writes that wait for a replica", () => {
  describeStoreContract("redis, writes waiting for a replica", openStore);

  let opened: RedisSessionStore | undefined;
  /** Redis servers a test starts for itself. */
  let own: RedisServer[] = [];
  afterEach(async () => {
    replica.resume();
    await opened?.close();
    opened = undefined;
    await Promise.all(own.map((server) => server.stop()));
    own = [];
  });

  /** openStore, closed after the test. */
  async function openTestStore(keyPrefix: string, url?: string) {
    opened = await openStore({ maxSessionsPerUser: 0, keyPrefix }, url);
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
    // Five writes wait for their WAIT on the writes' connection (one batch,
    // or two); reads go on their own connection, at once.
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

  it("under many writers, each failed write was applied before it failed, never after: none waits in Redis behind another's WAIT", async () => {
    // Before writes went out in batches, each was sent as soon as it came:
    // behind a WAIT that runs out (400 ms) Redis runs nothing else from the
    // connection, so with a dozen writers the scripts queued in Redis behind
    // a growing row of WAITs, failed at the command timeout (1 s) unsent to
    // the script engine, and were applied seconds later, after a read had
    // found them absent: 26 of 50 such writes in a trial.
    const store = await openTestStore("many");
    const userId = uniqueUserId();
    await store.upsert(upsertInput(userId, "warm"));
    replica.suspend();
    const startedAt = performance.now();
    const outcomes: { error: unknown; applied: boolean; tookMs: number }[] = [];
    await Promise.all(
      Array.from({ length: 12 }, async (_, writer) => {
        for (let i = 0; performance.now() - startedAt < 1500; i++) {
          const sessionId = `w${writer}-${i}`;
          const sentAt = performance.now();
          const error = await store.upsert(upsertInput(userId, sessionId)).then(
            () => undefined,
            (failure: unknown) => failure,
          );
          const tookMs = performance.now() - sentAt;
          // Read at once, on the reads' connection: a failed write is there
          // now or never.
          const applied = (await store.get(userId, sessionId)) !== undefined;
          outcomes.push({ error, applied, tookMs });
        }
      }),
    );
    replica.resume();
    expect(outcomes.length).toBeGreaterThanOrEqual(24);
    expect(outcomes.filter(({ applied }) => !applied).length).toBe(0);
    for (const { error } of outcomes) expect(error).toBeInstanceOf(NotReplicatedError);
    // A write waits for the batch in flight, then for its own: two WAITs.
    expect(Math.max(...outcomes.map((o) => o.tookMs))).toBeLessThan(2 * WAIT_TIMEOUT_MS + 300);
  });

  it("fail NotReplicatedError, never an unexpected error, when the primary is demoted while they wait", async () => {
    // A primary of its own with a replica that does not answer, so that the
    // write's WAIT blocks; then the primary is made a replica (of a port
    // nothing listens on), as a failover does to the old primary: Redis
    // ends the blocked WAIT with "UNBLOCKED ... (master -> replica?)".
    const demoted = await startRedisServer();
    own.push(demoted);
    const frozen = await startRedisServer(["--replicaof", "127.0.0.1", String(demoted.port)]);
    own.push(frozen);
    const admin = demoted.client();
    try {
      await waitFor(
        "the replica to be in sync",
        async () => (await admin.info("replication")).includes("state=online"),
        { timeoutMs: 10_000, intervalMs: 20 },
      );
      const store = await openTestStore("demoted", demoted.url);
      const userId = uniqueUserId();
      frozen.suspend();
      const write = store.upsert(upsertInput(userId, "s")).catch((error: unknown) => error);
      await waitFor("the write's WAIT to block", async () =>
        /blocked_clients:1\b/.test(await admin.info("clients")),
      );
      await admin.call("REPLICAOF", "127.0.0.1", String(await freePort()));
      const failure = await write;
      expect(failure).toBeInstanceOf(NotReplicatedError);
      expect(String((failure as NotReplicatedError).cause)).toMatch(/^ReplyError: UNBLOCKED/);
    } finally {
      admin.disconnect();
    }
  });

  it("fail NotReplicatedError, never an unexpected error, when the node they reach is already a replica", async () => {
    // A replica that takes writes (replica-read-only no) stands for a
    // primary demoted between a write and its WAIT: the script runs, and
    // WAIT answers "WAIT cannot be used with replica instances".
    const writable = await startRedisServer([
      "--replicaof",
      "127.0.0.1",
      String(await freePort()),
      "--replica-read-only",
      "no",
    ]);
    own.push(writable);
    const store = await openTestStore("replica", writable.url);
    const userId = uniqueUserId();
    const failure = await store.upsert(upsertInput(userId, "s")).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NotReplicatedError);
    expect(String((failure as NotReplicatedError).cause)).toMatch(
      /WAIT cannot be used with replica instances/,
    );
    // Applied where it ran: "may have been applied" is what happened.
    expect(await store.get(userId, "s")).toBeDefined();
  });

  it("a write on a demoted primary, waiting or not, reaches a client as UNAVAILABLE, never READONLY", async () => {
    // A read-only replica stands for a primary demoted under the service:
    // every write script answers READONLY, which must read as "try again"
    // (through Sentinel, the client also reconnects on it).
    const demoted = await startRedisServer(["--replicaof", "127.0.0.1", String(await freePort())]);
    own.push(demoted);
    const { store: plain } = await openRedisStore(
      { url: demoted.url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
      { maxSessionsPerUser: 0, keyPrefix: "readonly" },
    );
    const waiting = await openTestStore("readonly", demoted.url);
    try {
      for (const store of [plain, waiting]) {
        const failure = await store
          .upsert(upsertInput(uniqueUserId(), "s"))
          .catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(StoreUnavailableError);
        expect(failure).not.toBeInstanceOf(NotReplicatedError);
        expect(String((failure as Error).cause)).toMatch(/^ReplyError: READONLY/);
        const server = await startTestServer(store);
        const pool = clientPool(server.baseUrl);
        try {
          await expectCode(
            pool
              .sessions()
              .upsert({ session: sessionFixture(uniqueUserId(), "s"), ttl: ttl(60_000) }),
            Code.Unavailable,
            "session storage is unavailable - retry later",
          );
        } finally {
          pool.close();
          await server.stop();
        }
      }
    } finally {
      await plain.close();
    }
  });
});
