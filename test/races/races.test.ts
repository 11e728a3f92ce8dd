import { Cluster, type Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisCluster,
  type RedisServer,
  startRedisCluster,
  startRedisServer,
} from "../../harness/redis-server.js";
import { createLogger } from "../../src/observability/logger.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { connectRedis } from "../../src/store/redis/redis-client.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";
import {
  type CasRaceReport,
  casRace,
  type DeleteRaceReport,
  deleteRace,
  type InterleaveReport,
  interleaveRace,
} from "./race-scenarios.js";
import { type LabelledClient, portTarget, type RaceTarget, rpcTarget } from "./race-target.js";
import { inspectRedisLayout, type RacedUser, type RedisUnderTest } from "./redis-layout-check.js";

// The races of docs/reliability.md, against the in-memory store at the port,
// the real service over the network on a real redis-server, and the store
// on a three-node Cluster. `npm test` runs a short version of each;
// `npm run test:chaos` (CHAOS=1) runs the rounds the reliability issue asks
// for. RACE_FIGURES=1 prints every report either way, for the docs.

const LONG = process.env.CHAOS === "1";
const PRINT = LONG || process.env.RACE_FIGURES === "1";

/** How long one race may take: the long mode runs for minutes. */
const TIMEOUT_MS = LONG ? 3_600_000 : 20_000;

/** How big one target's races are. */
interface RaceSizes {
  /** CAS writers racing on one session. */
  readonly writers: number;
  /** Versions the CAS writers make. */
  readonly casRounds: number;
  /** Sessions deleted under racers, and how many of those rounds run at once. */
  readonly deleteRounds: number;
  readonly deleteLanes: number;
  /** Callers interleaving on one user, and the calls each makes. */
  readonly workers: number;
  readonly callsPerWorker: number;
}

/**
 * The rounds in the long mode; otherwise as many as keep this file
 * within about 15 s on a 2-core machine, the network target (about 2,000
 * calls a second there, client and server in one process) getting the
 * fewest.
 */
function sizes(fast: Omit<RaceSizes, "writers">): RaceSizes {
  // More delete lanes at once in the long mode: the rounds are then limited
  // by the machine rather than by each lane's round trips.
  const long = { casRounds: 5_000, deleteRounds: 10_000, deleteLanes: 16, callsPerWorker: 1_500 };
  return { writers: 32, ...fast, ...(LONG ? long : {}) };
}

/** Cap on sessions per user of every raced store: the interleaved race inserts past it. */
const CAP = 10;
const PREFIX = "races";
/** Seed of the interleaved race's PRNG: fixed so that a failure replays. */
const SEED = 20_240_611;

function print(report: object): void {
  if (!PRINT) return;
  console.info(
    JSON.stringify(report, (key, value) =>
      key === "raced" ? undefined : typeof value === "bigint" ? String(value) : value,
    ),
  );
}

/** The assertions every CAS race report must pass. */
function expectCasRace(report: CasRaceReport, size: RaceSizes): void {
  print({ race: "cas", ...report });
  expect(report.anomalies.first, `${report.anomalies.count} anomalies`).toEqual([]);
  expect(report.wins).toBeGreaterThanOrEqual(size.casRounds);
  expect(report.finalVersion).toBe(BigInt(1 + report.wins));
  // Contention did happen: on average each version was also tried by at
  // least one writer that lost. (In the recorded runs, 12 to 16 of the 32
  // lost per version: see docs/reliability.md.)
  expect(report.losers / report.wins).toBeGreaterThan(1);
}

/** The assertions every delete race report must pass. */
function expectDeleteRace(report: DeleteRaceReport): void {
  print({ race: "delete", ...report });
  expect(report.anomalies.first, `${report.anomalies.count} anomalies`).toEqual([]);
  expect(Object.values(report.byKind).every((n) => n > 0)).toBe(true);
  // The delete raced for real: racers' calls were in flight while it was,
  // racers wrote and touched before it, and every racer probed afterwards.
  expect(report.overlapping / report.rounds).toBeGreaterThanOrEqual(1);
  expect(report.calls["Upsert(expected_version) ok"] ?? 0).toBeGreaterThan(0);
  expect(report.calls["Upsert(expected_version) aborted"] ?? 0).toBeGreaterThan(0);
  expect(report.calls["Touch ok"] ?? 0).toBeGreaterThan(0);
  expect(report.afterDelete).toBeGreaterThanOrEqual(report.rounds);
}

/** The assertions every interleaved race report must pass. */
function expectInterleaveRace(report: InterleaveReport): void {
  print({ race: "interleave", ...report });
  expect(report.anomalies.first, `${report.anomalies.count} anomalies`).toEqual([]);
  expect(report.listings).toBeGreaterThan(0);
  // Every kind of call happened, writes were refused for racing, and
  // sessions both expired and were evicted or deleted under the listings.
  for (const call of [
    "Upsert ok",
    "Upsert(insert) already_exists",
    "Upsert(expected_version) ok",
    "Upsert(expected_version) aborted",
    "Touch ok",
    "Touch not_found",
    "Get ok",
    "Get not_found",
    "Delete ok",
    "DeleteByUser(except) ok",
  ]) {
    expect(report.calls[call] ?? 0, call).toBeGreaterThan(0);
  }
}

/**
 * The three races against one target, as tests of the enclosing describe
 * block (whose hooks start and stop the target).
 */
function raceTests(
  target: () => RaceTarget,
  size: RaceSizes,
  after?: (raced: RacedUser[]) => Promise<void>,
): void {
  const raced: RacedUser[] = [];

  it(`${size.writers} concurrent CAS writers on one session: one winner per version, losers ABORTED, final version = 1 + wins`, {
    timeout: TIMEOUT_MS,
  }, async () => {
    const report = await casRace(target(), { writers: size.writers, rounds: size.casRounds });
    raced.push(...report.raced);
    expectCasRace(report, size);
  });

  it("Delete and DeleteByUser racing CAS Upserts, Touches and Gets: a deleted session is never readable afterwards", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const report = await deleteRace(target(), {
      rounds: size.deleteRounds,
      lanes: size.deleteLanes,
      casWriters: 3,
      touchers: 2,
      readers: 1,
    });
    raced.push(...report.raced);
    expectDeleteRace(report);
  });

  it("every operation interleaved on one user from many callers: listings and reads stay consistent", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const report = await interleaveRace(target(), {
      workers: size.workers,
      callsPerWorker: size.callsPerWorker,
      seed: SEED,
    });
    raced.push(...report.raced);
    expectInterleaveRace(report);
  });

  if (after) {
    it("leaves Redis clean: no orphan index entry, every key with a TTL, none outside the prefix", async () => {
      // Needs the races above to have run (not skipped) to check something.
      expect(raced.length).toBeGreaterThan(0);
      await after(raced);
    });
  }
}

/** Inspects Redis after the races and fails on any violation. */
async function expectCleanLayout(redis: RedisUnderTest, raced: RacedUser[]): Promise<void> {
  const report = await inspectRedisLayout(redis, PREFIX, raced);
  print({ race: "layout", users: raced.length, ...report });
  expect(report.violations).toEqual([]);
  expect(report.keysUnderPrefix).toBeGreaterThan(0);
}

// The in-memory store at the port: every lane calls the one store, so the
// race is between its operations' turns on the event loop.
describe("races: in-memory store, at the port", () => {
  let store: MemorySessionStore;
  beforeAll(() => {
    store = new MemorySessionStore({ maxSessionsPerUser: CAP, sweepIntervalMs: 0 });
  });
  afterAll(async () => {
    await store?.close();
  });
  raceTests(
    () => portTarget("memory port", store, 1),
    sizes({ casRounds: 500, deleteRounds: 500, deleteLanes: 8, workers: 16, callsPerWorker: 200 }),
  );
});

/**
 * The clients of the networked races: separate connections for each, and
 * a mix of protocols. Plain binary gRPC takes the server's fast path; the
 * others go through connect-node, over HTTP/2 and HTTP/1.1.
 */
const NETWORK_CLIENTS: readonly ClientKind[] = [
  { protocol: "grpc" },
  { protocol: "grpc" },
  { protocol: "grpc" },
  { protocol: "grpc" },
  { protocol: "connect", httpVersion: "1.1" },
  { protocol: "connect", binary: false },
  { protocol: "grpc-web" },
  { protocol: "connect" },
];

/** A client kind as an anomaly report names it, e.g. "connect json over HTTP/1.1". */
function kindLabel({ protocol, binary = true, httpVersion = "2" }: ClientKind): string {
  return `${protocol}${binary ? "" : " json"} over HTTP/${httpVersion}`;
}

/** The real server over `store` with many client connections; the caller closes both. */
async function serveOverNetwork(store: SessionStore) {
  const running: RunningServer = await startTestServer(store);
  const pool: ClientPool = clientPool(running.baseUrl);
  const clients: LabelledClient[] = [];
  // Three connections of each kind.
  for (let i = 0; i < 3; i++) {
    for (const kind of NETWORK_CLIENTS)
      clients.push({ label: kindLabel(kind), rpc: pool.sessions(kind) });
  }
  return { running, pool, clients };
}

/** How many logged calls each transport served, from the server's per-RPC log lines; clears them. */
function transportsServed(running: RunningServer): Record<string, number> {
  const served: Record<string, number> = {};
  for (const line of running.logs.lines.splice(0)) {
    const transport = /"transport":"([^"]+)"/.exec(line)?.[1];
    if (transport) served[transport] = (served[transport] ?? 0) + 1;
  }
  return served;
}

// The real service over sockets on a real redis-server: the fast path and
// connect-node serve the racers at once.
describe("races: Redis, the service over the network (gRPC fast path, Connect, gRPC-Web)", () => {
  let redis: RedisServer;
  let store: RedisSessionStore;
  let network: Awaited<ReturnType<typeof serveOverNetwork>>;
  let admin: Redis;
  beforeAll(async () => {
    redis = await startRedisServer();
    admin = redis.client();
    store = new RedisSessionStore({
      redis: await connectRedis(
        { url: redis.url, cluster: false, commandTimeoutMs: 5000, connectTimeoutMs: 5000 },
        createLogger("silent"),
      ),
      keyPrefix: PREFIX,
      maxSessionsPerUser: CAP,
    });
    network = await serveOverNetwork(store);
  });
  afterAll(async () => {
    network?.pool.close();
    await network?.running.stop();
    await store?.close();
    admin?.disconnect();
    await redis?.stop();
  });
  raceTests(
    () => rpcTarget("redis rpc", network.clients, 64),
    sizes({ casRounds: 60, deleteRounds: 60, deleteLanes: 6, workers: 24, callsPerWorker: 40 }),
    async (raced) => {
      const served = transportsServed(network.running);
      print({ race: "transports", ...served });
      expect(served["fast-path"] ?? 0).toBeGreaterThan(0);
      expect(served["connect-node"] ?? 0).toBeGreaterThan(0);
      await expectCleanLayout({ nodes: [admin], keys: admin }, raced);
    },
  );
});

// The store on a three-node Cluster, at the port: each user's keys live on
// one node, so what races is the same scripts, reached through the
// Cluster client's routing.
describe("races: Redis Cluster, at the port", () => {
  let cluster: RedisCluster;
  let store: RedisSessionStore;
  let admins: Redis[];
  let router: Cluster;
  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    admins = cluster.nodes.map((node) => node.client());
    store = new RedisSessionStore({
      redis: await connectRedis(
        { url: cluster.url, cluster: true, commandTimeoutMs: 5000, connectTimeoutMs: 10_000 },
        createLogger("silent"),
      ),
      keyPrefix: PREFIX,
      maxSessionsPerUser: CAP,
    });
    router = new Cluster(cluster.nodes.map((node) => ({ host: "127.0.0.1", port: node.port })));
  });
  afterAll(async () => {
    router?.disconnect();
    for (const admin of admins ?? []) admin.disconnect();
    await store?.close();
    await cluster?.stop();
  });
  raceTests(
    () => portTarget("cluster port", store, 1),
    sizes({ casRounds: 200, deleteRounds: 200, deleteLanes: 6, workers: 16, callsPerWorker: 100 }),
    (raced) => expectCleanLayout({ nodes: admins, keys: router }, raced),
  );
});
