import { readFileSync } from "node:fs";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { sessionFixture, ttl } from "./fixtures.js";
import { uniqueUserId } from "./ids.js";

/** A typed SessionStoreService client of any protocol. */
export type SessionsClient = Client<typeof SessionStoreService>;

/** One call of a load run, as its caller saw it. */
export interface CallRecord {
  readonly caller: number;
  /** Which client (protocol) made it. */
  readonly via: string;
  readonly op: "upsert" | "get" | "delete";
  readonly userId: string;
  readonly sessionId: string;
  /** Date.now() when the call began and when its outcome arrived. */
  readonly startedAt: number;
  readonly endedAt: number;
  readonly deadlineMs: number;
  readonly code: Code | "ok";
  /** upsert: the version stored; get: the version read. */
  readonly version?: bigint;
  /** delete: whether a session was deleted. */
  readonly deleted?: boolean;
}

/** Options of {@link startLoad}. */
export interface LoadOptions {
  /** Concurrent callers; each makes one call at a time. */
  readonly callers: number;
  /** Clients the callers take turns with (caller n uses clients[n % length]). */
  readonly clients: readonly { readonly name: string; readonly client: SessionsClient }[];
  /** Every call's deadline. */
  readonly deadlineMs: number;
  /** Sessions per caller, all of one user of its own. */
  readonly sessionsPerCaller?: number;
  /**
   * Caller n's user is userIds[n] (default, and past its end: a user id no
   * other test uses), for a test that needs users in particular places,
   * such as the Cluster slots it moves. One caller per user still.
   */
  readonly userIds?: readonly string[];
  /**
   * Each caller alternates Upsert and Delete of one session (s0), so that
   * its user's keys keep going and coming back: to Redis, every Upsert is
   * a new user's (default: the mixed pattern of startLoad).
   */
  readonly churn?: boolean;
  /**
   * Each call goes through the next client rather than the caller's own:
   * with clients of several server instances, a caller's consecutive calls
   * reach Redis over different connections, as behind a load balancer.
   */
  readonly switchClients?: boolean;
}

/** A running load: every call's record, and how to stop it. */
export interface Load {
  readonly records: CallRecord[];
  /** Stops issuing calls and resolves once every caller's last call ended. */
  stop(): Promise<CallRecord[]>;
}

/**
 * A fixed number of callers, each looping over its own user's sessions:
 * Upsert, Get, Upsert, Get ... and a Delete every tenth call, each with the
 * same deadline, every outcome recorded with its timestamps. One caller per
 * user and one call at a time per caller make each session's history a
 * sequence, which checkHistories can hold to the contract.
 */
export function startLoad(options: LoadOptions): Load {
  const records: CallRecord[] = [];
  const perCaller = options.sessionsPerCaller ?? 3;
  let stopping = false;
  const caller = async (n: number) => {
    const userId = options.userIds?.[n] ?? uniqueUserId();
    for (let i = 0; !stopping; i++) {
      const pick = options.switchClients ? n + i : n;
      const { name, client } = options.clients[
        pick % options.clients.length
      ] as LoadOptions["clients"][number];
      const sessionId = options.churn ? "s0" : `s${i % perCaller}`;
      const op = operation(i, options.churn ?? false);
      const startedAt = Date.now();
      const callOptions = { timeoutMs: options.deadlineMs };
      let result: Pick<CallRecord, "code" | "version" | "deleted">;
      try {
        if (op === "upsert") {
          const { session } = await client.upsert(
            { session: sessionFixture(userId, sessionId), ttl: ttl(600_000) },
            callOptions,
          );
          result = { code: "ok", version: session?.version ?? -1n };
        } else if (op === "get") {
          const { session } = await client.get({ userId, sessionId }, callOptions);
          result = { code: "ok", version: session?.version ?? -1n };
        } else {
          const { deleted } = await client.delete({ userId, sessionId }, callOptions);
          result = { code: "ok", deleted };
        }
      } catch (error) {
        result = { code: ConnectError.from(error).code };
      }
      const record = {
        caller: n,
        via: name,
        op,
        userId,
        sessionId,
        startedAt,
        endedAt: Date.now(),
      };
      records.push({ ...record, deadlineMs: options.deadlineMs, ...result });
    }
  };
  const running = Array.from({ length: options.callers }, (_, n) => caller(n));
  return {
    records,
    async stop() {
      stopping = true;
      await Promise.all(running);
      return records;
    },
  };
}

/** A caller's i-th operation: see startLoad, and LoadOptions.churn. */
function operation(i: number, churn: boolean): CallRecord["op"] {
  if (churn) return i % 2 === 0 ? "upsert" : "delete";
  return i % 10 === 9 ? "delete" : i % 2 === 0 ? "upsert" : "get";
}

/** What one session may be, given the calls so far: absent, and/or present with a version in [lo, hi]. */
interface Possible {
  absent: boolean;
  present: { lo: bigint; hi: bigint } | undefined;
}

/** A call whose outcome the contract forbids, with why. */
export interface Violation {
  readonly kind: "lost" | "resurrected" | "phantom" | "wrong code";
  readonly record: CallRecord;
}

/**
 * Holds every session's history to the contract, treating a failed write as
 * one that may or may not have happened at its place in the sequence, but
 * nowhere else. So a write lost after it was acknowledged (a Get sees an
 * older version, or nothing), a deleted session that comes back with no
 * Upsert since, or a version no sequence of the calls could produce (a
 * failed write applied later, behind the client's back, or twice) are all
 * violations. `finalReads` are Gets made after the run, when all is calm.
 */
export function checkHistories(
  records: readonly CallRecord[],
  finalReads: readonly CallRecord[] = [],
): Violation[] {
  const sessions = new Map<string, CallRecord[]>();
  for (const record of [...records, ...finalReads]) {
    const key = `${record.userId}\0${record.sessionId}`;
    const history = sessions.get(key) ?? [];
    history.push(record);
    sessions.set(key, history);
  }
  const violations: Violation[] = [];
  for (const history of sessions.values()) {
    history.sort((a, b) => a.startedAt - b.startedAt);
    let state: Possible = { absent: true, present: undefined };
    for (const record of history) {
      const fail = (kind: Violation["kind"]) => violations.push({ kind, record });
      const { present } = state;
      const ok = record.code === "ok";
      const unknown =
        record.code !== "ok" && !(record.op === "get" && record.code === Code.NotFound);
      if (unknown && record.code !== Code.Unavailable && record.code !== Code.DeadlineExceeded) {
        fail("wrong code");
      }
      if (record.op === "upsert") {
        if (ok) {
          const v = record.version ?? -1n;
          const fits =
            (state.absent && v === 1n) ||
            (present !== undefined && v >= present.lo + 1n && v <= present.hi + 1n);
          if (!fits) fail(present && v <= present.lo ? "lost" : "phantom");
          state = { absent: false, present: { lo: v, hi: v } };
        } else {
          // Applied or not: the old state, or one version more (1 if absent).
          const candidates = [
            ...(state.absent ? [1n] : []),
            ...(present ? [present.lo, present.hi + 1n] : []),
          ];
          // bigints: Math.min/max do not take them.
          candidates.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          const lo = candidates[0] as bigint;
          const hi = candidates[candidates.length - 1] as bigint;
          state = { absent: state.absent, present: { lo, hi } };
        }
      } else if (record.op === "delete") {
        if (ok) {
          if (record.deleted && !present) fail("phantom");
          if (!record.deleted && !state.absent) fail("lost");
          state = { absent: true, present: undefined };
        } else {
          state = { absent: true, present };
        }
      } else if (ok) {
        const v = record.version ?? -1n;
        if (!present) fail("resurrected");
        else if (v < present.lo) fail("lost");
        else if (v > present.hi) fail("phantom");
        state = { absent: false, present: { lo: v, hi: v } };
      } else if (record.code === Code.NotFound) {
        if (!state.absent) fail("lost");
        state = { absent: true, present: undefined };
      }
    }
  }
  return violations;
}

/**
 * Whether a record's outcome is one the load expects whatever Redis does:
 * OK, or NOT_FOUND from a Get (checkHistories says whether the session
 * could really be absent).
 */
export function succeeded(record: CallRecord): boolean {
  return record.code === "ok" || (record.op === "get" && record.code === Code.NotFound);
}

/** Failures counted by status name, e.g. { UNAVAILABLE: 12 }. */
export function failuresByCode(records: readonly CallRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const record of records) {
    if (succeeded(record)) continue;
    const name = Code[record.code as Code] ?? String(record.code);
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/** The latest Get of every session the load touched, made after it (for checkHistories). */
export async function finalReads(
  records: readonly CallRecord[],
  client: SessionsClient,
): Promise<CallRecord[]> {
  const keys = new Map<string, { userId: string; sessionId: string }>();
  for (const { userId, sessionId } of records)
    keys.set(`${userId}\0${sessionId}`, { userId, sessionId });
  const reads: CallRecord[] = [];
  for (const { userId, sessionId } of keys.values()) {
    const startedAt = Date.now();
    let result: Pick<CallRecord, "code" | "version">;
    try {
      const { session } = await client.get({ userId, sessionId }, { timeoutMs: 5000 });
      result = { code: "ok", version: session?.version ?? -1n };
    } catch (error) {
      result = { code: ConnectError.from(error).code };
    }
    const base = { caller: -1, via: "final", op: "get", userId, sessionId, startedAt } as const;
    reads.push({ ...base, endedAt: Date.now(), deadlineMs: 5000, ...result });
  }
  return reads;
}

/** A process's resident set size in MB, from /proc (Linux). */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return Math.round(kb / 102.4) / 10;
}

/** The q-quantile (0..1) of `values`. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}
