import { createClient } from "@connectrpc/connect";
import { expect } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import {
  type CallRecord,
  checkHistories,
  failuresByCode,
  finalReads,
  lostAcknowledgedWrites,
  quantile,
  rssMb,
  startLoad,
  succeeded,
  type Violation,
} from "../support/load.js";
import {
  logLines,
  megabytes,
  retained,
  runServerWithAdmin,
  type ServerProcess,
} from "../support/server-process.js";

/** Whether the long variants run (npm run test:chaos). */
export const CHAOS = process.env.CHAOS === "1";

/** Append-only file fsynced before every reply: a restart loses nothing acknowledged. */
export const DURABLE = ["--appendonly", "yes", "--appendfsync", "always"];

/**
 * The load of the outage scenarios: in npm test a dozen callers and one
 * cycle of each fault; under CHAOS=1 four times the callers, three cycles
 * and ten times the calls after each recovery.
 */
export const LOAD = {
  callers: CHAOS ? 48 : 12,
  cycles: CHAOS ? 3 : 1,
  callsAfterRecovery: CHAOS ? 3000 : 300,
  /** Longer than REDIS_COMMAND_TIMEOUT_MS (1 s): a frozen Redis fails calls UNAVAILABLE first. */
  deadlineMs: 1500,
} as const;

/**
 * A fault: starts it, ends it, and says when each happened (Date.now()).
 * A blip (a reset connection) ends as it starts, and may come and go
 * between two health probes.
 */
export type Fault = () => Promise<{
  readonly faultAt: number;
  /**
   * When the restore began (a restarted Redis spawned, a stopped one
   * continued; a failover: its group whole again, a replica in sync with
   * the new primary).
   */
  readonly restoredAt: number;
  /** When Redis first answered again (default restoredAt): health is timed from here. */
  readonly readyAt?: number;
  /**
   * When the service first reached a Redis that serves it after the fault
   * (default readyAt): a failover's new primary, long before its group is
   * whole again. The first success after the fault counts from here.
   */
  readonly servedAt?: number;
  /** Other moments of the fault worth reporting (Date.now()), such as a promotion. */
  readonly marks?: Readonly<Record<string, number>>;
  readonly blip?: boolean;
}>;

/**
 * A fault that breaks something, lasts `ms`, then restores it. The calls'
 * recovery is timed from the moment the restore begins, so a restore's own
 * start-up (a Redis restarting) counts as part of it; health, which cannot
 * be SERVING before Redis answers, is timed from the moment `restore`
 * resolves (for a restart: Redis answered a PING).
 */
export function timedFault(breakIt: () => unknown, ms: number, restore: () => unknown): Fault {
  return async () => {
    const faultAt = Date.now();
    await breakIt();
    await outageLasts(ms);
    const restoredAt = Date.now();
    await restore();
    return { faultAt, restoredAt, readyAt: Date.now() };
  };
}

/** What an outage scenario measured; the test asserts on it and prints it for docs/reliability.md. */
export interface OutageFigures {
  readonly calls: number;
  readonly failures: Record<string, number>;
  /** Failed calls by their error message. */
  readonly failureMessages: Record<string, number>;
  /** Acknowledged writes that later calls or the final reads show lost (lostAcknowledgedWrites). */
  readonly lostAcknowledged: number;
  /** When the first and the last of them were acknowledged, from the fault, ms. */
  readonly lostAcknowledgedAfterFaultMs: readonly [number, number] | undefined;
  /** Contract violations in the sessions' histories (lost, resurrected, phantom writes, wrong codes). */
  readonly violations: Violation[];
  /** The longest any call took beyond its deadline, client side and server side (from the RPC log), ms. */
  readonly clientOverrunMs: number;
  readonly serverOverrunMs: number;
  /** From the fault to NOT_SERVING, and from Redis answering again to SERVING, ms (undefined: never seen). */
  readonly healthDownMs: number | undefined;
  readonly healthUpMs: number | undefined;
  /** From the restore's start to Redis answering again (a restarted Redis starting up), ms. */
  readonly redisReadyMs: number;
  /** From the fault to the fault's end, and from the end to the first and last failure after it, ms. */
  readonly outageMs: number;
  readonly firstOkAfterRestoreMs: number | undefined;
  readonly lastFailureAfterRestoreMs: number | undefined;
  /**
   * From the fault to the first success of a call begun once the service
   * was served again (servedAt), and to the end of the last failed call, ms.
   */
  readonly firstOkAfterFaultMs: number | undefined;
  readonly lastFailureAfterFaultMs: number | undefined;
  /** From the fault to health SERVING again after it was not (undefined: it never was not), ms. */
  readonly healthBackAfterFaultMs: number | undefined;
  /** Health when the calls ended. */
  readonly healthAtEnd: string;
  /** The fault's marks (see Fault), from the fault, ms. */
  readonly marksMs: Record<string, number>;
  /** The figures of each of OutageOptions.groups' calls. */
  readonly groups: Record<string, GroupFigures>;
  /** Calls begun 2 s or more after the fault ended, and the share of them that succeeded. */
  readonly callsAfterRecovery: number;
  readonly successAfterRecovery: number;
  /** Server RSS after warm-up and after the run, MB. */
  readonly rssBeforeMb: number;
  readonly rssAfterMb: number;
  /**
   * Growth of what the server holds after a full garbage collection (V8's
   * heap in use and memory outside it), from the warm-up to after the
   * cycle, MB: what a leak would show, where RSS also shows the heap V8
   * grew and keeps.
   */
  readonly retainedGrowthMb: number;
  readonly p99Ms: number;
  /** The 99th percentile of the writes acknowledged before the fault, ms: what a write costs. */
  readonly writeP99BeforeFaultMs: number;
  readonly blip: boolean;
}

/** What the calls of one of OutageOptions.groups met. */
export interface GroupFigures {
  readonly calls: number;
  readonly failures: Record<string, number>;
  /** As OutageFigures' of the same names, for these calls. */
  readonly firstOkAfterFaultMs: number | undefined;
  readonly lastFailureAfterFaultMs: number | undefined;
  readonly lostAcknowledged: number;
  /** The longest a failed call took, ms: how fast calls fail. */
  readonly slowestFailureMs: number;
  /** Calls begun from the fault to the restore's end, and the share of them that succeeded. */
  readonly callsDuringFault: number;
  readonly successDuringFault: number;
}

/** Options of {@link runOutage}. */
export interface OutageOptions {
  /**
   * The server's Redis settings: REDIS_URL (Redis itself, or a proxy in
   * front of it), or REDIS_SENTINELS and REDIS_SENTINEL_NAME, and any other
   * REDIS_* setting (REDIS_WAIT_REPLICAS...).
   */
  readonly redisEnv: Readonly<Record<string, string>>;
  readonly callers: number;
  /** Of the callers, those that insert a new session per call (see LoadOptions). */
  readonly insertOnlyCallers?: number;
  readonly deadlineMs: number;
  /** Faults, one after another, each followed by a recovery window. */
  readonly faults: readonly Fault[];
  /** Calls begun ≥ 2 s after each fault's end to wait for before the next step. */
  readonly callsAfterRecovery: number;
  /**
   * Server processes sharing Redis (default 1). With more, every caller's
   * calls take turns between them (gRPC to the others), so consecutive
   * calls of one caller reach Redis over different connections.
   */
  readonly instances?: number;
  /**
   * The callers' users (see LoadOptions.userIds), asked anew for every load
   * (the warm-up, each fault's), so that each load's sessions are its own
   * and their histories start empty: users in chosen places, such as a
   * Cluster's slots.
   */
  readonly users?: () => readonly string[];
  /**
   * Calls to measure apart as well (see OutageFigures.groups), each group
   * named and told by its records, such as the users of the slots a
   * failover moves and the others.
   */
  readonly groups?: Readonly<Record<string, (record: CallRecord) => boolean>>;
}

/**
 * Runs the server (the real entry point) against `redisEnv` under a load of
 * gRPC, gRPC-Web and Connect (HTTP/1.1) callers, applies each fault in turn
 * while watching health, waits until enough calls have run after recovery,
 * then reads every session back and measures what happened.
 */
export async function runOutage(options: OutageOptions): Promise<OutageFigures[]> {
  const cleanup: (() => void)[] = [];
  try {
    const { server, port } = await runServerWithAdmin(
      {
        PORT: "0",
        HOST: "127.0.0.1",
        ...options.redisEnv,
        RPC_LOG_LEVEL: "info",
      },
      { collectableGarbage: true },
    );
    cleanup.push(() => server.kill());
    const pool: ClientPool = clientPool(`http://127.0.0.1:${port}`);
    cleanup.push(() => pool.close());
    const health = watchHealth(pool);
    cleanup.push(health.stop);
    await waitFor("health SERVING", () => health.current() === ServingStatus.SERVING);

    const clients = [
      { name: "grpc", client: pool.sessions({ protocol: "grpc" }) },
      { name: "connect-http1", client: pool.sessions({ protocol: "connect", httpVersion: "1.1" }) },
      { name: "grpc-web", client: pool.sessions({ protocol: "grpc-web" }) },
    ];
    for (let k = 1; k < (options.instances ?? 1); k++) {
      const other = await runServerWithAdmin({
        PORT: "0",
        HOST: "127.0.0.1",
        ...options.redisEnv,
      });
      cleanup.push(() => other.server.kill());
      const otherPool = clientPool(`http://127.0.0.1:${other.port}`);
      cleanup.push(() => otherPool.close());
      // Interleaved, so consecutive picks alternate between instances.
      clients.splice(2 * k - 1, 0, {
        name: `grpc@${k}`,
        client: otherPool.sessions({ protocol: "grpc" }),
      });
    }
    const switchClients = (options.instances ?? 1) > 1;
    // Warm-up, so the RSS baseline is the server's working size, not its start.
    const loadOptions = () => ({
      ...options,
      clients,
      switchClients,
      ...(options.users ? { userIds: options.users() } : {}),
    });
    const warmUp = startLoad(loadOptions());
    await waitFor("the warm-up", () => warmUp.records.length >= (CHAOS ? 5000 : 1000), {
      timeoutMs: 30_000,
    });
    await warmUp.stop();
    const retainedBefore = retained(await server.collectGarbage());
    const rssBeforeMb = rssMb(server.child.pid as number);

    const figures: OutageFigures[] = [];
    for (const fault of options.faults) {
      const load = startLoad(loadOptions());
      await waitFor("calls before the fault", () => load.records.length >= 100, {
        timeoutMs: 10_000,
      });
      const {
        faultAt,
        restoredAt,
        readyAt = restoredAt,
        servedAt = readyAt,
        marks = {},
        blip = false,
      } = await fault();
      const recovered = restoredAt + 2000;
      await waitFor(
        "calls after recovery",
        () =>
          load.records.filter((r) => r.startedAt >= recovered).length >= options.callsAfterRecovery,
        { timeoutMs: 60_000 },
      );
      const records = await load.stop();
      const healthAtEnd = ServingStatus[health.current() ?? ServingStatus.UNKNOWN];
      const reads = await finalReads(records, clients[0]?.client as (typeof clients)[0]["client"]);
      figures.push({
        ...measure(records, reads, health.changes, server, options.deadlineMs, {
          faultAt,
          restoredAt,
          readyAt,
          servedAt,
        }),
        healthAtEnd,
        groups: Object.fromEntries(
          Object.entries(options.groups ?? {}).map(([name, member]) => [
            name,
            measureGroup(records.filter(member), reads.filter(member), {
              faultAt,
              restoredAt,
              servedAt,
            }),
          ]),
        ),
        marksMs: Object.fromEntries(
          Object.entries({ ...marks, served: servedAt }).map(([name, at]) => [name, at - faultAt]),
        ),
        rssBeforeMb,
        rssAfterMb: rssMb(server.child.pid as number),
        retainedGrowthMb: megabytes(retained(await server.collectGarbage()) - retainedBefore),
        blip,
      });
    }
    return figures;
  } finally {
    for (const step of cleanup.reverse()) step();
  }
}

function measure(
  records: readonly CallRecord[],
  reads: readonly CallRecord[],
  changes: readonly { at: number; status: ServingStatus }[],
  server: ServerProcess,
  deadlineMs: number,
  {
    faultAt,
    restoredAt,
    readyAt,
    servedAt,
  }: { faultAt: number; restoredAt: number; readyAt: number; servedAt: number },
): Omit<
  OutageFigures,
  "rssBeforeMb" | "rssAfterMb" | "retainedGrowthMb" | "blip" | "healthAtEnd" | "marksMs" | "groups"
> {
  const after = records.filter((r) => r.startedAt >= restoredAt);
  const failedAfter = after.filter((r) => !succeeded(r));
  const recovered = records.filter((r) => r.startedAt >= restoredAt + 2000);
  const down = changes.find((c) => c.at >= faultAt && c.status !== ServingStatus.SERVING);
  const up = changes.find((c) => c.at >= restoredAt && c.status === ServingStatus.SERVING);
  const back = down && changes.find((c) => c.at >= down.at && c.status === ServingStatus.SERVING);
  const failed = records.filter((r) => !succeeded(r));
  const failureMessages: Record<string, number> = {};
  for (const { message = "(none)" } of failed) {
    failureMessages[message] = (failureMessages[message] ?? 0) + 1;
  }
  const lost = lostAcknowledgedWrites(records, reads).map((r) => r.endedAt - faultAt);
  const serverDurations = logLines(server.output)
    .filter(
      (l) => l.msg === "rpc" && String(l.method).startsWith("sessionstore.v1.SessionStoreService/"),
    )
    .map((l) => Number(l.durationMs));
  return {
    calls: records.length,
    failures: failuresByCode(records),
    failureMessages,
    lostAcknowledged: lost.length,
    lostAcknowledgedAfterFaultMs: lost.length ? [Math.min(...lost), Math.max(...lost)] : undefined,
    violations: checkHistories(records, reads),
    clientOverrunMs: Math.max(0, ...records.map((r) => r.endedAt - r.startedAt - deadlineMs)),
    serverOverrunMs: Math.max(0, ...serverDurations.map((d) => Math.round(d - deadlineMs))),
    healthDownMs: down && down.at - faultAt,
    // SERVING may come before the harness's own PING was answered: 0 then.
    healthUpMs: up && Math.max(0, up.at - readyAt),
    redisReadyMs: readyAt - restoredAt,
    outageMs: restoredAt - faultAt,
    firstOkAfterRestoreMs: ((r) => r && r.endedAt - restoredAt)(after.find(succeeded)),
    lastFailureAfterRestoreMs: ((r) => r && r.endedAt - restoredAt)(failedAfter.at(-1)),
    firstOkAfterFaultMs: ((r) => r && r.endedAt - faultAt)(
      records.find((r) => r.startedAt >= servedAt && succeeded(r)),
    ),
    lastFailureAfterFaultMs: ((r) => r && r.endedAt - faultAt)(
      failed.filter((r) => r.startedAt >= faultAt).at(-1),
    ),
    healthBackAfterFaultMs: back && back.at - faultAt,
    callsAfterRecovery: recovered.length,
    successAfterRecovery: recovered.filter(succeeded).length / Math.max(1, recovered.length),
    p99Ms: quantile(
      records.map((r) => r.endedAt - r.startedAt),
      0.99,
    ),
    writeP99BeforeFaultMs: quantile(
      records
        .filter((r) => r.endedAt < faultAt && r.op !== "get" && r.code === "ok")
        .map((r) => r.endedAt - r.startedAt),
      0.99,
    ),
  };
}

/** The figures of one group's calls and final reads (see OutageOptions.groups). */
function measureGroup(
  records: readonly CallRecord[],
  reads: readonly CallRecord[],
  { faultAt, restoredAt, servedAt }: { faultAt: number; restoredAt: number; servedAt: number },
): GroupFigures {
  const failed = records.filter((r) => !succeeded(r));
  const during = records.filter((r) => r.startedAt >= faultAt && r.startedAt < restoredAt);
  return {
    calls: records.length,
    failures: failuresByCode(records),
    firstOkAfterFaultMs: ((r) => r && r.endedAt - faultAt)(
      records.find((r) => r.startedAt >= servedAt && succeeded(r)),
    ),
    lastFailureAfterFaultMs: ((r) => r && r.endedAt - faultAt)(
      failed.filter((r) => r.startedAt >= faultAt).at(-1),
    ),
    lostAcknowledged: lostAcknowledgedWrites(records, reads).length,
    slowestFailureMs: Math.max(0, ...failed.map((r) => r.endedAt - r.startedAt)),
    callsDuringFault: during.length,
    successDuringFault: during.filter(succeeded).length / Math.max(1, during.length),
  };
}

/**
 * Health.Watch of the whole server, every change recorded with its time.
 * The server ends every call, a watch too, at MAX_DEADLINE (60 s): a long
 * run watches again, recording only what changed meanwhile.
 */
function watchHealth(pool: ClientPool) {
  const changes: { at: number; status: ServingStatus }[] = [];
  const abort = new AbortController();
  const health = createClient(Health, pool.transport({ protocol: "grpc" }));
  void (async () => {
    while (!abort.signal.aborted) {
      try {
        for await (const { status } of health.watch({ service: "" }, { signal: abort.signal })) {
          if (changes.at(-1)?.status !== status) changes.push({ at: Date.now(), status });
        }
      } catch {
        // Ended by stop(), or by MAX_DEADLINE: watch again unless stopped,
        // after a pause so that a server gone for good is not asked in a loop.
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  })();
  return {
    changes,
    current: () => changes.at(-1)?.status,
    stop: () => abort.abort(),
  };
}

/** Starts a timer for a timed outage: the one kind of wait these tests make on purpose. */
export function outageLasts(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The bounds of the reliability issue, for every fault of a run: histories
 * that keep the contract, only UNAVAILABLE or DEADLINE_EXCEEDED, every RPC
 * ended within its deadline, health within 1 s both ways, 99% success from
 * 2 s after the fault ends, flat memory (RSS bounded, and what the server
 * retains after a full collection). Prints the figures for the doc.
 */
export function expectWithinBounds(figures: OutageFigures[], label: string) {
  for (const f of figures) {
    console.info(`${label}: ${JSON.stringify({ ...f, violations: f.violations.length })}`);
    expect(f.violations.slice(0, 5)).toEqual([]);
    // Failures are only "try again": never NOT_FOUND, INTERNAL or anything else.
    expect(
      Object.keys(f.failures).filter((c) => c !== "Unavailable" && c !== "DeadlineExceeded"),
    ).toEqual([]);
    // Every RPC ends within its deadline: the client's own timer enforces it,
    // so the server's side (its RPC log) is the one that shows whether it does.
    expect(f.serverOverrunMs).toBeLessThanOrEqual(50);
    if (!f.blip) {
      expect(f.healthDownMs).toBeLessThanOrEqual(1000);
      expect(f.healthUpMs).toBeLessThanOrEqual(1000);
    }
    expect(f.successAfterRecovery).toBeGreaterThanOrEqual(0.99);
    // Flat: one cycle cannot tell a leak from the heap V8 keeps after an
    // outage's burst of failing calls (Node 24 kept +60 to +120 MB after one
    // cycle here, Node 20 +45), so the fast subset guards against gross
    // leaks only; CHAOS=1 holds each cycle to +60 MB and checks, below,
    // that the growth levels off over cycles, which a leak would not.
    expect(f.rssAfterMb).toBeLessThanOrEqual(f.rssBeforeMb + (CHAOS ? 60 : 200));
    // What a leak would show, with the heap V8 keeps out of the way: what
    // the server holds after a full collection (-0.5 to +1.8 MB after a
    // cycle in the runs so far, where RSS grew by 8-57 MB).
    expect(f.retainedGrowthMb).toBeLessThanOrEqual(16);
  }
  // Over several cycles the growth must level off: a leak would not.
  const [previous, last] = figures.slice(-2);
  if (figures.length >= 3 && previous && last) {
    expect(last.rssAfterMb - previous.rssAfterMb).toBeLessThanOrEqual(25);
  }
}
