import {
  compareEventIds,
  type EventCursor,
  type EventRead,
  type SessionEvent,
  WatcherTooSlowError,
} from "./session-events.js";
import type { StoreSignal, WatchOptions } from "./session-store.js";

/**
 * Where a hub reads events and learns that there are new ones: a store's
 * event log and its notifications. The feed calls EventHub.changed(userId)
 * whenever a user's log may have grown (a notification, or a reconnection
 * after which notifications may have been lost).
 */
export interface EventFeed {
  /**
   * Up to `limit` events after the cursor, and the log's end; with no
   * cursor, only the log's end.
   *
   * @throws EventsExpiredError when events after the cursor may have been dropped.
   */
  read(userId: string, cursor: EventCursor | undefined, limit: number): Promise<EventRead>;
  /**
   * Starts notifications of the user's changes; resolves once they are
   * active, so that every change made after it is notified.
   */
  subscribe(userId: string): Promise<void>;
  /** Stops them: nobody watches the user any more. */
  unsubscribe(userId: string): void;
}

/** How many events one read of a log asks for. */
const PAGE = 500;

/** One watch stream: what it has been handed and not yet taken. */
interface Watcher {
  readonly bufferSize: number;
  /** Events handed to it by the hub, in order, not yet taken. */
  readonly queue: SessionEvent[];
  /** Why it ended, if the hub ended it. */
  failure: unknown;
  /** Wakes its stream (a new event, a failure, an abort). */
  wake: (() => void) | undefined;
}

/** Everything watching one user, and how far the hub has read the user's log. */
interface UserWatchers {
  readonly watchers: Set<Watcher>;
  /** Resolves once notifications are active and `lastId` is set. */
  readonly ready: Promise<void>;
  /** The last event id dispatched (or the log's end when first read); undefined until ready. */
  lastId: string | undefined;
  /** A read is under way. */
  reading: boolean;
  /** A change was notified during the read: read again after it. */
  again: boolean;
}

/**
 * Fans a store's events out to every watch stream of the process, with one
 * read of a user's log per notification however many streams watch the
 * user, and one subscription per watched user (see EventFeed).
 *
 * A new stream is registered first, so that everything the hub reads from
 * then on is handed to it; then it reads its catch-up itself (the events
 * after its cursor, or just the log's end when it has none), and hands out
 * the catch-up followed by the events the hub handed it meanwhile, skipping
 * those at or before the last one it handed out. The hub reads after the
 * last id it dispatched, which was read no later than the stream's
 * catch-up began, so the two overlap or meet: nothing is missed, and the
 * skip drops what both delivered.
 *
 * Each stream buffers at most `bufferSize` events; a stream whose consumer
 * (the HTTP/2 stream, paced by its flow control) does not keep up is ended
 * with WatcherTooSlowError, so one slow client never holds the others up
 * nor grows the server's memory.
 */
export class EventHub {
  private readonly users = new Map<string, UserWatchers>();
  private live = 0;

  constructor(private readonly feed: EventFeed) {}

  /** Streams past their catch-up, across all users. */
  get watchers(): number {
    return this.live;
  }

  /** Users with at least one stream, each with one subscription. */
  get watchedUsers(): number {
    return this.users.size;
  }

  /** Tells the hub the user's log may have grown: it reads it if anyone watches. */
  changed(userId: string): void {
    const user = this.users.get(userId);
    if (user) this.pump(userId, user);
  }

  /** The users watched now (to notify them all after a lost connection). */
  watchedUserIds(): string[] {
    return [...this.users.keys()];
  }

  /**
   * A stream of the user's events after `options.after` (or from now), which
   * ends only by throwing: the signal's reason when it aborts,
   * WatcherTooSlowError, EventsExpiredError, or the store's failure.
   */
  async *watch(userId: string, options: WatchOptions): AsyncGenerator<SessionEvent, never> {
    const { signal } = options;
    signal.throwIfAborted();
    const watcher: Watcher = {
      bufferSize: options.bufferSize,
      queue: [],
      failure: undefined,
      wake: undefined,
    };
    const user = this.register(userId, watcher);
    const onAbort = () => watcher.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    let counted = false;
    try {
      await user.ready;
      let position: string;
      const catchUp: SessionEvent[] = [];
      if (options.after === undefined) {
        position = (await this.feed.read(userId, undefined, 0)).lastId;
      } else {
        position = options.after;
        let cursor: EventCursor = { after: options.after, checked: true };
        for (;;) {
          const read = await this.feed.read(userId, cursor, PAGE);
          catchUp.push(...read.events);
          const last = read.events.at(-1);
          if (!last || read.events.length < PAGE) break;
          // Later pages follow what this stream read itself: already checked.
          cursor = { after: last.id, checked: false };
        }
      }
      this.live++;
      counted = true;
      options.onLive?.();
      for (const event of catchUp) {
        this.check(watcher, signal);
        yield event;
        position = event.id;
      }
      for (;;) {
        this.check(watcher, signal);
        const event = watcher.queue.shift();
        if (!event) {
          await new Promise<void>((resolve) => {
            watcher.wake = resolve;
          });
          watcher.wake = undefined;
          continue;
        }
        if (compareEventIds(event.id, position) <= 0) continue;
        yield event;
        position = event.id;
      }
    } finally {
      if (counted) this.live--;
      signal.removeEventListener("abort", onAbort);
      this.unregister(userId, watcher);
    }
  }

  /** Ends every stream with `failure` (the store is closing). */
  endAll(failure: unknown): void {
    for (const [userId, user] of this.users) this.fail(userId, user, failure);
  }

  /** Throws why the stream must end, if it must. */
  private check(watcher: Watcher, signal: StoreSignal): void {
    signal.throwIfAborted();
    if (watcher.failure !== undefined) throw watcher.failure;
  }

  private register(userId: string, watcher: Watcher): UserWatchers {
    const existing = this.users.get(userId);
    if (existing) {
      existing.watchers.add(watcher);
      return existing;
    }
    const user: UserWatchers = {
      watchers: new Set([watcher]),
      ready: undefined as unknown as Promise<void>,
      lastId: undefined,
      reading: false,
      again: false,
    };
    this.users.set(userId, user);
    (user as { ready: Promise<void> }).ready = this.start(userId, user);
    // A failure reaches each stream through its own await of `ready`.
    user.ready.catch(() => {});
    return user;
  }

  /** Subscribes, then reads where the log ends: the hub dispatches what follows. */
  private async start(userId: string, user: UserWatchers): Promise<void> {
    try {
      await this.feed.subscribe(userId);
      const { lastId } = await this.feed.read(userId, undefined, 0);
      user.lastId = lastId;
    } catch (error) {
      this.fail(userId, user, error);
      throw error;
    }
    if (user.again) {
      user.again = false;
      this.pump(userId, user);
    }
  }

  private unregister(userId: string, watcher: Watcher): void {
    const user = this.users.get(userId);
    if (!user?.watchers.delete(watcher) || user.watchers.size > 0) return;
    this.users.delete(userId);
    this.feed.unsubscribe(userId);
  }

  /** Reads the user's log after what was dispatched, and hands the events to every stream. */
  private pump(userId: string, user: UserWatchers): void {
    if (user.reading || user.lastId === undefined) {
      user.again = true;
      return;
    }
    user.reading = true;
    user.again = false;
    const cursor: EventCursor = { after: user.lastId, checked: false };
    this.feed.read(userId, cursor, PAGE).then(
      (read) => {
        user.reading = false;
        if (this.users.get(userId) !== user) return;
        for (const event of read.events) this.dispatch(user, event);
        const last = read.events.at(-1);
        if (last) user.lastId = last.id;
        if (read.events.length === PAGE || user.again) this.pump(userId, user);
      },
      (error: unknown) => {
        user.reading = false;
        // Its streams resume from their cursors (or learn their events expired).
        if (this.users.get(userId) === user) this.fail(userId, user, error);
      },
    );
  }

  private dispatch(user: UserWatchers, event: SessionEvent): void {
    for (const watcher of user.watchers) {
      if (watcher.failure !== undefined) continue;
      if (watcher.queue.length >= watcher.bufferSize) {
        watcher.failure = new WatcherTooSlowError(watcher.bufferSize);
        watcher.queue.length = 0;
      } else {
        watcher.queue.push(event);
      }
      watcher.wake?.();
    }
  }

  /** Ends every stream of the user with `failure` and forgets the user. */
  private fail(userId: string, user: UserWatchers, failure: unknown): void {
    for (const watcher of user.watchers) {
      watcher.failure ??= failure;
      watcher.queue.length = 0;
      watcher.wake?.();
    }
    if (this.users.get(userId) === user) {
      this.users.delete(userId);
      this.feed.unsubscribe(userId);
    }
  }
}
