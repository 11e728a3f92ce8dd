import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import {
  type RedisCluster,
  type RedisServer,
  redisCli,
  startRedisCluster,
} from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { clusterSlot } from "../../src/store/redis/cluster-slot.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  type CallRecord,
  checkHistories,
  failuresByCode,
  finalReads,
  quantile,
  type SessionsClient,
  startLoad,
  succeeded,
} from "../support/load.js";
import { logLines, runServerWithAdmin, type ServerProcess } from "../support/server-process.js";
import { CHAOS, LOAD } from "./outage-scenario.js";

// Slots moved from one master to another with redis-cli --cluster reshard
// while a real server process serves gRPC, gRPC-Web and Connect callers.
// Half the callers' users, a user beside each of them whose keys keep
// going and coming back (every Upsert of it is a new user's to Redis), and
// a few hundred users written before, live in the slots that move, so
// their keys are migrated under the load: the service must follow MOVED
// (its slot map is stale once a slot has moved) and ASK (keys already
// moved from a slot still migrating), ride out TRYAGAIN (a new user's
// keys on neither node), lose nothing and overrun no deadline.
//
// No call may fail. A slot here migrates in milliseconds (redis-cli moved
// one holding 1000 or 5000 keys in 11-13 ms, its whole run, on an idle
// machine), while the service's Redis client goes on retrying TRYAGAIN for
// about half its 1 s command timeout, and MOVED and ASK cost a round trip:
// a failure would be a call that a retry would have served. (test/store's Cluster tests drive
// each migration state step by step, stalls beyond the retries included.)

/** The key prefix the server uses (its default): only the hash tag decides the slot. */
const PREFIX = "sessionstore";

/**
 * How much moves: reshard takes the lowest slots of the source master
 * first, so `slots` slots from the first master are slots 0..slots-1,
 * where the test puts the users it watches.
 */
const RESHARD = {
  slots: CHAOS ? 3000 : 500,
  /** Users with a session each, written before the move and read back after it. */
  bystanders: CHAOS ? 3000 : 300,
  /** Calls begun after the move to wait for: they reach moved slots through a stale slot map. */
  callsAfter: CHAOS ? 3000 : 300,
  /**
   * Other keys put in each watched user's slot, so that migrating it takes
   * long enough (MIGRATE moves 10 keys at a time) for the calls of its
   * users to meet it migrating: keys moved (ASK), or none yet (TRYAGAIN).
   * Not more: a slot that takes longer to move than the client retries
   * TRYAGAIN fails new users' writes there UNAVAILABLE (see the header).
   */
  fillers: 1000,
} as const;

let cluster: RedisCluster | undefined;
const cleanup: (() => unknown)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  await cluster?.stop();
  cluster = undefined;
});

/** Runs `use` with a client of `node`, closed afterwards. */
async function withClient<T>(node: RedisServer, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = node.client();
  try {
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** `count` fresh user ids whose keys hash to a slot below `below` (the store's own CRC16). */
function usersInSlots(below: number, count: number): string[] {
  const users: string[] = [];
  while (users.length < count) {
    const userId = uniqueUserId();
    if (clusterSlot(userKeys(PREFIX, userId).sessions) < below) users.push(userId);
  }
  return users;
}

/** A fresh user id whose keys hash to the same slot as `userId`'s. */
function neighbourOf(userId: string): string {
  const slot = clusterSlot(userKeys(PREFIX, userId).sessions);
  for (;;) {
    const other = uniqueUserId();
    if (clusterSlot(userKeys(PREFIX, other).sessions) === slot) return other;
  }
}

/** Writes `count` small keys on `admin` (the master of the user's slot) with the user's hash tag. */
async function fillSlotOf(admin: Redis, userId: string, count: number): Promise<void> {
  const key = userKeys(PREFIX, userId).sessions;
  const tag = key.slice(key.indexOf("{"), key.indexOf("}") + 1);
  for (let i = 0; i < count; i += 500) {
    const batch = admin.pipeline();
    for (let j = i; j < Math.min(count, i + 500); j++) batch.set(`filler:${tag}:${j}`, "x");
    const results = (await batch.exec()) ?? [];
    for (const [error] of results) if (error) throw error;
  }
}

/** MOVED, ASK and TRYAGAIN replies the running nodes have given so far (INFO errorstats). */
async function redirections(nodes: readonly RedisServer[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = { MOVED: 0, ASK: 0, TRYAGAIN: 0 };
  for (const node of nodes.filter((n) => n.running)) {
    const stats = await withClient(node, (client) => client.info("errorstats"));
    for (const [, name = "", count] of stats.matchAll(/^errorstat_(\w+):count=(\d+)/gm)) {
      if (name in counts) counts[name] = (counts[name] ?? 0) + Number(count);
    }
  }
  return counts;
}

/** How many keys `node` holds in `slots` (CLUSTER COUNTKEYSINSLOT). */
async function keysIn(node: RedisServer, slots: readonly number[]): Promise<number> {
  return withClient(node, async (client) => {
    const counts = await Promise.all(
      slots.map((slot) => client.cluster("COUNTKEYSINSLOT", slot) as Promise<number>),
    );
    return counts.reduce((sum, n) => sum + Number(n), 0);
  });
}

describe("Redis Cluster resharded under load", () => {
  it(
    "moves slots holding live users: redirections followed, nothing lost, no call failed or overran",
    async () => {
      const started = Date.now();
      cluster = await startRedisCluster(3, { replicas: 1 });
      const fixtureMs = Date.now() - started;
      const [source, target] = await cluster.shards();
      if (!source || !target) throw new Error("the cluster has fewer than two masters");
      const moved = Array.from({ length: RESHARD.slots }, (_, slot) => slot);
      expect(source.slots[0]).toEqual([0, expect.any(Number)]);
      expect(source.slots[0]?.[1]).toBeGreaterThanOrEqual(RESHARD.slots - 1);

      const admin = source.master.client();
      cleanup.push(() => admin.disconnect());
      const watched = usersInSlots(RESHARD.slots, LOAD.callers / 2);
      // A user in each watched slot whose keys keep going and coming back:
      // while the slot migrates, each of its Upserts is a new user's.
      const churners = watched.map(neighbourOf);
      const bystanders = usersInSlots(RESHARD.slots, RESHARD.bystanders);
      for (const userId of watched) await fillSlotOf(admin, userId, RESHARD.fillers);

      const { server, port } = await runServerWithAdmin({
        PORT: "0",
        HOST: "127.0.0.1",
        REDIS_URL: cluster.url,
        REDIS_CLUSTER: "true",
        RPC_LOG_LEVEL: "info",
      });
      cleanup.push(() => server.kill());
      const pool: ClientPool = clientPool(`http://127.0.0.1:${port}`);
      cleanup.push(() => pool.close());
      const clients = [
        { name: "grpc", client: pool.sessions({ protocol: "grpc" }) },
        {
          name: "connect-http1",
          client: pool.sessions({ protocol: "connect", httpVersion: "1.1" }),
        },
        { name: "grpc-web", client: pool.sessions({ protocol: "grpc-web" }) },
      ];
      const reader = clients[0]?.client as SessionsClient;

      const written = await writeBystanders(reader, bystanders);
      // Even callers watch users in the slots that move; odd ones, users anywhere.
      const userIds = Array.from({ length: LOAD.callers }, (_, n) =>
        n % 2 === 0 ? (watched[n / 2] as string) : uniqueUserId(),
      );
      const load = startLoad({ ...LOAD, clients, userIds });
      const churn = startLoad({
        ...LOAD,
        callers: churners.length,
        clients,
        userIds: churners,
        churn: true,
      });
      await waitFor("calls before the move", () => load.records.length >= 100, {
        timeoutMs: 10_000,
      });

      const keysBefore = await keysIn(source.master, moved);
      const redirectsBefore = await redirections(cluster.nodes);
      const reshardAt = Date.now();
      const output = await redisCli([
        "--cluster",
        "reshard",
        `127.0.0.1:${source.master.port}`,
        "--cluster-from",
        cluster.nodeId(source.master),
        "--cluster-to",
        cluster.nodeId(target.master),
        "--cluster-slots",
        String(RESHARD.slots),
        "--cluster-yes",
      ]);
      const reshardedAt = Date.now();
      await waitFor(
        "calls after the move",
        () => load.records.filter((r) => r.startedAt >= reshardedAt).length >= RESHARD.callsAfter,
        { timeoutMs: 60_000 },
      );
      const records = [...(await load.stop()), ...(await churn.stop())];
      const redirectsAfter = await redirections(cluster.nodes);
      const reads = await finalReads(records, reader);
      const bystandersLost = await lostBystanders(reader, written);
      await cluster.ready();

      // The slots moved are exactly the ones the users were chosen in.
      const shards = await cluster.shards();
      const nowTarget = shards.find((s) => s.master === target.master);
      const nowSource = shards.find((s) => s.master === source.master);
      expect(nowTarget?.slots).toContainEqual([0, RESHARD.slots - 1]);
      expect(nowSource?.slots[0]?.[0]).toBe(RESHARD.slots);
      const keysMoved = await keysIn(target.master, moved);

      const watchedSet = new Set([...watched, ...churners]);
      const onMoved = (r: CallRecord) => watchedSet.has(r.userId);
      const during = records.filter((r) => r.startedAt < reshardedAt && r.endedAt > reshardAt);
      const after = records.filter((r) => r.startedAt >= reshardedAt);
      const figures = {
        fixtureMs,
        slotsMoved: (output.match(/^Moving slot \d+ /gm) ?? []).length,
        keysInMovedSlotsBefore: keysBefore,
        keysInMovedSlotsAfter: keysMoved,
        reshardMs: reshardedAt - reshardAt,
        calls: records.length,
        callsDuringReshard: during.length,
        callsOnMovedUsersDuringReshard: during.filter(onMoved).length,
        callsOnMovedUsersAfter: after.filter(onMoved).length,
        failures: failuresByCode(records),
        failuresOnMovedUsers: failuresByCode(records.filter(onMoved)),
        violations: checkHistories(records, reads).length,
        bystandersLost: bystandersLost.length,
        redirections: Object.fromEntries(
          Object.entries(redirectsAfter).map(([name, n]) => [
            name,
            n - (redirectsBefore[name] ?? 0),
          ]),
        ),
        clientOverrunMs: Math.max(
          0,
          ...records.map((r) => r.endedAt - r.startedAt - LOAD.deadlineMs),
        ),
        serverOverrunMs: serverOverrun(server, LOAD.deadlineMs),
        p99Ms: quantile(
          records.map((r) => r.endedAt - r.startedAt),
          0.99,
        ),
        p99DuringReshardMs: quantile(
          during.map((r) => r.endedAt - r.startedAt),
          0.99,
        ),
        slowestOnMovedUsersMs: Math.max(
          0,
          ...records.filter(onMoved).map((r) => r.endedAt - r.startedAt),
        ),
      };
      console.info(`cluster reshard: ${JSON.stringify(figures)}`);

      expect(figures.slotsMoved).toBe(RESHARD.slots);
      // Every bystander's keys and every filler moved, with the watched users' keys.
      expect(keysMoved).toBeGreaterThanOrEqual(
        3 * RESHARD.bystanders + watched.length * RESHARD.fillers,
      );
      expect(figures.callsOnMovedUsersDuringReshard).toBeGreaterThan(0);
      expect(figures.callsOnMovedUsersAfter).toBeGreaterThan(0);
      // The server's slot map was stale after the move: it followed MOVED.
      expect(figures.redirections.MOVED).toBeGreaterThan(0);
      expect(checkHistories(records, reads).slice(0, 5)).toEqual([]);
      expect(bystandersLost).toEqual([]);
      expect(records.filter((r) => !succeeded(r)).slice(0, 5)).toEqual([]);
      expect(figures.serverOverrunMs).toBeLessThanOrEqual(50);
    },
    CHAOS ? 300_000 : 60_000,
  );
});

/** Writes one session for each user; resolves with what each holds. */
async function writeBystanders(
  client: SessionsClient,
  users: readonly string[],
): Promise<Map<string, string>> {
  const written = new Map<string, string>();
  for (let i = 0; i < users.length; i += 50) {
    await Promise.all(
      users.slice(i, i + 50).map(async (userId) => {
        const session = sessionFixture(userId, "bystander");
        await client.upsert({ session, ttl: ttl(600_000) }, { timeoutMs: 5000 });
        written.set(userId, session.refreshTokenId);
      }),
    );
  }
  return written;
}

/** The users whose session does not read back as written (version 1, same token id). */
async function lostBystanders(
  client: SessionsClient,
  written: ReadonlyMap<string, string>,
): Promise<string[]> {
  const lost: string[] = [];
  for (const [userId, refreshTokenId] of written) {
    const { session } = await client
      .get({ userId, sessionId: "bystander" }, { timeoutMs: 5000 })
      .catch(() => ({ session: undefined }));
    if (session?.version !== 1n || session.refreshTokenId !== refreshTokenId) lost.push(userId);
  }
  return lost;
}

/** The longest any RPC ran past `deadlineMs`, from the server's RPC log, ms. */
function serverOverrun(server: ServerProcess, deadlineMs: number): number {
  const durations = logLines(server.output)
    .filter(
      (l) => l.msg === "rpc" && String(l.method).startsWith("sessionstore.v1.SessionStoreService/"),
    )
    .map((l) => Number(l.durationMs));
  return Math.max(0, ...durations.map((d) => Math.round(d - deadlineMs)));
}
