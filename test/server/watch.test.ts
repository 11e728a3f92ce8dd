import { createHash, randomBytes } from "node:crypto";
import http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  EventType,
  type SessionEvent,
  SessionEventSchema,
  SessionStoreService,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import type { SessionStore } from "../../src/store/session-store.js";
import { openRedisStore, upsertInput } from "../store/fixtures.js";
import { type ClientKind, clientPool } from "../support/clients.js";
import { expectCode } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { ownedForBlock } from "../support/owned.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

// WatchUser and WatchSession end to end on the real server over Redis:
// many watchers at once, slow ones, resuming, shutdown, every protocol
// with the auth policy, and what a process holds of Redis.

const redis = ownedForBlock(() => startRedisServer());

// `read` is the least scope a token can hold (scopes include the ones
// below), so every known caller may watch; unknown ones may not.
const readerToken = randomBytes(24).toString("base64url");
const credentials = Credentials.parse(
  `reader read sha256:${createHash("sha256").update(readerToken).digest("hex")}\n`,
);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let store: SessionStore;

beforeAll(async () => {
  ({ store } = await openRedisStore(
    { url: redis().url, cluster: false, commandTimeoutMs: 2000, connectTimeoutMs: 5000 },
    { maxSessionsPerUser: 0, keyPrefix: "watch" },
  ));
});

afterAll(async () => {
  await store?.close();
});

/** Connections Redis has from this test's process, as CLIENT LIST names them. */
async function redisConnections(): Promise<number> {
  const admin = redis().client();
  try {
    const list = (await admin.call("CLIENT", "LIST")) as string;
    return list.split("\n").filter((line) => line.includes("name=sessionstore")).length;
  } finally {
    admin.disconnect();
  }
}

/** A watch running in the background, collecting what it receives. */
interface Watching {
  readonly events: SessionEvent[];
  /** Resolves with how it ended: undefined for an abort by the test. */
  readonly ended: Promise<ConnectError | undefined>;
  stop(): void;
}

function collect(stream: AsyncIterable<SessionEvent>, abort: AbortController): Watching {
  const events: SessionEvent[] = [];
  const ended = (async () => {
    try {
      for await (const event of stream) events.push(event);
      return undefined;
    } catch (error) {
      if (abort.signal.aborted) return undefined;
      return ConnectError.from(error);
    }
  })();
  return { events, ended, stop: () => abort.abort() };
}

/** The reason of an error's ErrorInfo. */
function reasonOf(error: ConnectError | undefined): string | undefined {
  return error?.findDetails(ErrorInfoSchema)[0]?.reason;
}

describe("watching sessions on a server over Redis", () => {
  let running: RunningServer;

  beforeAll(async () => {
    running = await startTestServer(store, { watchBufferEvents: 1000 });
  });

  afterAll(async () => {
    await running?.stop();
  });

  it("delivers every event of its user to each of 1,000 watchers, in order and once, on two Redis connections", async () => {
    const pool = clientPool(running.baseUrl);
    try {
      // 100 users x 10 watchers over 4 HTTP/2 connections.
      const clients = Array.from({ length: 4 }, () => pool.sessions({ protocol: "grpc" }));
      const users = Array.from({ length: 100 }, () => uniqueUserId());
      const watchers = users.flatMap((userId, u) =>
        Array.from({ length: 10 }, (_, w) => {
          const abort = new AbortController();
          const client = clients[(u * 10 + w) % clients.length];
          if (!client) throw new Error("no client");
          return {
            userId,
            watching: collect(client.watchUser({ userId }, { signal: abort.signal }), abort),
          };
        }),
      );
      await waitFor("1,000 live watch streams", () => running.server.watchStreams === 1000, {
        timeoutMs: 20_000,
      });
      // The store's client and one subscriber, whatever the number of watchers.
      expect(await redisConnections()).toBe(2);
      const heapBefore = process.memoryUsage().heapUsed;

      const started = performance.now();
      const PER_USER = 10;
      await Promise.all(
        users.map(async (userId) => {
          for (let i = 0; i < PER_USER; i++) {
            await store.upsert(upsertInput(userId, `s${i % 3}`));
          }
        }),
      );
      const written = performance.now();
      await waitFor(
        "every watcher to have its user's events",
        () => watchers.every(({ watching }) => watching.events.length >= PER_USER),
        { timeoutMs: 20_000 },
      );
      const delivered = performance.now();
      console.info(
        `1,000 watchers: ${users.length * PER_USER} writes in ${Math.round(written - started)} ms, ` +
          `all ${users.length * PER_USER * 10} deliveries ${Math.round(delivered - written)} ms after the last write; ` +
          `heap +${Math.round((process.memoryUsage().heapUsed - heapBefore) / 1e6)} MB`,
      );
      // Exactly the user's log, in order, once.
      const logs = new Map<string, string[]>();
      for (const userId of users) {
        const ids: string[] = [];
        for (const w of watchers.filter((x) => x.userId === userId)) {
          ids.push(w.watching.events.map((e) => e.eventId).join());
        }
        logs.set(userId, ids);
      }
      for (const { userId, watching } of watchers) {
        expect(watching.events.map((e) => [e.type, e.userId])).toEqual(
          Array.from({ length: PER_USER }, () => [EventType.UPSERTED, userId]),
        );
        expect(new Set(logs.get(userId)).size).toBe(1);
        const versions = watching.events.map((e) => Number(e.version));
        expect(versions).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
      }
      expect(await redisConnections()).toBe(2);
      for (const { watching } of watchers) watching.stop();
      for (const { watching } of watchers) expect(await watching.ended).toBeUndefined();
      await waitFor("the streams to end", () => running.server.watchStreams === 0);
    } finally {
      pool.close();
    }
  }, 60_000);

  it("resumes after a cursor without losing or repeating an event", async () => {
    const pool = clientPool(running.baseUrl);
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      const abort = new AbortController();
      const first = collect(client.watchUser({ userId }, { signal: abort.signal }), abort);
      await waitFor("the watch to be live", () => running.server.watchStreams === 1);
      for (let i = 0; i < 5; i++) await store.upsert(upsertInput(userId, `a${i}`));
      await waitFor("five events", () => first.events.length === 5);
      first.stop();
      await first.ended;
      // Written while nobody watched.
      for (let i = 0; i < 5; i++) await store.upsert(upsertInput(userId, `b${i}`));
      const cursor = first.events.at(-1)?.eventId ?? "";
      const again = new AbortController();
      const second = collect(
        client.watchUser({ userId, afterEventId: cursor }, { signal: again.signal }),
        again,
      );
      await waitFor("the catch-up", () => second.events.length === 5);
      await store.upsert(upsertInput(userId, "c"));
      await waitFor("the live event", () => second.events.length === 6);
      expect(second.events.map((e) => e.sessionId)).toEqual(["b0", "b1", "b2", "b3", "b4", "c"]);
      second.stop();
      await second.ended;
    } finally {
      pool.close();
    }
  });

  it("answers a malformed cursor INVALID_ARGUMENT, and a dropped one OUT_OF_RANGE", async () => {
    const pool = clientPool(running.baseUrl);
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const bad = await expectCode(
        (async () => {
          for await (const _ of client.watchUser({ userId: "u", afterEventId: "nope" })) break;
        })(),
        Code.InvalidArgument,
      );
      expect(bad.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ field: "after_event_id" });
      const old = await expectCode(
        (async () => {
          for await (const _ of client.watchUser({ userId: "u", afterEventId: "1-0" })) break;
        })(),
        Code.OutOfRange,
      );
      expect(reasonOf(old)).toBe("EVENTS_EXPIRED");
    } finally {
      pool.close();
    }
  });

  it("sends WatchSession the session's events and the DeleteByUser that removed it", async () => {
    const pool = clientPool(running.baseUrl);
    try {
      const client = pool.sessions({ protocol: "connect" });
      const userId = uniqueUserId();
      const abort = new AbortController();
      const watching = collect(
        client.watchSession({ userId, sessionId: "mine" }, { signal: abort.signal }),
        abort,
      );
      await waitFor("the watch to be live", () => running.server.watchStreams === 1);
      await store.upsert(upsertInput(userId, "mine"));
      await store.upsert(upsertInput(userId, "other"));
      await store.touch(userId, "mine", 60_000);
      await store.deleteByUser(userId, ["mine"]);
      await store.upsert(upsertInput(userId, "other"));
      await store.deleteByUser(userId, ["other"]);
      await waitFor("three events", () => watching.events.length === 3);
      expect(watching.events.map((e) => [e.type, e.sessionId, Number(e.version)])).toEqual([
        [EventType.UPSERTED, "mine", 1],
        [EventType.TOUCHED, "mine", 1],
        [EventType.DELETED_BY_USER, "", 0],
      ]);
      watching.stop();
      await watching.ended;
    } finally {
      pool.close();
    }
  });
});

describe("a watcher that stops reading", () => {
  let running: RunningServer;

  beforeAll(async () => {
    running = await startTestServer(store, { watchBufferEvents: 20 });
  });

  afterAll(async () => {
    await running?.stop();
  });

  it("is ended RESOURCE_EXHAUSTED once its buffer fills, while the others keep up", async () => {
    const userId = uniqueUserId();
    // A raw HTTP/2 client with a 512-byte window that pauses its stream.
    const session = http2.connect(running.baseUrl, { settings: { initialWindowSize: 512 } });
    const request = Buffer.from(
      // WatchUserRequest{user_id}: field 1, length-delimited.
      [0x0a, Buffer.byteLength(userId), ...Buffer.from(userId)],
    );
    const envelope = Buffer.concat([Buffer.of(0, 0, 0, 0, request.length), request]);
    const stream = session.request({
      ":method": "POST",
      ":path": "/sessionstore.v1.SessionStoreService/WatchUser",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.end(envelope);
    stream.pause();
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on("trailers", (t) => {
      trailers = t;
    });
    const pool = clientPool(running.baseUrl);
    try {
      const abort = new AbortController();
      const reader = collect(
        pool.sessions({ protocol: "grpc" }).watchUser({ userId }, { signal: abort.signal }),
        abort,
      );
      await waitFor("both streams to be live", () => running.server.watchStreams === 2);
      const heapBefore = process.memoryUsage().heapUsed;
      const EVENTS = 2000;
      const started = performance.now();
      let slowest = 0;
      for (let i = 0; i < EVENTS; i++) {
        await store.touch(userId, "s", 60_000).catch(() => store.upsert(upsertInput(userId, "s")));
        if (i % 100 === 99) {
          // The reader keeps up, event by event, while the other stalls.
          const at = performance.now();
          await waitFor("the reader to keep up", () => reader.events.length === i + 1);
          slowest = Math.max(slowest, performance.now() - at);
        }
      }
      console.info(
        `stalled watcher: ${EVENTS} events in ${Math.round(performance.now() - started)} ms, ` +
          `the reader at most ${Math.round(slowest)} ms behind; heap +${Math.round((process.memoryUsage().heapUsed - heapBefore) / 1e6)} MB`,
      );
      expect(reader.events).toHaveLength(EVENTS);
      // Its status waits behind the data HTTP/2 flow control holds back (the
      // server holds no more of it than the window and one write buffer):
      // read what it was sent, fewer events than written, then the status.
      const received: SessionEvent[] = [];
      let pending = Buffer.alloc(0);
      stream.on("data", (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          const length = pending.readUInt32BE(1);
          received.push(fromBinary(SessionEventSchema, pending.subarray(5, 5 + length)));
          pending = pending.subarray(5 + length);
        }
      });
      stream.resume();
      await waitFor("its trailers", () => trailers !== undefined);
      expect(trailers?.["grpc-status"]).toBe(String(Code.ResourceExhausted));
      expect(received.length).toBeGreaterThan(0);
      expect(received.length).toBeLessThan(EVENTS);
      const ids = received.map((e) => e.eventId);
      expect(ids).toEqual(reader.events.slice(0, received.length).map((e) => e.eventId));
      reader.stop();
      await reader.ended;
    } finally {
      stream.close();
      session.close();
      pool.close();
    }
  }, 60_000);
});

describe("watching on every protocol, under the auth policy", () => {
  let running: RunningServer;
  const kinds: ClientKind[] = [
    { protocol: "grpc" },
    { protocol: "grpc-web" },
    { protocol: "connect" },
    { protocol: "grpc-web", httpVersion: "1.1" },
    { protocol: "connect", httpVersion: "1.1", binary: false },
  ];

  beforeAll(async () => {
    running = await startTestServer(store, { credentials });
  });

  afterAll(async () => {
    await running?.stop();
  });

  it.each(kinds)(
    "streams events over $protocol (HTTP/$httpVersion) to a read token, not to unknown callers",
    async (kind) => {
      const pool = clientPool(running.baseUrl);
      try {
        const client = createClient(SessionStoreService, pool.transport(kind));
        const userId = uniqueUserId();
        await expectCode(
          (async () => {
            for await (const _ of client.watchUser({ userId }, { headers: bearer("unknown") }))
              break;
          })(),
          Code.Unauthenticated,
        );
        await expectCode(
          (async () => {
            for await (const _ of client.watchSession({ userId, sessionId: "s" })) break;
          })(),
          Code.Unauthenticated,
        );
        const abort = new AbortController();
        const watching = collect(
          client.watchUser({ userId }, { signal: abort.signal, headers: bearer(readerToken) }),
          abort,
        );
        await waitFor("the watch to be live", () => running.server.watchStreams === 1);
        await store.upsert(upsertInput(userId, "s"));
        await store.delete(userId, "s", undefined);
        await waitFor("two events", () => watching.events.length === 2);
        expect(watching.events.map((e) => e.type)).toEqual([EventType.UPSERTED, EventType.DELETED]);
        watching.stop();
        await watching.ended;
        await waitFor("the stream to end", () => running.server.watchStreams === 0);
      } finally {
        pool.close();
      }
    },
  );
});

describe("shutting down", () => {
  it("ends every watch stream UNAVAILABLE (SHUTTING_DOWN) at once, on every protocol", async () => {
    const running = await startTestServer(store);
    const pool = clientPool(running.baseUrl);
    try {
      const userId = uniqueUserId();
      const watchers = (["grpc", "grpc-web", "connect"] as const).map((protocol) => {
        const abort = new AbortController();
        return collect(
          pool.sessions({ protocol }).watchUser({ userId }, { signal: abort.signal }),
          abort,
        );
      });
      await waitFor("the watches to be live", () => running.server.watchStreams === 3);
      const started = performance.now();
      const closing = running.server.close(30_000);
      const endings = await Promise.all(watchers.map((w) => w.ended));
      for (const ended of endings) {
        expect(ended?.code).toBe(Code.Unavailable);
        expect(reasonOf(ended)).toBe("SHUTTING_DOWN");
      }
      pool.close();
      await closing;
      // Well within the 30 s grace: nothing waited for the streams.
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      pool.close();
      await running.server.close(0);
    }
  });
});
