/**
 * Heavy-user figures: `npm run bench:heavy-user` (add `-- 1000000` for 10^6
 * sessions). Not part of `npm run bench`: it measures one scenario, the one
 * docs/reliability.md's "Heavy users" section reports, through the store's
 * own API only, so the same script measures any Redis layout.
 *
 * One private redis-server with `slowlog-log-slower-than 0`, so SLOWLOG
 * holds every command's server-side duration (a script's entry is the whole
 * script). Prints, as JSON: the median client-side and server-side time of
 * a page (first, middle, last) for a user with N sessions against one with
 * 10, the longest server-side time per operation on the heavy user, and
 * Redis memory per session at 1 and 5 sessions per user.
 */
import { Redis } from "ioredis";
import { startRedisServer } from "../harness/redis-server.js";
import { RedisSessionStore } from "../src/store/redis/redis-session-store.js";
import { median } from "./stats.js";
import { benchInput, forEachConcurrently, TTL_MS, usedMemory } from "./workload.js";

const heavyCount = Number(process.argv[2] ?? 100_000);
const memorySessions = 50_000;
const pageSize = 100;
const samples = 21;

const sessionId = (i: number) => `session-${String(i).padStart(8, "0")}`;

/** Server-side microseconds of the commands logged since the last reset. */
async function slowlogMicros(admin: Redis): Promise<number[]> {
  const entries = (await admin.call("SLOWLOG", "GET", "-1")) as [number, number, number][];
  return entries.map((entry) => Number(entry[2]));
}

async function timed(admin: Redis, operation: () => Promise<unknown>) {
  await admin.call("SLOWLOG", "RESET");
  const started = process.hrtime.bigint();
  await operation();
  const clientMs = Number(process.hrtime.bigint() - started) / 1e6;
  // The admin's own SLOWLOG RESET is logged too; the store's commands are the rest.
  const server = await slowlogMicros(admin);
  return { clientMs, serverMaxUs: Math.max(0, ...server) };
}

async function pageFigures(admin: Redis, store: RedisSessionStore, userId: string, after?: string) {
  const client: number[] = [];
  const server: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = await timed(admin, () => store.listByUser(userId, { after, limit: pageSize }));
    client.push(t.clientMs);
    server.push(t.serverMaxUs);
  }
  return { clientMsMedian: median(client), serverUsMedian: median(server) };
}

async function heavyUser() {
  const server = await startRedisServer([
    "--slowlog-log-slower-than",
    "0",
    "--slowlog-max-len",
    "100000",
  ]);
  const redis = new Redis(server.url);
  const admin = server.client();
  const store = new RedisSessionStore({ redis, keyPrefix: "sessionstore", maxSessionsPerUser: 0 });
  try {
    const heavy = "heavy-user";
    const light = "light-user";
    const seedStarted = Date.now();
    await forEachConcurrently(
      Array.from({ length: heavyCount }, (_, i) => i),
      512,
      (i) => store.upsert(benchInput(heavy, sessionId(i))),
    );
    const seedMs = Date.now() - seedStarted;
    for (let i = 0; i < 10; i++) await store.upsert(benchInput(light, sessionId(i)));
    const pages = {
      lightFirst: await pageFigures(admin, store, light),
      heavyFirst: await pageFigures(admin, store, heavy),
      heavyMiddle: await pageFigures(admin, store, heavy, sessionId(heavyCount / 2)),
      heavyLast: await pageFigures(admin, store, heavy, sessionId(heavyCount - pageSize)),
    };
    const ops = {
      get: await timed(admin, () => store.get(heavy, sessionId(7))),
      upsertInsert: await timed(admin, () => store.upsert(benchInput(heavy, "new-session"))),
      upsertUpdate: await timed(admin, () => store.upsert(benchInput(heavy, sessionId(8)))),
      touch: await timed(admin, () => store.touch(heavy, sessionId(9), TTL_MS)),
      delete: await timed(admin, () => store.delete(heavy, sessionId(10), undefined)),
      deleteByUser: await timed(admin, () =>
        store.deleteByUser(heavy, [sessionId(1), sessionId(2), sessionId(3)]),
      ),
    };
    const left = await store.listByUser(heavy, { after: undefined, limit: 10 });
    return {
      sessions: heavyCount,
      seedMs,
      pages,
      ops,
      leftAfterDeleteByUser: left.sessions.length,
    };
  } finally {
    await store.close();
    admin.disconnect();
    await server.stop();
  }
}

async function memoryPerSession(perUser: number) {
  const server = await startRedisServer();
  const redis = new Redis(server.url);
  const store = new RedisSessionStore({ redis, keyPrefix: "sessionstore", maxSessionsPerUser: 0 });
  try {
    const before = await usedMemory(redis);
    await forEachConcurrently(
      Array.from({ length: memorySessions }, (_, i) => i),
      512,
      (n) => store.upsert(benchInput(`user-${Math.floor(n / perUser)}`, `session-${n}`)),
    );
    return Math.round(((await usedMemory(redis)) - before) / memorySessions);
  } finally {
    await store.close();
    await server.stop();
  }
}

const figures = {
  heavyUser: await heavyUser(),
  memoryBytesPerSession: {
    sessionBytes: benchInput("user-0", "session-0").data.byteLength,
    onePerUser: await memoryPerSession(1),
    fivePerUser: await memoryPerSession(5),
  },
};
console.log(JSON.stringify(figures, null, 2));
