import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  GetRequestSchema,
  SessionStoreService,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { encodeGrpcMessage } from "../../src/transport/grpc-unary-fast-path.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { HangingStore } from "../support/hanging-store.js";
import { uniqueUserId } from "../support/ids.js";
import { envelope } from "../support/raw-exchange.js";
import { recordingPolicy } from "../support/recording-policy.js";
import { createGrpcJsClient, type RunningServer, startTestServer } from "../support/test-server.js";

const recording = recordingPolicy();
let store: HangingStore;
/** The real server with the fast path on, and one with it off: the two must answer alike. */
let fast: RunningServer;
let connectNode: RunningServer;
const sessions: http2.ClientHttp2Session[] = [];

beforeAll(async () => {
  store = new HangingStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  fast = await startTestServer(store, { policies: [recording] });
  connectNode = await startTestServer(store, { policies: [recording], grpcFastPath: false });
});

afterAll(async () => {
  for (const session of sessions) session.close();
  await fast?.stop();
  await connectNode?.stop();
  await store?.close();
});

const GET = "/sessionstore.v1.SessionStoreService/Get";

const getMessage = (sessionId = "s") =>
  toBinary(GetRequestSchema, create(GetRequestSchema, { sessionId, userId: "u" }));
const getRequest = envelope(getMessage());

function sessionTo(server: RunningServer): http2.ClientHttp2Session {
  const session = http2.connect(server.baseUrl);
  sessions.push(session);
  return session;
}

/** One raw gRPC call: the status, message and details from the headers or trailers. */
function call(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer,
): Promise<{ status: string; message: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": GET,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    let status: string | undefined;
    let message = "";
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", () => {});
    stream.on("close", () =>
      status === undefined ? reject(new Error("no grpc-status")) : resolve({ status, message }),
    );
    stream.on("error", reject);
    stream.end(body);
  });
}

const oversized = Buffer.alloc(5);
oversized.writeUInt32BE(2 * 1024 * 1024, 1);

/** Requests and the answer connect-node gives them, which the fast path must give too. */
const cases: [string, http2.OutgoingHttpHeaders, Buffer, { status: string; message: string }][] = [
  ["a well-formed call", {}, getRequest, { status: "5", message: "session not found" }],
  [
    "a well-formed call with content-type application/grpc+proto",
    { "content-type": "application/grpc+proto" },
    getRequest,
    { status: "5", message: "session not found" },
  ],
  [
    "an empty body",
    {},
    Buffer.alloc(0),
    { status: "12", message: "protocol error: missing input message for unary method" },
  ],
  [
    "two messages",
    {},
    Buffer.concat([getRequest, getRequest]),
    { status: "12", message: "protocol error: received extra input message for unary method" },
  ],
  [
    "a truncated envelope",
    {},
    getRequest.subarray(0, getRequest.length - 1),
    { status: "3", message: "request is not a valid sessionstore.v1.GetRequest" },
  ],
  [
    "a message that is not valid protobuf",
    {},
    envelope(Buffer.of(0x0a, 0x05, 0x61)),
    { status: "3", message: "request is not a valid sessionstore.v1.GetRequest" },
  ],
  [
    "a compressed message without grpc-encoding",
    {},
    envelope(gzipSync(getMessage()), 1),
    { status: "3", message: "request is not a valid sessionstore.v1.GetRequest" },
  ],
  [
    "a message over MAX_REQUEST_BYTES",
    {},
    oversized,
    { status: "8", message: "request message is larger than MAX_REQUEST_BYTES (1048576 bytes)" },
  ],
  [
    "a malformed grpc-timeout",
    { "grpc-timeout": "soon" },
    getRequest,
    { status: "3", message: "protocol error: invalid grpc-timeout" },
  ],
];

describe("the gRPC unary fast path answers like connect-node", () => {
  it.each(cases)("to %s", async (_name, headers, body, expected) => {
    const seen = recording.since();
    expect(await call(sessionTo(fast), headers, body)).toEqual(expected);
    expect(await call(sessionTo(connectNode), headers, body)).toEqual(expected);
    await expect
      .poll(() => seen().map((c) => [c.transport, c.code]))
      .toEqual([
        ["grpc-fast-path", Number(expected.status)],
        ["connect-node", Number(expected.status)],
      ]);
  });

  it("leaves compressed requests to connect-node, which decompresses them", async () => {
    const seen = recording.since();
    const compressed = envelope(gzipSync(getMessage()), 1);
    expect(await call(sessionTo(fast), { "grpc-encoding": "gzip" }, compressed)).toEqual({
      status: "5",
      message: "session not found",
    });
    await expect.poll(() => seen().map((c) => c.transport)).toEqual(["connect-node"]);
  });
});

describe("a client resetting its call", () => {
  it("with an error code does not take the server down", async () => {
    const session = sessionTo(fast);
    const stream = session.request({
      ":method": "POST",
      ":path": GET,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    // Half a request, then RST_STREAM(INTERNAL_ERROR) while the server waits for the rest.
    await new Promise<void>((resolve, reject) =>
      stream.write(getRequest.subarray(0, 3), (error) => (error ? reject(error) : resolve())),
    );
    const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    await closed;
    expect(await call(session, {}, getRequest)).toEqual({
      status: "5",
      message: "session not found",
    });
  });

  it.each([
    ["the fast path", () => fast],
    ["connect-node", () => connectNode],
  ])("without a deadline stops the store call on %s", async (_name, server) => {
    const seen = recording.since();
    const before = store.aborted.length;
    const stream = sessionTo(server()).request({
      ":method": "POST",
      ":path": GET,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    stream.end(envelope(getMessage("hang")));
    // The call is in the store once the policy has seen it and nothing has ended it.
    await waitFor("the call to reach the store", () => seen().length === 1);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await waitFor("the store call to be aborted", () => store.aborted.length === before + 1);
    expect(ConnectError.from(store.aborted.at(-1)).code).toBe(Code.Canceled);
    await expect.poll(() => seen()[0]?.code).toBe(Code.Canceled);
  });
});

describe("deadlines longer than a timer can hold (about 24.8 days), served with MAX_DEADLINE", () => {
  const DAY_MS = 86_400_000;
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  let pool: ClientPool;

  beforeAll(() => {
    process.on("warning", onWarning);
    pool = clientPool(fast.baseUrl);
  });
  afterEach(() => {
    expect(warnings.map((w) => w.name)).not.toContain("TimeoutOverflowWarning");
  });
  afterAll(() => {
    process.off("warning", onWarning);
    pool.close();
  });

  const kinds: [string, ClientKind][] = [
    ["gRPC (fast path)", { protocol: "grpc" }],
    ["gRPC-Web", { protocol: "grpc-web" }],
    ["Connect", { protocol: "connect" }],
    ["Connect over HTTP/1.1", { protocol: "connect", httpVersion: "1.1", binary: false }],
  ];

  describe.each([25, 30, 365])("of %i days", (days) => {
    it.each(kinds)("are served, without a timer overflow, over %s", async (_name, kind) => {
      const client = createClient(SessionStoreService, pool.transport(kind));
      const userId = uniqueUserId();
      // Sent as headers: connect's own client timer would overflow too.
      // Connect's header holds at most 10 digits (about 115 days).
      const headers =
        kind.protocol === "connect"
          ? { "connect-timeout-ms": String(Math.min(days * DAY_MS, 9_999_999_999)) }
          : { "grpc-timeout": `${days * 24}H` };
      await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }, { headers });
      const { session } = await client.get({ sessionId: "s", userId }, { headers });
      expect(session?.version).toBe(1n);
      await expectCode(
        client.get({ sessionId: "missing", userId }, { headers }),
        Code.NotFound,
        "session not found",
      );
    });

    it("are served with connect-node alone", async () => {
      const seen = recording.since();
      expect(
        await call(sessionTo(connectNode), { "grpc-timeout": `${days * 24}H` }, getRequest),
      ).toEqual({ status: "5", message: "session not found" });
      await expect.poll(() => seen()[0]?.code).toBe(Code.NotFound);
    });

    it("are served to a @grpc/grpc-js client", async () => {
      const client = createGrpcJsClient(fast.port);
      try {
        const error = (await client
          .call("Get", { sessionId: "s", userId: "u" }, { deadlineMs: days * DAY_MS })
          .catch((e: unknown) => e)) as grpc.ServiceError;
        expect(grpc.status[error.code]).toBe("NOT_FOUND");
      } finally {
        client.close();
      }
    });
  });

  it("a deadline within a timer's range still ends a stuck call", async () => {
    const client = createClient(SessionStoreService, pool.transport({ protocol: "grpc" }));
    await expectCode(
      client.get({ sessionId: "hang", userId: "u" }, { headers: { "grpc-timeout": "200m" } }),
      Code.DeadlineExceeded,
      "the operation timed out",
    );
  });
});

describe("encodeGrpcMessage", () => {
  it("percent-encodes only what the gRPC spec requires", () => {
    expect(encodeGrpcMessage("ttl: must be positive, really")).toBe(
      "ttl: must be positive, really",
    );
    expect(encodeGrpcMessage("100% é\n")).toBe("100%25 %C3%A9%0A");
    expect(decodeURIComponent(encodeGrpcMessage("100% é\n"))).toBe("100% é\n");
  });
});
