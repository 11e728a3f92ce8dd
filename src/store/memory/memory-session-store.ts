import type { Clock } from "../../clock.js";
import { compareUtf8 } from "../byte-order.js";
import {
  ExpiresAtPassedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
  SessionExistsError,
  SessionNotFoundError,
  VersionMismatchError,
} from "../errors.js";
import { rotationTail, sameDigest } from "../refresh-state.js";
import type {
  PageRequest,
  RefreshInput,
  RefreshResult,
  SessionPage,
  SessionStore,
  StoredSession,
  StoreSignal,
  UpsertInput,
} from "../session-store.js";

/** Options of {@link MemorySessionStore}. */
export interface MemorySessionStoreOptions {
  /** Cap on live sessions per user; 0 means unlimited. */
  readonly maxSessionsPerUser: number;
  /**
   * How often to drop expired sessions of users nobody writes to, in ms;
   * 0 disables the timer (expired sessions are then only dropped when their
   * user is written to).
   */
  readonly sweepIntervalMs: number;
  /**
   * The clock every expiry decision reads (default Date.now). Injected so
   * that tests can move time without waiting, and so that the server's
   * test-only clock offset reaches this store, the one that reads the
   * process's clock.
   */
  readonly now?: Clock;
}

/** What a refresh compares and rotates (see refresh-state.ts). */
interface RefreshState {
  /** The digest of the current refresh token id; "" for none. */
  readonly current: string;
  /** The digest of the token rotated away last; "" for none. */
  readonly previous: string;
  /** Until when (Unix ms, inclusive) `previous` is accepted; 0 for not at all. */
  readonly previousUntilMs: number;
  /** How many bytes at the end of data the last rotation appended. */
  readonly tailLength: number;
}

const NO_REFRESH_TOKEN: RefreshState = {
  current: "",
  previous: "",
  previousUntilMs: 0,
  tailLength: 0,
};

/**
 * An in-process SessionStore with the same semantics as the Redis store, for
 * development and single-instance use: nothing survives a restart and nothing
 * is shared between processes.
 *
 * Every method runs synchronously inside one call, so each operation is
 * atomic with respect to the others, like the Redis store's Lua scripts.
 * A session is live while now <= storageExpiresAtMs, matching Redis key
 * expiry; "now" is this process's clock (`now`), where the Redis store
 * reads Redis' own.
 */
export class MemorySessionStore implements SessionStore {
  private readonly users = new Map<string, Map<string, StoredSession>>();
  /**
   * The refresh state of each held session object. Sessions are immutable
   * (every write stores a new object), so the state goes with the object,
   * and out of the sessions this store returns.
   */
  private readonly refreshStates = new WeakMap<StoredSession, RefreshState>();
  private readonly maxSessionsPerUser: number;
  private readonly sweepTimer: NodeJS.Timeout | undefined;
  private readonly now: Clock;

  constructor(options: MemorySessionStoreOptions) {
    this.maxSessionsPerUser = options.maxSessionsPerUser;
    this.now = options.now ?? Date.now;
    if (options.sweepIntervalMs > 0) {
      this.sweepTimer = setInterval(() => this.sweep(), options.sweepIntervalMs);
      this.sweepTimer.unref();
    }
  }

  /** The number of sessions held, expired or not: what sweeping bounds. */
  get size(): number {
    let total = 0;
    for (const sessions of this.users.values()) {
      total += sessions.size;
    }
    return total;
  }

  /** Drops every expired session and every user left without sessions. */
  sweep(): void {
    const now = this.now();
    for (const userId of this.users.keys()) {
      this.prune(userId, now);
    }
  }

  async get(
    userId: string,
    sessionId: string,
    signal?: StoreSignal,
  ): Promise<StoredSession | undefined> {
    signal?.throwIfAborted();
    return this.live(userId, sessionId, this.now());
  }

  async upsert(input: UpsertInput, signal?: StoreSignal): Promise<StoredSession> {
    signal?.throwIfAborted();
    const now = this.now();
    if (input.expiresAtMs !== undefined && input.expiresAtMs <= now) {
      throw new ExpiresAtPassedError();
    }
    const current = this.live(input.userId, input.sessionId, now);
    const expected = input.expectedVersion;
    if (current) {
      if (expected === 0n) throw new SessionExistsError();
      if (expected !== undefined && expected !== current.version) throw new VersionMismatchError();
    } else if (expected !== undefined && expected !== 0n) {
      throw new SessionNotFoundError();
    }
    const sessions = this.prune(input.userId, now) ?? new Map<string, StoredSession>();
    this.users.set(input.userId, sessions);
    if (!current) this.evictForInsert(sessions);
    // The same refresh token: a grace still running keeps running.
    const digest = input.refreshDigest ?? "";
    const held = current && this.refreshState(current);
    const kept = held?.current === digest ? held : undefined;
    const stored: StoredSession = {
      userId: input.userId,
      sessionId: input.sessionId,
      data: input.data.slice(),
      version: current ? current.version + 1n : 1n,
      storageExpiresAtMs: storageExpiry(now, input.ttlMs, input.expiresAtMs),
      expiresAtMs: input.expiresAtMs,
    };
    this.refreshStates.set(stored, {
      current: digest,
      previous: kept?.previous ?? "",
      previousUntilMs: kept?.previousUntilMs ?? 0,
      tailLength: 0,
    });
    sessions.set(input.sessionId, stored);
    return stored;
  }

  async refresh(input: RefreshInput, signal?: StoreSignal): Promise<RefreshResult> {
    signal?.throwIfAborted();
    const now = this.now();
    const { userId, sessionId } = input;
    const current = this.live(userId, sessionId, now);
    if (!current) throw new SessionNotFoundError();
    const state = this.refreshState(current);
    if (state.current === "") throw new RefreshStateMissingError();
    if (sameDigest(input.presentedDigest, state.current)) {
      const tail = rotationTail(input.newTokenId, now);
      const base = current.data.subarray(0, current.data.byteLength - state.tailLength);
      const data = new Uint8Array(base.byteLength + tail.byteLength);
      data.set(base);
      data.set(tail, base.byteLength);
      const rotated: StoredSession = {
        ...current,
        data,
        version: current.version + 1n,
        storageExpiresAtMs: storageExpiry(now, input.ttlMs, current.expiresAtMs),
      };
      this.refreshStates.set(rotated, {
        current: input.newDigest,
        previous: input.presentedDigest,
        previousUntilMs: input.graceMs > 0 ? now + input.graceMs : 0,
        tailLength: tail.byteLength,
      });
      this.users.get(userId)?.set(sessionId, rotated);
      this.prune(userId, now);
      return { rotated: true, session: rotated };
    }
    if (now <= state.previousUntilMs && sameDigest(input.presentedDigest, state.previous)) {
      return { rotated: false, session: current };
    }
    // Reuse: the presented token was rotated away before, or never issued.
    if (input.revokeAllOnReuse) {
      this.users.delete(userId);
    } else {
      this.users.get(userId)?.delete(sessionId);
      this.prune(userId, now);
    }
    throw new RefreshTokenReusedError();
  }

  async touch(userId: string, sessionId: string, ttlMs: number, signal?: StoreSignal) {
    signal?.throwIfAborted();
    const now = this.now();
    const current = this.live(userId, sessionId, now);
    if (!current) throw new SessionNotFoundError();
    const touched: StoredSession = {
      ...current,
      storageExpiresAtMs: storageExpiry(now, ttlMs, current.expiresAtMs),
    };
    this.refreshStates.set(touched, this.refreshState(current));
    this.users.get(userId)?.set(sessionId, touched);
    this.prune(userId, now);
    return touched;
  }

  async delete(
    userId: string,
    sessionId: string,
    expectedVersion: bigint | undefined,
    signal?: StoreSignal,
  ): Promise<boolean> {
    signal?.throwIfAborted();
    const now = this.now();
    const current = this.live(userId, sessionId, now);
    if (current && expectedVersion !== undefined && expectedVersion !== current.version) {
      throw new VersionMismatchError();
    }
    this.users.get(userId)?.delete(sessionId);
    this.prune(userId, now);
    return current !== undefined;
  }

  async listByUser(userId: string, page: PageRequest, signal?: StoreSignal): Promise<SessionPage> {
    signal?.throwIfAborted();
    const now = this.now();
    const after = page.after;
    const candidates = [...(this.users.get(userId)?.values() ?? [])]
      .filter((s) => s.storageExpiresAtMs >= now)
      .filter((s) => after === undefined || compareUtf8(s.sessionId, after) > 0)
      .sort((a, b) => compareUtf8(a.sessionId, b.sessionId));
    return {
      sessions: candidates.slice(0, page.limit),
      hasMore: candidates.length > page.limit,
    };
  }

  async deleteByUser(
    userId: string,
    exceptSessionIds: readonly string[],
    signal?: StoreSignal,
  ): Promise<number> {
    signal?.throwIfAborted();
    const sessions = this.prune(userId, this.now());
    if (!sessions) return 0;
    const keep = new Set(exceptSessionIds);
    let deleted = 0;
    for (const sessionId of sessions.keys()) {
      if (!keep.has(sessionId)) {
        sessions.delete(sessionId);
        deleted++;
      }
    }
    if (sessions.size === 0) this.users.delete(userId);
    return deleted;
  }

  /**
   * The embedded store is usable for as long as the process runs; like every
   * other operation, it still rejects for a signal that has already aborted.
   */
  async ping(signal?: StoreSignal): Promise<void> {
    signal?.throwIfAborted();
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
  }

  private refreshState(session: StoredSession): RefreshState {
    return this.refreshStates.get(session) ?? NO_REFRESH_TOKEN;
  }

  private live(userId: string, sessionId: string, now: number): StoredSession | undefined {
    const session = this.users.get(userId)?.get(sessionId);
    return session && session.storageExpiresAtMs >= now ? session : undefined;
  }

  /** Drops a user's expired sessions; returns what is left, if anything. */
  private prune(userId: string, now: number): Map<string, StoredSession> | undefined {
    const sessions = this.users.get(userId);
    if (!sessions) return undefined;
    for (const [sessionId, session] of sessions) {
      if (session.storageExpiresAtMs < now) sessions.delete(sessionId);
    }
    if (sessions.size > 0) return sessions;
    this.users.delete(userId);
    return undefined;
  }

  /**
   * Makes room for one more session under the cap by evicting the sessions
   * that expire soonest (ties broken by id, as Redis orders equal scores).
   */
  private evictForInsert(sessions: Map<string, StoredSession>): void {
    const excess = sessions.size - this.maxSessionsPerUser + 1;
    if (this.maxSessionsPerUser === 0 || excess <= 0) return;
    const victims = [...sessions.values()]
      .sort(
        (a, b) =>
          a.storageExpiresAtMs - b.storageExpiresAtMs || compareUtf8(a.sessionId, b.sessionId),
      )
      .slice(0, excess);
    for (const victim of victims) sessions.delete(victim.sessionId);
  }
}

/** min(now + ttl, expiresAt): the absolute end always wins. */
function storageExpiry(now: number, ttlMs: number, expiresAtMs: number | undefined): number {
  const byTtl = now + ttlMs;
  return expiresAtMs !== undefined && expiresAtMs < byTtl ? expiresAtMs : byTtl;
}
