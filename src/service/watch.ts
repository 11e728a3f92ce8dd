import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import {
  EventType,
  type SessionEvent as SessionEventMessage,
  SessionEventSchema,
  type WatchSessionRequest,
  type WatchUserRequest,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import type { StoreErrorKind } from "../observability/telemetry.js";
import {
  EventsDisabledError,
  EventsExpiredError,
  parseEventId,
  type SessionEvent,
  type SessionEventType,
  WatcherTooSlowError,
} from "../store/session-events.js";
import type { SessionStore } from "../store/session-store.js";
import { OutageLog, toConnectError } from "./errors.js";
import { checkId } from "./validate.js";

/** What the watch handlers need. */
export interface WatchHandlersOptions {
  readonly store: SessionStore;
  /** WATCH_BUFFER: events one stream may hold for a client that reads slower than they come. */
  readonly watchBufferEvents: number;
  /** Where store failures are logged (never with ids). */
  readonly logger: Logger;
  /** Told of every store failure, for metrics. */
  readonly onStoreError?: (kind: StoreErrorKind) => void;
}

/** WatchUser and WatchSession, and what the server needs to end them. */
export interface WatchHandlers {
  watchUser(req: WatchUserRequest, signal: AbortSignal): AsyncIterable<SessionEventMessage>;
  watchSession(req: WatchSessionRequest, signal: AbortSignal): AsyncIterable<SessionEventMessage>;
  /** Streams past their catch-up, now. */
  readonly streams: number;
  /**
   * Ends every stream, and refuses new ones, with UNAVAILABLE (reason
   * SHUTTING_DOWN): the server is closing, and a watcher resumes from its
   * cursor on another replica rather than waiting for MAX_DEADLINE.
   */
  shutdown(): void;
}

/** The default of WATCH_BUFFER. */
export const DEFAULT_WATCH_BUFFER_EVENTS = 1000;

const EVENT_TYPES: Readonly<Record<SessionEventType, EventType>> = {
  upserted: EventType.UPSERTED,
  touched: EventType.TOUCHED,
  deleted: EventType.DELETED,
  "deleted-by-user": EventType.DELETED_BY_USER,
  rotated: EventType.ROTATED,
  "reuse-detected": EventType.REUSE_DETECTED,
  evicted: EventType.EVICTED,
};

/** An event as the API sends it: the kept ids stay on the server. */
export function eventMessage(event: SessionEvent): SessionEventMessage {
  return create(SessionEventSchema, {
    eventId: event.id,
    type: EVENT_TYPES[event.type],
    sessionId: event.sessionId,
    userId: event.userId,
    version: event.version,
    time: timestampFromMs(event.timeMs),
  });
}

/**
 * Whether a WatchSession stream of `sessionId` sends `event`: the
 * session's own events, and each DELETED_BY_USER that did not keep it. (A
 * DeleteByUser that ran while the session did not exist is sent too: the
 * event does not say which sessions it removed, only which it kept.)
 */
export function concernsSession(event: SessionEvent, sessionId: string): boolean {
  if (event.type === "deleted-by-user") return !event.keptSessionIds.includes(sessionId);
  return event.sessionId === sessionId;
}

/** after_event_id: empty for none, else an event id. */
function checkCursor(field: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (!parseEventId(value)) {
    throw statusError("INVALID_FIELD", `${field} is not an event id of this service`, { field });
  }
  return value;
}

/**
 * The watch RPCs. A stream is the store's watch (see EventHub) filtered
 * and translated, ended by the call's signal (the client, its deadline or
 * MAX_DEADLINE), by shutdown, or by the store: a slow client is
 * RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW), a cursor whose events may have
 * been dropped OUT_OF_RANGE (EVENTS_EXPIRED), a store outage UNAVAILABLE;
 * each resumes with after_event_id (EVENTS_EXPIRED after listing again).
 */
export function createWatchHandlers(options: WatchHandlersOptions): WatchHandlers {
  const { store, watchBufferEvents: bufferSize, logger } = options;
  const outages = new OutageLog(logger);
  const open = new Set<AbortController>();
  let closing = false;
  let live = 0;

  async function* stream(
    method: string,
    userId: string,
    after: string | undefined,
    signal: AbortSignal,
    wanted: (event: SessionEvent) => boolean,
  ): AsyncGenerator<SessionEventMessage> {
    if (closing) throw shuttingDown();
    const controller = new AbortController();
    const forward = () => controller.abort(signal.reason);
    if (signal.aborted) forward();
    signal.addEventListener("abort", forward, { once: true });
    open.add(controller);
    let counted = false;
    try {
      const events = store.watch(userId, {
        after,
        bufferSize,
        signal: controller.signal,
        onLive: () => {
          counted = true;
          live++;
        },
      });
      for await (const event of events) {
        if (wanted(event)) yield eventMessage(event);
      }
    } catch (error) {
      throw watchError(error, controller.signal, method);
    } finally {
      if (counted) live--;
      open.delete(controller);
      signal.removeEventListener("abort", forward);
    }
  }

  function watchError(error: unknown, signal: AbortSignal, method: string): ConnectError {
    if (signal.aborted && error === signal.reason && error instanceof ConnectError) return error;
    if (error instanceof EventsExpiredError) {
      return statusError(
        "EVENTS_EXPIRED",
        "events after after_event_id may have been dropped - list the sessions again and watch without after_event_id",
      );
    }
    if (error instanceof EventsDisabledError) {
      return statusError(
        "EVENTS_DISABLED",
        "session events are off on this server (EVENT_RETENTION_COUNT=0)",
        { limit: "EVENT_RETENTION_COUNT" },
      );
    }
    if (error instanceof WatcherTooSlowError) {
      return statusError(
        "WATCHER_TOO_SLOW",
        `the stream fell more than ${error.bufferSize} events behind (WATCH_BUFFER) - resume with after_event_id`,
        { limit: "WATCH_BUFFER" },
      );
    }
    return toConnectError(error, logger, method, options.onStoreError, outages);
  }

  return {
    watchUser(req, signal) {
      const userId = checkId("user_id", req.userId);
      const after = checkCursor("after_event_id", req.afterEventId);
      return stream("WatchUser", userId, after, signal, () => true);
    },
    watchSession(req, signal) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const after = checkCursor("after_event_id", req.afterEventId);
      return stream("WatchSession", userId, after, signal, (event) =>
        concernsSession(event, sessionId),
      );
    },
    get streams() {
      return live;
    },
    shutdown() {
      closing = true;
      for (const controller of open) controller.abort(shuttingDown());
    },
  };
}

function shuttingDown(): ConnectError {
  return statusError(
    "SHUTTING_DOWN",
    "the server is shutting down - resume with after_event_id on another replica",
  );
}
