import { Code, createClient } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { type CallRecord, checkHistories, finalReads, startLoad } from "../support/load.js";
import { runServer, type ServerProcess } from "../support/server-process.js";
import { CHAOS } from "./outage-scenario.js";

// Redis SIGKILLed in the middle of a write load, restarted on its port, and
// every session read back: how many acknowledged writes each persistence
// setting loses. appendfsync always must lose none; everysec and RDB-only
// are measured (CHAOS=1) for docs/reliability.md, not held to a bound.

const ACKED_BEFORE_KILL = CHAOS ? 5000 : 300;

let redis: RedisServer | undefined;
let server: ServerProcess | undefined;
let pool: ClientPool | undefined;

afterEach(async () => {
  pool?.close();
  server?.kill();
  await redis?.stop();
  pool = undefined;
  server = undefined;
  redis = undefined;
});

/** Kills Redis under load and counts acknowledged writes missing after its restart. */
async function crash(persistence: readonly string[]) {
  const killed = await startRedisServer(persistence);
  redis = killed;
  server = runServer({ PORT: "0", HOST: "127.0.0.1", REDIS_URL: killed.url });
  pool = clientPool(`http://127.0.0.1:${await server.port()}`);
  const clients = [
    { name: "grpc", client: pool.sessions({ protocol: "grpc" }) },
    { name: "connect", client: pool.sessions({ protocol: "connect" }) },
  ];
  const load = startLoad({ callers: 16, clients, deadlineMs: 2000, sessionsPerCaller: 8 });
  const ackedUpserts = () =>
    load.records.filter((r) => r.op === "upsert" && r.code === "ok").length;
  await waitFor("acknowledged writes", () => ackedUpserts() >= ACKED_BEFORE_KILL, {
    timeoutMs: 60_000,
  });
  await killed.kill();
  const killedAt = Date.now();
  const records = await load.stop();
  // Health must have seen the outage, or its SERVING below could be the
  // answer from before the kill.
  const health = createClient(Health, pool.transport({ protocol: "grpc" }));
  const status = async () => (await health.check({ service: "" })).status;
  await waitFor("health NOT_SERVING", async () => (await status()) === ServingStatus.NOT_SERVING);
  await killed.restart();
  await waitFor(
    "health SERVING after the restart",
    async () => (await status()) === ServingStatus.SERVING,
  );
  const reads = await finalReads(records, clients[0]?.client as never);
  const lost = lostWrites(records, reads);
  const figures = {
    persistence: persistence.join(" "),
    ackedUpserts: records.filter((r) => r.op === "upsert" && r.code === "ok").length,
    lost: lost.length,
    // How long before the kill the earliest lost write was acknowledged.
    lostWindowMs: lost.length ? killedAt - Math.min(...lost.map((r) => r.endedAt)) : 0,
    violations: checkHistories(records, reads).length,
  };
  console.info(`durability: ${JSON.stringify(figures)}`);
  return figures;
}

/**
 * The acknowledged Upserts a session's final read does not reflect: those
 * since its last acknowledged Delete with a version above the one read back
 * (all of them when it reads back absent).
 */
function lostWrites(records: readonly CallRecord[], reads: readonly CallRecord[]): CallRecord[] {
  const lost: CallRecord[] = [];
  for (const read of reads) {
    if (read.code !== "ok" && read.code !== Code.NotFound) throw new Error("a final read failed");
    const readVersion = read.code === "ok" ? (read.version ?? 0n) : 0n;
    const acked = records.filter(
      (r) => r.userId === read.userId && r.sessionId === read.sessionId && r.code === "ok",
    );
    const lastDelete = acked.findLastIndex((r) => r.op === "delete");
    for (const r of acked.slice(lastDelete + 1)) {
      if (r.op === "upsert" && (r.version ?? 0n) > readVersion) lost.push(r);
    }
  }
  return lost;
}

describe("durability across a Redis crash (SIGKILL)", () => {
  it(`appendonly yes, appendfsync always: every acknowledged Upsert survives (${ACKED_BEFORE_KILL}+ writes)`, async () => {
    const figures = await crash(["--appendonly", "yes", "--appendfsync", "always"]);
    expect(figures.lost).toBe(0);
    expect(figures.violations).toBe(0);
  });

  // The long mode only (CHAOS=1): registered then, so npm test neither runs nor skips it.
  if (CHAOS) {
    it("appendfsync everysec: measured, loses at most about a second of writes", async () => {
      const figures = await crash(["--appendonly", "yes", "--appendfsync", "everysec"]);
      // A SIGKILL leaves what was written to the file (the OS keeps it); only a
      // host crash loses the unsynced second. Either way, never more than ~2 s.
      expect(figures.lostWindowMs).toBeLessThanOrEqual(2500);
    });
  }

  // The long mode only (CHAOS=1): registered then, so npm test neither runs nor skips it.
  if (CHAOS) {
    it("RDB snapshots only: measured, loses everything since the last snapshot", async () => {
      const figures = await crash(["--appendonly", "no", "--save", "3600 1 300 100 60 10000"]);
      expect(figures.ackedUpserts).toBeGreaterThan(0);
    });
  }
});
