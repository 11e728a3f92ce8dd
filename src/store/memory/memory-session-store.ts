import type { Clock } from "../../clock.js";
import { compareUtf8 } from "../byte-order.js";
import {
  ExpiresAtPassedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
  SessionExistsError,
  SessionNotFoundError,
  StoreClosedError,
  VersionMismatchError,
} from "../errors.js";
import { EventHub } from "../event-hub.js";
import { rotationTail, sameDigest } from "../refresh-state.js";
import {
  EVENT_RETENTION_DEFAULTS,
  type EventCursor,
  type EventRead,
  type EventRetention,
  EventsDisabledError,
  eventsDisabledWatch,
  type SessionEvent,
  type SessionEventType,
} from "../session-events.js";
import type {
  PageRequest,
  RefreshInput,
  RefreshResult,
  SessionPage,
  SessionStore,
  StoredSession,
  StoreSignal,
  UpsertInput,
  WatchOptions,
} from "../session-store.js";
import { MemoryEventLogs } from "./memory-event-logs.js";

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
  /** How long and how many events each user's log keeps (default 24 h and 1000). */
  readonly events?: EventRetention;
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
  private readonly events: MemoryEventLogs;
  /** EVENT_RETENTION_COUNT=0: nothing is recorded. */
  private readonly eventsOff: boolean;
  private readonly hub: EventHub;

  constructor(options: MemorySessionStoreOptions) {
    this.maxSessionsPerUser = options.maxSessionsPerUser;
    this.now = options.now ?? Date.now;
    this.events = new MemoryEventLogs(options.events ?? EVENT_RETENTION_DEFAULTS);
    this.eventsOff = options.events?.retentionCount === 0;
    // Notifications need no subscription here: every write tells the hub.
    this.hub = new EventHub({
      read: async (userId, cursor, limit) => this.readLog(userId, cursor, limit),
      subscribe: async () => {},
      unsubscribe: () => {},
    });
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

  /** Drops every expired session, every user left without sessions, and expired event logs. */
  sweep(): void {
    const now = this.now();
    for (const userId of this.users.keys()) {
      this.prune(userId, now);
    }
    this.events.sweep(now);
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
    if (!current) {
      for (const victim of this.evictForInsert(sessions)) {
        this.emit(now, "evicted", input.userId, victim.sessionId, victim.version);
      }
    }
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
    this.emit(now, "upserted", input.userId, input.sessionId, stored.version);
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
      this.emit(now, "rotated", userId, sessionId, rotated.version);
      return { rotated: true, session: rotated };
    }
    if (now <= state.previousUntilMs && sameDigest(input.presentedDigest, state.previous)) {
      return { rotated: false, session: current };
    }
    // Reuse: the presented token was rotated away before, or never issued.
    let others = 0;
    if (input.revokeAllOnReuse) {
      const sessions = this.prune(userId, now);
      others = (sessions?.size ?? 1) - 1;
      this.users.delete(userId);
    } else {
      this.users.get(userId)?.delete(sessionId);
      this.prune(userId, now);
    }
    this.emit(now, "reuse-detected", userId, sessionId, current.version);
    if (others > 0) this.emit(now, "deleted-by-user", userId, "", 0n);
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
    this.emit(now, "touched", userId, sessionId, touched.version);
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
    if (current) this.emit(now, "deleted", userId, sessionId, current.version);
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
    const now = this.now();
    const sessions = this.prune(userId, now);
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
    if (deleted > 0) {
      // The kept ones, as the Redis script lists them: in the order asked, once each.
      const kept = [...keep].filter((sessionId) => sessions.has(sessionId));
      this.emit(now, "deleted-by-user", userId, "", 0n, kept);
    }
    return deleted;
  }

  async readEvents(
    userId: string,
    after: string | undefined,
    limit: number,
    signal?: StoreSignal,
  ): Promise<EventRead> {
    signal?.throwIfAborted();
    if (this.eventsOff) throw new EventsDisabledError();
    return this.readLog(userId, after === undefined ? undefined : { after, checked: true }, limit);
  }

  watch(userId: string, options: WatchOptions): AsyncIterable<SessionEvent> {
    if (this.eventsOff) return eventsDisabledWatch();
    return this.hub.watch(userId, options);
  }

  /** Watch streams past their catch-up (for tests and metrics). */
  get watchers(): number {
    return this.hub.watchers;
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
    this.hub.endAll(new StoreClosedError());
  }

  /**
   * Records an event in the user's log, in the same synchronous step as the
   * change it reports, and tells the watchers. Every write method calls it
   * once per change (Refresh: "rotated" with the new version, and
   * "reuse-detected" with the deleted session's version, or
   * "deleted-by-user" with the kept ids when every session goes).
   */
  private emit(
    now: number,
    type: SessionEventType,
    userId: string,
    sessionId: string,
    version: bigint,
    keptSessionIds: readonly string[] = [],
  ): void {
    if (this.eventsOff) return;
    this.events.append(now, { type, userId, sessionId, version, keptSessionIds });
    this.hub.changed(userId);
  }

  private readLog(userId: string, cursor: EventCursor | undefined, limit: number): EventRead {
    return this.events.read(userId, cursor, limit, this.now());
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
  private evictForInsert(sessions: Map<string, StoredSession>): StoredSession[] {
    const excess = sessions.size - this.maxSessionsPerUser + 1;
    if (this.maxSessionsPerUser === 0 || excess <= 0) return [];
    const victims = [...sessions.values()]
      .sort(
        (a, b) =>
          a.storageExpiresAtMs - b.storageExpiresAtMs || compareUtf8(a.sessionId, b.sessionId),
      )
      .slice(0, excess);
    for (const victim of victims) sessions.delete(victim.sessionId);
    return victims;
  }
}

/** min(now + ttl, expiresAt): the absolute end always wins. */
function storageExpiry(now: number, ttlMs: number, expiresAtMs: number | undefined): number {
  const byTtl = now + ttlMs;
  return expiresAtMs !== undefined && expiresAtMs < byTtl ? expiresAtMs : byTtl;
}
