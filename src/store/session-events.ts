/**
 * Session events: what the stores record of every change to a user's
 * sessions, in the same atomic step as the change, and what watchers read.
 *
 * Each user has one ordered log of events. An event's id is
 * "<ms>-<seq>" (the ms of the store's clock when it was
 * written, and a counter within that ms), and ids only grow within a
 * user's log. The log keeps events for a bounded time and count
 * (EventRetention); a reader whose cursor is older than what the log can
 * vouch for is told so (EventsExpiredError) rather than handed a log with a
 * hole in it.
 *
 * Expiry of a session is not an event: Redis deletes expired keys lazily
 * and on its own schedule, and reports it (keyspace notifications) only to
 * clients of the node that expired them, without delivery guarantees, so no
 * store can promise such an event; a watcher learns of expiry by reading.
 */

/** What happened to a session. */
export type SessionEventType =
  | "upserted"
  | "touched"
  | "deleted"
  | "deleted-by-user"
  | "rotated"
  | "reuse-detected"
  | "evicted";

/** One event of a user's log. */
export interface SessionEvent {
  /** "<ms>-<seq>", unique and growing within the user's log. */
  readonly id: string;
  readonly type: SessionEventType;
  readonly userId: string;
  /** The session that changed; "" for deleted-by-user. */
  readonly sessionId: string;
  /** The session's version after the change, or when it was removed; 0 for deleted-by-user. */
  readonly version: bigint;
  /** When the change was made, by the store's clock, in Unix ms (the id's ms). */
  readonly timeMs: number;
  /**
   * For deleted-by-user: the sessions it was asked to keep and that were
   * live (so kept). Internal: WatchSession uses it to skip the event for a
   * kept session; it is never sent to clients.
   */
  readonly keptSessionIds: readonly string[];
}

/** How long and how many events a user's log keeps. */
export interface EventRetention {
  /** Events older than this are dropped (EVENT_RETENTION), in ms; at least 1. */
  readonly retentionMs: number;
  /**
   * At most this many events per user are kept (EVENT_RETENTION_COUNT); 0
   * turns events off: nothing is recorded, and watching fails with
   * EventsDisabledError.
   */
  readonly retentionCount: number;
}

/** The defaults of EVENT_RETENTION and EVENT_RETENTION_COUNT. */
export const EVENT_RETENTION_DEFAULTS: EventRetention = {
  retentionMs: 24 * 3600 * 1000,
  retentionCount: 1000,
};

/** The one-letter codes the logs store instead of type names (see lua/common.lua). */
export const EVENT_TYPE_CODES: Readonly<Record<string, SessionEventType>> = {
  u: "upserted",
  t: "touched",
  d: "deleted",
  a: "deleted-by-user",
  r: "rotated",
  x: "reuse-detected",
  e: "evicted",
};

/** A parsed event id: ms and sequence. */
export interface EventPosition {
  readonly ms: bigint;
  readonly seq: bigint;
}

/** The position before every event. */
export const EVENT_LOG_START = "0-0";

const EVENT_ID = /^(\d{1,20})-(\d{1,20})$/;
const MAX_U64 = 2n ** 64n - 1n;

/**
 * Parses an event id ("<ms>-<seq>", each an unsigned 64-bit integer in
 * decimal); undefined when it is not one.
 */
export function parseEventId(id: string): EventPosition | undefined {
  const match = EVENT_ID.exec(id);
  if (!match) return undefined;
  const ms = BigInt(match[1] as string);
  const seq = BigInt(match[2] as string);
  if (ms > MAX_U64 || seq > MAX_U64) return undefined;
  return { ms, seq };
}

/** Orders two valid event ids as their events are ordered: negative, 0 or positive. */
export function compareEventIds(a: string, b: string): number {
  const x = parseEventId(a);
  const y = parseEventId(b);
  if (!x || !y) throw new RangeError("not an event id");
  if (x.ms !== y.ms) return x.ms < y.ms ? -1 : 1;
  return x.seq === y.seq ? 0 : x.seq < y.seq ? -1 : 1;
}

/**
 * Events after a reader's cursor may have been dropped: trimmed by
 * retention, expired with the whole log, or never seen by this store (a
 * cursor ahead of its log, as after a failover that lost writes). The
 * reader lists the user's sessions again and watches without a cursor.
 */
export class EventsExpiredError extends Error {
  override readonly name = "EventsExpiredError";
  constructor() {
    super("events after the cursor may have been dropped");
  }
}

/** Events are off (EVENT_RETENTION_COUNT=0): nothing is recorded to read or watch. */
export class EventsDisabledError extends Error {
  override readonly name = "EventsDisabledError";
  constructor() {
    super("session events are off");
  }
}

/**
 * A watch that fails at once, for a store whose events are off: the
 * error surfaces where the stream is iterated, as any other watch failure.
 */
export async function* eventsDisabledWatch(): AsyncGenerator<SessionEvent> {
  yield* [];
  throw new EventsDisabledError();
}

/** A watcher did not take its events as fast as they came, and its buffer filled. */
export class WatcherTooSlowError extends Error {
  override readonly name = "WatcherTooSlowError";
  constructor(readonly bufferSize: number) {
    super(`the watcher fell more than ${bufferSize} events behind`);
  }
}

/** One read of a user's log: the events after the cursor, and the log's end. */
export interface EventRead {
  /** Up to the limit asked for, in order. */
  readonly events: readonly SessionEvent[];
  /** The id of the log's last event (EVENT_LOG_START for none) when it was read. */
  readonly lastId: string;
}

/** How a reader positions itself in a user's log. */
export type EventCursor =
  /** After this event id, as a client gave it: checked against retention. */
  | { readonly after: string; readonly checked: true }
  /** After a position the server itself reached: only checked for dropped events. */
  | { readonly after: string; readonly checked: false };
