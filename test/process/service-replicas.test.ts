import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Session, SessionSchema } from "../../gen/sessionstore/v1/session_store_pb.js";
import {
  type RedisCluster,
  type RedisServer,
  startRedisCluster,
  startRedisServer,
} from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import type { ClientKind } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  clockOffset,
  expiryMs,
  getOrAbsent,
  type Replica,
  redisNowMs,
  type SessionsClient,
  startReplica,
} from "../support/replicas.js";

// Issue 10, scale out: several server processes on one Redis (standalone
// and Cluster) behave as one service. A session written through one is
// read, touched, CAS-updated and deleted through another; conflicts are
// detected across them; and expiry agrees even when one process's clock is
// minutes off, because it comes from Redis' clock (the scripts read TIME).
// test-clock-offset.test.ts shows that the offset does move expiry where
// the process's own clock decides it, so the skew cases here could fail.

const MINUTES_5 = 5 * 60_000;
const GRPC: ClientKind = { protocol: "grpc" };
const GRPC_WEB: ClientKind = { protocol: "grpc-web" };
const CONNECT: ClientKind = { protocol: "connect" };
const CONNECT_JSON_H1: ClientKind = { protocol: "connect", binary: false, httpVersion: "1.1" };

/** The session with one field changed, so that each write is told apart. */
function variant(session: Session, lastKnownIp: string): Session {
  return create(SessionSchema, { ...session, lastKnownIp });
}

/** The encoding of a session as a client received it: equal bytes, equal sessions. */
function bytes(session: Session | undefined): Uint8Array {
  if (!session) throw new Error("no session in the response");
  return toBinary(SessionSchema, session);
}

/**
 * Insert-only Upsert in `a`; Get, Touch in `b`; CAS in `a` with the version
 * `b` returned; a stale CAS and a stale Delete fail ABORTED on either side;
 * Delete with expected_version in `b`; NOT_FOUND in `a` for every call.
 */
async function sessionAcrossReplicas(a: Replica, b: Replica): Promise<void> {
  const inA = a.sessions(GRPC);
  const inB = b.sessions(GRPC_WEB);
  const inBJson = b.sessions(CONNECT_JSON_H1);
  const userId = uniqueUserId();
  const sent = sessionFixture(userId, "s");

  const inserted = (await inA.upsert({ session: sent, ttl: ttl(60_000), expectedVersion: 0n }))
    .session;
  expect(inserted?.version).toBe(1n);
  await expectCode(
    inB.upsert({ session: sent, ttl: ttl(60_000), expectedVersion: 0n }),
    Code.AlreadyExists,
  );
  const got = (await inB.get({ userId, sessionId: "s" })).session;
  expect(bytes(got)).toEqual(bytes(inserted));

  const touched = (await inBJson.touch({ userId, sessionId: "s", ttl: ttl(120_000) })).session;
  expect(touched?.version).toBe(1n);
  expect(expiryMs(touched)).toBeGreaterThan(expiryMs(inserted));
  expect(bytes((await inA.get({ userId, sessionId: "s" })).session)).toEqual(bytes(touched));

  const update = variant(sent, "198.51.100.2");
  const updated = (
    await inA.upsert({ session: update, ttl: ttl(60_000), expectedVersion: touched?.version })
  ).session;
  expect(updated?.version).toBe(2n);
  // B still holds version 1: its write must not go through.
  await expectCode(
    inB.upsert({ session: variant(sent, "198.51.100.3"), ttl: ttl(60_000), expectedVersion: 1n }),
    Code.Aborted,
  );
  await expectCode(inA.delete({ userId, sessionId: "s", expectedVersion: 1n }), Code.Aborted);
  expect(bytes((await inBJson.get({ userId, sessionId: "s" })).session)).toEqual(bytes(updated));

  expect(await inBJson.delete({ userId, sessionId: "s", expectedVersion: 2n })).toMatchObject({
    deleted: true,
  });
  await expectCode(inA.get({ userId, sessionId: "s" }), Code.NotFound);
  await expectCode(inA.touch({ userId, sessionId: "s", ttl: ttl(60_000) }), Code.NotFound);
  await expectCode(
    inA.upsert({ session: update, ttl: ttl(60_000), expectedVersion: 2n }),
    Code.NotFound,
  );
  expect(await inA.delete({ userId, sessionId: "s" })).toMatchObject({ deleted: false });
}

/**
 * Sessions written through both replicas are listed by both (a page token
 * from one continues in the other); DeleteByUser in `b` leaves `a` only the
 * session it kept.
 */
async function userAcrossReplicas(a: Replica, b: Replica): Promise<void> {
  const inA = a.sessions(CONNECT);
  const inB = b.sessions(GRPC);
  const userId = uniqueUserId();
  const ids = ["s1", "s2", "s3", "s4", "s5"];
  await Promise.all(
    ids.map((id, i) =>
      (i % 2 === 0 ? inA : inB).upsert({ session: sessionFixture(userId, id), ttl: ttl(60_000) }),
    ),
  );
  const first = await inA.listByUser({ userId, pageSize: 3 });
  const rest = await inB.listByUser({ userId, pageSize: 3, pageToken: first.nextPageToken });
  expect(rest.nextPageToken).toBe("");
  const pages = [...first.sessions, ...rest.sessions];
  expect(pages.map((s) => s.id)).toEqual(ids);
  const whole = await inB.listByUser({ userId });
  expect(whole.sessions.map(bytes)).toEqual(pages.map(bytes));

  expect((await inB.deleteByUser({ userId, exceptSessionIds: ["s2"] })).deletedCount).toBe(4n);
  expect((await inA.listByUser({ userId })).sessions.map((s) => s.id)).toEqual(["s2"]);
  await expectCode(inA.get({ userId, sessionId: "s1" }), Code.NotFound);
  expect((await inA.deleteByUser({ userId, exceptSessionIds: [] })).deletedCount).toBe(1n);
  expect((await inB.listByUser({ userId })).sessions).toEqual([]);
}

/**
 * Round after round, four writers (two through each replica, on different
 * protocols) try a CAS on one session with the same expected version, all
 * at once: exactly one wins, with the next version, and the others fail
 * ABORTED, so every round has a conflict detected across processes.
 */
async function casRaceAcrossReplicas(a: Replica, b: Replica): Promise<void> {
  const writers: { name: string; client: SessionsClient }[] = [
    { name: `${a.name}/grpc`, client: a.sessions(GRPC) },
    { name: `${a.name}/connect`, client: a.sessions(CONNECT) },
    { name: `${b.name}/grpc`, client: b.sessions(GRPC) },
    { name: `${b.name}/grpc-web`, client: b.sessions(GRPC_WEB) },
  ];
  const readers = [a.sessions(GRPC), b.sessions(GRPC)];
  const userId = uniqueUserId();
  const base = sessionFixture(userId, "raced");
  await readers[0]?.upsert({ session: base, ttl: ttl(60_000), expectedVersion: 0n });
  const versions: bigint[] = [];
  let lastWinner = "";
  for (let round = 0; round < 12; round++) {
    const read = (await readers[round % 2]?.get({ userId, sessionId: "raced" }))?.session;
    expect(read?.version).toBe(BigInt(round + 1));
    expect(read?.lastKnownIp).toBe(round === 0 ? base.lastKnownIp : lastWinner);
    const expectedVersion = read?.version ?? 0n;
    const order = [...writers].sort(() => Math.random() - 0.5);
    const outcomes = await Promise.allSettled(
      order.map(({ name, client }) =>
        client.upsert({ session: variant(base, name), ttl: ttl(60_000), expectedVersion }),
      ),
    );
    const won = outcomes.flatMap((outcome, i) =>
      outcome.status === "fulfilled" ? [{ name: order[i]?.name ?? "", outcome }] : [],
    );
    expect(won, `round ${round}: exactly one writer wins`).toHaveLength(1);
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") {
        expect(outcome.reason).toBeInstanceOf(ConnectError);
        expect(Code[(outcome.reason as ConnectError).code]).toBe(Code[Code.Aborted]);
      }
    }
    const winner = won[0];
    versions.push(winner?.outcome.value.session?.version ?? 0n);
    lastWinner = winner?.name ?? "";
  }
  expect(new Set(versions).size).toBe(versions.length);
  expect(versions).toEqual(Array.from({ length: 12 }, (_, i) => BigInt(i + 2)));
}

/**
 * A session written through `a` with a 2 s ttl, beside a longer-lived one
 * of the same user: `a` and the skewed `b`
 * report the expiry Redis' clock gives, both serve it while Redis' clock is
 * at or before that expiry, and both answer NOT_FOUND after it. Each
 * observation is bracketed by Redis TIME read just before and just after
 * it, so the check is exact whatever the machine's speed: a session found
 * means Redis' time was at most its expiry when the call started; NOT_FOUND
 * means it had passed by the time the call ended. Afterwards both list
 * only the longer-lived session.
 */
async function shortTtlExpiresTogether(a: Replica, b: Replica, redis: Redis): Promise<void> {
  const inA = a.sessions(GRPC);
  const inB = b.sessions(CONNECT);
  const userId = uniqueUserId();
  // A longer-lived session of the same user keeps the user's keys in Redis
  // (they expire with its longest-lived session), so that only the
  // scripts' clock, not Redis expiring the keys, can end the short one.
  await inA.upsert({ session: sessionFixture(userId, "keeper"), ttl: ttl(60_000) });
  const before = await redisNowMs(redis);
  const written = (await inA.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(2000) }))
    .session;
  const after = await redisNowMs(redis);
  const expiry = expiryMs(written);
  expect(expiry).toBeGreaterThanOrEqual(before + 2000);
  expect(expiry).toBeLessThanOrEqual(after + 2000);

  const seen: { replica: string; found: boolean; expiry?: number; from: number; to: number }[] = [];
  await waitFor(
    `the session to be gone in ${a.name} and ${b.name}`,
    async () => {
      const from = await redisNowMs(redis);
      const [fromA, fromB] = await Promise.all([
        getOrAbsent(inA, userId, "s"),
        getOrAbsent(inB, userId, "s"),
      ]);
      const to = await redisNowMs(redis);
      for (const [replica, session] of [
        [a.name, fromA],
        [b.name, fromB],
      ] as const) {
        seen.push({
          replica,
          found: session !== undefined,
          ...(session ? { expiry: expiryMs(session) } : {}),
          from,
          to,
        });
      }
      return fromA === undefined && fromB === undefined;
    },
    { timeoutMs: expiry - after + 5000, intervalMs: 50 },
  );
  for (const replica of [a.name, b.name]) {
    const mine = seen.filter((s) => s.replica === replica);
    expect(mine[0]?.found, `${replica} serves the session at first`).toBe(true);
    for (const s of mine) {
      if (s.found) {
        expect(s.expiry, `${replica} reports Redis' expiry`).toBe(expiry);
        expect(s.from, `${replica} served it only until it expired`).toBeLessThanOrEqual(expiry);
      } else {
        expect(s.to, `${replica} said NOT_FOUND only after it expired`).toBeGreaterThan(expiry);
      }
    }
    // Once gone, it stays gone.
    const firstGone = mine.findIndex((s) => !s.found);
    expect(mine.slice(firstGone).every((s) => !s.found)).toBe(true);
  }
  for (const client of [inA, inB]) {
    expect((await client.listByUser({ userId })).sessions.map((s) => s.id)).toEqual(["keeper"]);
  }
}

/**
 * A session written and touched through the skewed `b` with a minute to
 * live expires a minute from Redis' now, as `a` and `b` both say: not
 * already expired (clock behind) nor minutes longer-lived (clock ahead).
 */
async function skewedWriterKeepsRedisTime(a: Replica, b: Replica, redis: Redis): Promise<void> {
  const inA = a.sessions(GRPC);
  const inB = b.sessions(GRPC_WEB);
  const userId = uniqueUserId();
  let before = await redisNowMs(redis);
  const written = (await inB.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }))
    .session;
  let after = await redisNowMs(redis);
  expect(expiryMs(written)).toBeGreaterThanOrEqual(before + 60_000);
  expect(expiryMs(written)).toBeLessThanOrEqual(after + 60_000);
  expect(bytes(await getOrAbsent(inA, userId, "s"))).toEqual(bytes(written));
  expect(bytes(await getOrAbsent(inB, userId, "s"))).toEqual(bytes(written));
  expect((await inA.listByUser({ userId })).sessions.map(bytes)).toEqual([bytes(written)]);

  before = await redisNowMs(redis);
  const touched = (await inB.touch({ userId, sessionId: "s", ttl: ttl(30_000) })).session;
  after = await redisNowMs(redis);
  expect(expiryMs(touched)).toBeGreaterThanOrEqual(before + 30_000);
  expect(expiryMs(touched)).toBeLessThanOrEqual(after + 30_000);
  expect(expiryMs(await getOrAbsent(inA, userId, "s"))).toBe(expiryMs(touched));
}

/**
 * expires_at is judged by Redis' clock in every replica: `ahead` (clock
 * minutes fast) accepts an end 5 s ahead of Redis' now, though its own
 * clock says it passed minutes ago; `behind` (clock minutes slow) refuses
 * an end 5 s behind Redis' now, though its own clock puts it minutes ahead.
 */
async function expiresAtByRedisTime(
  a: Replica,
  ahead: Replica,
  behind: Replica,
  redis: Redis,
): Promise<void> {
  const userId = uniqueUserId();
  const end = (await redisNowMs(redis)) + 5000;
  const written = (
    await ahead.sessions(GRPC).upsert({
      session: sessionFixture(userId, "soon", { expiresAt: timestampFromMs(end) }),
      ttl: ttl(60_000),
    })
  ).session;
  expect(expiryMs(written)).toBe(end);
  expect(expiryMs(await getOrAbsent(a.sessions(GRPC), userId, "soon"))).toBe(end);

  await expectCode(
    behind.sessions(CONNECT).upsert({
      session: sessionFixture(userId, "past", {
        expiresAt: timestampFromMs((await redisNowMs(redis)) - 5000),
      }),
      ttl: ttl(60_000),
    }),
    Code.InvalidArgument,
    "session.expires_at must be in the future",
  );
  expect(await getOrAbsent(a.sessions(GRPC), userId, "past")).toBeUndefined();
}

describe("two server processes on one standalone Redis", () => {
  let redis: RedisServer;
  let clock: Redis;
  const replicas: Replica[] = [];
  let a: Replica;
  let ahead: Replica;
  let behind: Replica;

  beforeAll(async () => {
    redis = await startRedisServer();
    clock = redis.client();
    const env = { REDIS_URL: redis.url, KEY_PREFIX: "replicas" };
    [a, ahead, behind] = await Promise.all([
      startReplica("A", env, replicas),
      startReplica("B+5min", { ...env, ...clockOffset(MINUTES_5) }, replicas),
      startReplica("B-5min", { ...env, ...clockOffset(-MINUTES_5) }, replicas),
    ]);
  });

  afterAll(async () => {
    await Promise.all(replicas.splice(0).map((replica) => replica.stop()));
    clock?.disconnect();
    await redis?.stop();
  });

  it("read, touch, CAS and delete one session across them", async () => {
    await sessionAcrossReplicas(a, ahead);
    await sessionAcrossReplicas(behind, a);
  });

  it("list and delete a user's sessions across them", async () => {
    await userAcrossReplicas(a, behind);
  });

  it("let exactly one of racing CAS writers through per version", async () => {
    await casRaceAcrossReplicas(a, ahead);
  });

  it("expire a short-lived session together by Redis' clock, a clock 5 min ahead or behind", async () => {
    await Promise.all([
      shortTtlExpiresTogether(a, ahead, clock),
      shortTtlExpiresTogether(a, behind, clock),
    ]);
  });

  it("keep a session written through a skewed process for its ttl by Redis' clock", async () => {
    await skewedWriterKeepsRedisTime(a, ahead, clock);
    await skewedWriterKeepsRedisTime(a, behind, clock);
  });

  it("judge expires_at by Redis' clock, not their own", async () => {
    await expiresAtByRedisTime(a, ahead, behind, clock);
  });
});

describe("two server processes on one Redis Cluster", () => {
  let cluster: RedisCluster;
  let clock: Redis;
  const replicas: Replica[] = [];
  let a: Replica;
  let behind: Replica;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    // Every node runs on this machine, so any node's TIME is the cluster's.
    clock = (cluster.nodes[0] as RedisServer).client();
    const env = { REDIS_URL: cluster.url, REDIS_CLUSTER: "true", KEY_PREFIX: "replicas" };
    [a, behind] = await Promise.all([
      startReplica("A", env, replicas),
      startReplica("B-5min", { ...env, ...clockOffset(-MINUTES_5) }, replicas),
    ]);
  });

  afterAll(async () => {
    await Promise.all(replicas.splice(0).map((replica) => replica.stop()));
    clock?.disconnect();
    await cluster?.stop();
  });

  it("read, touch, CAS and delete one session across them", async () => {
    await sessionAcrossReplicas(a, behind);
  });

  it("list and delete a user's sessions across them", async () => {
    await userAcrossReplicas(behind, a);
  });

  it("let exactly one of racing CAS writers through per version", async () => {
    await casRaceAcrossReplicas(behind, a);
  });

  it("expire a short-lived session together by Redis' clock, one clock 5 min behind", async () => {
    await shortTtlExpiresTogether(a, behind, clock);
  });
});
