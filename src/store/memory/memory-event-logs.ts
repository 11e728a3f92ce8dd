import {
  compareEventIds,
  EVENT_LOG_START,
  type EventCursor,
  type EventRead,
  type EventRetention,
  EventsExpiredError,
  parseEventId,
  type SessionEvent,
} from "../session-events.js";

/** One user's log, as the Redis store's list keeps it (lua/common.lua's emit). */
interface UserLog {
  readonly events: SessionEvent[];
  /** The last id given out (the id of the Redis log's last entry). */
  lastMs: number;
  lastSeq: number;
  /** The greatest id dropped by retention (the Redis log's header). */
  maxDeletedId: string;
  /** When the whole log goes: retention after its last write (the Redis log's PEXPIREAT). */
  expiresAtMs: number;
}

/** An event before its id and time are given. */
type NewEvent = Omit<SessionEvent, "id" | "timeMs">;

/**
 * The embedded store's per-user event logs, with the Redis store's
 * semantics and id format (see lua/common.lua's emit and lua/events.lua):
 * ids "<ms>-<seq>" that never go back within a log, retention by count and
 * by age applied on every append, the whole log forgotten after retention
 * without writes, and the same answers to stale cursors.
 */
export class MemoryEventLogs {
  private readonly logs = new Map<string, UserLog>();

  constructor(private readonly retention: EventRetention) {}

  /** Appends an event to the user's log, then applies retention. */
  append(now: number, event: NewEvent): void {
    const { retentionMs, retentionCount } = this.retention;
    let log = this.logs.get(event.userId);
    if (!log || log.expiresAtMs < now) {
      log = { events: [], lastMs: 0, lastSeq: 0, maxDeletedId: EVENT_LOG_START, expiresAtMs: 0 };
      this.logs.set(event.userId, log);
    }
    if (now > log.lastMs) {
      log.lastMs = now;
      log.lastSeq = 0;
    } else {
      log.lastSeq++;
    }
    log.events.push({ ...event, id: `${log.lastMs}-${log.lastSeq}`, timeMs: log.lastMs });
    const minMs = now - retentionMs;
    let drop = 0;
    while (
      drop < log.events.length &&
      (log.events.length - drop > retentionCount || (log.events[drop]?.timeMs ?? 0) < minMs)
    ) {
      drop++;
    }
    if (drop > 0) {
      const dropped = log.events.splice(0, drop);
      log.maxDeletedId = dropped.at(-1)?.id ?? log.maxDeletedId;
    }
    log.expiresAtMs = now + retentionMs;
  }

  /** Reads as lua/events.lua does (see EventFeed.read). */
  read(userId: string, cursor: EventCursor | undefined, limit: number, now: number): EventRead {
    let log = this.logs.get(userId);
    if (log && log.expiresAtMs < now) {
      this.logs.delete(userId);
      log = undefined;
    }
    const lastId = log ? `${log.lastMs}-${log.lastSeq}` : EVENT_LOG_START;
    if (!cursor) return { events: [], lastId };
    const position = parseEventId(cursor.after);
    if (!position) throw new RangeError("not an event id");
    if (cursor.checked) {
      if (!log || position.ms < BigInt(now - this.retention.retentionMs)) {
        throw new EventsExpiredError();
      }
    }
    if (!log) return { events: [], lastId };
    if (compareEventIds(cursor.after, lastId) > 0) throw new EventsExpiredError();
    if (compareEventIds(cursor.after, log.maxDeletedId) < 0) throw new EventsExpiredError();
    const events: SessionEvent[] = [];
    for (const event of log.events) {
      if (events.length >= limit) break;
      if (compareEventIds(event.id, cursor.after) > 0) events.push(event);
    }
    return { events, lastId };
  }

  /** Forgets the logs that expired. */
  sweep(now: number): void {
    for (const [userId, log] of this.logs) {
      if (log.expiresAtMs < now) this.logs.delete(userId);
    }
  }
}
