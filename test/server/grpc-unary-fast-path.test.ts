import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetRequestSchema } from "../gen/sessionstore/v1/session_store_pb.js";
import { MemorySessionStore } from "../src/store/memory/memory-session-store.js";
import { encodeGrpcMessage, parseTimeout } from "../src/transport/grpc-unary-fast-path.js";
import { type RunningServer, startTestServer } from "./support/test-server.js";

let running: RunningServer;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  running = await startTestServer(
    new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 }),
  );
  session = http2.connect(running.baseUrl);
});

afterAll(async () => {
  session?.close();
  await running?.server.close();
});

const GET = "/sessionstore.v1.SessionStoreService/Get";

function envelope(message: Uint8Array, flags = 0): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame[0] = flags;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

const getRequest = envelope(
  toBinary(GetRequestSchema, create(GetRequestSchema, { sessionId: "s", userId: "u" })),
);

/** One raw gRPC call: the status and message from the headers or trailers. */
function call(
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

describe("the gRPC unary fast path", () => {
  it("answers a well-formed call", async () => {
    expect(await call({}, getRequest)).toEqual({ status: "5", message: "session not found" });
    expect(await call({ "content-type": "application/grpc+proto" }, getRequest)).toMatchObject({
      status: "5",
    });
  });

  it("rejects a malformed grpc-timeout", async () => {
    expect(await call({ "grpc-timeout": "soon" }, getRequest)).toEqual({
      status: "3",
      message: "protocol error: invalid grpc-timeout",
    });
  });

  it("rejects bodies that are not exactly one enveloped message", async () => {
    expect(await call({}, Buffer.alloc(0))).toMatchObject({
      status: "3",
      message: "protocol error: missing request message",
    });
    expect(await call({}, Buffer.concat([getRequest, getRequest]))).toMatchObject({ status: "3" });
    expect(await call({}, getRequest.subarray(0, getRequest.length - 1))).toMatchObject({
      status: "3",
    });
  });

  it("rejects a message that is not valid protobuf, naming the type", async () => {
    expect(await call({}, envelope(Buffer.of(0x0a, 0x05, 0x61)))).toEqual({
      status: "3",
      message: "request is not a valid sessionstore.v1.GetRequest",
    });
  });

  it("rejects a compressed message without grpc-encoding", async () => {
    expect(await call({}, envelope(Buffer.of(1, 2, 3), 1))).toMatchObject({ status: "13" });
  });

  it("leaves compressed requests to connect-node, which decompresses them", async () => {
    const message = toBinary(
      GetRequestSchema,
      create(GetRequestSchema, { sessionId: "s", userId: "u" }),
    );
    const compressed = envelope(gzipSync(message), 1);
    expect(await call({ "grpc-encoding": "gzip" }, compressed)).toEqual({
      status: "5",
      message: "session not found",
    });
  });

  it("rejects a message over the size limit before reading it", async () => {
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(2 * 1024 * 1024, 1);
    expect(await call({}, huge)).toMatchObject({ status: "8" });
  });
});

describe("a client resetting its call", () => {
  it("with an error code does not take the server down", async () => {
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
    expect(await call({}, getRequest)).toEqual({ status: "5", message: "session not found" });
  });
});

describe("parseTimeout", () => {
  it("reads every gRPC unit", () => {
    expect(parseTimeout("2H")).toBe(7_200_000);
    expect(parseTimeout("3M")).toBe(180_000);
    expect(parseTimeout("4S")).toBe(4000);
    expect(parseTimeout("250m")).toBe(250);
    expect(parseTimeout("1500u")).toBe(1.5);
    expect(parseTimeout("2000000n")).toBe(2);
    expect(parseTimeout("123456789S")).toBeUndefined();
    expect(parseTimeout("1s")).toBeUndefined();
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
