import { Cluster, type Redis } from "ioredis";

/** Options of {@link RedisEventSubscriptions}. */
export interface RedisEventSubscriptionsOptions {
  /**
   * Opens the one connection (a Cluster client: one per master) that
   * subscribes to the watched users' channels, once the first user is
   * watched. Standalone and Sentinel: a client of the same primary, made as
   * the store's own; Cluster: a Cluster client with ioredis's sharded
   * subscribers.
   */
  readonly connect: () => Promise<Redis | Cluster>;
  /** Told that a user's log may have grown (a message, or a subscription made again). */
  readonly onChanged: (userId: string) => void;
}

/** How long to wait before subscribing again to channels whose subscription failed. */
const RETRY_MS = 250;

/**
 * The sharded pub/sub subscriptions of one process: one channel per
 * watched user (the user's event log key, which the write scripts
 * SPUBLISH to), all on one subscriber connection, so a process holds a
 * bounded number of connections whatever the number of watchers.
 *
 * A subscription resolves once Redis has acknowledged it: every event
 * written after that is announced, and every one before can be read.
 * Announcements are lost while the connection is down, so whenever the
 * subscriber is back (standalone and Sentinel: its "ready" after a
 * reconnection; Cluster: ioredis's "subscribersReady", after it replaced a
 * sharded subscriber that failed or moved slots in a failover or a
 * resharding) every channel is subscribed again, each acknowledged, and its
 * user reported changed, so the hub reads what it missed. ioredis's
 * Cluster resubscribes by itself without waiting for the acknowledgement
 * before it says so; subscribing again here (a no-op for Redis) is what
 * makes the read after it safe.
 */
export class RedisEventSubscriptions {
  private readonly channels = new Map<string, string>();
  private subscriber: Promise<Redis | Cluster> | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  /** Channels whose subscription must be made again (see resubscribe). */
  private readonly pending = new Set<string>();

  constructor(private readonly options: RedisEventSubscriptionsOptions) {}

  /** Subscribes to the user's channel; resolves once Redis has acknowledged it. */
  async subscribe(userId: string, channel: string): Promise<void> {
    this.channels.set(channel, userId);
    const subscriber = await this.open();
    await subscriber.ssubscribe(channel);
  }

  /** Drops the user's channel. */
  unsubscribe(channel: string): void {
    this.channels.delete(channel);
    this.pending.delete(channel);
    this.subscriber
      ?.then((subscriber) => subscriber.sunsubscribe(channel))
      .catch(() => {
        // Gone with the connection anyway.
      });
  }

  /** Closes the subscriber connection. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.subscriber?.then(
      (subscriber) => subscriber.disconnect(),
      () => {},
    );
  }

  private open(): Promise<Redis | Cluster> {
    if (this.closed) return Promise.reject(new Error("the store is closed"));
    if (this.subscriber) return this.subscriber;
    const opening = this.options.connect().then((subscriber) => {
      if (this.closed) subscriber.disconnect();
      this.listen(subscriber);
      return subscriber;
    });
    // A failed connection is tried again by the next subscription.
    opening.catch(() => {
      if (this.subscriber === opening) this.subscriber = undefined;
    });
    this.subscriber = opening;
    return opening;
  }

  private listen(subscriber: Redis | Cluster): void {
    subscriber.on("smessage", (channel: string) => {
      const userId = this.channels.get(channel);
      if (userId !== undefined) this.options.onChanged(userId);
    });
    const again = () => {
      for (const channel of this.channels.keys()) this.pending.add(channel);
      this.resubscribe(subscriber);
    };
    if (subscriber instanceof Cluster) {
      subscriber.on("subscribersReady", again);
    } else {
      // "ready" again after the connection was lost.
      subscriber.on("ready", again);
    }
  }

  /**
   * Subscribes again to every pending channel, and reports each user
   * changed once acknowledged; channels that fail are tried again shortly.
   */
  private resubscribe(subscriber: Redis | Cluster): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    if (this.closed) return;
    for (const channel of [...this.pending]) {
      this.pending.delete(channel);
      subscriber.ssubscribe(channel).then(
        () => {
          const userId = this.channels.get(channel);
          if (userId !== undefined) this.options.onChanged(userId);
        },
        () => {
          if (!this.channels.has(channel)) return;
          this.pending.add(channel);
          this.retry ??= setTimeout(() => this.resubscribe(subscriber), RETRY_MS);
          this.retry.unref();
        },
      );
    }
  }
}
