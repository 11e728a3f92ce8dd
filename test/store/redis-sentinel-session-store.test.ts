import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { waitFor } from "../../harness/wait-for.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { EventsExpiredError } from "../../src/store/session-events.js";
import { ownedForBlock } from "../support/owned.js";
import { openRedisStore, type RedisStoreOptions, upsertInput } from "./fixtures.js";
import { expectFailoverFollowed } from "./sentinel-failover.js";
import { backgroundWatch, describeEventContract } from "./session-events-contract.js";
import { describeStoreContract } from "./session-store-contract.js";

// The Redis store with its primary found through Redis Sentinel (a primary,
// a replica and three sentinels, all started here): the whole contract,
// then failovers the store must follow.

const set = ownedForBlock(() => startRedisSentinelSet(), 60_000);

/**
 * A store through the set's sentinels (asked in the order of `addresses`),
 * whose commands, those to the sentinels included, time out after
 * `commandTimeoutMs`.
 */
async function openStore(
  options: RedisStoreOptions,
  { addresses = set().addresses, commandTimeoutMs = 2000 } = {},
) {
  const { redis, store } = await openRedisStore(
    {
      sentinel: { addresses, name: set().name },
      commandTimeoutMs,
      connectTimeoutMs: 10_000,
    },
    options,
  );
  expect(redis).toBeInstanceOf(Redis);
  return store;
}

describe("through Redis Sentinel (a primary, a replica, three sentinels)", () => {
  describeStoreContract("redis sentinel", openStore);

  describeEventContract("redis sentinel", openStore);

  it("follows SENTINEL FAILOVER to the new primary, keeping what was replicated, and so do its watchers", async () => {
    const store = await openStore({ maxSessionsPerUser: 0, keyPrefix: "failover" });
    let watcher = backgroundWatch(store, "failover-user");
    try {
      // A watcher of the user the failover writes to, live before it.
      await waitFor("the watch to be live", () => watcher.live);
      await store.upsert(upsertInput("failover-user", "watched-before"));
      await waitFor("the watcher's first event", () =>
        watcher.seen.some((e) => e.sessionId === "watched-before"),
      );
      // Writes that land on the old primary before the sentinels demote it
      // are lost: counted, not asserted (the failover tests under load
      // measure them, and show that REDIS_WAIT_REPLICAS=1 prevents it).
      const figures = await expectFailoverFollowed(store, set(), "failover");
      console.info(`sentinel failover: ${JSON.stringify(figures)}`);
      // The subscriber follows the primary too: a write there reaches a
      // watcher. Its watch may have ended EVENTS_EXPIRED (events it had
      // seen were lost with the old primary), and a new one from now must
      // then get the write.
      let probes = 0;
      await waitFor(
        "a write on the new primary to reach a watcher",
        async () => {
          if (watcher.ended !== undefined) {
            // Both are what a client resumes from (UNAVAILABLE, or OUT_OF_RANGE and a new list).
            expect([EventsExpiredError, StoreUnavailableError]).toContain(
              (watcher.ended as object).constructor,
            );
            watcher = backgroundWatch(store, "failover-user");
          }
          const probe = `probe-${probes++}`;
          await store.upsert(upsertInput("failover-user", probe));
          await waitFor(
            "the probe's event",
            () => watcher.seen.some((e) => e.sessionId === probe) || watcher.ended !== undefined,
            { timeoutMs: 2000 },
          ).catch(() => undefined);
          return watcher.seen.some((e) => e.sessionId === probe);
        },
        { timeoutMs: 20_000 },
      );
    } finally {
      watcher.stop(new Error("the test is over"));
      await store.close();
    }
  }, 60_000);

  it("follows the sentinels' own failover after its primary was killed, also when they announce it while the store is asking a sentinel", async () => {
    // ioredis's failover detector, left subscribed by the connection that
    // died, answered the announcement (+switch-master) by closing the
    // connector; if that happened while the reconnection was still asking
    // a sentinel for the primary, the attempt failed "Connection is
    // closed." and ioredis ended the client for good: UNAVAILABLE until a
    // restart. Freezing the first sentinel the store asks keeps every
    // reconnection waiting on it for a command timeout (5 s here), so the
    // announcement from the other two (2-3 s after the kill) lands in the
    // first such wait.
    // The fixture asks its first sentinel: the store asks the last one first.
    const first = set().sentinels.at(-1);
    if (!first) throw new Error("the set has no sentinel");
    const order = [first, ...set().sentinels.slice(0, -1)].map((s) => `127.0.0.1:${s.port}`);
    const store = await openStore(
      { maxSessionsPerUser: 0, keyPrefix: "killed" },
      { addresses: order.join(","), commandTimeoutMs: 5000 },
    );
    const old = await set().whole();
    try {
      await store.upsert(upsertInput("killed-user", "before"));
      first.suspend();
      await old.kill();
      const promoted = await set().promotedOver(old, { timeoutMs: 30_000 });
      const promotedAt = performance.now();
      await waitFor(
        "a write through the store to succeed again",
        async () => {
          try {
            await store.upsert(upsertInput("killed-user", "after"));
            return true;
          } catch {
            return false;
          }
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      console.info(
        `sentinel kill: ${JSON.stringify({ backAfterPromotionMs: Math.round(performance.now() - promotedAt) })}`,
      );
      const onPromoted = promoted.client();
      try {
        expect(await onPromoted.hexists("killed:{killed-user}:h", "after")).toBe(1);
      } finally {
        onPromoted.disconnect();
      }
    } finally {
      first.resume();
      await store.close();
      if (!old.running) await old.restart();
      await set().whole();
    }
  }, 90_000);
});
