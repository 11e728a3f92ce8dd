import type { EventRead, SessionEvent } from "./session-events.js";

/**
 * The storage port of SessionStore: what the service needs from a backend,
 * in domain terms. Adapters (Redis, in-memory) implement it, and one contract
 * test suite holds every adapter to the same semantics.
 *
 * A store keeps each session as opaque bytes (the service decides the
 * encoding) plus the metadata it manages itself: the version, the time it
 * will forget the session (`storageExpiresAtMs`), and the session's absolute
 * end (`expiresAtMs`). All expiry decisions use the store's own clock, so
 * several service replicas sharing one backend agree on them.
 */
export interface SessionStore {
  /**
   * Returns the live session stored under (userId, sessionId), or undefined
   * when there is none or it has expired.
   */
  get(userId: string, sessionId: string, signal?: StoreSignal): Promise<StoredSession | undefined>;

  /**
   * Inserts or replaces a session, keeping it until
   * min(now + ttlMs, expiresAtMs). Assigns version 1 on insert and the
   * previous version + 1 on update.
   *
   * @throws ExpiresAtPassedError when expiresAtMs is not after now.
   * @throws SessionExistsError when expectedVersion is 0 and the session exists.
   * @throws VersionMismatchError when expectedVersion > 0 differs from the stored version.
   * @throws SessionNotFoundError when expectedVersion > 0 and the session does not exist.
   */
  upsert(input: UpsertInput, signal?: StoreSignal): Promise<StoredSession>;

  /**
   * Rotates a session's refresh token, atomically (see RefreshInput): when
   * `presented` is the session's current token digest, the new token
   * becomes current, the presented one is remembered as the previous one
   * until now + graceMs, the session's data gets the new refresh_token_id
   * and refreshed_at = now (rotationTail), its storage expiry moves as
   * touch moves it, and its version goes up by 1 (`rotated`). When it is
   * the previous digest and now is within its grace, nothing changes and
   * the session is returned as it is (not `rotated`). Anything else deletes
   * the session (or all of the user's, with revokeAllOnReuse) in the same
   * step and throws RefreshTokenReusedError.
   *
   * @throws SessionNotFoundError when the session does not exist.
   * @throws RefreshStateMissingError when the session has no refresh token
   *   recorded (stored without one, or before the store recorded them).
   * @throws RefreshTokenReusedError as said above.
   */
  refresh(input: RefreshInput, signal?: StoreSignal): Promise<RefreshResult>;

  /**
   * Moves a session's storage expiry to min(now + ttlMs, its expiresAtMs)
   * without changing its data or version.
   *
   * @throws SessionNotFoundError when the session does not exist.
   */
  touch(
    userId: string,
    sessionId: string,
    ttlMs: number,
    signal?: StoreSignal,
  ): Promise<StoredSession>;

  /**
   * Deletes a session; resolves to false when there was no live session.
   *
   * @throws VersionMismatchError when expectedVersion is given and the
   *   session exists with another version.
   */
  delete(
    userId: string,
    sessionId: string,
    expectedVersion: bigint | undefined,
    signal?: StoreSignal,
  ): Promise<boolean>;

  /**
   * Returns up to `limit` live sessions of a user whose ids sort after
   * `after` (bytewise order of their UTF-8 encoding), in that order.
   */
  listByUser(userId: string, page: PageRequest, signal?: StoreSignal): Promise<SessionPage>;

  /**
   * Atomically deletes every session of a user except those whose ids are in
   * `exceptSessionIds`, and resolves to the number of live sessions deleted.
   */
  deleteByUser(
    userId: string,
    exceptSessionIds: readonly string[],
    signal?: StoreSignal,
  ): Promise<number>;

  /**
   * Up to `limit` events of the user's log after `after` (a client's
   * cursor: an event id), or with `after` undefined none, only where the log
   * ends now. See session-events.ts for what is recorded and kept.
   *
   * @throws EventsExpiredError when events after `after` may have been dropped.
   * @throws RangeError when `after` is not an event id.
   */
  readEvents(
    userId: string,
    after: string | undefined,
    limit: number,
    signal?: StoreSignal,
  ): Promise<EventRead>;

  /**
   * Streams the user's events after `options.after` (or those written from
   * now), in order, each once, until the stream is ended: by its signal (it
   * throws the signal's reason), by WatcherTooSlowError when more than
   * `options.bufferSize` events wait for its consumer, by
   * EventsExpiredError, or by the store's failure. However many streams
   * watch, a store holds a bounded number of connections.
   */
  watch(userId: string, options: WatchOptions): AsyncIterable<SessionEvent>;

  /**
   * Resolves when the store can serve requests right now (its backend is
   * connected and answering); rejects when it cannot. Health checks use it.
   */
  ping(signal?: StoreSignal): Promise<void>;

  /** Releases the store's resources (connections, timers). */
  close(): Promise<void>;
}

/** How a watch stream starts and when it ends. */
export interface WatchOptions {
  /** Resume after this event id; undefined: from the events written from now. */
  readonly after: string | undefined;
  /** Events the stream may hold for its consumer before it is ended as too slow. */
  readonly bufferSize: number;
  /** Ends the stream; the stream then throws the signal's reason. */
  readonly signal: StoreSignal;
  /** Called once the stream is live: registered, and its catch-up read. */
  readonly onLive?: () => void;
}

/** A session as a store holds it. */
export interface StoredSession {
  readonly userId: string;
  readonly sessionId: string;
  /** The encoded session, opaque to the store. */
  readonly data: Uint8Array;
  /** 1 after insert, incremented by every update; never changed by touch. */
  readonly version: bigint;
  /** When the store forgets the session, in Unix milliseconds. */
  readonly storageExpiresAtMs: number;
  /** The session's absolute end in Unix milliseconds, or undefined for none. */
  readonly expiresAtMs: number | undefined;
}

/** What an upsert writes. */
export interface UpsertInput {
  readonly userId: string;
  readonly sessionId: string;
  readonly data: Uint8Array;
  /** How long to keep the session from now; a positive whole number of ms. */
  readonly ttlMs: number;
  /** The session's absolute end in Unix milliseconds; undefined for none. */
  readonly expiresAtMs: number | undefined;
  /**
   * Undefined: write unconditionally. 0: insert only. N > 0: replace only
   * the stored version N.
   */
  readonly expectedVersion: bigint | undefined;
  /**
   * The digest (refreshTokenDigest) of the session's refresh_token_id;
   * undefined or "" for none: what a later refresh compares the presented
   * token with. When it equals the stored session's, a previous token's
   * grace is kept; otherwise it ends.
   */
  readonly refreshDigest?: string;
}

/** What a refresh presents and writes. */
export interface RefreshInput {
  readonly userId: string;
  readonly sessionId: string;
  /** The digest of the refresh token id the client presented. */
  readonly presentedDigest: string;
  /** The new refresh token id, which the session's data will carry. */
  readonly newTokenId: string;
  /** The digest of newTokenId. */
  readonly newDigest: string;
  /** How long to keep the session from now after a rotation; positive, ms. */
  readonly ttlMs: number;
  /** How long the presented token stays accepted after a rotation, ms; 0 for not at all. */
  readonly graceMs: number;
  /** On reuse, delete all of the user's sessions rather than this one. */
  readonly revokeAllOnReuse: boolean;
}

/** What a successful refresh did. */
export interface RefreshResult {
  /** True when this call rotated the token; false when another one had (within the grace). */
  readonly rotated: boolean;
  /** The session after the call. */
  readonly session: StoredSession;
}

/** One page request of listByUser. */
export interface PageRequest {
  /** Only sessions whose id sorts after this one; undefined for the first page. */
  readonly after: string | undefined;
  /** The maximum number of sessions to return; at least 1. */
  readonly limit: number;
}

/** One page of a user's sessions. */
export interface SessionPage {
  readonly sessions: readonly StoredSession[];
  /** Whether live sessions sorting after the last one returned remain. */
  readonly hasMore: boolean;
}

/**
 * How a caller stops waiting for a store call. An AbortSignal is one; the
 * gRPC fast path passes a lighter stand-in with the same abort state and
 * listeners, because Node builds every AbortSignal in a way that cost that
 * path about a sixth of its CPU per call.
 */
export interface StoreSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  throwIfAborted(): void;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
