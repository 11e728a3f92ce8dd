import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import type { SessionEvent, SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";

/** Options of {@link watchUserEvents} and {@link watchSessionEvents}. */
export interface WatchEventsOptions {
  /**
   * Start after this event: the event_id of the last event a previous
   * watch delivered. Absent: start with the changes made from now on.
   */
  readonly afterEventId?: string | undefined;
  /** Ends the watch: the iterator then finishes without an error. */
  readonly signal?: AbortSignal | undefined;
  /** First wait before reconnecting, ms (default 100); it doubles after each failure. */
  readonly retryDelayMs?: number | undefined;
  /** Longest wait before reconnecting, ms (default 5000). */
  readonly maxRetryDelayMs?: number | undefined;
  /** Headers sent with every call (e.g. a trace context); the client's token is sent anyway. */
  readonly headers?: CallOptions["headers"];
}

type SessionStoreClient = Client<typeof SessionStoreService>;

/**
 * The events of one user's sessions (WatchUser) as an async iterator that
 * outlives its streams: when a stream ends (the server's MAX_DEADLINE, a
 * restart, a dropped connection, the server cutting off a watcher that
 * fell behind), it waits a little and calls again after the last event it
 * delivered, so the caller sees every event once, in order, with no gap.
 *
 * It ends normally when `signal` aborts or the loop breaks. It throws the
 * ConnectError of a failure that retrying would not mend: OUT_OF_RANGE
 * (reason EVENTS_EXPIRED: events after the cursor are no longer kept, so
 * list the user's sessions again and watch afresh), INVALID_ARGUMENT,
 * UNAUTHENTICATED, PERMISSION_DENIED.
 *
 * Started without afterEventId, the watch begins "from now", and until its
 * first event it knows no cursor: changes made while a reconnection is
 * under way before that first event are not seen. Start from a cursor
 * where that matters.
 */
export function watchUserEvents(
  client: SessionStoreClient,
  userId: string,
  options: WatchEventsOptions = {},
): AsyncGenerator<SessionEvent> {
  return resumingWatch(
    (afterEventId, callOptions) => client.watchUser({ userId, afterEventId }, callOptions),
    options,
  );
}

/** The events of one session (WatchSession), resumed like {@link watchUserEvents}. */
export function watchSessionEvents(
  client: SessionStoreClient,
  userId: string,
  sessionId: string,
  options: WatchEventsOptions = {},
): AsyncGenerator<SessionEvent> {
  return resumingWatch(
    (afterEventId, callOptions) =>
      client.watchSession({ userId, sessionId, afterEventId }, callOptions),
    options,
  );
}

/** Codes after which calling again from the last cursor may succeed. */
const RETRYABLE = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  // A stream reset on the way (a proxy, the connection) without our signal.
  Code.Canceled,
]);

async function* resumingWatch(
  open: (afterEventId: string, options: CallOptions) => AsyncIterable<SessionEvent>,
  options: WatchEventsOptions,
): AsyncGenerator<SessionEvent> {
  const { signal } = options;
  const firstDelay = options.retryDelayMs ?? 100;
  const maxDelay = options.maxRetryDelayMs ?? 5000;
  let cursor = options.afterEventId ?? "";
  let delay = firstDelay;
  while (!signal?.aborted) {
    try {
      const callOptions: CallOptions = {
        ...(signal ? { signal } : {}),
        ...(options.headers ? { headers: options.headers } : {}),
      };
      for await (const event of open(cursor, callOptions)) {
        cursor = event.eventId;
        delay = firstDelay;
        yield event;
      }
    } catch (error) {
      if (signal?.aborted) return;
      const connectError = ConnectError.from(error);
      if (!RETRYABLE.has(connectError.code)) throw connectError;
    }
    await pause(delay, signal);
    delay = Math.min(delay * 2, maxDelay);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
