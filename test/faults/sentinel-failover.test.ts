import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import type { RedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { ownedForBlock } from "../support/owned.js";
import { CHAOS, type Fault, LOAD, type OutageFigures, runOutage } from "./outage-scenario.js";

// Failover under load through Redis Sentinel (a primary, a replica, three
// sentinels; down-after 1 s): the real server process follows the group
// with REDIS_SENTINELS while callers on gRPC, gRPC-Web and Connect keep
// calling, through SENTINEL FAILOVER and through a SIGKILL of the primary,
// with and without REDIS_WAIT_REPLICAS=1. Each fault ends with the group
// whole again (the old primary back as a replica), so one set serves every
// scenario. Every scenario prints one JSON line per cycle for
// docs/scaling.md.

/**
 * Writes wait for the one replica. A replica in sync acknowledges within a
 * round trip; 250 ms leaves room for this shared 2-core machine (writes'
 * p99 before the fault was 40-190 ms, with WAIT or without, the machine's
 * queueing) and no write failed its WAIT outside a failover in any run
 * (every call begun after the group was whole again succeeded). It is a
 * quarter of REDIS_COMMAND_TIMEOUT_MS (1 s, the default, set here to say
 * so): a write waits for the batch in flight and then its own, each one
 * WAIT, so while no replica answers it fails within about half a second
 * (p99 of all calls 0.6 s then), well inside the callers' 1.5 s deadline.
 */
const WAIT_ENV = {
  REDIS_WAIT_REPLICAS: "1",
  REDIS_WAIT_TIMEOUT_MS: "250",
  REDIS_COMMAND_TIMEOUT_MS: "1000",
};

/** Of the callers, those that insert a new session per call, so that lost writes count exactly. */
const INSERT_ONLY = CHAOS ? 8 : 2;

const set = ownedForBlock(() => startRedisSentinelSet(), 60_000);

/** The service's connections (named "sessionstore") that `server` has open now. */
async function serviceConnections(server: RedisServer): Promise<number> {
  const client = server.client();
  try {
    const list = (await client.call("CLIENT", "LIST")) as string;
    return list.split("\n").filter((line) => / name=sessionstore /.test(line)).length;
  } finally {
    client.disconnect();
  }
}

type FaultKind = "SENTINEL FAILOVER" | "SIGKILL";

/**
 * A failover of the set's primary, by SENTINEL FAILOVER or by SIGKILL (the
 * sentinels then find it down after 1 s and fail over on their own). Marks
 * the promotion (the first sentinel names the new primary) and when all of
 * the service's `connections` reach the new primary (servedAt). A killed
 * primary is started again only then, empty (the fixture keeps no data on
 * disk): started sooner, a service still asking for the old address could
 * reach it as an empty primary. Restored once the group is whole again.
 */
function failover(set: RedisSentinelSet, kind: FaultKind, connections: number): Fault {
  return async () => {
    const old = await set.whole();
    const faultAt = Date.now();
    let promoted: RedisServer;
    if (kind === "SENTINEL FAILOVER") {
      promoted = await set.failover();
    } else {
      await old.kill();
      try {
        promoted = await set.promotedOver(old);
      } catch (error) {
        // Leave the set whole for the next test, whatever happened here.
        await old.restart();
        throw error;
      }
    }
    const promotedAt = Date.now();
    try {
      await waitFor(
        "the service's connections on the new primary",
        async () => (await serviceConnections(promoted)) >= connections,
        { timeoutMs: 20_000, intervalMs: 10 },
      );
    } finally {
      if (kind === "SIGKILL") await old.restart();
    }
    const servedAt = Date.now();
    await set.whole({ timeoutMs: 60_000 });
    return { faultAt, restoredAt: Date.now(), servedAt, marks: { promoted: promotedAt } };
  };
}

/**
 * Runs `kind` under load (one server process, LOAD.cycles faults in a row),
 * prints each cycle's figures and holds every cycle to the bounds every
 * failover must keep; returns the figures for the scenario's own bounds.
 */
async function scenario(
  set: RedisSentinelSet,
  kind: FaultKind,
  wait: boolean,
): Promise<OutageFigures[]> {
  const figures = await runOutage({
    ...LOAD,
    insertOnlyCallers: INSERT_ONLY,
    redisEnv: {
      REDIS_SENTINELS: set.addresses,
      REDIS_SENTINEL_NAME: set.name,
      ...(wait ? WAIT_ENV : {}),
    },
    faults: Array.from({ length: LOAD.cycles }, () => failover(set, kind, wait ? 2 : 1)),
  });
  for (const [cycle, f] of figures.entries()) {
    const violations: Record<string, number> = {};
    for (const { kind } of f.violations) violations[kind] = (violations[kind] ?? 0) + 1;
    const line = {
      fault: kind,
      replicas: set.replicas.length,
      waitReplicas: wait ? 1 : 0,
      cycle: cycle + 1,
      calls: f.calls,
      failures: f.failures,
      lostAcknowledged: f.lostAcknowledged,
      lostAcknowledgedAfterFaultMs: f.lostAcknowledgedAfterFaultMs,
      promotedAfterMs: f.marksMs.promoted,
      servedAfterMs: f.marksMs.served,
      firstOkAfterFaultMs: f.firstOkAfterFaultMs,
      lastFailureAfterFaultMs: f.lastFailureAfterFaultMs,
      wholeAfterMs: f.outageMs,
      healthDownMs: f.healthDownMs,
      healthBackAfterFaultMs: f.healthBackAfterFaultMs,
      healthAtEnd: f.healthAtEnd,
      p99Ms: f.p99Ms,
      writeP99BeforeFaultMs: f.writeP99BeforeFaultMs,
      clientOverrunMs: f.clientOverrunMs,
      serverOverrunMs: f.serverOverrunMs,
      successAfterRecovery: f.successAfterRecovery,
      violations,
      failureMessages: f.failureMessages,
    };
    console.info(`sentinel failover: ${JSON.stringify(line)}`);
  }
  for (const f of figures) {
    // Every failure says "try again": never INTERNAL, never NOT_FOUND for
    // a session that exists (checkHistories' wrong codes), never a
    // deadline the server let pass.
    expect(Object.keys(f.failures).filter((code) => code !== "Unavailable")).toEqual([]);
    // A demoted primary's READONLY reaches nobody as such.
    expect(Object.keys(f.failureMessages).filter((m) => /READONLY/i.test(m))).toEqual([]);
    expect(f.violations.filter((v) => v.kind === "wrong code")).toEqual([]);
    // No call ran past its deadline, as the server measured it (its RPC
    // log) and as the client did.
    expect(f.serverOverrunMs).toBeLessThanOrEqual(50);
    expect(f.clientOverrunMs).toBeLessThanOrEqual(250);
    // Back to normal once the group is whole: health SERVING, and the
    // calls begun 2 s after that all succeed.
    expect(f.healthAtEnd).toBe("SERVING");
    expect(f.lastFailureAfterFaultMs ?? 0).toBeLessThanOrEqual(f.outageMs + 1000);
    expect(f.successAfterRecovery).toBeGreaterThanOrEqual(0.99);
    expect(f.callsAfterRecovery).toBeGreaterThanOrEqual(LOAD.callsAfterRecovery);
  }
  return figures;
}

/**
 * How soon calls succeed again after SENTINEL FAILOVER: the sentinels name
 * the new primary 0.6-1.2 s after the command (a sentinel reads a replica's
 * role once a second during a failover) and the service follows their
 * announcement at once; the first success came 1.0-2.2 s after the
 * command in every run. Twice that, for a loaded machine.
 */
const BACK_AFTER_SENTINEL_FAILOVER_MS = 4000;

/**
 * After a SIGKILL: the sentinels count the primary down after 1 s
 * (down-after-milliseconds), elect a leader and promote the replica
 * (2.2-2.3 s after the kill in every run), and the service, asking them
 * every 250 ms at most, reaches it within 0.1-0.5 s: first success
 * 2.4-2.8 s after the kill. About twice that.
 */
const BACK_AFTER_SIGKILL_MS = 6000;

/**
 * What WAIT promises with one replica: no acknowledged write lost, and no
 * failed write applied behind a later call's back (a phantom version; one
 * also shows where an acknowledged Delete was lost). What checkHistories
 * may still report as lost or resurrected is a read, on the old primary,
 * of a write that failed its WAIT (applied there, never on the replica)
 * and was dropped with it: a session read back after "may have been
 * applied" is durable only once a replica has it.
 */
function expectLossless(f: OutageFigures) {
  expect(f.lostAcknowledged).toBe(0);
  expect(f.violations.filter((v) => v.kind === "phantom")).toEqual([]);
}

describe("Sentinel failover under load (the real server, gRPC, gRPC-Web and Connect callers)", () => {
  it(
    "SENTINEL FAILOVER, REDIS_WAIT_REPLICAS=1: only UNAVAILABLE, no READONLY, no acknowledged write lost, back within seconds",
    async () => {
      for (const f of await scenario(set(), "SENTINEL FAILOVER", true)) {
        // Writes that reached the old primary after the replica was
        // promoted failed its WAIT: none was acknowledged and lost.
        expectLossless(f);
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SENTINEL_FAILOVER_MS);
      }
    },
    CHAOS ? 600_000 : 120_000,
  );

  it(
    "SIGKILL of the primary, REDIS_WAIT_REPLICAS=1: only UNAVAILABLE, no acknowledged write lost, back within seconds of the promotion",
    async () => {
      for (const f of await scenario(set(), "SIGKILL", true)) {
        // The replica had every acknowledged write before it was promoted.
        expectLossless(f);
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SIGKILL_MS);
      }
    },
    CHAOS ? 600_000 : 120_000,
  );

  // The long mode only (CHAOS=1): registered then, so npm test neither runs nor skips it.
  if (CHAOS) {
    it("SENTINEL FAILOVER without WAIT: measured, acknowledged writes may be lost", async () => {
      for (const f of await scenario(set(), "SENTINEL FAILOVER", false)) {
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SENTINEL_FAILOVER_MS);
        expect(f.lastFailureAfterFaultMs ?? 0).toBeLessThanOrEqual(BACK_AFTER_SENTINEL_FAILOVER_MS);
      }
    }, 600_000);

    it("SIGKILL of the primary without WAIT: measured, acknowledged writes may be lost", async () => {
      for (const f of await scenario(set(), "SIGKILL", false)) {
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SIGKILL_MS);
        expect(f.lastFailureAfterFaultMs ?? 0).toBeLessThanOrEqual(BACK_AFTER_SIGKILL_MS);
      }
    }, 600_000);
  }
});

// The long mode only (CHAOS=1): registered then, so npm test neither runs nor skips it.
if (CHAOS) {
  describe("Sentinel failover under load, two replicas, REDIS_WAIT_REPLICAS=1", () => {
    // With two replicas, WAIT 1 is met by either. A SIGKILL's failover
    // picks the replica furthest ahead, so it has what either acknowledged
    // (unless the sentinels' view of their offsets is behind); SENTINEL
    // FAILOVER promotes one while the old primary, still taking writes until
    // the service follows, has the other replica acknowledge them: those are
    // lost when that replica resynchronises from the new primary. Measured,
    // not held to zero.
    let twoReplicas: RedisSentinelSet;

    beforeAll(async () => {
      twoReplicas = await startRedisSentinelSet({ replicas: 2 });
    }, 60_000);

    afterAll(async () => {
      await twoReplicas?.stop();
    });

    it("SENTINEL FAILOVER: measured", async () => {
      for (const f of await scenario(twoReplicas, "SENTINEL FAILOVER", true)) {
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SENTINEL_FAILOVER_MS);
      }
    }, 600_000);

    it("SIGKILL of the primary: measured", async () => {
      for (const f of await scenario(twoReplicas, "SIGKILL", true)) {
        expect(f.firstOkAfterFaultMs).toBeLessThanOrEqual(BACK_AFTER_SIGKILL_MS);
      }
    }, 600_000);
  });
}
