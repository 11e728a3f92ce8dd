import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { type CallPolicy, OK, type Rate } from "../../src/pipeline/call.js";
import { parseRate } from "../../src/pipeline/rate.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

/**
 * A stand-in for the auth policy, which runs before the rate limit: the
 * caller named by x-test-caller, at the rate in x-test-rate if any.
 */
const callerPolicy: CallPolicy = {
  name: "test-caller",
  begin(call) {
    const name = call.headers.get("x-test-caller");
    if (name !== undefined) {
      const rate = call.headers.get("x-test-rate");
      call.caller = { name, rate: rate === undefined ? undefined : (parseRate(rate) as Rate) };
    }
    return undefined;
  },
};

/** RATE_LIMIT for these tests: a burst of 3 that does not refill while they run. */
const RATE_LIMIT = "3/h";

/**
 * Expects a rejection by `limit` with the wait in its message and as the
 * pushback: `fullWaitMs` (the time one token takes) less what has refilled
 * since the bucket emptied (under a minute here).
 */
function expectRejected(seen: Seen, limit: string, fullWaitMs: number): void {
  expect(seen.code).toBe(Code.ResourceExhausted);
  const wait = Number(seen.pushback);
  expect(wait).toBeGreaterThan(fullWaitMs - 60_000);
  expect(wait).toBeLessThanOrEqual(fullWaitMs);
  expect(seen.message).toBe(`rate limit exceeded (${limit}); retry after ${wait} ms`);
}

/** What one call ended with, as its client saw it. */
interface Seen {
  readonly code: Code | typeof OK;
  readonly message: string;
  /** The grpc-retry-pushback-ms metadata, when sent. */
  readonly pushback: string | undefined;
}

/** An Upsert of session "s" of `userId` through one path, as `caller` (at `rate`) or anonymously. */
type Upsert = (userId: string, caller?: string, rate?: string) => Promise<Seen>;

function identity(caller?: string, rate?: string): Record<string, string> {
  return {
    ...(caller === undefined ? {} : { "x-test-caller": caller }),
    ...(rate === undefined ? {} : { "x-test-rate": rate }),
  };
}

function viaConnect(transport: Transport): Upsert {
  const client = createClient(SessionStoreService, transport);
  return async (userId, caller, rate) => {
    try {
      await client.upsert(
        { session: sessionFixture(userId, "s"), ttl: ttl(60_000) },
        { headers: identity(caller, rate) },
      );
      return { code: OK, message: "", pushback: undefined };
    } catch (error) {
      const e = ConnectError.from(error);
      return {
        code: e.code,
        message: e.rawMessage,
        pushback: e.metadata.get("grpc-retry-pushback-ms") ?? undefined,
      };
    }
  };
}

function viaGrpcJs(client: GrpcJsClient): Upsert {
  return async (userId, caller, rate) => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(identity(caller, rate))) metadata.set(key, value);
    try {
      await client.call(
        "Upsert",
        { session: { id: "s", userId }, ttl: { seconds: "60" } },
        { metadata },
      );
      return { code: OK, message: "", pushback: undefined };
    } catch (error) {
      const e = error as grpc.ServiceError;
      const [pushback] = e.metadata.get("grpc-retry-pushback-ms");
      return {
        code: e.code as number as Code,
        message: e.details,
        pushback: pushback === undefined ? undefined : String(pushback),
      };
    }
  };
}

/** A path: how to reach it, given a fast-path server and a connect-node-only one. */
type Path = [
  string,
  (servers: { fast: RunningServer; connectNode: RunningServer }) => {
    upsert: Upsert;
    server: RunningServer;
    close(): void;
  },
];

function connectPath(kind: ClientKind, fastPathOff = false): Path[1] {
  return (servers) => {
    const server = fastPathOff ? servers.connectNode : servers.fast;
    const pool: ClientPool = clientPool(server.baseUrl);
    return { upsert: viaConnect(pool.transport(kind)), server, close: () => pool.close() };
  };
}

const paths: Path[] = [
  [
    "gRPC on the fast path (@grpc/grpc-js)",
    ({ fast }) => {
      const client = createGrpcJsClient(fast.port);
      return { upsert: viaGrpcJs(client), server: fast, close: () => client.close() };
    },
  ],
  ["gRPC on connect-node (fast path off)", connectPath({ protocol: "grpc" }, true)],
  ["gRPC-Web binary over HTTP/2", connectPath({ protocol: "grpc-web" })],
  ["Connect binary over HTTP/2", connectPath({ protocol: "connect" })],
  ["Connect JSON over HTTP/2", connectPath({ protocol: "connect", binary: false })],
  ["gRPC-Web over HTTP/1.1", connectPath({ protocol: "grpc-web", httpVersion: "1.1" })],
  [
    "Connect JSON over HTTP/1.1",
    connectPath({ protocol: "connect", binary: false, httpVersion: "1.1" }),
  ],
];

let callerCount = 0;
/** A caller name no other test uses: each gets fresh buckets. */
const uniqueCaller = () => `caller-${++callerCount}`;

describe.each(paths)("the rate limit, on %s", (_name, open) => {
  let store: MemorySessionStore;
  let fast: RunningServer;
  let connectNode: RunningServer;
  let path: ReturnType<Path[1]>;

  beforeAll(async () => {
    store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
    // Servers of their own: anonymous calls from 127.0.0.1 share one bucket per server.
    const options = {
      policies: [callerPolicy],
      limits: { rateLimit: parseRate(RATE_LIMIT) as Rate },
    };
    fast = await startTestServer(store, options);
    connectNode = await startTestServer(store, { ...options, grpcFastPath: false });
    path = open({ fast, connectNode });
  });

  afterAll(async () => {
    path?.close();
    await fast?.stop();
    await connectNode?.stop();
    await store?.close();
  });

  it("passes a caller's burst, then rejects with the limit and the pushback, changing nothing", async () => {
    const caller = uniqueCaller();
    for (let i = 0; i < 3; i++) {
      expect((await path.upsert(uniqueUserId(), caller)).code).toBe(OK);
    }
    const userId = uniqueUserId();
    expectRejected(await path.upsert(userId, caller), "RATE_LIMIT 3/h, burst 3", 1_200_000);
    expect(await store.get(userId, "s")).toBeUndefined();
    // Another caller has a bucket of its own.
    expect((await path.upsert(uniqueUserId(), uniqueCaller())).code).toBe(OK);
    const metrics = await path.server.server.telemetry.registry.getSingleMetricAsString(
      "sessionstore_rate_limited_total",
    );
    expect(metrics).toContain(`sessionstore_rate_limited_total{caller="${caller}"} 1`);
  });

  it("applies a caller's own rate over RATE_LIMIT", async () => {
    const caller = uniqueCaller();
    for (let i = 0; i < 5; i++) {
      expect((await path.upsert(uniqueUserId(), caller, "5/h")).code).toBe(OK);
    }
    expectRejected(
      await path.upsert(uniqueUserId(), caller, "5/h"),
      "this caller's own limit 5/h, burst 5",
      720_000,
    );
  });

  it("puts anonymous calls from one address in one bucket, apart from callers'", async () => {
    for (let i = 0; i < 3; i++) expect((await path.upsert(uniqueUserId())).code).toBe(OK);
    expectRejected(await path.upsert(uniqueUserId()), "RATE_LIMIT 3/h, burst 3", 1_200_000);
    expect((await path.upsert(uniqueUserId(), uniqueCaller())).code).toBe(OK);
  });

  it("refills the bucket at the rate", async () => {
    const caller = uniqueCaller();
    // 4/s with a burst of 1: a call 250 ms after the last admitted one passes again.
    let rejected: Seen | undefined;
    for (let i = 0; i < 20 && !rejected; i++) {
      const seen = await path.upsert(uniqueUserId(), caller, "4/s,burst=1");
      if (seen.code !== OK) rejected = seen;
    }
    expect(rejected?.code).toBe(Code.ResourceExhausted);
    expect(Number(rejected?.pushback)).toBeGreaterThan(0);
    expect(Number(rejected?.pushback)).toBeLessThanOrEqual(250);
    await waitFor(
      "the bucket to refill",
      async () => (await path.upsert(uniqueUserId(), caller, "4/s,burst=1")).code === OK,
      { timeoutMs: 5000, intervalMs: 50 },
    );
  });
});
