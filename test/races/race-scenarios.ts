import { performance } from "node:perf_hooks";
import { waitFor } from "../../harness/wait-for.js";
import { uniqueUserId } from "../support/ids.js";
import type { Answer, RaceClient, RaceTarget, Refusal } from "./race-target.js";
import type { RacedUser } from "./redis-layout-check.js";

// The three races of docs/reliability.md ("Races"). Each runs against any
// RaceTarget and returns its figures with every anomaly it saw, rather than
// stopping at the first: a report of all that went wrong in a run says more
// about a race than its first symptom. The tests assert on the reports.

/**
 * A ttl no race outlives: no session of a race expires unless the race asks
 * for it. (A keeper with a 10-minute ttl expired in the middle of a
 * 12-minute long-mode run, and the rounds after it reported it missing.)
 */
const LONG_TTL_MS = 86_400_000;

/** Anomalies kept verbatim per report; the rest are only counted. */
const KEPT_ANOMALIES = 20;

/** A run's anomalies: the first few in full, and how many there were. */
export class Anomalies {
  readonly first: string[] = [];
  count = 0;

  add(what: string): void {
    this.count++;
    if (this.first.length < KEPT_ANOMALIES) this.first.push(what);
  }
}

function describe<T>(answer: Answer<T>): string {
  return answer.ok ? `OK ${String(answer.value)}` : answer.refusal;
}

/** Counts of outcomes by name, e.g. {"upsert-cas ok": 12, "upsert-cas aborted": 40}. */
export type Tally = Record<string, number>;

function count(tally: Tally, key: string): void {
  tally[key] = (tally[key] ?? 0) + 1;
}

// ---------------------------------------------------------------------------
// 1. Concurrent CAS writers on one session

/** Figures of {@link casRace}. */
export interface CasRaceReport {
  readonly target: string;
  /** Whose sessions the race wrote, for inspecting the backend afterwards. */
  readonly raced: readonly RacedUser[];
  readonly writers: number;
  /** Successful CAS writes, i.e. versions made: the rounds of the race. */
  readonly wins: number;
  /** CAS writes refused with ABORTED. */
  readonly losers: number;
  /** The version a final Get read: 1 (the insert) + wins when nothing was lost. */
  readonly finalVersion: bigint;
  readonly anomalies: Anomalies;
  readonly durationMs: number;
}

/**
 * `writers` callers each loop "compare-and-set the version I last saw, and on
 * ABORTED read the current one", as clients rotating a refresh token do,
 * until `rounds` versions have been made. Checks: every version has exactly
 * one winner and the winner's reply says expected + 1; every loser got
 * ABORTED and then read a newer version than it had expected (versions never
 * go back); the final version is 1 + the number of wins, and the final data
 * is the last winner's.
 */
export async function casRace(
  target: RaceTarget,
  { writers, rounds }: { writers: number; rounds: number },
): Promise<CasRaceReport> {
  const userId = uniqueUserId();
  const sessionId = "cas";
  const anomalies = new Anomalies();
  const started = performance.now();
  const first = target.client(0);
  const inserted = await first.upsert({
    userId,
    sessionId,
    tag: "insert",
    ttlMs: LONG_TTL_MS,
    expectedVersion: 0n,
  });
  if (!inserted.ok || inserted.value.version !== 1n) {
    anomalies.add(`the insert answered ${describe(inserted)}`);
  }
  /** The tag each winner wrote, by the version its write made. */
  const winnerOf = new Map<bigint, string>([[1n, "insert"]]);
  let wins = 0;
  let losers = 0;

  async function writer(index: number, client: RaceClient): Promise<void> {
    let known = 1n;
    for (let attempt = 0; wins < rounds; attempt++) {
      const tag = `writer-${index}-${attempt}`;
      const result = await client.upsert({
        userId,
        sessionId,
        tag,
        ttlMs: LONG_TTL_MS,
        expectedVersion: known,
      });
      if (result.ok) {
        wins++;
        const made = result.value.version;
        if (made !== known + 1n) anomalies.add(`CAS on ${known} made version ${made}`);
        const rival = winnerOf.get(made);
        if (rival !== undefined) anomalies.add(`version ${made} won by ${rival} and ${tag}`);
        winnerOf.set(made, tag);
        known = made;
      } else if (result.refusal === "aborted") {
        losers++;
        const current = await client.get(userId, sessionId);
        if (!current.ok) {
          anomalies.add(`a loser's Get answered ${current.refusal}`);
          return;
        }
        if (current.value.version <= known) {
          anomalies.add(`ABORTED on ${known}, yet the stored version is ${current.value.version}`);
        }
        known = current.value.version;
      } else {
        anomalies.add(`CAS on ${known} answered ${result.refusal}`);
        return;
      }
    }
  }

  await Promise.all(Array.from({ length: writers }, (_, i) => writer(i, target.client(i))));
  const final = await first.get(userId, sessionId);
  let finalVersion = 0n;
  if (!final.ok) {
    anomalies.add(`the final Get answered ${final.refusal}`);
  } else {
    finalVersion = final.value.version;
    if (finalVersion !== BigInt(1 + wins)) {
      anomalies.add(`final version ${finalVersion} after 1 insert and ${wins} wins`);
    }
    if (final.value.tag !== winnerOf.get(finalVersion)) {
      anomalies.add(
        `the final data is ${final.value.tag}, the last winner wrote ${winnerOf.get(finalVersion)}`,
      );
    }
  }
  // Every version from 2 to 1 + wins was made by exactly one win.
  for (let v = 2n; v <= BigInt(1 + wins); v++) {
    if (!winnerOf.has(v)) anomalies.add(`no winner recorded for version ${v}`);
  }
  return {
    target: target.name,
    raced: [{ userId }],
    writers,
    wins,
    losers,
    finalVersion,
    anomalies,
    durationMs: performance.now() - started,
  };
}

// ---------------------------------------------------------------------------
// 2. Delete and DeleteByUser against CAS Upserts, Touches and Gets

/** How a round of {@link deleteRace} deletes its session. */
export type DeleteKind = "Delete" | "Delete(expected_version)" | "DeleteByUser(except)";
const DELETE_KINDS: readonly DeleteKind[] = [
  "Delete",
  "Delete(expected_version)",
  "DeleteByUser(except)",
];

/** The session of each lane's user that every DeleteByUser excepts. */
const KEEPER = "keeper";

/** How often a round's Delete(expected_version) may be ABORTED before it deletes unconditionally. */
const CAS_DELETE_ATTEMPTS = 20;

/** A racer that has not seen its session gone after this many calls is stuck. */
const MAX_RACER_CALLS = 2_000;

/** Figures of {@link deleteRace}. */
export interface DeleteRaceReport {
  readonly target: string;
  /** Whose sessions the race wrote, for inspecting the backend afterwards. */
  readonly raced: readonly RacedUser[];
  readonly rounds: number;
  /** Rounds per way of deleting. */
  readonly byKind: Record<DeleteKind, number>;
  /** Calls of the racers, by operation and outcome. */
  readonly calls: Tally;
  /** Racer calls in flight while the delete was (sent before it answered, answered after it was sent). */
  readonly overlapping: number;
  /** Racer calls sent after the delete answered: every one must have found nothing. */
  readonly afterDelete: number;
  /** Delete(expected_version) calls refused ABORTED because a CAS write got in first. */
  readonly deleteAborts: number;
  /** Delete(expected_version) rounds that lost {@link CAS_DELETE_ATTEMPTS} times and deleted unconditionally. */
  readonly deleteFallbacks: number;
  readonly anomalies: Anomalies;
  readonly durationMs: number;
}

/**
 * Rounds of: insert a session; start `casWriters` CAS writers, `touchers`
 * and `readers` on it; once the racers have made a few calls (a number that
 * varies by round, so the delete lands at different points of the race),
 * delete it by Delete, Delete with expected_version (re-read on ABORTED), or
 * DeleteByUser excepting the lane's keeper session. Checks: every racer call
 * sent after the delete answered finds nothing (NOT_FOUND for all of CAS
 * Upsert, Touch and Get: nothing brings the session back); nothing vanishes
 * before a delete is sent; the delete deletes exactly that session; after
 * the round the session is not listed and the keeper is untouched.
 *
 * `lanes` rounds run at once, each lane with a user of its own.
 */
export async function deleteRace(
  target: RaceTarget,
  {
    rounds,
    lanes,
    casWriters,
    touchers,
    readers,
  }: { rounds: number; lanes: number; casWriters: number; touchers: number; readers: number },
): Promise<DeleteRaceReport> {
  const anomalies = new Anomalies();
  const calls: Tally = {};
  const byKind: Record<DeleteKind, number> = {
    Delete: 0,
    "Delete(expected_version)": 0,
    "DeleteByUser(except)": 0,
  };
  let overlapping = 0;
  let afterDelete = 0;
  let deleteAborts = 0;
  let deleteFallbacks = 0;
  const perRound = casWriters + touchers + readers + 1;
  const started = performance.now();

  const raced: RacedUser[] = [];

  async function lane(laneIndex: number): Promise<void> {
    const userId = uniqueUserId();
    raced.push({ userId });
    const client = (j: number) => target.client(laneIndex * perRound + j);
    const keeper = await client(0).upsert({
      userId,
      sessionId: KEEPER,
      tag: "keeper",
      ttlMs: LONG_TTL_MS,
      expectedVersion: 0n,
    });
    if (!keeper.ok) anomalies.add(`the keeper's insert answered ${keeper.refusal}`);
    for (let round = laneIndex; round < rounds; round += lanes) {
      const kind = DELETE_KINDS[round % DELETE_KINDS.length] as DeleteKind;
      byKind[kind]++;
      await deleteRound(userId, `round-${round}`, kind, round % 7, client);
    }
  }

  async function deleteRound(
    userId: string,
    sessionId: string,
    kind: DeleteKind,
    callsBeforeDelete: number,
    client: (j: number) => RaceClient,
  ): Promise<void> {
    const inserted = await client(0).upsert({
      userId,
      sessionId,
      tag: "insert",
      ttlMs: LONG_TTL_MS,
      expectedVersion: 0n,
    });
    if (!inserted.ok) {
      anomalies.add(`${sessionId}: the insert answered ${inserted.refusal}`);
      return;
    }
    let deleteSentAt = Number.POSITIVE_INFINITY;
    let deleteDoneAt = Number.POSITIVE_INFINITY;
    let racerCalls = 0;
    let startDelete: () => void = () => {};
    const deleteMayStart = new Promise<void>((resolve) => {
      startDelete = resolve;
    });
    let deleted: () => void = () => {};
    const deleteDone = new Promise<void>((resolve) => {
      deleted = resolve;
    });
    if (callsBeforeDelete === 0) startDelete();

    /** Records one racer call; says whether the racer has seen all it came for. */
    const settle = (
      op: string,
      sentAt: number,
      result: Answer<unknown>,
      allowed: readonly Refusal[],
    ): "again" | "done" => {
      const doneAt = performance.now();
      count(calls, `${op} ${result.ok ? "ok" : result.refusal}`);
      if (++racerCalls >= callsBeforeDelete) startDelete();
      if (sentAt < deleteDoneAt && doneAt > deleteSentAt) overlapping++;
      if (sentAt > deleteDoneAt) {
        afterDelete++;
        if (result.ok || result.refusal !== "not_found") {
          anomalies.add(`${sessionId}: ${op} sent after ${kind} answered ${describe(result)}`);
        }
        return "done";
      }
      if (!result.ok && !allowed.includes(result.refusal)) {
        anomalies.add(`${sessionId}: ${op} answered ${result.refusal}`);
        return "done";
      }
      if (
        !result.ok &&
        result.refusal === "not_found" &&
        deleteSentAt === Number.POSITIVE_INFINITY
      ) {
        anomalies.add(`${sessionId}: ${op} found nothing before any delete was sent`);
      }
      return "again";
    };

    /** Calls `call` until one sent after the delete answered has found nothing. */
    const racer = async (
      op: string,
      call: () => Promise<Answer<unknown>>,
      allowed: readonly Refusal[],
    ): Promise<void> => {
      for (let calls = 0; calls < MAX_RACER_CALLS; calls++) {
        const sentAt = performance.now();
        const result = await call();
        if (settle(op, sentAt, result, allowed) === "done") return;
        // Gone while the delete is still in flight: the call that proves
        // the point is the next one after the delete's answer.
        if (!result.ok && result.refusal === "not_found") await deleteDone;
      }
      anomalies.add(`${sessionId}: ${op} still found the session after ${MAX_RACER_CALLS} calls`);
    };

    const casWriter = (c: RaceClient, index: number) => {
      let known = 1n;
      let attempt = 0;
      return racer("Upsert(expected_version)", async () => {
        const result = await c.upsert({
          userId,
          sessionId,
          tag: `cas-${index}-${attempt++}`,
          ttlMs: LONG_TTL_MS,
          expectedVersion: known,
        });
        if (result.ok) {
          known = result.value.version;
        } else if (result.refusal === "aborted") {
          // Learn the current version for the next attempt; a Get that
          // finds nothing leaves `known`, and the next attempt reports it.
          const readAt = performance.now();
          const current = await c.get(userId, sessionId);
          if (current.ok) known = current.value.version;
          if (current.ok && readAt > deleteDoneAt) {
            anomalies.add(`${sessionId}: a CAS writer's Get sent after ${kind} found the session`);
          }
        }
        return result;
      }, ["aborted", "not_found"]);
    };

    const racers: Promise<void>[] = [];
    let j = 1;
    for (let i = 0; i < casWriters; i++) racers.push(casWriter(client(j++), i));
    for (let i = 0; i < touchers; i++) {
      const c = client(j++);
      racers.push(racer("Touch", () => c.touch(userId, sessionId, LONG_TTL_MS), ["not_found"]));
    }
    for (let i = 0; i < readers; i++) {
      const c = client(j++);
      racers.push(racer("Get", () => c.get(userId, sessionId), ["not_found"]));
    }

    const deleter = client(j);
    const deleting = (async () => {
      await deleteMayStart;
      deleteSentAt = performance.now();
      await runDelete(deleter, userId, sessionId, kind);
      deleteDoneAt = performance.now();
      deleted();
    })();
    await Promise.all([...racers, deleting]);

    // The round is over: the session stays gone, the keeper stays as it was.
    const after = await deleter.get(userId, sessionId);
    if (after.ok || after.refusal !== "not_found") {
      anomalies.add(`${sessionId}: a Get after the round answered ${describe(after)}`);
    }
    const listed = await deleter.listPage(userId, 10, undefined);
    if (!listed.ok || listed.value.ids.join() !== KEEPER) {
      anomalies.add(
        `${sessionId}: ListByUser after the round answered ${listed.ok ? listed.value.ids.join() : listed.refusal}`,
      );
    }
    const keeper = await deleter.get(userId, KEEPER);
    if (!keeper.ok || keeper.value.version !== 1n) {
      anomalies.add(`${sessionId}: the keeper reads ${describe(keeper)} after the round`);
    }
  }

  async function runDelete(
    c: RaceClient,
    userId: string,
    sessionId: string,
    kind: DeleteKind,
  ): Promise<void> {
    if (kind === "Delete") {
      const result = await c.delete(userId, sessionId, undefined);
      if (!result.ok || !result.value)
        anomalies.add(`${sessionId}: Delete answered ${describe(result)}`);
      return;
    }
    if (kind === "DeleteByUser(except)") {
      const result = await c.deleteByUser(userId, [KEEPER]);
      if (!result.ok || result.value !== 1) {
        anomalies.add(`${sessionId}: DeleteByUser answered ${describe(result)}, not 1`);
      }
      return;
    }
    // Compare-and-delete: the CAS writers keep moving the version, and a
    // deleter on a slower path (Connect over HTTP/1.1 against writers on
    // the gRPC fast path) can lose to them for as long as they write flat
    // out. That is CAS working as specified, not a safety problem, so after
    // a few losses it does what a client would: delete unconditionally.
    for (let attempt = 0; attempt < CAS_DELETE_ATTEMPTS; attempt++) {
      const current = await c.get(userId, sessionId);
      if (!current.ok) {
        anomalies.add(`${sessionId}: the deleter's Get answered ${current.refusal}`);
        return;
      }
      const result = await c.delete(userId, sessionId, current.value.version);
      if (result.ok) {
        if (!result.value) anomalies.add(`${sessionId}: Delete(expected_version) deleted nothing`);
        return;
      }
      if (result.refusal !== "aborted") {
        anomalies.add(`${sessionId}: Delete(expected_version) answered ${result.refusal}`);
        return;
      }
      deleteAborts++;
    }
    deleteFallbacks++;
    const result = await c.delete(userId, sessionId, undefined);
    if (!result.ok || !result.value) {
      anomalies.add(
        `${sessionId}: Delete after ${CAS_DELETE_ATTEMPTS} ABORTED answered ${describe(result)}`,
      );
    }
  }

  await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
  return {
    target: target.name,
    raced,
    rounds,
    byKind,
    calls,
    overlapping,
    afterDelete,
    deleteAborts,
    deleteFallbacks,
    anomalies,
    durationMs: performance.now() - started,
  };
}

// ---------------------------------------------------------------------------
// 3. Every operation interleaved on one user

/** Sessions of the interleaved race's user that anything may write, expire or delete. */
const VOLATILE = Array.from({ length: 12 }, (_, i) => `v${String(i).padStart(2, "0")}`);
/** Sessions of that user that nothing deletes, listed in every full listing. */
const STABLE = ["stable-a", "stable-b", "stable-c"];
/**
 * The stable sessions' ttl, longer than any other session's: a per-user cap
 * evicts the soonest-expiring sessions first, so it never picks these.
 */
const STABLE_TTL_MS = 2 * LONG_TTL_MS;

/** A small deterministic PRNG (mulberry32), so that a failing run can be replayed by its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Figures of {@link interleaveRace}. */
export interface InterleaveReport {
  readonly target: string;
  /** Whose sessions the race wrote, for inspecting the backend afterwards. */
  readonly raced: readonly RacedUser[];
  readonly seed: number;
  readonly workers: number;
  /** Calls by operation and outcome. */
  readonly calls: Tally;
  /** Full listings (all pages) taken while the others wrote. */
  readonly listings: number;
  readonly anomalies: Anomalies;
  readonly durationMs: number;
}

/**
 * `workers` callers each make `callsPerWorker` random calls on one user:
 * Upsert (unconditional, insert-only, CAS), Touch (some with ttls short
 * enough to expire during the race), Get, Delete (with and without
 * expected_version), full paginated ListByUser, and DeleteByUser excepting
 * the stable sessions and a random few others. Checks: every call answers
 * OK or a refusal its request allows; every listing is in strictly
 * increasing byte order (so nothing is listed twice even across pages),
 * holds only the user's ids and each stable session exactly once; at the
 * end, once short-lived sessions have expired, ListByUser and Get agree on
 * which sessions exist, and the stable sessions are untouched (version 1).
 */
export async function interleaveRace(
  target: RaceTarget,
  { workers, callsPerWorker, seed }: { workers: number; callsPerWorker: number; seed: number },
): Promise<InterleaveReport> {
  const userId = uniqueUserId();
  const anomalies = new Anomalies();
  const calls: Tally = {};
  let listings = 0;
  const started = performance.now();
  const known = new Set([...VOLATILE, ...STABLE]);

  for (const id of STABLE) {
    const result = await target.client(0).upsert({
      userId,
      sessionId: id,
      tag: id,
      ttlMs: STABLE_TTL_MS,
      expectedVersion: 0n,
    });
    if (!result.ok) anomalies.add(`inserting ${id} answered ${result.refusal}`);
  }

  /** Every page of the user's sessions, checked as described above. */
  async function listAll(client: RaceClient, pageSize: number): Promise<string[] | undefined> {
    const ids: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const result = await client.listPage(userId, pageSize, cursor);
      if (!result.ok) {
        anomalies.add(`ListByUser answered ${result.refusal}`);
        return undefined;
      }
      if (result.value.ids.length > pageSize) anomalies.add(`a page of ${pageSize} held more`);
      ids.push(...result.value.ids);
      cursor = result.value.next;
      if (cursor === undefined) break;
      if (result.value.ids.length < pageSize)
        anomalies.add("a page short of its size was not the last");
    }
    for (let i = 1; i < ids.length; i++) {
      if (Buffer.compare(Buffer.from(ids[i - 1] as string), Buffer.from(ids[i] as string)) >= 0) {
        anomalies.add(`a listing out of order or repeating: ${ids.join()}`);
        break;
      }
    }
    const strangers = ids.filter((id) => !known.has(id));
    if (strangers.length > 0) anomalies.add(`a listing holds unknown ids ${strangers.join()}`);
    for (const id of STABLE) {
      const times = ids.filter((listed) => listed === id).length;
      if (times !== 1) anomalies.add(`a listing holds ${id} ${times} times: ${ids.join()}`);
    }
    return ids;
  }

  async function worker(index: number): Promise<void> {
    const random = prng(seed * 1000 + index);
    const client = target.client(index);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const ttl = () => (random() < 0.25 ? 30 + Math.floor(random() * 370) : LONG_TTL_MS);
    /** The last version this worker saw of each session, for its CAS writes. */
    const seen = new Map<string, bigint>();
    const check = <T>(
      op: string,
      result: Answer<T>,
      allowed: readonly Refusal[],
      sessionId?: string,
    ) => {
      count(calls, `${op} ${result.ok ? "ok" : result.refusal}`);
      if (!result.ok && !allowed.includes(result.refusal)) {
        anomalies.add(`${op}${sessionId ? ` on ${sessionId}` : ""} answered ${result.refusal}`);
      }
      if (result.ok && sessionId !== undefined) {
        const value = result.value as { version?: unknown };
        if (typeof value.version === "bigint") seen.set(sessionId, value.version);
      }
    };

    for (let n = 0; n < callsPerWorker; n++) {
      const roll = random() * 100;
      const id = pick(VOLATILE);
      const tag = `w${index}-${n}`;
      if (roll < 14) {
        check(
          "Upsert",
          await client.upsert({
            userId,
            sessionId: id,
            tag,
            ttlMs: ttl(),
            expectedVersion: undefined,
          }),
          [],
          id,
        );
      } else if (roll < 24) {
        check(
          "Upsert(insert)",
          await client.upsert({ userId, sessionId: id, tag, ttlMs: ttl(), expectedVersion: 0n }),
          ["already_exists"],
          id,
        );
      } else if (roll < 38) {
        const expectedVersion = seen.get(id) ?? 1n;
        check(
          "Upsert(expected_version)",
          await client.upsert({ userId, sessionId: id, tag, ttlMs: ttl(), expectedVersion }),
          ["aborted", "not_found"],
          id,
        );
      } else if (roll < 44) {
        const stable = pick(STABLE);
        const result = await client.touch(userId, stable, STABLE_TTL_MS);
        check("Touch(stable)", result, []);
        if (result.ok && result.value.version !== 1n)
          anomalies.add(`${stable} has version ${result.value.version}`);
      } else if (roll < 54) {
        check("Touch", await client.touch(userId, id, ttl()), ["not_found"], id);
      } else if (roll < 66) {
        check("Get", await client.get(userId, id), ["not_found"], id);
      } else if (roll < 74) {
        const expected = random() < 0.5 ? seen.get(id) : undefined;
        check(
          expected === undefined ? "Delete" : "Delete(expected_version)",
          await client.delete(userId, id, expected),
          expected === undefined ? [] : ["aborted"],
        );
      } else if (roll < 96) {
        listings++;
        const ids = await listAll(client, 1 + Math.floor(random() * 6));
        count(calls, `ListByUser(all pages) ${ids ? "ok" : "refused"}`);
      } else {
        const except = [...STABLE, ...VOLATILE.filter(() => random() < 0.3)];
        const result = await client.deleteByUser(userId, except);
        check("DeleteByUser(except)", result, []);
        const deletable = VOLATILE.length - (except.length - STABLE.length);
        if (result.ok && result.value > deletable) {
          anomalies.add(`DeleteByUser deleted ${result.value} of at most ${deletable} sessions`);
        }
      }
    }
  }

  await Promise.all(Array.from({ length: workers }, (_, i) => worker(i)));

  // Quiescent now, but for sessions with short ttls that may still expire:
  // wait until two listings and a Get of every id agree. A session that is
  // listed but not found (or found but not listed) for good fails the wait.
  const client = target.client(0);
  let disagreement = "";
  try {
    await waitFor(
      "ListByUser and Get to agree",
      async () => {
        const before = await listAll(client, 5);
        const found: string[] = [];
        for (const id of [...known].sort()) {
          const result = await client.get(userId, id);
          if (result.ok) found.push(id);
        }
        const after = await listAll(client, 5);
        const sortedBefore = [...(before ?? [])].sort().join();
        disagreement = `listed ${before?.join()} then ${after?.join()}, found ${found.join()}`;
        return sortedBefore === found.join() && before?.join() === after?.join();
      },
      { timeoutMs: 5_000, intervalMs: 50 },
    );
  } catch {
    anomalies.add(`ListByUser and Get never agreed: ${disagreement}`);
  }
  for (const id of STABLE) {
    const result = await client.get(userId, id);
    if (!result.ok || result.value.version !== 1n || result.value.tag !== id) {
      anomalies.add(`${id} reads ${describe(result)} at the end`);
    }
  }
  return {
    target: target.name,
    raced: [{ userId }],
    seed,
    workers,
    calls,
    listings,
    anomalies,
    durationMs: performance.now() - started,
  };
}
