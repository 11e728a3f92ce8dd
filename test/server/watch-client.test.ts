import { Code, ConnectError } from "@connectrpc/connect";
import {
  createSessionStoreClient,
  EventType,
  errorReason,
  type SessionEvent,
  type SessionStoreClient,
  watchSessionEvents,
  watchUserEvents,
} from "@sessionstore/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

// The client package's resuming watch iterators against the real server,
// whose MAX_DEADLINE ends every stream after a quarter of a second: what
// a watcher behind a load balancer with a stream timeout, or across
// server restarts, lives through.

const STREAM_MS = 250;

let store: MemorySessionStore;
let running: RunningServer;
let client: SessionStoreClient;

beforeAll(async () => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, { limits: { maxDeadlineMs: STREAM_MS } });
  client = createSessionStoreClient({ baseUrl: running.baseUrl });
});

afterAll(async () => {
  // The client has no close (as connect-node's transports have none): the
  // server ends its idle connection here, at once.
  await running?.server.close(0);
  await store?.close();
});

/** The client, recording the cursor of every WatchUser call it makes. */
function recordingCalls(): { client: SessionStoreClient; cursors: string[] } {
  const cursors: string[] = [];
  const recording: SessionStoreClient = {
    ...client,
    watchUser: (request, options) => {
      cursors.push(request.afterEventId ?? "");
      return client.watchUser(request, options);
    },
  };
  return { client: recording, cursors };
}

/** Iterates `events` in the background into an array until `stop` aborts it. */
function consume(events: AsyncGenerator<SessionEvent>) {
  const received: SessionEvent[] = [];
  const done = (async () => {
    for await (const event of events) received.push(event);
  })();
  return { received, done };
}

/**
 * The cursor of the user's latest event, after writing one (a user with no
 * events has no cursor): watching after it sees what comes next.
 */
async function now(userId: string): Promise<string> {
  await put(userId, "start");
  return (await store.readEvents(userId, undefined, 0)).lastId;
}

const put = (userId: string, sessionId: string) =>
  client.upsert({ session: sessionFixture(userId, sessionId), ttl: ttl(60_000) });

describe("watchUserEvents", () => {
  it("calls again after its last event whenever a stream ends, so every event arrives once, in order", async () => {
    const userId = uniqueUserId();
    const { client: recording, cursors } = recordingCalls();
    const stop = new AbortController();
    const watch = consume(
      watchUserEvents(recording, userId, {
        signal: stop.signal,
        retryDelayMs: 10,
        afterEventId: await now(userId),
      }),
    );
    const writes = 6;
    for (let i = 1; i <= writes; i++) {
      const calls = cursors.length;
      await put(userId, "s");
      await waitFor("the event", () => watch.received.length === i);
      // The stream ends at MAX_DEADLINE; the iterator calls again.
      await waitFor("the next call", () => cursors.length > calls);
    }
    stop.abort();
    await watch.done;
    expect(watch.received.map((e) => [e.type, e.sessionId, e.version])).toEqual(
      Array.from({ length: writes }, (_, i) => [EventType.UPSERTED, "s", BigInt(i + 1)]),
    );
    // Each call after the first resumed after the last event delivered.
    const ids = watch.received.map((e) => e.eventId);
    expect(cursors.length).toBeGreaterThan(writes);
    for (const cursor of cursors.slice(1)) {
      expect(ids.includes(cursor) || cursor === cursors[0]).toBe(true);
    }
    expect(cursors.at(-1)).toBe(ids.at(-1));
  });

  it("starts after the cursor it is given", async () => {
    const userId = uniqueUserId();
    await put(userId, "a");
    const afterA = (await store.readEvents(userId, undefined, 0)).lastId;
    await put(userId, "b");
    await put(userId, "c");
    const stop = new AbortController();
    const watch = consume(
      watchUserEvents(client, userId, { signal: stop.signal, afterEventId: afterA }),
    );
    await waitFor("the events after the cursor", () => watch.received.length === 2);
    stop.abort();
    await watch.done;
    expect(watch.received.map((e) => e.sessionId)).toEqual(["b", "c"]);
  });

  it("throws OUT_OF_RANGE (EVENTS_EXPIRED) when the events after its cursor are gone, rather than retrying", async () => {
    const userId = uniqueUserId();
    await put(userId, "s");
    const error = await (async () => {
      for await (const _ of watchUserEvents(client, userId, {
        afterEventId: `${Date.now() - 2 * 86_400_000}-0`,
      })) {
        // No event may come before the error.
        expect.unreachable();
      }
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.OutOfRange);
    expect(errorReason(error)).toBe("EVENTS_EXPIRED");
  });
});

describe("a server with events off (EVENT_RETENTION_COUNT=0)", () => {
  it("answers watches FAILED_PRECONDITION (EVENTS_DISABLED), which the iterator throws at once", async () => {
    const off = new MemorySessionStore({
      maxSessionsPerUser: 0,
      sweepIntervalMs: 0,
      events: { retentionMs: 3_600_000, retentionCount: 0 },
    });
    const server = await startTestServer(off);
    try {
      const offClient = createSessionStoreClient({ baseUrl: server.baseUrl });
      const error = await (async () => {
        for await (const _ of watchUserEvents(offClient, uniqueUserId())) {
          expect.unreachable();
        }
      })().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.FailedPrecondition);
      expect(errorReason(error)).toBe("EVENTS_DISABLED");
    } finally {
      await server.server.close(0);
      await off.close();
    }
  });
});

describe("watchSessionEvents", () => {
  it("gets only its session's events, across streams", async () => {
    const userId = uniqueUserId();
    const stop = new AbortController();
    const watch = consume(
      watchSessionEvents(client, userId, "mine", {
        signal: stop.signal,
        retryDelayMs: 10,
        afterEventId: await now(userId),
      }),
    );
    await put(userId, "other");
    await put(userId, "mine");
    await client.deleteByUser({ userId, exceptSessionIds: ["mine"] });
    await client.delete({ userId, sessionId: "mine" });
    await waitFor("the session's two events", () => watch.received.length === 2);
    stop.abort();
    await watch.done;
    expect(watch.received.map((e) => [e.type, e.sessionId])).toEqual([
      [EventType.UPSERTED, "mine"],
      [EventType.DELETED, "mine"],
    ]);
  });
});
