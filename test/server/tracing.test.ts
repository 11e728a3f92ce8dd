import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { context, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { createTracing, EXPORT_DEFAULTS, type Tracing } from "../../src/observability/tracing.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { tracedStore } from "../../src/store/traced-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { uniqueUserId } from "../support/ids.js";
import {
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from "../support/otlp-receiver.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

const SERVICE = "sessionstore.v1.SessionStoreService";

let receiver: OtlpReceiver;
let store: MemorySessionStore;
let tracing: Tracing;
let unsampled: Tracing;
let running: RunningServer;
let connectNodeOnly: RunningServer;
let ratioZero: RunningServer;
let pool: ClientPool;
let connectNodeOnlyPool: ClientPool;
let ratioZeroPool: ClientPool;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  const settings = {
    url: receiver.tracesUrl,
    serviceName: "sessionstore-test",
    ratio: 1,
    ...EXPORT_DEFAULTS,
  };
  // Simple export: each span is sent as it ends, so the receiver has it soon after the call.
  tracing = createTracing({ ...settings, sampler: "always_on" }, { export: "simple" });
  unsampled = createTracing(
    { ...settings, sampler: "traceidratio", ratio: 0 },
    { export: "simple" },
  );
  const traced = { tracer: tracing.tracer, storeSystem: "memory" } as const;
  running = await startTestServer(store, { tracing: traced });
  connectNodeOnly = await startTestServer(store, { tracing: traced, grpcFastPath: false });
  ratioZero = await startTestServer(store, {
    tracing: { tracer: unsampled.tracer, storeSystem: "memory" },
  });
  pool = clientPool(running.baseUrl);
  connectNodeOnlyPool = clientPool(connectNodeOnly.baseUrl);
  ratioZeroPool = clientPool(ratioZero.baseUrl);
});

afterAll(async () => {
  pool?.close();
  connectNodeOnlyPool?.close();
  ratioZeroPool?.close();
  await running?.stop();
  await connectNodeOnly?.stop();
  await ratioZero?.stop();
  await tracing?.shutdown();
  await unsampled?.shutdown();
  await store?.close();
  await receiver?.close();
});

/** A caller's span, as its W3C traceparent names it. */
function callerSpan() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The spans of one trace once its server span and `children` store spans are in. */
async function spansOf(traceId: string, children = 1): Promise<ReceivedSpan[]> {
  return waitFor(`the spans of trace ${traceId}`, () => {
    const spans = receiver.spans.filter((span) => span.traceId === traceId);
    return spans.length >= 1 + children ? spans : undefined;
  });
}

const paths: { name: string; kind: ClientKind; server: () => ClientPool }[] = [
  { name: "gRPC, fast path", kind: { protocol: "grpc" }, server: () => pool },
  {
    name: "gRPC, compressed (connect-node)",
    kind: { protocol: "grpc", gzip: true },
    server: () => pool,
  },
  {
    name: "gRPC with the fast path off (connect-node)",
    kind: { protocol: "grpc" },
    server: () => connectNodeOnlyPool,
  },
  { name: "gRPC-Web", kind: { protocol: "grpc-web" }, server: () => pool },
  {
    name: "gRPC-Web over HTTP/1.1",
    kind: { protocol: "grpc-web", httpVersion: "1.1" },
    server: () => pool,
  },
  {
    name: "Connect (JSON)",
    kind: { protocol: "connect", binary: false },
    server: () => pool,
  },
  {
    name: "Connect over HTTP/1.1",
    kind: { protocol: "connect", httpVersion: "1.1" },
    server: () => pool,
  },
];

describe("tracing: a server span per RPC, continuing the caller's trace", () => {
  for (const path of paths) {
    it(`${path.name}: the caller's trace, a SERVER span, a store span under it, no ids`, async () => {
      const caller = callerSpan();
      const userId = uniqueUserId();
      const sessionId = `s-${randomBytes(6).toString("hex")}`;
      const error = await path
        .server()
        .sessions(path.kind)
        .get({ userId, sessionId }, { headers: { traceparent: caller.traceparent } })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(ConnectError.from(error).code).toBe(Code.NotFound);

      const spans = await spansOf(caller.traceId);
      expect(spans).toHaveLength(2);
      const server = spans.find((span) => span.kind === 2);
      const child = spans.find((span) => span.name === "store.get");
      expect(server).toMatchObject({
        name: `${SERVICE}/Get`,
        parentSpanId: caller.spanId,
        status: 0, // NOT_FOUND answers the caller: not the server's error
        attributes: {
          "rpc.system": path.kind.protocol === "connect" ? "connect_rpc" : "grpc",
          "rpc.service": SERVICE,
          "rpc.method": "Get",
          "rpc.grpc.status_code": Code.NotFound,
        },
        resource: { "service.name": "sessionstore-test" },
      });
      expect(child).toMatchObject({
        parentSpanId: server?.spanId,
        kind: 1, // INTERNAL: the embedded store
        attributes: { "db.system": "memory", "db.operation.name": "get" },
      });
      // No id, address or payload among the attributes.
      const attributes = JSON.stringify(spans.map((span) => span.attributes));
      for (const secret of [userId, sessionId, "127.0.0.1"]) {
        expect(attributes).not.toContain(secret);
      }
    });
  }

  it("a call without traceparent starts a trace of its own", async () => {
    const userId = uniqueUserId();
    await pool.sessions().listByUser({ userId });
    const server = await waitFor("the ListByUser span", () =>
      receiver.spans.find((span) => span.name === `${SERVICE}/ListByUser`),
    );
    expect(server.parentSpanId).toBe("");
    expect(server.attributes["rpc.grpc.status_code"]).toBe(0);
    await waitFor("its store span", () =>
      receiver.spans.find(
        (span) => span.name === "store.listByUser" && span.parentSpanId === server.spanId,
      ),
    );
  });

  it("a call refused before its handler has its span, with the refusal's code", async () => {
    const caller = callerSpan();
    // A malformed timeout: refused once admitted, before the handler runs.
    const error = await pool
      .sessions({ protocol: "connect" })
      .get(
        { userId: uniqueUserId(), sessionId: "s" },
        { headers: { traceparent: caller.traceparent, "connect-timeout-ms": "x" } },
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const code = ConnectError.from(error).code;
    expect(code).not.toBe(Code.NotFound);
    const [server] = await spansOf(caller.traceId, 0);
    expect(server?.attributes["rpc.grpc.status_code"]).toBe(code);
    expect(receiver.spans.filter((span) => span.traceId === caller.traceId)).toHaveLength(1);
  });

  it("with a ratio of 0, nothing is exported", async () => {
    const before = receiver.requests;
    await expect(
      ratioZeroPool.sessions().get({ userId: uniqueUserId(), sessionId: "s" }),
    ).rejects.toThrow();
    // Exports are sent as spans end, and a flush waits for them: none were sent.
    await unsampled.flush();
    expect(receiver.requests).toBe(before);
  });

  it("the store records spans only under a recorded span, never as roots of their own", async () => {
    const traced = tracedStore(store, tracing.tracer, "memory");
    const userId = uniqueUserId();
    await tracing.flush();
    const before = receiver.spans.length;
    // Outside any span (always_on would record a root): none.
    await traced.listByUser(userId, { after: undefined, limit: 1 });
    // Under a span that is not recorded: none either.
    const unrecorded = trace.wrapSpanContext({
      traceId: randomBytes(16).toString("hex"),
      spanId: randomBytes(8).toString("hex"),
      traceFlags: 0,
    });
    await context.with(trace.setSpan(context.active(), unrecorded), () =>
      traced.listByUser(userId, { after: undefined, limit: 1 }),
    );
    // Under a recorded one: its child.
    const parent = tracing.tracer.startSpan("parent");
    await context.with(trace.setSpan(context.active(), parent), () =>
      traced.get(userId, "s").catch(() => undefined),
    );
    parent.end();
    await tracing.flush();
    const exported = receiver.spans.slice(before);
    expect(exported.map((span) => [span.name, span.parentSpanId])).toEqual([
      ["store.get", parent.spanContext().spanId],
      ["parent", ""],
    ]);
  });

  it("the provider is not registered globally", () => {
    // The server is handed its tracer; nothing else in the process traces through it.
    expect(trace.getTracer("probe").startSpan("probe").isRecording()).toBe(false);
  });
});
