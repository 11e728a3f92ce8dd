import { readFileSync } from "node:fs";
import { Cluster, type Redis, type Result } from "ioredis";
import { abortable } from "../abortable.js";
import {
  ExpiresAtPassedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
  SessionExistsError,
  SessionNotFoundError,
  StoreClosedError,
  StoreUnavailableError,
  VersionMismatchError,
} from "../errors.js";
import { EventHub } from "../event-hub.js";
import {
  EVENT_RETENTION_DEFAULTS,
  EVENT_TYPE_CODES,
  type EventCursor,
  type EventRead,
  type EventRetention,
  EventsDisabledError,
  EventsExpiredError,
  eventsDisabledWatch,
  parseEventId,
  type SessionEvent,
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
import { RedisEventSubscriptions } from "./redis-event-subscriptions.js";
import { type UserKeys, userKeys } from "./redis-keys.js";
import { decodeRecord } from "./redis-record.js";
import { ReplicatedWriter } from "./replicated-writer.js";

/** Options of {@link RedisSessionStore}. */
export interface RedisSessionStoreOptions {
  /** A connected client: standalone, Sentinel-managed or Cluster. */
  readonly redis: Redis | Cluster;
  /** Prefix of every key; must not contain `{` or `}`. */
  readonly keyPrefix: string;
  /** Cap on live sessions per user; 0 means unlimited. */
  readonly maxSessionsPerUser: number;
  /** Make every write wait for replicas to acknowledge it; off when absent. */
  readonly replication?: ReplicatedWrites;
  /** How long and how many events each user's log keeps (default 24 h and 1000). */
  readonly events?: EventRetention;
  /**
   * Opens the connection that subscribes to watched users' channels (see
   * RedisEventSubscriptions), on the first watch; by default a duplicate
   * of `redis` (a Cluster's with sharded subscribers).
   */
  readonly connectSubscriber?: () => Promise<Redis | Cluster>;
}

/**
 * Writes that count as done only once `replicas` replicas have them
 * (Redis's WAIT), so that a failover to one of those replicas cannot lose
 * an acknowledged write.
 */
export interface ReplicatedWrites {
  /** Replicas that must acknowledge a write. */
  readonly replicas: number;
  /** How long WAIT waits for them, ms; then the write fails NotReplicatedError. */
  readonly timeoutMs: number;
  /**
   * A client of the same Redis, of the same kind as `redis`, used for
   * writes only. WAIT blocks the connection it is sent on until the
   * replicas answer, and counts the writes made on that connection: writes
   * and their WAIT therefore share a connection of their own, and reads
   * never queue behind a WAIT. Writes go out on it in batches, each
   * followed by one WAIT (see ReplicatedWriter).
   */
  readonly writer: Redis | Cluster;
}

/** Status codes the write scripts reply with (see lua/upsert.lua). */
const Status = {
  Ok: 0,
  NotFound: 1,
  VersionMismatch: 2,
  AlreadyExists: 3,
  ExpiresAtPassed: 4,
  AlreadyRotated: 5,
  RefreshTokenReused: 6,
  RefreshStateMissing: 7,
} as const;
type Status = (typeof Status)[keyof typeof Status];

declare module "ioredis" {
  interface RedisCommander<Context> {
    sessionGetBuffer(sessions: string, sessionId: string): Result<Buffer | null, Context>;
    sessionUpsert(
      sessions: string,
      byExpiry: string,
      byId: string,
      events: string,
      sessionId: string,
      data: Buffer,
      ttlMs: number,
      expiresAtMs: number,
      expectedVersion: string,
      maxSessionsPerUser: number,
      refreshDigest: string,
    ): Result<[Status, string?, number?], Context>;
    sessionRefreshBuffer(
      sessions: string,
      byExpiry: string,
      byId: string,
      events: string,
      sessionId: string,
      presentedDigest: string,
      newTokenId: string,
      newDigest: string,
      ttlMs: number,
      graceMs: number,
      revokeAllOnReuse: "1" | "0",
    ): Result<[Status, Buffer?], Context>;
    sessionTouchBuffer(
      sessions: string,
      byExpiry: string,
      byId: string,
      events: string,
      sessionId: string,
      ttlMs: number,
    ): Result<[Status, Buffer?], Context>;
    sessionDelete(
      sessions: string,
      byExpiry: string,
      byId: string,
      events: string,
      sessionId: string,
      expectedVersion: string,
    ): Result<[Status, number?], Context>;
    sessionListBuffer(
      sessions: string,
      byExpiry: string,
      byId: string,
      after: string,
      want: number,
    ): Result<[ListStatus, Buffer, ...Buffer[]], Context>;
    sessionDeleteByUser(
      sessions: string,
      byExpiry: string,
      byId: string,
      events: string,
      ...exceptSessionIds: string[]
    ): Result<number, Context>;
    sessionEvents(
      events: string,
      after: string,
      checked: "1" | "0",
      count: number,
    ): Result<[EventsStatus, string?, string[]?], Context>;
  }
}

/** What lua/list.lua says follows the sessions it returns. */
const ListStatus = { NoMore: 0, More: 1, Stopped: 2 } as const;
type ListStatus = (typeof ListStatus)[keyof typeof ListStatus];

function script(name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
}

/** What lua/events.lua says of a cursor. */
const EventsStatus = { Ok: 0, Expired: 1 } as const;
type EventsStatus = (typeof EventsStatus)[keyof typeof EventsStatus];

const COMMON = script("common");

/**
 * The source of script `name` (lua/<name>.lua) as the store runs it:
 * prefixed with the event settings and the shared helpers. The settings
 * are written into the scripts rather than passed as arguments so that
 * every write script (the Refresh script too) records events with one
 * `emit` call and no arguments of its own for them. Exported for the
 * benchmark's Go peer, which runs the same scripts.
 */
export function scriptSource(name: string, events = EVENT_RETENTION_DEFAULTS): string {
  const settings =
    `local EVENT_RETENTION_MS = ${Math.floor(events.retentionMs)}\n` +
    `local EVENT_RETENTION_COUNT = ${Math.floor(events.retentionCount)}\n`;
  return settings + COMMON + script(name);
}

/** The scripts as ioredis commands; ioredis runs them by SHA. */
function commands(events: EventRetention) {
  const lua = (name: string) => scriptSource(name, events);
  return {
    sessionGet: { numberOfKeys: 1, lua: lua("get"), readOnly: true },
    sessionUpsert: { numberOfKeys: 4, lua: lua("upsert") },
    sessionTouch: { numberOfKeys: 4, lua: lua("touch") },
    sessionRefresh: { numberOfKeys: 4, lua: lua("refresh") },
    sessionDelete: { numberOfKeys: 4, lua: lua("delete") },
    // Not read-only: it removes the expired sessions it passes over.
    sessionList: { numberOfKeys: 3, lua: lua("list") },
    sessionDeleteByUser: { numberOfKeys: 4, lua: lua("delete_by_user") },
    sessionEvents: { numberOfKeys: 1, lua: lua("events"), readOnly: true },
  } as const;
}

/**
 * Redis replies that mean "not now" rather than "broken": the server is
 * loading, busy with a script, failing over, read-only, or out of memory.
 */
const TRANSIENT_REPLY =
  /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|OOM|MISCONF)\b/;

/**
 * The Redis SessionStore. Every operation is one Lua script (by SHA, falling
 * back to the source after a script cache flush), one round trip, except a
 * listing that meets a long run of expired sessions (see lua/list.lua).
 * Each script touches only the keys of one user, which share a Cluster hash
 * slot, so the store works unchanged on Cluster, and does work bounded by
 * its page or its arguments, never by how many sessions the user has, so
 * that one user's call never holds Redis up for the others. Expiry uses the
 * Redis server's clock: the scripts read TIME. See redis-keys.ts for the
 * layout and lua/ for the scripts.
 */
export class RedisSessionStore implements SessionStore {
  private readonly redis: Redis | Cluster;
  /** `redis`, and replication's writer if writes wait for replicas. */
  private readonly clients: readonly (Redis | Cluster)[];
  /** Sends writes that wait for replicas; undefined when writes do not wait. */
  private readonly replicated: ReplicatedWriter | undefined;
  private readonly keyPrefix: string;
  private readonly maxSessionsPerUser: number;
  /** EVENT_RETENTION_COUNT=0: the scripts record nothing. */
  private readonly eventsOff: boolean;
  private readonly subscriptions: RedisEventSubscriptions;
  private readonly hub: EventHub;

  constructor(options: RedisSessionStoreOptions) {
    this.redis = options.redis;
    this.replicated = options.replication && new ReplicatedWriter(options.replication);
    this.clients = options.replication
      ? [options.redis, options.replication.writer]
      : [options.redis];
    this.keyPrefix = options.keyPrefix;
    this.maxSessionsPerUser = options.maxSessionsPerUser;
    this.eventsOff = options.events?.retentionCount === 0;
    const definitions = Object.entries(commands(options.events ?? EVENT_RETENTION_DEFAULTS));
    for (const client of this.clients) {
      for (const [name, definition] of definitions) {
        client.defineCommand(name, definition);
      }
    }
    const redis = options.redis;
    this.subscriptions = new RedisEventSubscriptions({
      connect: options.connectSubscriber ?? (() => duplicateForSubscriptions(redis)),
      onChanged: (userId) => this.hub.changed(userId),
    });
    this.hub = new EventHub({
      read: (userId, cursor, limit) => this.readLog(userId, cursor, limit),
      subscribe: (userId) => this.subscriptions.subscribe(userId, this.locate(userId).events),
      unsubscribe: (userId) => this.subscriptions.unsubscribe(this.locate(userId).events),
    });
  }

  async get(userId: string, sessionId: string, signal?: StoreSignal) {
    const user = this.locate(userId);
    const record = await this.call(signal, () =>
      this.redis.sessionGetBuffer(user.sessions, sessionId),
    );
    return record ? decodeRecord(userId, sessionId, record) : undefined;
  }

  async upsert(input: UpsertInput, signal?: StoreSignal): Promise<StoredSession> {
    const user = this.locate(input.userId);
    const data = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength);
    const [status, version = "", storageExpiresAtMs = 0] = await this.write(
      signal,
      user,
      (redis) =>
        redis.sessionUpsert(
          user.sessions,
          user.byExpiry,
          user.byId,
          user.events,
          input.sessionId,
          data,
          input.ttlMs,
          input.expiresAtMs ?? 0,
          input.expectedVersion?.toString() ?? "",
          this.maxSessionsPerUser,
          input.refreshDigest ?? "",
        ),
      (reply) => reply[0] === Status.Ok,
    );
    switch (status) {
      case Status.Ok:
        return {
          userId: input.userId,
          sessionId: input.sessionId,
          data: input.data,
          version: BigInt(version),
          storageExpiresAtMs,
          expiresAtMs: input.expiresAtMs,
        };
      case Status.NotFound:
        throw new SessionNotFoundError();
      case Status.VersionMismatch:
        throw new VersionMismatchError();
      case Status.AlreadyExists:
        throw new SessionExistsError();
      case Status.ExpiresAtPassed:
        throw new ExpiresAtPassedError();
    }
    throw new Error(`unexpected reply from the upsert script: ${status}`);
  }

  async refresh(input: RefreshInput, signal?: StoreSignal): Promise<RefreshResult> {
    const { userId, sessionId } = input;
    const user = this.locate(userId);
    const [status, record] = await this.write(
      signal,
      user,
      (redis) =>
        redis.sessionRefreshBuffer(
          user.sessions,
          user.byExpiry,
          user.byId,
          user.events,
          sessionId,
          input.presentedDigest,
          input.newTokenId,
          input.newDigest,
          input.ttlMs,
          input.graceMs,
          input.revokeAllOnReuse ? "1" : "0",
        ),
      // Rotated, or deleted on reuse: both must reach the replicas.
      (reply) => reply[0] === Status.Ok || reply[0] === Status.RefreshTokenReused,
    );
    switch (status) {
      case Status.Ok:
      case Status.AlreadyRotated:
        if (!record) break;
        return { rotated: status === Status.Ok, session: decodeRecord(userId, sessionId, record) };
      case Status.NotFound:
        throw new SessionNotFoundError();
      case Status.RefreshTokenReused:
        throw new RefreshTokenReusedError();
      case Status.RefreshStateMissing:
        throw new RefreshStateMissingError();
    }
    throw new Error(`unexpected reply from the refresh script: ${status}`);
  }

  async touch(userId: string, sessionId: string, ttlMs: number, signal?: StoreSignal) {
    const user = this.locate(userId);
    const [status, record] = await this.write(
      signal,
      user,
      (redis) =>
        redis.sessionTouchBuffer(
          user.sessions,
          user.byExpiry,
          user.byId,
          user.events,
          sessionId,
          ttlMs,
        ),
      (reply) => reply[0] === Status.Ok,
    );
    if (status !== Status.Ok || !record) throw new SessionNotFoundError();
    return decodeRecord(userId, sessionId, record);
  }

  async delete(
    userId: string,
    sessionId: string,
    expectedVersion: bigint | undefined,
    signal?: StoreSignal,
  ): Promise<boolean> {
    const user = this.locate(userId);
    const [status, deleted] = await this.write(
      signal,
      user,
      (redis) =>
        redis.sessionDelete(
          user.sessions,
          user.byExpiry,
          user.byId,
          user.events,
          sessionId,
          expectedVersion?.toString() ?? "",
        ),
      (reply) => reply[1] === 1,
    );
    if (status === Status.VersionMismatch) throw new VersionMismatchError();
    return deleted === 1;
  }

  async listByUser(userId: string, page: PageRequest, signal?: StoreSignal): Promise<SessionPage> {
    const user = this.locate(userId);
    const sessions: StoredSession[] = [];
    let after = page.after ?? "";
    // One call unless the script stops at its scan budget (a long run of
    // expired sessions); it then says where it stopped and the page goes on
    // from there. The expired ones it passed are gone by the next call.
    for (;;) {
      const want = page.limit - sessions.length;
      const [status, cursor, ...pairs] = await this.call(signal, () =>
        this.redis.sessionListBuffer(user.sessions, user.byExpiry, user.byId, after, want),
      );
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        const id = pairs[i] as Buffer;
        sessions.push(decodeRecord(userId, id.toString("utf8"), pairs[i + 1] as Buffer));
      }
      if (status !== ListStatus.Stopped) return { sessions, hasMore: status === ListStatus.More };
      after = cursor.toString("utf8");
    }
  }

  async deleteByUser(
    userId: string,
    exceptSessionIds: readonly string[],
    signal?: StoreSignal,
  ): Promise<number> {
    const user = this.locate(userId);
    return this.write(
      signal,
      user,
      (redis) =>
        redis.sessionDeleteByUser(
          user.sessions,
          user.byExpiry,
          user.byId,
          user.events,
          ...exceptSessionIds,
        ),
      (deleted) => deleted > 0,
    );
  }

  async readEvents(
    userId: string,
    after: string | undefined,
    limit: number,
    signal?: StoreSignal,
  ): Promise<EventRead> {
    if (this.eventsOff) throw new EventsDisabledError();
    const cursor: EventCursor | undefined =
      after === undefined ? undefined : { after, checked: true };
    return this.readLog(userId, cursor, limit, signal);
  }

  watch(userId: string, options: WatchOptions): AsyncIterable<SessionEvent> {
    if (this.eventsOff) return eventsDisabledWatch();
    return this.hub.watch(userId, options);
  }

  /** Watch streams past their catch-up (for tests and metrics). */
  get watchers(): number {
    return this.hub.watchers;
  }

  async ping(signal?: StoreSignal): Promise<void> {
    await this.call(signal, () => this.redis.ping());
  }

  /**
   * Says QUIT and disconnects; a Redis that does not answer within half a
   * second (stuck, or gone) is simply disconnected, so shutdown never waits
   * on it.
   */
  async close(): Promise<void> {
    this.hub.endAll(new StoreClosedError());
    this.subscriptions.close();
    const { clients } = this;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(clients.map((client) => client.quit().catch(() => undefined))),
      new Promise((resolve) => {
        timer = setTimeout(resolve, 500);
      }),
    ]);
    clearTimeout(timer);
    for (const client of clients) client.disconnect();
  }

  /** One read of a user's event log (see lua/events.lua). */
  private async readLog(
    userId: string,
    cursor: EventCursor | undefined,
    limit: number,
    signal?: StoreSignal,
  ): Promise<EventRead> {
    let after = "";
    if (cursor) {
      const position = parseEventId(cursor.after);
      if (!position) throw new RangeError("not an event id");
      // Without leading zeros, as the script compares ids.
      after = `${position.ms}-${position.seq}`;
    }
    const [status, lastId = "0-0", entries = []] = await this.call(signal, () =>
      this.redis.sessionEvents(
        this.locate(userId).events,
        after,
        cursor?.checked ? "1" : "0",
        limit,
      ),
    );
    if (status === EventsStatus.Expired) throw new EventsExpiredError();
    return { lastId, events: entries.map((entry) => decodeEvent(userId, entry)) };
  }

  /** The names of one user's Redis keys (see redis-keys.ts). */
  private locate(userId: string): UserKeys {
    return userKeys(this.keyPrefix, userId);
  }

  /**
   * Runs a write script on `redis`, or with replication on its writer,
   * where a reply that says the script wrote (`wrote`) counts only once
   * enough replicas have acknowledged it (ReplicatedWriter's batches and
   * their WAIT); a reply that says nothing was written needs no WAIT.
   */
  private write<T>(
    signal: StoreSignal | undefined,
    user: UserKeys,
    script: (writer: Redis | Cluster) => Promise<T>,
    wrote: (reply: T) => boolean,
  ): Promise<T> {
    const { replicated } = this;
    if (!replicated) return this.call(signal, () => script(this.redis));
    return this.call(signal, () => replicated.write(user.sessions, script, wrote, signal));
  }

  /** Runs one Redis call, translating connection-level failures. */
  private call<T>(signal: StoreSignal | undefined, operation: () => Promise<T>): Promise<T> {
    return abortable(signal, operation).catch((error: unknown) => {
      if (signal?.aborted && error === signal.reason) throw error;
      // Already said (a write that replicas did not acknowledge): keep what it says.
      if (error instanceof StoreUnavailableError) throw error;
      throw isUnavailable(error) ? new StoreUnavailableError(error) : error;
    });
  }
}

/**
 * An entry of a user's event log as lua/common.lua's emit writes it,
 * "<id>|<type>|<version>|<ids>", as an event.
 */
function decodeEvent(userId: string, entry: string): SessionEvent {
  const [id = "", code = "", version = "0"] = entry.split("|", 3);
  const type = EVENT_TYPE_CODES[code];
  if (!type) throw new Error("an event of an unknown type");
  const idsAt = id.length + code.length + version.length + 3;
  const [sessionId = "", ...keptSessionIds] = decodeIds(entry.slice(idsAt));
  return {
    id,
    type,
    userId,
    sessionId,
    version: BigInt(version),
    timeMs: Number(id.slice(0, id.indexOf("-"))),
    keptSessionIds,
  };
}

/** Splits ids written as "<length>:<id>" one after another (encode_ids in common.lua). */
function decodeIds(encoded: string): string[] {
  const ids: string[] = [];
  const bytes = Buffer.from(encoded, "utf8");
  let at = 0;
  while (at < bytes.length) {
    const colon = bytes.indexOf(0x3a, at);
    if (colon < 0) break;
    const length = Number(bytes.subarray(at, colon).toString("latin1"));
    ids.push(bytes.subarray(colon + 1, colon + 1 + length).toString("utf8"));
    at = colon + 1 + length;
  }
  return ids;
}

/**
 * A client for subscriptions, made as `redis` was: a Cluster's with
 * ioredis's sharded subscribers (one connection per master, made when a
 * channel of its slots is first subscribed). Resolves once it is ready.
 */
async function duplicateForSubscriptions(redis: Redis | Cluster): Promise<Redis | Cluster> {
  const client =
    redis instanceof Cluster
      ? redis.duplicate(undefined, { shardedSubscribers: true })
      : redis.duplicate();
  // Its state changes are the store client's to report; lost messages are
  // made up for on "ready" (see RedisEventSubscriptions).
  client.on("error", () => {});
  if (client.status !== "ready") {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        client.disconnect();
        reject(new Error("the subscriber connection was not ready in time"));
      }, 10_000);
      client.once("ready", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return client;
}

/**
 * Whether an error from ioredis means Redis could not serve the command now.
 * Errors replied by the server are failures of the command itself, except
 * the transient ones; every other error ioredis raises (connection closed,
 * offline queue disabled, command timed out, retries exhausted, cluster
 * down) is about reaching Redis.
 */
function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error) || error instanceof TypeError || error instanceof RangeError) {
    return false;
  }
  return error.name !== "ReplyError" || TRANSIENT_REPLY.test(error.message);
}
