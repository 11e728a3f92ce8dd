import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  GetRequestSchema,
  ListByUserRequestSchema,
  SessionStoreService,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import type { CallPolicy } from "../../src/pipeline/call.js";
import { encodeGrpcMessage } from "../../src/transport/unary-fast-path.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { HangingStore } from "../support/hanging-store.js";
import { uniqueUserId } from "../support/ids.js";
import { envelope, h2Exchange, type RawResponse } from "../support/raw-exchange.js";
import { recordingPolicy } from "../support/recording-policy.js";
import { createGrpcJsClient, type RunningServer, startTestServer } from "../support/test-server.js";

const recording = recordingPolicy();
/** Rejects calls that carry x-test-refuse, with a detail and metadata: a policy's answer to compare. */
const refusing: CallPolicy = {
  name: "refusing",
  begin(call) {
    if (call.headers.get("x-test-refuse") !== undefined) {
      throw new ConnectError(
        "refused by the test policy",
        Code.ResourceExhausted,
        { "retry-after": "7" },
        [{ desc: StringValueSchema, value: { value: "refusal-detail" } }],
      );
    }
    return undefined;
  },
};
let store: HangingStore;
/** The real server with the fast path on, and one with it off: the two must answer alike. */
let fast: RunningServer;
let connectNode: RunningServer;
const sessions: http2.ClientHttp2Session[] = [];

beforeAll(async () => {
  store = new HangingStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  fast = await startTestServer(store, { policies: [recording, refusing] });
  connectNode = await startTestServer(store, {
    policies: [recording, refusing],
    grpcFastPath: false,
  });
});

afterAll(async () => {
  for (const session of sessions) session.close();
  await fast?.stop();
  await connectNode?.stop();
  await store?.close();
});

const GET = "/sessionstore.v1.SessionStoreService/Get";
const LIST = "/sessionstore.v1.SessionStoreService/ListByUser";

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
        ["fast-path", Number(expected.status)],
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

/** The content types of gRPC-Web and Connect that the fast path serves. */
const webAndConnect = [
  "application/grpc-web+proto",
  "application/grpc-web",
  "application/proto",
  "application/json",
  "application/json; charset=utf-8",
] as const;
type WebOrConnect = (typeof webAndConnect)[number];

const isJson = (contentType: WebOrConnect) => contentType.startsWith("application/json");
const isGrpcWeb = (contentType: WebOrConnect) => contentType.startsWith("application/grpc-web");

/** A request body in `contentType`'s framing: JSON text, a bare message, or an envelope. */
function bodyOf(contentType: WebOrConnect, message: Uint8Array, json: unknown): Buffer {
  if (isJson(contentType)) return Buffer.from(JSON.stringify(json));
  return isGrpcWeb(contentType) ? envelope(message) : Buffer.from(message);
}

/** What a client sees of an answer: the HTTP status, every header but the date, the body. */
function seenOf(response: RawResponse) {
  const { date: _date, ...headers } = response.headers;
  return { status: response.httpStatus, headers, trailers: response.trailers, body: response.body };
}

/** Sends one request to both servers and expects the same answer, served by the fast path on one. */
async function expectAlike(
  contentType: WebOrConnect,
  path: string,
  body: Buffer,
  extraHeaders: http2.OutgoingHttpHeaders = {},
): Promise<RawResponse> {
  const headers = {
    ":method": "POST",
    ":path": path,
    "content-type": contentType,
    ...extraHeaders,
  };
  const seen = recording.since();
  const fromFast = await h2Exchange(sessionTo(fast), headers, body);
  const fromConnectNode = await h2Exchange(sessionTo(connectNode), headers, body);
  expect(seenOf(fromFast)).toEqual(seenOf(fromConnectNode));
  await expect
    .poll(() => seen().map((c) => [c.transport, c.protocol]))
    .toEqual([
      ["fast-path", isGrpcWeb(contentType) ? "grpc-web" : "connect"],
      ["connect-node", isGrpcWeb(contentType) ? "grpc-web" : "connect"],
    ]);
  return fromFast;
}

describe.each(webAndConnect)("the fast path answers %s like connect-node", (contentType) => {
  const userId = "alike";
  const get = (sessionId: string, user = userId) =>
    bodyOf(
      contentType,
      toBinary(GetRequestSchema, create(GetRequestSchema, { sessionId, userId: user })),
      { sessionId, userId: user },
    );
  const timeoutHeader = isGrpcWeb(contentType) ? "grpc-timeout" : "connect-timeout-ms";

  let pool: ClientPool;
  const upsert = (user: string, sessionId: string) =>
    pool
      .sessions({ protocol: "grpc" })
      .upsert({ session: sessionFixture(user, sessionId), ttl: ttl(600_000) });

  beforeAll(async () => {
    pool = clientPool(fast.baseUrl);
    await upsert(userId, "s");
  });
  afterAll(() => pool.close());

  it("a session read (the same bytes)", async () => {
    const response = await expectAlike(contentType, GET, get("s"));
    expect(response.httpStatus).toBe(200);
    expect(response.body.length).toBeGreaterThan(20);
  });

  it("a session that does not exist (NOT_FOUND with its ErrorInfo)", async () => {
    const response = await expectAlike(contentType, GET, get("missing"));
    expect(response.body.toString("latin1")).toMatch(/"SESSION_NOT_FOUND"|grpc-status: 5/);
  });

  it("a request the handler refuses (a required field missing)", async () => {
    await expectAlike(contentType, GET, get("s", ""));
  });

  it("a policy's rejection, with its metadata and detail", async () => {
    const response = await expectAlike(contentType, GET, get("s"), { "x-test-refuse": "1" });
    expect(response.body.toString("latin1")).toMatch(/refused( |%20)by( |%20)the( |%20)test/);
  });

  it("a malformed timeout header", async () => {
    await expectAlike(contentType, GET, get("s"), { [timeoutHeader]: "soon" });
  });

  it("a deadline that passes while the store works", async () => {
    const response = await expectAlike(contentType, GET, get("hang"), {
      [timeoutHeader]: isGrpcWeb(contentType) ? "100m" : "100",
    });
    expect(response.body.toString("latin1")).toMatch(/deadline_exceeded|grpc-status: 4/);
  });

  it("bodies that do not decode", async () => {
    const bodies = isJson(contentType)
      ? ['{"sessionId":5}', "{nope", "", '"text"', "[]"].map((text) => Buffer.from(text))
      : isGrpcWeb(contentType)
        ? [
            envelope(Buffer.of(0x0a, 0xff)),
            Buffer.alloc(0),
            Buffer.concat([get("s"), get("s")]),
            get("s").subarray(0, 6),
          ]
        : [Buffer.of(0x0a, 0xff), Buffer.of(0x0a, 0x05, 0x61)];
    for (const body of bodies) await expectAlike(contentType, GET, body);
  });

  it("a body over MAX_REQUEST_BYTES", async () => {
    const big = "x".repeat(1024 * 1024 + 10);
    const body = isJson(contentType)
      ? Buffer.from(JSON.stringify({ sessionId: big, userId }))
      : bodyOf(
          contentType,
          toBinary(GetRequestSchema, create(GetRequestSchema, { sessionId: big, userId })),
          undefined,
        );
    const response = await expectAlike(contentType, GET, body);
    expect(response.body.toString("latin1")).toContain("MAX_REQUEST_BYTES");
  });

  it("an answer large enough to compress, for a client that reads gzip", async () => {
    const listUser = `alike-list-${contentType.replace(/\W/g, "")}`;
    for (let i = 0; i < 20; i++) await upsert(listUser, `s${i}`);
    const list = bodyOf(
      contentType,
      toBinary(ListByUserRequestSchema, create(ListByUserRequestSchema, { userId: listUser })),
      { userId: listUser },
    );
    const accept = isGrpcWeb(contentType) ? "grpc-accept-encoding" : "accept-encoding";
    const response = await expectAlike(contentType, LIST, list, { [accept]: "gzip, br" });
    const encoding = isGrpcWeb(contentType) ? "grpc-encoding" : "content-encoding";
    expect(response.headers[encoding]).toBe("gzip");
  });
});

describe("the fast path leaves to connect-node", () => {
  it.each([
    [
      "a compressed Connect request",
      { "content-type": "application/proto", "content-encoding": "gzip" },
    ],
    [
      "a compressed gRPC-Web request",
      { "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" },
    ],
    ["gRPC-Web text", { "content-type": "application/grpc-web-text" }],
    ["gRPC-Web JSON", { "content-type": "application/grpc-web+json" }],
    [
      "another Connect protocol version",
      { "content-type": "application/proto", "connect-protocol-version": "2" },
    ],
  ] as [string, http2.OutgoingHttpHeaders][])("%s", async (_name, headers) => {
    const seen = recording.since();
    await h2Exchange(sessionTo(fast), { ":method": "POST", ":path": GET, ...headers }, getRequest);
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
