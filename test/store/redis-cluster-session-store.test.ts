import { Cluster, type Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import {
  type ClusterShard,
  type RedisServer,
  startRedisCluster,
} from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { clusterSlot } from "../../src/store/redis/cluster-slot.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { uniqueUserId } from "../support/ids.js";
import { ownedForBlock } from "../support/owned.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { describeEventContract } from "./session-events-contract.js";
import { describeStoreContract } from "./session-store-contract.js";

// The Redis store on a Cluster of three masters with a replica each, the
// shape the README recommends: the whole contract, then where the keys of
// many users land. The contract runs here only, not also on a Cluster
// without replicas: the store writes to and reads from masters alone, so
// the replicas change nothing it can see, and one run keeps npm test lean.

const cluster = ownedForBlock(() => startRedisCluster(3, { replicas: 1 }), 60_000);

async function openStore(options: RedisStoreOptions, commandTimeoutMs = 2000) {
  const { redis, store } = await openRedisStore(
    { url: cluster().url, cluster: true, commandTimeoutMs, connectTimeoutMs: 10_000 },
    options,
  );
  expect(redis).toBeInstanceOf(Cluster);
  return store;
}

describe("on a Redis Cluster of three masters with a replica each", () => {
  describeStoreContract("redis cluster with replicas", openStore);
  describeEventContract("redis cluster with replicas", openStore);

  it("keeps each user's keys in one slot, on its master and its replica, and spreads 300 users over every master", async () => {
    // A prefix of its own: the keys checked below are this test's only.
    const prefix = "spread";
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: prefix });
    const shards = await cluster().shards();
    const masters = shards.map((shard) => shard.master.client());
    const replicas = shards.map((shard) => shard.replicas[0]?.client());
    try {
      // Ids with hash-tag braces of their own: the store's escaping must
      // keep them from choosing the slot.
      const users = Array.from({ length: 300 }, (_, i) =>
        i % 2 === 0 ? uniqueUserId() : `{shared}-${i}:{x}`,
      );
      await Promise.all(
        users.map(async (userId) => {
          await store.upsert(upsertInput(userId, "a"));
          await store.upsert(upsertInput(userId, "b:{c}"));
        }),
      );
      for (const master of masters) expect(await master.wait(1, 5000)).toBe(1);
      for (const replica of replicas) expect(await replica?.call("READONLY")).toBe("OK");

      const usersPerMaster = shards.map(() => 0);
      await Promise.all(
        users.map(async (userId) => {
          const keys = userKeys(prefix, userId);
          const names = [keys.sessions, keys.byExpiry, keys.byId];
          const slots = await Promise.all(names.map((key) => cluster().keySlot(key)));
          expect(new Set(slots).size).toBe(1);
          const slot = slots[0] as number;
          const holder = shards.findIndex((shard) =>
            shard.slots.some(([first, last]) => first <= slot && slot <= last),
          );
          expect(holder).toBeGreaterThanOrEqual(0);
          // One multi-key EXISTS answers only if the three share a slot
          // the node serves; the replica has them too.
          expect(await masters[holder]?.exists(...names)).toBe(3);
          expect(await replicas[holder]?.exists(...names)).toBe(3);
          usersPerMaster[holder] = (usersPerMaster[holder] ?? 0) + 1;
        }),
      );
      console.info(`users per master: ${usersPerMaster.join(", ")}`);
      // About a third each (100 ± 8 for a fair spread): a hash tag that
      // piled users on one node, or on a few slots, would fail this.
      for (const count of usersPerMaster) expect(count).toBeGreaterThanOrEqual(60);
    } finally {
      for (const client of [...masters, ...replicas]) client?.disconnect();
      await store.close();
    }
  });
});

// A slot migrating from one master to another, driven step by step as
// redis-cli --cluster reshard drives it (CLUSTER SETSLOT IMPORTING and
// MIGRATING, MIGRATE of its keys, SETSLOT NODE), so that the store meets
// each state on purpose: a key already moved (ASK), a user's keys split
// between the nodes, or a new user's keys on neither (TRYAGAIN: a script
// needs all three keys on one node).
describe("on a Cluster slot while it migrates", () => {
  const prefix = "migrating";

  /** A slot being moved from the master that serves it to another master. */
  interface Migration {
    readonly slot: number;
    readonly source: ClusterShard;
    readonly target: ClusterShard;
    /** MIGRATEs these keys to the target. */
    move(...keys: string[]): Promise<void>;
    /** Moves what is left and hands the slot to the target, as reshard ends a slot. */
    finish(): Promise<void>;
    /** TRYAGAIN replies the two masters have given so far. */
    tryAgains(): Promise<number>;
    close(): void;
  }

  async function migrate(slot: number): Promise<Migration> {
    const source = await cluster().shardOf(slot);
    const target = (await cluster().shards()).find((s) => s.master !== source.master);
    if (!target) throw new Error("the cluster has one master");
    const from = source.master.client();
    const to = target.master.client();
    const errors = async (client: Redis) =>
      Number(/^errorstat_TRYAGAIN:count=(\d+)/m.exec(await client.info("errorstats"))?.[1] ?? 0);
    const move = async (...keys: string[]) => {
      const reply = await from.call(
        ...["MIGRATE", "127.0.0.1", String(target.master.port), "", "0", "5000", "KEYS", ...keys],
      );
      expect(reply).toBe("OK");
    };
    await to.cluster("SETSLOT", slot, "IMPORTING", cluster().nodeId(source.master));
    await from.cluster("SETSLOT", slot, "MIGRATING", cluster().nodeId(target.master));
    return {
      slot,
      source,
      target,
      move,
      finish: async () => {
        const left = (await from.cluster("GETKEYSINSLOT", slot, 10_000)) as string[];
        if (left.length > 0) await move(...left);
        for (const client of [to, from]) {
          await client.cluster("SETSLOT", slot, "NODE", cluster().nodeId(target.master));
        }
        await cluster().ready();
      },
      tryAgains: async () => (await errors(from)) + (await errors(to)),
      close: () => {
        from.disconnect();
        to.disconnect();
      },
    };
  }

  /** A user id no other test uses whose keys hash to `slot` (the store's own CRC16). */
  function userInSlot(slot: number): string {
    for (;;) {
      const userId = uniqueUserId();
      if (clusterSlot(userKeys(prefix, userId).sessions) === slot) return userId;
    }
  }

  function keysOf(userId: string): string[] {
    const keys = userKeys(prefix, userId);
    return [keys.sessions, keys.byExpiry, keys.byId];
  }

  it("follows ASK to moved keys, and rides out TRYAGAIN for split and new users until the slot is handed over", async () => {
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: prefix });
    const user = uniqueUserId();
    await store.upsert(upsertInput(user, "a"));
    const [sessions, ...others] = keysOf(user) as [string, string, string];
    const migration = await migrate(clusterSlot(sessions));
    try {
      const newcomer = userInSlot(migration.slot);
      await migration.move(sessions);
      // One key, moved: the source answers ASK and the store reads it on the target.
      expect((await store.get(user, "a"))?.version).toBe(1n);
      // Three keys, split: the source answers TRYAGAIN. Three keys on
      // neither node: the source sends the store on with ASK, the target
      // answers TRYAGAIN. ioredis retries both until the slot is handed over.
      const before = await migration.tryAgains();
      const split = store.upsert(upsertInput(user, "b"));
      const fresh = store.upsert(upsertInput(newcomer, "a"));
      await waitFor(
        "both writes to meet TRYAGAIN",
        async () => (await migration.tryAgains()) >= before + 2,
      );
      await migration.move(...others);
      await migration.finish();
      expect((await split).version).toBe(1n);
      expect((await fresh).version).toBe(1n);
      expect((await cluster().shardOf(migration.slot)).master).toBe(migration.target.master);
      const listed = await store.listByUser(user, { after: undefined, limit: 10 });
      expect(listed.sessions.map((s) => s.sessionId)).toEqual(["a", "b"]);
    } finally {
      migration.close();
      await store.close();
    }
  });

  /**
   * Writes that empty a user's keys, or empty and write them again, in a
   * slot that is migrating, with the keys still on the node the slot
   * leaves or already on the node it goes to. Redis checks every command a
   * script runs against the migration and redirects one that names a key
   * missing at that moment (the node the slot leaves: ASK; the node it goes
   * to: TRYAGAIN for several keys), which ends the script there with its
   * earlier writes done: a script must never name a key it has emptied,
   * and must not empty keys it then writes again where it cannot create
   * them. Each write must end as it would anywhere else.
   */
  const emptying: {
    name: string;
    cap: number;
    sessions: string[];
    write: (store: SessionStore, userId: string) => Promise<unknown>;
    result: unknown;
    left: string[];
  }[] = [
    {
      name: "Delete of the last session",
      cap: 0,
      sessions: ["a"],
      write: (store, userId) => store.delete(userId, "a", undefined),
      result: true,
      left: [],
    },
    {
      name: "DeleteByUser of every session",
      cap: 0,
      sessions: ["a", "b"],
      write: (store, userId) => store.deleteByUser(userId, []),
      result: 2,
      left: [],
    },
    {
      name: "DeleteByUser keeping one session",
      cap: 0,
      sessions: ["a", "b"],
      write: (store, userId) => store.deleteByUser(userId, ["b"]),
      result: 1,
      left: ["b"],
    },
    {
      name: "Upsert evicting the only session (cap 1)",
      cap: 1,
      sessions: ["a"],
      write: async (store, userId) => (await store.upsert(upsertInput(userId, "b"))).version,
      result: 1n,
      left: ["b"],
    },
  ];
  for (const keysMoved of [false, true]) {
    for (const { name, cap, sessions, write, result, left } of emptying) {
      it(`${name}, the keys ${keysMoved ? "moved (ASK)" : "not moved yet"}: ends as anywhere else`, async () => {
        const store = await openStore({ maxSessionsPerUser: cap, keyPrefix: prefix });
        const user = uniqueUserId();
        for (const sessionId of sessions) await store.upsert(upsertInput(user, sessionId));
        const migration = await migrate(clusterSlot(keysOf(user)[0] as string));
        try {
          if (keysMoved) await migration.move(...keysOf(user));
          const before = await migration.tryAgains();
          let settled = false;
          const outcome = write(store, user).then(
            (value) => ({ value }),
            (error: unknown) => ({ error }),
          );
          void outcome.then(() => {
            settled = true;
          });
          // Done at once, or told to try again until the keys have moved.
          await waitFor(
            "the write to end or meet TRYAGAIN",
            async () => settled || (await migration.tryAgains()) > before,
          );
          await migration.finish();
          expect(await outcome).toEqual({ value: result });
          const listed = await store.listByUser(user, { after: undefined, limit: 10 });
          expect(listed.sessions.map((s) => s.sessionId)).toEqual(left);
        } finally {
          migration.close();
          await store.close();
        }
      });
    }
  }

  /**
   * A write that cannot be served while `stall` lasts must fail
   * UNAVAILABLE, and once it has, must never be applied: the stall ends
   * right after the failure, and for a second after it the session must
   * not appear (with ioredis's own 100 ms retry delays, a write failed by
   * the command timeout was applied 60-110 ms after a stall like this
   * ended), and an insert-only write must then find it absent.
   */
  async function expectFailedWriteNeverApplied(
    user: string,
    stall: () => Promise<() => Promise<void>>,
  ) {
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: prefix });
    // Short, so that the test is: 300 ms of retries at most, not 2 s.
    const hasty = await openStore({ maxSessionsPerUser: 0, keyPrefix: prefix }, 300);
    try {
      await store.upsert(upsertInput(user, "a"));
      const end = await stall();
      const started = Date.now();
      const failure = await hasty.upsert(upsertInput(user, "late")).then(
        () => undefined,
        (error: unknown) => error,
      );
      const failedAfterMs = Date.now() - started;
      await end();
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      // ioredis gave up retrying before the command's timer went off.
      expect(String((failure as Error).cause)).toMatch(/Too many Cluster redirections/);
      expect(failedAfterMs).toBeLessThan(300);
      const window = Date.now() + 1000;
      while (Date.now() < window) {
        expect(await store.get(user, "late")).toBeUndefined();
      }
      const inserted = await store.upsert(upsertInput(user, "late", { expectedVersion: 0n }));
      expect(inserted.version).toBe(1n);
    } finally {
      await hasty.close();
      await store.close();
    }
  }

  it("fails a write UNAVAILABLE while a user's keys stay split, and never applies it afterwards", async () => {
    const user = uniqueUserId();
    const [sessions, ...others] = keysOf(user) as [string, string, string];
    await expectFailedWriteNeverApplied(user, async () => {
      const migration = await migrate(clusterSlot(sessions));
      await migration.move(sessions);
      return async () => {
        try {
          await migration.move(...others);
          await migration.finish();
        } finally {
          migration.close();
        }
      };
    });
  });

  it("fails a write UNAVAILABLE while its slot is served by no node (CLUSTERDOWN), and never applies it afterwards", async () => {
    const user = uniqueUserId();
    const slot = clusterSlot(keysOf(user)[0] as string);
    await expectFailedWriteNeverApplied(user, async () => {
      const owner: RedisServer = (await cluster().shardOf(slot)).master;
      const client = owner.client();
      await client.cluster("DELSLOTS", slot);
      return async () => {
        try {
          await client.cluster("ADDSLOTS", slot);
          await cluster().ready();
        } finally {
          client.disconnect();
        }
      };
    });
  });
});
