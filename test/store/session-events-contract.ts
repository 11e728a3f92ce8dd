import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { refreshTokenDigest } from "../../src/store/refresh-state.js";
import {
  compareEventIds,
  type EventRetention,
  EventsDisabledError,
  EventsExpiredError,
  parseEventId,
  type SessionEvent,
  WatcherTooSlowError,
} from "../../src/store/session-events.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { uniqueUserId } from "../support/ids.js";
import { upsertInput } from "./fixtures.js";

/** Opens a store over the backend under test with these settings; the contract closes it. */
export type OpenEventStore = (options: {
  maxSessionsPerUser: number;
  events?: EventRetention;
}) => Promise<SessionStore>;

/** Every event of a user, oldest first. */
async function allEvents(store: SessionStore, userId: string, after: string) {
  const events: SessionEvent[] = [];
  for (;;) {
    const { events: page } = await store.readEvents(userId, after, 1000);
    events.push(...page);
    const last = page.at(-1);
    if (!last) return events;
    after = last.id;
  }
}

/** What a test compares of an event: no id or time. */
function shape(event: SessionEvent) {
  return {
    type: event.type,
    userId: event.userId,
    sessionId: event.sessionId,
    version: event.version,
    keptSessionIds: event.keptSessionIds,
  };
}

/** Where a user's log ends now: the cursor to read the events written after it. */
async function end(store: SessionStore, userId: string): Promise<string> {
  return (await store.readEvents(userId, undefined, 0)).lastId;
}

/**
 * A watch of `userId` on `store` iterated in the background: the events it
 * received, whether it is live (registered, catch-up read), why it ended
 * (unless by `stop`), and `done`, which settles as the iteration does.
 */
export function backgroundWatch(
  store: SessionStore,
  userId: string,
  { after, bufferSize = 100 }: { after?: string | undefined; bufferSize?: number } = {},
) {
  const abort = new AbortController();
  const watch = {
    seen: [] as SessionEvent[],
    live: false,
    ended: undefined as unknown,
    stop: (reason: Error) => abort.abort(reason),
    done: Promise.resolve(),
  };
  const onLive = () => {
    watch.live = true;
  };
  watch.done = (async () => {
    try {
      for await (const event of store.watch(userId, {
        after,
        bufferSize,
        signal: abort.signal,
        onLive,
      })) {
        watch.seen.push(event);
      }
    } catch (error) {
      if (!abort.signal.aborted) watch.ended = error;
      throw error;
    }
  })();
  // Awaited by the test when it matters; never an unhandled rejection.
  watch.done.catch(() => undefined);
  return watch;
}

/**
 * The session-event contract of the SessionStore port (session-events.ts):
 * each write records its events in the same step, in order, with growing
 * ids; retention by count and age; stale and malformed cursors; and watch
 * streams (catch-up, live, resume, slow consumers). Every adapter runs it.
 */
export function describeEventContract(name: string, open: OpenEventStore): void {
  describe(`session events: ${name}`, () => {
    let store: SessionStore;
    let capped: SessionStore;
    let byCount: SessionStore;
    let byAge: SessionStore;
    /** EVENT_RETENTION of `byAge`: waited out once. */
    const AGE_MS = 400;

    beforeAll(async () => {
      store = await open({ maxSessionsPerUser: 0 });
      capped = await open({ maxSessionsPerUser: 2 });
      byCount = await open({
        maxSessionsPerUser: 0,
        events: { retentionMs: 3_600_000, retentionCount: 5 },
      });
      byAge = await open({
        maxSessionsPerUser: 0,
        events: { retentionMs: AGE_MS, retentionCount: 1000 },
      });
    });

    afterAll(async () => {
      await Promise.all([store, capped, byCount, byAge].map((s) => s?.close()));
    });

    it("records one event per change, in order, with growing ids and the store's time", async () => {
      const userId = uniqueUserId();
      const start = await end(store, userId);
      const before = Date.now();
      // A cursor just before the first write (the store's clock is this machine's).
      const from = `${before - 100}-0`;
      await store.upsert(upsertInput(userId, "a"));
      await store.upsert(upsertInput(userId, "a"));
      await store.touch(userId, "a", 60_000);
      await store.upsert(upsertInput(userId, "b"));
      // Changes that do not happen record nothing.
      await expect(
        store.upsert(upsertInput(userId, "b", { expectedVersion: 0n })),
      ).rejects.toThrow();
      await expect(store.touch(userId, "none", 1000)).rejects.toThrow();
      expect(await store.delete(userId, "none", undefined)).toBe(false);
      await expect(store.delete(userId, "a", 7n)).rejects.toThrow();
      expect(await store.delete(userId, "a", 2n)).toBe(true);
      const after = Date.now();

      // A user never written has no log: reading starts at its first event.
      expect(start).toBe("0-0");
      const events = await allEvents(store, userId, from);
      expect(events.map(shape)).toEqual([
        { type: "upserted", userId, sessionId: "a", version: 1n, keptSessionIds: [] },
        { type: "upserted", userId, sessionId: "a", version: 2n, keptSessionIds: [] },
        { type: "touched", userId, sessionId: "a", version: 2n, keptSessionIds: [] },
        { type: "upserted", userId, sessionId: "b", version: 1n, keptSessionIds: [] },
        { type: "deleted", userId, sessionId: "a", version: 2n, keptSessionIds: [] },
      ]);
      for (let i = 1; i < events.length; i++) {
        expect(compareEventIds(events[i - 1]?.id ?? "", events[i]?.id ?? "")).toBeLessThan(0);
      }
      for (const event of events) {
        expect(event.timeMs).toBe(Number(parseEventId(event.id)?.ms));
        // The store's clock (Redis') and this process's agree on one machine.
        expect(event.timeMs).toBeGreaterThanOrEqual(before - 1000);
        expect(event.timeMs).toBeLessThanOrEqual(after + 1000);
      }
      expect(await end(store, userId)).toBe(events.at(-1)?.id);
      // Reading after any event gives exactly the ones after it.
      const third = events[2]?.id ?? "";
      expect((await store.readEvents(userId, third, 100)).events).toEqual(events.slice(3));
      expect((await store.readEvents(userId, third, 1)).events).toEqual(events.slice(3, 4));
    });

    it("records a Refresh rotation as ROTATED and a detected reuse as REUSE_DETECTED; an answer within the grace changes nothing", async () => {
      const userId = uniqueUserId();
      const digest = refreshTokenDigest;
      const refresh = (sessionId: string, presented: string, next: string, revokeAll = false) =>
        store.refresh({
          userId,
          sessionId,
          presentedDigest: digest(presented),
          newTokenId: next,
          newDigest: digest(next),
          ttlMs: 60_000,
          graceMs: 60_000,
          revokeAllOnReuse: revokeAll,
        });
      for (const id of ["a", "b", "c"]) {
        await store.upsert(upsertInput(userId, id, { refreshDigest: digest("r1") }));
      }
      const cursor = await end(store, userId);
      await refresh("a", "r1", "r2");
      expect((await refresh("a", "r1", "r2b")).rotated).toBe(false);
      await expect(refresh("a", "r0", "r3")).rejects.toThrow("refresh token was already used");
      await expect(refresh("b", "r0", "r3", true)).rejects.toThrow(
        "refresh token was already used",
      );
      expect((await store.readEvents(userId, cursor, 100)).events.map(shape)).toEqual([
        { type: "rotated", userId, sessionId: "a", version: 2n, keptSessionIds: [] },
        { type: "reuse-detected", userId, sessionId: "a", version: 2n, keptSessionIds: [] },
        // With revoke-all: the session, then the others ("c").
        { type: "reuse-detected", userId, sessionId: "b", version: 1n, keptSessionIds: [] },
        { type: "deleted-by-user", userId, sessionId: "", version: 0n, keptSessionIds: [] },
      ]);
    });

    it("records one DELETED_BY_USER that removed sessions, with the live ones it kept", async () => {
      const userId = uniqueUserId();
      for (const id of ["a", "b", "c", "d"]) await store.upsert(upsertInput(userId, id));
      const cursor = await end(store, userId);
      // "none" is not a session, "c" is asked twice: neither is listed twice or at all.
      expect(await store.deleteByUser(userId, ["c", "none", "a", "c"])).toBe(2);
      // Nothing left to delete: no event.
      expect(await store.deleteByUser(userId, ["c", "a"])).toBe(0);
      expect(await store.deleteByUser(uniqueUserId(), [])).toBe(0);
      expect((await store.readEvents(userId, cursor, 100)).events.map(shape)).toEqual([
        { type: "deleted-by-user", userId, sessionId: "", version: 0n, keptSessionIds: ["c", "a"] },
      ]);
      await store.deleteByUser(userId, []);
      const last = (await store.readEvents(userId, cursor, 100)).events.at(-1);
      expect(last && shape(last)).toEqual({
        type: "deleted-by-user",
        userId,
        sessionId: "",
        version: 0n,
        keptSessionIds: [],
      });
    });

    it("records each session evicted by the per-user cap, with its version, before the insert", async () => {
      const userId = uniqueUserId();
      await capped.upsert(upsertInput(userId, "soon", { ttlMs: 30_000 }));
      await capped.upsert(upsertInput(userId, "soon", { ttlMs: 30_000 }));
      await capped.upsert(upsertInput(userId, "late", { ttlMs: 90_000 }));
      const cursor = await end(capped, userId);
      // Replacing a session evicts nothing.
      await capped.upsert(upsertInput(userId, "late", { ttlMs: 90_000 }));
      await capped.upsert(upsertInput(userId, "new", { ttlMs: 60_000 }));
      expect((await capped.readEvents(userId, cursor, 100)).events.map(shape)).toEqual([
        { type: "upserted", userId, sessionId: "late", version: 2n, keptSessionIds: [] },
        { type: "evicted", userId, sessionId: "soon", version: 2n, keptSessionIds: [] },
        { type: "upserted", userId, sessionId: "new", version: 1n, keptSessionIds: [] },
      ]);
    });

    it("keeps EVENT_RETENTION_COUNT events: EVENTS_EXPIRED before the last one dropped, not at it", async () => {
      const userId = uniqueUserId();
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        await byCount.upsert(upsertInput(userId, `s${i}`));
        ids.push(await end(byCount, userId));
      }
      // Events 0, 1 and 2 were dropped: after 2, nothing is missing.
      expect((await byCount.readEvents(userId, ids[2] as string, 100)).events).toHaveLength(5);
      await expect(byCount.readEvents(userId, ids[1] as string, 100)).rejects.toBeInstanceOf(
        EventsExpiredError,
      );
      await expect(byCount.readEvents(userId, ids[0] as string, 100)).rejects.toBeInstanceOf(
        EventsExpiredError,
      );
      // A cursor after the log's end is not from this log.
      const last = parseEventId(ids[7] as string);
      await expect(
        byCount.readEvents(userId, `${(last?.ms ?? 0n) + 1n}-0`, 100),
      ).rejects.toBeInstanceOf(EventsExpiredError);
      // A cursor of a user with no log at all.
      await expect(
        byCount.readEvents(uniqueUserId(), ids[7] as string, 100),
      ).rejects.toBeInstanceOf(EventsExpiredError);
      // Leading zeros name the same event.
      expect((await byCount.readEvents(userId, `0${ids[6]}`, 100)).events).toHaveLength(1);
    });

    it("drops events older than EVENT_RETENTION, and cursors that old", async () => {
      const userId = uniqueUserId();
      await byAge.upsert(upsertInput(userId, "old"));
      const old = await end(byAge, userId);
      expect((await byAge.readEvents(userId, old, 10)).events).toEqual([]);
      await waitFor(
        "the cursor to be older than EVENT_RETENTION",
        async () => {
          try {
            await byAge.readEvents(userId, old, 10);
            return false;
          } catch (error) {
            return error instanceof EventsExpiredError;
          }
        },
        { timeoutMs: 10_000 },
      );
      await byAge.upsert(upsertInput(userId, "new"));
      const last = parseEventId(await end(byAge, userId));
      const justBefore = `${(last?.ms ?? 0n) - 1n}-${2n ** 64n - 1n}`;
      const events = (await byAge.readEvents(userId, justBefore, 10)).events;
      expect(events.map((e) => e.sessionId)).toEqual(["new"]);
    });

    it("refuses a cursor that is not an event id", async () => {
      for (const cursor of [
        "",
        "x",
        "1",
        "1-",
        "-1",
        "1-2-3",
        "1.5-0",
        "99999999999999999999999-0",
      ]) {
        await expect(store.readEvents(uniqueUserId(), cursor, 10)).rejects.toBeInstanceOf(
          RangeError,
        );
      }
    });

    it("streams a watcher the events after its cursor, then live ones, each once and in order", async () => {
      const userId = uniqueUserId();
      await store.upsert(upsertInput(userId, "a"));
      const cursor = await end(store, userId);
      await store.upsert(upsertInput(userId, "b"));
      const watch = backgroundWatch(store, userId, { after: cursor });
      await waitFor("the watch to be live", () => watch.live);
      for (let i = 0; i < 50; i++) await store.touch(userId, "b", 60_000);
      await store.delete(userId, "a", undefined);
      await waitFor("every event", () => watch.seen.length === 52);
      expect(watch.seen.map((e) => e.type)).toEqual([
        "upserted",
        ...Array.from({ length: 50 }, () => "touched"),
        "deleted",
      ]);
      expect(watch.seen).toEqual(await allEvents(store, userId, cursor));
      watch.stop(new Error("done"));
      await expect(watch.done).rejects.toThrow("done");
    });

    it("starts a watcher without a cursor at the events written from now", async () => {
      const userId = uniqueUserId();
      await store.upsert(upsertInput(userId, "before"));
      const watch = backgroundWatch(store, userId);
      await waitFor("the watch to be live", () => watch.live);
      await store.upsert(upsertInput(userId, "after"));
      await waitFor("the new event", () => watch.seen.length === 1);
      expect(watch.seen.map((e) => e.sessionId)).toEqual(["after"]);
      watch.stop(new Error("done"));
      await expect(watch.done).rejects.toThrow("done");
    });

    it("ends a watcher that takes no events once its buffer overflows, and no other", async () => {
      const userId = uniqueUserId();
      const abort = new AbortController();
      const options = (bufferSize: number, onLive: () => void) => ({
        after: undefined,
        bufferSize,
        signal: abort.signal,
        onLive,
      });
      let stalledLive = false;
      const stalled = store
        .watch(
          userId,
          options(10, () => {
            stalledLive = true;
          }),
        )
        [Symbol.asyncIterator]();
      // Its first pull registers it; it is never pulled again.
      const first = stalled.next();
      let liveOther = false;
      const seen: SessionEvent[] = [];
      const other = (async () => {
        for await (const event of store.watch(
          userId,
          options(100, () => {
            liveOther = true;
          }),
        )) {
          seen.push(event);
        }
      })();
      await waitFor("both watches to be live", () => stalledLive && liveOther);
      for (let i = 0; i < 30; i++) await store.upsert(upsertInput(userId, `s${i}`));
      await waitFor("the reader to have every event", () => seen.length === 30);
      // The stalled one took its first event; the 11 that followed overflowed.
      expect((await first).value?.sessionId).toBe("s0");
      await expect(stalled.next()).rejects.toBeInstanceOf(WatcherTooSlowError);
      abort.abort(new Error("done"));
      await expect(other).rejects.toThrow("done");
    });

    it("records nothing with EVENT_RETENTION_COUNT=0, and refuses to read or watch", async () => {
      const off = await open({
        maxSessionsPerUser: 0,
        events: { retentionMs: 3_600_000, retentionCount: 0 },
      });
      try {
        const userId = uniqueUserId();
        await off.upsert(upsertInput(userId, "a", { refreshDigest: refreshTokenDigest("r1") }));
        await off.touch(userId, "a", 60_000);
        await off.refresh({
          userId,
          sessionId: "a",
          presentedDigest: refreshTokenDigest("r1"),
          newTokenId: "r2",
          newDigest: refreshTokenDigest("r2"),
          ttlMs: 60_000,
          graceMs: 0,
          revokeAllOnReuse: false,
        });
        expect(await off.delete(userId, "a", undefined)).toBe(true);
        await expect(off.readEvents(userId, undefined, 10)).rejects.toBeInstanceOf(
          EventsDisabledError,
        );
        const stream = off.watch(userId, {
          after: undefined,
          bufferSize: 10,
          signal: new AbortController().signal,
        });
        await expect(stream[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(
          EventsDisabledError,
        );
        // Where the backend is shared (Redis), a store with events on
        // reads the user's log: nothing was recorded.
        expect(await store.readEvents(userId, undefined, 0)).toEqual({ events: [], lastId: "0-0" });
      } finally {
        await off.close();
      }
    });

    it("ends a watcher whose cursor's events were dropped", async () => {
      const userId = uniqueUserId();
      await byCount.upsert(upsertInput(userId, "first"));
      const cursor = await end(byCount, userId);
      for (let i = 0; i < 8; i++) await byCount.upsert(upsertInput(userId, `s${i}`));
      const stream = byCount.watch(userId, {
        after: cursor,
        bufferSize: 10,
        signal: new AbortController().signal,
      });
      await expect(stream[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(
        EventsExpiredError,
      );
    });
  });
}
