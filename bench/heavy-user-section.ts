/**
 * The benchmark's heavy-user section: does one user with 10^5 sessions
 * stall everybody else? The service runs as a process of its own against a
 * private redis-server whose SLOWLOG times every command, so the section's
 * figures hold only its own calls and the main service's are undisturbed.
 * A separate client process (latency-client.ts) sends another user's Get at
 * a fixed rate, open loop, in three windows: alone, then while this process
 * calls the heavy user over gRPC one call at a time (pages: first, middle
 * and last by page token, page after page; single-session calls; and at the
 * end DeleteByUser, which deletes all its sessions but one), then alone
 * again: the two baselines show how much this shared machine alone moves
 * the figures.
 */
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import {
  DeleteByUserRequestSchema,
  DeleteByUserResponseSchema,
  DeleteRequestSchema,
  ListByUserRequestSchema,
  ListByUserResponseSchema,
} from "../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../harness/wait-for.js";
import { RedisSessionStore } from "../src/store/redis/redis-session-store.js";
import { type LatencyProbe, probeLatency, rawGrpcClient } from "./load.js";
import { startService } from "./processes.js";
import {
  readSlowlog,
  type SlowlogSummary,
  scriptNames,
  slowlogMark,
  startTimingRedisServer,
  summariseSlowlog,
  timeEveryCommand,
} from "./slowlog.js";
import { quantile } from "./stats.js";
import {
  benchInput,
  benchSession,
  forEachConcurrently,
  KEY_PREFIX,
  methodPath,
  requests,
} from "./workload.js";

/** How big the section is. */
export interface HeavyUserOptions {
  /** The heavy user's sessions. */
  readonly sessions: number;
  /** Other users, each with SESSIONS_PER_OTHER_USER sessions. */
  readonly otherUsers: number;
  /** Other users' Get calls a second, sent open loop. */
  readonly getRate: number;
  /** How long each Get window measures. */
  readonly windowMs: number;
  readonly log: (message: string) => void;
}

/** Client-side latency of one kind of call, over gRPC. */
export interface CallTimes {
  readonly name: string;
  readonly calls: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** A figure of each window of other users' Gets. */
export interface Windows<T> {
  readonly before: T;
  readonly during: T;
  readonly after: T;
}

/** What the section measured. */
export interface HeavyUserFigures {
  readonly sessions: number;
  readonly otherUsers: number;
  readonly sessionsPerOtherUser: number;
  readonly pageSize: number;
  readonly seedMs: number;
  readonly getRate: number;
  readonly windowMs: number;
  /** How long the heavy user's calls ran in the window before DeleteByUser. */
  readonly busyMs: number;
  /** The heavy user's calls (and a light user's page) during the heavy window. */
  readonly calls: readonly CallTimes[];
  readonly deleteByUser: {
    readonly ms: number;
    readonly deleted: number;
    /** DeleteByUser script runs SLOWLOG logged: the calls to Redis it took. */
    readonly scripts: number;
    readonly longestMicros: number;
  };
  /** Another user's Get, alone before, during the heavy user's calls, and alone after. */
  readonly others: Windows<LatencyProbe>;
  /** Redis's own time per command over the same three windows. */
  readonly redis: Windows<SlowlogSummary>;
  readonly durationMs: number;
}

const HEAVY = "heavy-user";
const SESSIONS_PER_OTHER_USER = 5;
const PAGE_SIZE = 100;
/** Samples of each kind of call per pass over the heavy user. */
const SAMPLES_PER_PASS = 10;
/** Pages of the heavy user walked per pass, on from where the last pass stopped. */
const PAGES_PER_PASS = 50;
/** latency-client.ts's warm-up calls, sent before its window starts. */
const PROBE_WARMUP_CALLS = 2000;
/** The benchmark's own Redis connections, whose commands SLOWLOG figures leave out. */
const ADMIN = "bench-heavy-user-admin";
const SEEDER = "bench-heavy-user-seeder";
/** Share of the window the heavy user's calls fill before DeleteByUser ends them. */
const BUSY_SHARE = 0.8;

const sessionId = (i: number) => `session-${String(i).padStart(8, "0")}`;
const otherUser = (i: number) => `other-${i}`;

function encode<T extends DescMessage>(schema: T, init: MessageInitShape<T>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

const listRequest = (userId: string, pageToken = "") =>
  encode(ListByUserRequestSchema, { userId, pageSize: PAGE_SIZE, pageToken });

/** Runs the section: starts its own redis-server and service, and stops them. */
export async function measureHeavyUser(options: HeavyUserOptions): Promise<HeavyUserFigures> {
  const started = Date.now();
  const redis = await startTimingRedisServer();
  const admin = new Redis(redis.url, { connectionName: ADMIN });
  const seeder = new Redis(redis.url, { enableAutoPipelining: true, connectionName: SEEDER });
  const store = new RedisSessionStore({
    redis: seeder,
    keyPrefix: KEY_PREFIX,
    maxSessionsPerUser: 0,
  });
  try {
    const service = await startService(redis.url, { name: "service (heavy user)" });
    try {
      // The service (default event settings, as this store) runs the same scripts, by the same SHAs.
      const figures = await measure(options, service.port, admin, store, scriptNames(seeder));
      return { ...figures, durationMs: Date.now() - started };
    } finally {
      await service.stop();
    }
  } finally {
    await store.close();
    admin.disconnect();
    await redis.stop();
  }
}

/** Seeds the users through `store`, then measures against the service on `port`. */
async function measure(
  options: HeavyUserOptions,
  port: number,
  admin: Redis,
  store: RedisSessionStore,
  names: ReadonlyMap<string, string>,
): Promise<Omit<HeavyUserFigures, "durationMs">> {
  const { log } = options;
  const ignored = new Set([ADMIN, SEEDER]);
  const client = rawGrpcClient(port);
  try {
    const seedStarted = Date.now();
    await forEachConcurrently(
      Array.from({ length: options.sessions }, (_, i) => i),
      512,
      (i) => store.upsert(benchInput(HEAVY, sessionId(i))),
    );
    await forEachConcurrently(
      Array.from({ length: options.otherUsers * SESSIONS_PER_OTHER_USER }, (_, i) => i),
      512,
      (i) =>
        store.upsert(
          benchInput(
            otherUser(Math.floor(i / SESSIONS_PER_OTHER_USER)),
            `s${i % SESSIONS_PER_OTHER_USER}`,
          ),
        ),
    );
    const seedMs = Date.now() - seedStarted;
    log(
      `heavy user: ${options.sessions} sessions and ${options.otherUsers} other users seeded in ${seedMs} ms`,
    );

    const times = new Map<string, number[]>();
    const timed = async (name: string, method: string, request: Buffer) => {
      const t0 = performance.now();
      const response = await client.call(methodPath(method), request);
      const elapsed = performance.now() - t0;
      const list = times.get(name);
      if (list) list.push(elapsed);
      else times.set(name, [elapsed]);
      return response;
    };
    /** One page of the heavy user, and the token of the next ("" after the last). */
    const page = async (name: string, token: string) => {
      const response = await timed(name, "ListByUser", listRequest(HEAVY, token));
      return fromBinary(ListByUserResponseSchema, response);
    };

    // A walk over every page warms the service up and collects the tokens
    // of the middle and the last page.
    const tokens: string[] = [];
    let count = 0;
    let token = "";
    do {
      const { sessions, nextPageToken } = await page("warm-up", token);
      count += sessions.length;
      token = nextPageToken;
      if (token) tokens.push(token);
    } while (token);
    if (count !== options.sessions)
      throw new Error(`heavy user: a walk over its pages found ${count} sessions`);
    const middleToken = tokens[Math.floor(tokens.length / 2)] ?? "";
    const lastToken = tokens.at(-1) ?? "";
    // Every call the windows make, once, so that Redis has each script
    // cached by then (a script's first run is an EVAL of its source).
    await timed("warm-up", "Get", requests.get(HEAVY, sessionId(0)));
    await timed("warm-up", "Touch", requests.touch(HEAVY, sessionId(0)));
    await timed("warm-up", "Upsert", requests.upsert(benchSession(HEAVY, sessionId(0))));
    await timed("warm-up", "DeleteByUser", requests.deleteByUser("warm-up-user"));
    await timed(
      "warm-up",
      "Delete",
      encode(DeleteRequestSchema, { userId: "warm-up-user", sessionId: "s0" }),
    );
    times.clear();
    await timeEveryCommand(admin);

    const otherGet = requests.get(otherUser(0), "s0");
    const evalshaCalls = async () =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(await admin.info("commandstats"))?.[1] ?? 0);
    /**
     * The Get probe over one window; `during` runs once the probe's warm-up
     * is over, so that it falls within the window. SLOWLOG covers the
     * window.
     */
    const othersWindow = async <T>(during: (deadline: number) => Promise<T>) => {
      const before = await evalshaCalls();
      const probe = probeLatency(
        port,
        methodPath("Get"),
        otherGet,
        options.getRate,
        options.windowMs,
      );
      let mark = -1;
      const measured = async () => {
        await waitFor(
          "the Get probe to finish its warm-up",
          async () => (await evalshaCalls()) >= before + PROBE_WARMUP_CALLS,
          { timeoutMs: 60_000, intervalMs: 5 },
        );
        mark = await slowlogMark(admin);
        return during(performance.now() + options.windowMs * BUSY_SHARE);
      };
      const [latency, result] = await Promise.all([probe, measured()]);
      if (latency.errors > 0)
        throw new Error(`heavy user: ${latency.errors} other users' Gets failed`);
      const slowlog = summariseSlowlog(await readSlowlog(admin, mark, names, ignored));
      return { latency, slowlog, result };
    };

    const before = await othersWindow(async () => {});
    log(
      `heavy user: other users' Get alone at ${options.getRate}/s: p99 ${before.latency.p99Ms.toFixed(2)} ms, max ${before.latency.maxMs.toFixed(2)} ms`,
    );

    const kept = sessionId(options.sessions - 1);
    const keptSession = benchSession(HEAVY, kept);
    const lightPage = `ListByUser, a user with ${SESSIONS_PER_OTHER_USER} sessions`;
    let deletedOneByOne = 0;
    let inserted = 0;
    const during = await othersWindow(async (deadline) => {
      let walked = "";
      do {
        for (let i = 0; i < PAGES_PER_PASS; i++)
          walked = (await page("ListByUser, page after page (by page token)", walked))
            .nextPageToken;
        for (let i = 0; i < SAMPLES_PER_PASS; i++) {
          await timed("ListByUser, first page", "ListByUser", listRequest(HEAVY));
          await timed("ListByUser, middle page", "ListByUser", listRequest(HEAVY, middleToken));
          await timed("ListByUser, last page", "ListByUser", listRequest(HEAVY, lastToken));
          await timed(lightPage, "ListByUser", listRequest(otherUser(1)));
          await timed("Get", "Get", requests.get(HEAVY, kept));
          await timed("Upsert (update)", "Upsert", requests.upsert(keptSession));
          const fresh = benchSession(HEAVY, `new-${inserted++}`);
          await timed("Upsert (insert)", "Upsert", requests.upsert(fresh));
          await timed("Touch", "Touch", requests.touch(HEAVY, kept));
          await timed(
            "Delete",
            "Delete",
            encode(DeleteRequestSchema, { userId: HEAVY, sessionId: sessionId(deletedOneByOne) }),
          );
          deletedOneByOne++;
        }
      } while (performance.now() < deadline);
      // "Sign out everywhere else": every session but the caller's own.
      const request = encode(DeleteByUserRequestSchema, {
        userId: HEAVY,
        exceptSessionIds: [kept],
      });
      const t0 = performance.now();
      const response = await client.call(methodPath("DeleteByUser"), request);
      return {
        ms: performance.now() - t0,
        deleted: Number(fromBinary(DeleteByUserResponseSchema, response).deletedCount),
      };
    });
    const after = await othersWindow(async () => {});
    const deleteByUser = during.result;
    const expected = options.sessions + inserted - deletedOneByOne - 1;
    if (deleteByUser.deleted !== expected)
      throw new Error(`heavy user: DeleteByUser deleted ${deleteByUser.deleted}, not ${expected}`);
    const left = fromBinary(
      ListByUserResponseSchema,
      await client.call(methodPath("ListByUser"), listRequest(HEAVY)),
    ).sessions.map((session) => session.id);
    if (left.length !== 1 || left[0] !== kept)
      throw new Error(
        `heavy user: ${left.length} sessions left after DeleteByUser, not its kept one`,
      );
    const deleteScripts = during.slowlog.byCommand.find((c) => c.command === "sessionDeleteByUser");
    log(
      `heavy user: other users' Get during its calls: p99 ${during.latency.p99Ms.toFixed(2)} ms, max ${during.latency.maxMs.toFixed(2)} ms ` +
        `(alone again: p99 ${after.latency.p99Ms.toFixed(2)} ms); DeleteByUser of ${expected} sessions ${deleteByUser.ms.toFixed(2)} ms; ` +
        `longest Redis command ${during.slowlog.longest?.command} ${during.slowlog.longest?.micros} µs`,
    );

    return {
      sessions: options.sessions,
      otherUsers: options.otherUsers,
      sessionsPerOtherUser: SESSIONS_PER_OTHER_USER,
      pageSize: PAGE_SIZE,
      seedMs,
      getRate: options.getRate,
      windowMs: options.windowMs,
      busyMs: options.windowMs * BUSY_SHARE,
      calls: [...times].map(([name, latencies]) => callTimes(name, latencies)),
      deleteByUser: {
        ...deleteByUser,
        scripts: deleteScripts?.count ?? 0,
        longestMicros: deleteScripts?.maxMicros ?? Number.NaN,
      },
      others: { before: before.latency, during: during.latency, after: after.latency },
      redis: { before: before.slowlog, during: during.slowlog, after: after.slowlog },
    };
  } finally {
    client.close();
  }
}

function callTimes(name: string, latencies: number[]): CallTimes {
  latencies.sort((a, b) => a - b);
  return {
    name,
    calls: latencies.length,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies.at(-1) ?? Number.NaN,
  };
}
