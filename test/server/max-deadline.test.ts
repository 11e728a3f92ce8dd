import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { HangingStore } from "../support/hanging-store.js";
import { createGrpcJsClient, type RunningServer, startTestServer } from "../support/test-server.js";

const MAX_DEADLINE_MS = 300;
const MESSAGE = `the operation timed out: calls may take at most MAX_DEADLINE (${MAX_DEADLINE_MS} ms)`;

let store: HangingStore;
let fast: RunningServer;
let connectNode: RunningServer;
let pool: ClientPool;
let connectNodePool: ClientPool;

beforeAll(async () => {
  store = new HangingStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  const limits = { maxDeadlineMs: MAX_DEADLINE_MS };
  fast = await startTestServer(store, { limits });
  connectNode = await startTestServer(store, { limits, grpcFastPath: false });
  pool = clientPool(fast.baseUrl);
  connectNodePool = clientPool(connectNode.baseUrl);
});

afterAll(async () => {
  pool?.close();
  connectNodePool?.close();
  await fast?.stop();
  await connectNode?.stop();
  await store?.close();
});

/**
 * Runs a call that would hang forever and expects it to end
 * DEADLINE_EXCEEDED at MAX_DEADLINE, naming it, with the store's work
 * cancelled. The upper bound is loose: the machine is shared.
 */
async function expectCutAtMaxDeadline(call: () => Promise<{ code: number; message: string }>) {
  const aborted = store.aborted.length;
  const started = performance.now();
  const { code, message } = await call();
  const elapsed = performance.now() - started;
  expect({ code, message }).toEqual({ code: Code.DeadlineExceeded, message: MESSAGE });
  expect(elapsed).toBeGreaterThanOrEqual(MAX_DEADLINE_MS - 20);
  expect(elapsed).toBeLessThan(MAX_DEADLINE_MS + 3000);
  await waitFor("the store call to be cancelled", () => store.aborted.length > aborted);
  expect(ConnectError.from(store.aborted.at(-1)).code).toBe(Code.DeadlineExceeded);
}

async function connectGet(kind: ClientKind, which: ClientPool = pool) {
  const client = createClient(SessionStoreService, which.transport(kind));
  const error = await client.get({ sessionId: "hang", userId: "u" }).catch(ConnectError.from);
  if (!(error instanceof ConnectError)) throw new Error("the call did not fail");
  return { code: error.code as number, message: error.rawMessage };
}

describe("MAX_DEADLINE", () => {
  it("ends a fast-path call whose client asked for longer (@grpc/grpc-js, 5 s)", async () => {
    const client = createGrpcJsClient(fast.port);
    try {
      await expectCutAtMaxDeadline(async () => {
        const error = (await client
          .call("Get", { sessionId: "hang", userId: "u" }, { deadlineMs: 5000 })
          .catch((e: unknown) => e)) as grpc.ServiceError;
        return { code: error.code, message: error.details };
      });
    } finally {
      client.close();
    }
  });

  it.each<[string, ClientKind, boolean]>([
    ["gRPC on the fast path", { protocol: "grpc" }, false],
    ["gRPC on connect-node (fast path off)", { protocol: "grpc" }, true],
    ["gRPC-Web", { protocol: "grpc-web" }, false],
    ["Connect binary", { protocol: "connect" }, false],
    [
      "Connect JSON over HTTP/1.1",
      { protocol: "connect", binary: false, httpVersion: "1.1" },
      false,
    ],
  ])("ends a call without a deadline over %s", async (_name, kind, fastPathOff) => {
    await expectCutAtMaxDeadline(() => connectGet(kind, fastPathOff ? connectNodePool : pool));
  });

  it("leaves a shorter deadline of the client's alone", async () => {
    const client = createClient(SessionStoreService, pool.transport({ protocol: "grpc" }));
    const error = await client
      .get({ sessionId: "hang", userId: "u" }, { headers: { "grpc-timeout": "100m" } })
      .catch(ConnectError.from);
    expect(error).toMatchObject({
      code: Code.DeadlineExceeded,
      rawMessage: "the operation timed out",
    });
  });

  it("ends a health Watch stream at MAX_DEADLINE too", async () => {
    for (const kind of [{ protocol: "grpc" }, { protocol: "connect" }] satisfies ClientKind[]) {
      const health = createClient(Health, pool.transport(kind));
      const started = performance.now();
      const statuses: number[] = [];
      const ended = await (async () => {
        for await (const response of health.watch({ service: "" })) statuses.push(response.status);
      })().then(() => undefined, ConnectError.from);
      expect(statuses).toEqual([1]);
      expect(ended).toMatchObject({ code: Code.DeadlineExceeded, rawMessage: MESSAGE });
      expect(performance.now() - started).toBeGreaterThanOrEqual(MAX_DEADLINE_MS - 20);
    }
  });
});
