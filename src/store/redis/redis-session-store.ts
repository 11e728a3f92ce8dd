import { readFileSync } from "node:fs";
import type { Cluster, Redis, Result } from "ioredis";
import { abortable } from "../abortable.js";
import {
  ExpiresAtPassedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
  SessionExistsError,
  SessionNotFoundError,
  StoreUnavailableError,
  VersionMismatchError,
} from "../errors.js";
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
      sessionId: string,
      ttlMs: number,
    ): Result<[Status, Buffer?], Context>;
    sessionDelete(
      sessions: string,
      byExpiry: string,
      byId: string,
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
      ...exceptSessionIds: string[]
    ): Result<number, Context>;
  }
}

/** What lua/list.lua says follows the sessions it returns. */
const ListStatus = { NoMore: 0, More: 1, Stopped: 2 } as const;
type ListStatus = (typeof ListStatus)[keyof typeof ListStatus];

function script(name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8");
}

const COMMON = script("common");

/** The scripts, each prefixed with the shared helpers; ioredis runs them by SHA. */
const COMMANDS = {
  sessionGet: { numberOfKeys: 1, lua: COMMON + script("get"), readOnly: true },
  sessionUpsert: { numberOfKeys: 3, lua: COMMON + script("upsert") },
  sessionTouch: { numberOfKeys: 3, lua: COMMON + script("touch") },
  sessionRefresh: { numberOfKeys: 3, lua: COMMON + script("refresh") },
  sessionDelete: { numberOfKeys: 3, lua: COMMON + script("delete") },
  // Not read-only: it removes the expired sessions it passes over.
  sessionList: { numberOfKeys: 3, lua: COMMON + script("list") },
  sessionDeleteByUser: { numberOfKeys: 3, lua: COMMON + script("delete_by_user") },
} as const;

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

  constructor(options: RedisSessionStoreOptions) {
    this.redis = options.redis;
    this.replicated = options.replication && new ReplicatedWriter(options.replication);
    this.clients = options.replication
      ? [options.redis, options.replication.writer]
      : [options.redis];
    this.keyPrefix = options.keyPrefix;
    this.maxSessionsPerUser = options.maxSessionsPerUser;
    for (const client of this.clients) {
      for (const [name, definition] of Object.entries(COMMANDS)) {
        client.defineCommand(name, definition);
      }
    }
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
        redis.sessionTouchBuffer(user.sessions, user.byExpiry, user.byId, sessionId, ttlMs),
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
        redis.sessionDeleteByUser(user.sessions, user.byExpiry, user.byId, ...exceptSessionIds),
      (deleted) => deleted > 0,
    );
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
  private async call<T>(signal: StoreSignal | undefined, operation: () => Promise<T>): Promise<T> {
    try {
      return await abortable(signal, operation);
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw error;
      // Already said (a write that replicas did not acknowledge): keep what it says.
      if (error instanceof StoreUnavailableError) throw error;
      throw isUnavailable(error) ? new StoreUnavailableError(error) : error;
    }
  }
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
