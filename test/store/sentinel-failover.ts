import { expect } from "vitest";
import type { RedisSentinelSet } from "../../harness/redis-sentinel.js";
import { waitFor } from "../../harness/wait-for.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { upsertInput } from "./fixtures.js";

/** What a store did while it followed a failover, for the test to print. */
export interface FailoverFollowed {
  /** From the failover's end (the sentinels name the new primary) to a write through the store landing there, ms. */
  readonly onNewPrimaryAfterMs: number;
  /** Writes refused meanwhile (each StoreUnavailableError, or the test fails). */
  readonly refusals: number;
  /**
   * Writes the store acknowledged that did not reach the new primary: they
   * landed on the old one before the sentinels demoted it, and are lost
   * (what a failover can cost without WAIT).
   */
  readonly acknowledgedElsewhere: number;
}

/**
 * Fails `set` over (SENTINEL FAILOVER) after a write that the replica
 * acknowledged, then writes through `store` (whose keys start with
 * `keyPrefix`) until a write reaches the new primary. Asserts that every
 * write refused meanwhile was StoreUnavailableError (UNAVAILABLE to a
 * client, never anything else), that the replica is the primary now, and
 * that the acknowledged write survived.
 */
export async function expectFailoverFollowed(
  store: SessionStore,
  set: RedisSentinelSet,
  keyPrefix: string,
): Promise<FailoverFollowed> {
  const userId = "failover-user";
  const primary = set.primary.client();
  try {
    const before = await store.upsert(upsertInput(userId, "before"));
    // Acknowledged by the replica too, so the failover cannot lose it.
    expect(await primary.wait(1, 5000)).toBe(1);
    const promotedServer = await set.failover();
    expect(promotedServer).toBe(set.replicas[0]);
    const promoted = promotedServer.client();
    try {
      const startedAt = performance.now();
      const refusals: string[] = [];
      let acknowledgedElsewhere = 0;
      let attempt = 0;
      await waitFor(
        "a write through the store to reach the new primary",
        async () => {
          const sessionId = `after-${attempt++}`;
          try {
            await store.upsert(upsertInput(userId, sessionId));
          } catch (error) {
            refusals.push(error instanceof StoreUnavailableError ? "unavailable" : String(error));
            return false;
          }
          if ((await promoted.hexists(userKeys(keyPrefix, userId).sessions, sessionId)) === 1) {
            return true;
          }
          acknowledgedElsewhere++;
          return false;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      const onNewPrimaryAfterMs = Math.round(performance.now() - startedAt);
      expect(refusals.filter((refusal) => refusal !== "unavailable")).toEqual([]);
      expect(await promoted.info("replication")).toMatch(/role:master/);
      expect((await store.get(userId, "before"))?.version).toBe(before.version);
      return { onNewPrimaryAfterMs, refusals: refusals.length, acknowledgedElsewhere };
    } finally {
      promoted.disconnect();
    }
  } finally {
    primary.disconnect();
  }
}
