import { Cluster, type Redis } from "ioredis";
import { NotReplicatedError, StoreUnavailableError } from "../errors.js";
import type { StoreSignal } from "../session-store.js";
import { clusterSlot } from "./cluster-slot.js";

/** Options of {@link ReplicatedWriter}. */
export interface ReplicatedWriterOptions {
  /** A client used for writes only (see ReplicatedWrites in redis-session-store.ts). */
  readonly writer: Redis | Cluster;
  /** Replicas that must acknowledge a write. */
  readonly replicas: number;
  /** How long WAIT waits for them, ms. */
  readonly timeoutMs: number;
}

/** A write waiting for its batch, and how to settle it. */
interface QueuedWrite {
  /** A key of the write's user: on a Cluster, its slot's master is where to WAIT. */
  readonly key: string;
  /** Sends the write's script; called once, when its batch goes out. */
  readonly send: () => Promise<unknown>;
  readonly wrote: (reply: unknown) => boolean;
  readonly resolve: (reply: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** The writes of one primary's connection: those queued, and whether a batch is out. */
interface Lane {
  readonly queue: QueuedWrite[];
  busy: boolean;
}

/**
 * Sends writes that must reach replicas a batch at a time on each primary's
 * connection: the scripts of every write queued meanwhile, then one WAIT
 * for all of them (group commit). WAIT blocks its connection, and Redis
 * runs nothing else from that connection until it returns; writes sent
 * behind a WAIT whose replicas do not answer would wait there a whole WAIT
 * timeout each, fail at REDIS_COMMAND_TIMEOUT_MS while still queued in
 * Redis, and be applied seconds after their RPC failed and after a read
 * had found them absent (measured: 26 of 50 failed writes under 12
 * callers). Here a write waits for the batch in flight in the service,
 * where its deadline can still drop it unsent, and is sent only with a
 * WAIT right behind it: it fails, if it fails, after it was applied, and
 * says so (NotReplicatedError). One WAIT per batch also costs one replica
 * round trip for many writes instead of one each. (While a Cluster's slot
 * map changes, a batch formed for a master that is gone goes to its
 * successor, where it may land behind that master's own batch's WAIT.)
 */
export class ReplicatedWriter {
  private readonly lanes = new WeakMap<Redis, Lane>();

  constructor(private readonly options: ReplicatedWriterOptions) {}

  /**
   * Sends `script` to the writer in the next batch of the primary that
   * serves `key`, and resolves with its reply once the batch's WAIT has
   * counted enough replicas, or at once when `wrote` says the reply changed
   * nothing. A write whose replicas do not all acknowledge it in time, or
   * whose WAIT fails, rejects with NotReplicatedError: it was applied on
   * the primary. While it waits for its batch, `signal` drops it unsent.
   */
  write<T>(
    key: string,
    script: (writer: Redis | Cluster) => Promise<T>,
    wrote: (reply: T) => boolean,
    signal?: StoreSignal,
  ): Promise<T> {
    signal?.throwIfAborted();
    const connection = connectionOf(this.options.writer, key);
    let lane = this.lanes.get(connection);
    if (!lane) {
      lane = { queue: [], busy: false };
      this.lanes.set(connection, lane);
    }
    const { queue } = lane;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const at = queue.indexOf(write);
        if (at >= 0) queue.splice(at, 1);
        reject(signal?.reason);
      };
      const write: QueuedWrite = {
        key,
        send: () => script(this.options.writer),
        wrote: (reply) => wrote(reply as T),
        resolve: (reply) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(reply as T);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.push(write);
      void this.drain(lane);
    });
  }

  /** Sends the lane's queued writes a batch at a time until none is left. */
  private async drain(lane: Lane): Promise<void> {
    if (lane.busy) return;
    lane.busy = true;
    try {
      while (lane.queue.length > 0) {
        await this.send(lane.queue.splice(0));
      }
    } finally {
      lane.busy = false;
    }
  }

  /**
   * One batch: every script pipelined, then one WAIT on each primary the
   * writes that wrote went to (one, unless a Cluster's slot map changed
   * under the batch, as when a replica takes over a dead master's slots).
   */
  private async send(batch: readonly QueuedWrite[]): Promise<void> {
    const replies = await Promise.allSettled(batch.map((write) => write.send()));
    const { replicas } = this.options;
    // The writes that wrote, by the primary they went to, as the client knows it now.
    const waits = new Map<Redis, { write: QueuedWrite; reply: unknown }[]>();
    batch.forEach((write, i) => {
      const reply = replies[i] as PromiseSettledResult<unknown>;
      if (reply.status === "rejected") {
        write.reject(reply.reason);
      } else if (!write.wrote(reply.value)) {
        write.resolve(reply.value);
      } else {
        try {
          const connection = connectionOf(this.options.writer, write.key);
          waits.set(connection, [...(waits.get(connection) ?? []), { write, reply: reply.value }]);
        } catch (error) {
          write.reject(new NotReplicatedError(0, replicas, error));
        }
      }
    });
    await Promise.all(
      [...waits].map(async ([connection, writes]) => {
        let counted = 0;
        let failure: unknown;
        try {
          counted = await this.wait(connection);
        } catch (error) {
          failure = error;
        }
        for (const { write, reply } of writes) {
          if (counted >= replicas) write.resolve(reply);
          else write.reject(new NotReplicatedError(counted, replicas, failure));
        }
      }),
    );
  }

  /**
   * WAIT on `connection`, which answered the batch's scripts. WAIT counts
   * the writes made on its own connection: one not connected now (a
   * Cluster's node may queue the command until it reconnects) or that
   * answers on a new connection (after a reconnect) counts none and
   * answers at once, so neither is taken as an acknowledgement. A primary
   * demoted meanwhile refuses it ("UNBLOCKED ... master -> replica", "WAIT
   * cannot be used with replica instances"): the writes were made, and no
   * replica is known to have them.
   */
  private async wait(connection: Redis): Promise<number> {
    const { stream } = connection;
    if (connection.status !== "ready") throw new Error(`the connection is ${connection.status}`);
    const counted = await connection.wait(this.options.replicas, this.options.timeoutMs);
    if (connection.stream !== stream) throw new Error("the connection was replaced");
    return counted;
  }
}

/**
 * The connection a command on `key` goes out on: the client itself, or for
 * a Cluster the connection to the master that serves the key's slot (where
 * ioredis sends it; a command redirected by ASK during a slot migration goes
 * to another, and the batch's WAIT then does not cover it).
 */
function connectionOf(client: Redis | Cluster, key: string): Redis {
  if (!(client instanceof Cluster)) return client;
  const master = client.slots[clusterSlot(key)]?.[0];
  const node = client
    .nodes("master")
    .find(({ options }) => `${options.host}:${options.port}` === master);
  if (!node) throw new StoreUnavailableError(new Error("no master serves the slot"));
  return node;
}
