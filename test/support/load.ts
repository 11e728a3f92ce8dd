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
  /** The error's message, for a call that failed. */
  readonly message?: string;
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
  /**
   * Of the callers, how many (the first ones) write a new session on every
   * call and never read or delete it (default 0). Every one they get
   * acknowledged must be there at the end, so their lost writes are counted
   * exactly, where the other callers' histories can only bound them.
   */
  readonly insertOnlyCallers?: number;
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
 * sequence, which checkHistories can hold to the contract. Insert-only
 * callers (see LoadOptions) write a session of their own per call instead.
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
      const insertOnly = n < (options.insertOnlyCallers ?? 0);
      const sessionId = insertOnly ? `w${i}` : options.churn ? "s0" : `s${i % perCaller}`;
      const op = insertOnly ? "upsert" : operation(i, options.churn ?? false);
      const startedAt = Date.now();
      const callOptions = { timeoutMs: options.deadlineMs };
      let result: Pick<CallRecord, "code" | "message" | "version" | "deleted">;
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
        const { code, rawMessage } = ConnectError.from(error);
        result = { code, message: rawMessage };
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
  const violations: Violation[] = [];
  for (const history of histories(records, finalReads)) {
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
 * The acknowledged writes whose effect a later call or final read of their
 * session shows gone. Each acknowledged write is held against what follows
 * it up to the session's next acknowledged write (whose reply says what it
 * built on): from the state it left, failed writes may or may not have
 * applied, and a read, or the next write's reply, that no such sequence can
 * give means it was lost. An Upsert acknowledged with version v is lost when
 * the session is later read older than v, or absent with no Delete sent since
 * (a failed one may have applied); a Delete, when the session is later read
 * with a version no failed Upsert since could have made. Reads do not narrow
 * what is possible here, unlike in checkHistories: a primary about to be
 * demoted can serve a write that was never acknowledged and is then dropped,
 * and only acknowledged writes count. Versions a failed write could not have
 * made ("phantom") are checkHistories' business, not a loss.
 */
export function lostAcknowledgedWrites(
  records: readonly CallRecord[],
  finalReads: readonly CallRecord[] = [],
): CallRecord[] {
  const lost: CallRecord[] = [];
  for (const history of histories(records, finalReads)) {
    // The latest acknowledged write not yet judged, and what may have followed it.
    let pending: { write: CallRecord; state: Possible } | undefined;
    for (const record of history) {
      if (pending && showsUndone(pending, record)) {
        lost.push(pending.write);
        pending = undefined;
      }
      if (record.code === "ok" && record.op === "upsert") {
        const version = record.version ?? -1n;
        pending = {
          write: record,
          state: { absent: false, present: { lo: version, hi: version } },
        };
      } else if (record.code === "ok" && record.op === "delete") {
        pending = { write: record, state: { absent: true, present: undefined } };
      } else if (pending && record.code !== "ok" && record.op !== "get") {
        pending.state = mayHaveApplied(pending.state, record.op);
      }
    }
  }
  return lost;
}

/** The states a session may be in after a failed `op`, applied or not, from `state`. */
function mayHaveApplied({ absent, present }: Possible, op: "upsert" | "delete"): Possible {
  if (op === "delete") return { absent: true, present };
  // Applied on an absent session it makes version 1, on a present one one more.
  const lo = absent || !present ? 1n : present.lo;
  const hi = present ? present.hi + 1n : 1n;
  return { absent, present: { lo, hi } };
}

/**
 * Whether `record` shows the session in none of the states `pending` (an
 * acknowledged write and what may have followed it) allows, in the way a
 * lost write does: after an Upsert, an older version or none; after a
 * Delete, a session no failed Upsert since could have made. A version
 * above what an Upsert allows is a phantom (checkHistories), not a loss.
 */
function showsUndone(
  { write, state: { absent, present } }: { write: CallRecord; state: Possible },
  record: CallRecord,
): boolean {
  if (record.code === Code.NotFound && record.op === "get") return !absent;
  if (record.code !== "ok") return false;
  if (record.op === "delete") return record.deleted ? !present : !absent;
  // What the call found: an Upsert's reply is one more than the version it built on.
  const found = (record.version ?? -1n) - (record.op === "upsert" ? 1n : 0n);
  if (found === 0n) return !absent;
  if (!present) return true;
  return write.op === "delete" ? found > present.hi : found < present.lo;
}

/** Every session's calls (and final read), each in the order they began. */
function histories(
  records: readonly CallRecord[],
  finalReads: readonly CallRecord[],
): CallRecord[][] {
  const sessions = new Map<string, CallRecord[]>();
  for (const record of [...records, ...finalReads]) {
    const key = `${record.userId}\0${record.sessionId}`;
    const history = sessions.get(key) ?? [];
    history.push(record);
    sessions.set(key, history);
  }
  for (const history of sessions.values()) history.sort((a, b) => a.startedAt - b.startedAt);
  return [...sessions.values()];
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

/**
 * The latest Get of every session the load touched, made after it (for
 * checkHistories), 16 at a time: insert-only callers leave thousands.
 */
export async function finalReads(
  records: readonly CallRecord[],
  client: SessionsClient,
): Promise<CallRecord[]> {
  const keys = new Map<string, { userId: string; sessionId: string }>();
  for (const { userId, sessionId } of records)
    keys.set(`${userId}\0${sessionId}`, { userId, sessionId });
  const pending = [...keys.values()];
  const reads: CallRecord[] = [];
  const reader = async () => {
    for (let next = pending.pop(); next; next = pending.pop()) {
      const { userId, sessionId } = next;
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
  };
  await Promise.all(Array.from({ length: 16 }, reader));
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
