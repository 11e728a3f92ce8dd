import { execFile } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { access, constants } from "node:fs/promises";
import { Agent, type IncomingMessage, request } from "node:http";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { promisify } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { errorInfoJson } from "../support/error-info.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { envelope, h2Exchange, verdictOf } from "../support/raw-exchange.js";
import { recordingPolicy } from "../support/recording-policy.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

const run = promisify(execFile);
const CURL = "/usr/bin/curl";
const SERVICE = "sessionstore.v1.SessionStoreService";

/** One request as the server received it, to tell which half of the port served it. */
interface Received {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
}

let store: MemorySessionStore;
let running: RunningServer;
let grpcJs: GrpcJsClient;
/** Requests the HTTP/1.1 half parsed, from Node's http.server.request.start channel. */
const http1Requests: Received[] = [];
/** Calls the pipeline saw, gRPC fast path included: those over HTTP/2 were served by the HTTP/2 half. */
const recording = recordingPolicy();
let pool: ClientPool;
/** Server-side sockets of accepted connections, from Node's net.server.socket channel. */
const accepted: Socket[] = [];

function onHttp1Request(message: unknown): void {
  const { request } = message as { request: IncomingMessage };
  // Other HTTP servers in this process (none today) must not count.
  if (request.socket.localPort !== running?.port) return;
  http1Requests.push({
    method: request.method ?? "",
    path: request.url ?? "",
    contentType: request.headers["content-type"],
  });
}

function onAccepted(message: unknown): void {
  accepted.push((message as { socket: Socket }).socket);
}

beforeAll(async () => {
  await access(CURL, constants.X_OK).catch((cause: unknown) => {
    throw new Error(
      `${CURL} is missing or not executable; these tests run the real curl binary ` +
        "(Debian/Ubuntu: sudo apt-get install curl)",
      { cause },
    );
  });
  subscribe("http.server.request.start", onHttp1Request);
  subscribe("net.server.socket", onAccepted);
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, { policies: [recording] });
  pool = clientPool(running.baseUrl);
  grpcJs = createGrpcJsClient(running.port);
});

afterAll(async () => {
  grpcJs?.close();
  pool?.close();
  await running?.stop();
  await store?.close();
  unsubscribe("http.server.request.start", onHttp1Request);
  unsubscribe("net.server.socket", onAccepted);
});

/** What each half of the server received from now on. */
function traffic(): { http1: () => Received[]; http2: () => Received[] } {
  const h1Start = http1Requests.length;
  const calls = recording.since();
  return {
    http1: () => http1Requests.slice(h1Start),
    http2: () =>
      calls()
        .filter((call) => call.httpVersion === "2")
        .map((call) => ({
          method: "POST",
          path: `/${call.procedure}`,
          contentType: call.contentType,
        })),
  };
}

const post = (method: string, contentType: string): Received => ({
  method: "POST",
  path: `/${SERVICE}/${method}`,
  contentType,
});

interface CurlResult {
  readonly status: number;
  /** The HTTP version curl used: "1.1" or "2". */
  readonly httpVersion: string;
  readonly body: string;
}

/** Runs the real curl; `-w` appends the status and HTTP version after the body. */
async function curl(args: readonly string[]): Promise<CurlResult> {
  const { stdout } = await run(CURL, [...args, "-w", "\n%{http_code} %{http_version}"], {
    timeout: 10_000,
  });
  const cut = stdout.lastIndexOf("\n");
  const [status, httpVersion] = stdout.slice(cut + 1).split(" ");
  return { status: Number(status), httpVersion: httpVersion ?? "", body: stdout.slice(0, cut) };
}

/** A Connect JSON call with curl, written exactly as the README documents it. */
function curlJson(path: string, body: string, ...extra: string[]): Promise<CurlResult> {
  return curl([
    "-sS",
    ...extra,
    "-H",
    "content-type: application/json",
    "-d",
    body,
    `${running.baseUrl}/${path}`,
  ]);
}

describe("curl", () => {
  it("upserts and gets a session with Connect JSON over HTTP/1.1, as the README shows", async () => {
    const seen = traffic();
    const upserted = await curlJson(
      `${SERVICE}/Upsert`,
      '{"session":{"id":"s1","userId":"u1"},"ttl":"60s"}',
    );
    expect(upserted).toMatchObject({ status: 200, httpVersion: "1.1" });
    const { session } = JSON.parse(upserted.body) as { session: Record<string, unknown> };
    expect(session).toMatchObject({ id: "s1", userId: "u1", version: "1" });
    const storageExpiresAt = Date.parse(String(session.storageExpiresAt));
    expect(storageExpiresAt - Date.now()).toBeGreaterThan(50_000);
    expect(storageExpiresAt - Date.now()).toBeLessThanOrEqual(60_000);

    const got = await curlJson(`${SERVICE}/Get`, '{"sessionId":"s1","userId":"u1"}');
    expect(got).toMatchObject({ status: 200, httpVersion: "1.1" });
    expect(JSON.parse(got.body)).toEqual({ session });
    expect(seen.http1()).toEqual([
      post("Upsert", "application/json"),
      post("Get", "application/json"),
    ]);
    expect(seen.http2()).toEqual([]);
  });

  it("gets HTTP 404 with a Connect error body for a missing session", async () => {
    const result = await curlJson(
      `${SERVICE}/Get`,
      JSON.stringify({ sessionId: "missing", userId: uniqueUserId() }),
    );
    expect(result.status).toBe(404);
    expect(JSON.parse(result.body)).toEqual({
      code: "not_found",
      message: "session not found",
      details: [errorInfoJson("SESSION_NOT_FOUND")],
    });
  });

  it("speaks Connect JSON over cleartext HTTP/2 with --http2-prior-knowledge", async () => {
    const userId = uniqueUserId();
    const seen = traffic();
    const upserted = await curlJson(
      `${SERVICE}/Upsert`,
      JSON.stringify({ session: { id: "s", userId }, ttl: "60s" }),
      "--http2-prior-knowledge",
    );
    expect(upserted).toMatchObject({ status: 200, httpVersion: "2" });
    const got = await curlJson(
      `${SERVICE}/Get`,
      JSON.stringify({ sessionId: "s", userId }),
      "--http2-prior-knowledge",
    );
    expect(got).toMatchObject({ status: 200, httpVersion: "2" });
    expect(JSON.parse(got.body)).toEqual(JSON.parse(upserted.body));
    expect(JSON.parse(got.body)).toMatchObject({ session: { id: "s", userId, version: "1" } });
    expect(seen.http2()).toEqual([
      post("Upsert", "application/json"),
      post("Get", "application/json"),
    ]);
    expect(seen.http1()).toEqual([]);
  });

  it("is answered over HTTP/1.1 when it offers an h2c upgrade (--http2)", async () => {
    const result = await curlJson(
      `${SERVICE}/Get`,
      JSON.stringify({ sessionId: "missing", userId: uniqueUserId() }),
      "--http2",
    );
    expect(result).toMatchObject({ status: 404, httpVersion: "1.1" });
    expect(JSON.parse(result.body)).toMatchObject({ code: "not_found" });
  });

  it("checks health", async () => {
    const result = await curlJson("grpc.health.v1.Health/Check", "{}");
    expect(result).toMatchObject({ status: 200, httpVersion: "1.1" });
    expect(JSON.parse(result.body)).toEqual({ status: "SERVING" });
  });
});

describe("Node's fetch", () => {
  const connectJson = (method: string, body: unknown) =>
    fetch(`${running.baseUrl}/${SERVICE}/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      body: JSON.stringify(body),
    });

  it("calls with the Connect protocol and JSON over HTTP/1.1, POST and GET", async () => {
    const userId = uniqueUserId();
    const seen = traffic();
    const upserted = await connectJson("Upsert", {
      session: { id: "s", userId, extraPayload: { theme: "dark" } },
      ttl: "60s",
      expectedVersion: "0",
    });
    expect(upserted.status).toBe(200);
    expect(upserted.headers.get("content-type")).toBe("application/json");
    const { session } = (await upserted.json()) as { session: Record<string, unknown> };
    expect(session).toMatchObject({
      id: "s",
      userId,
      version: "1",
      extraPayload: { theme: "dark" },
    });

    const got = await connectJson("Get", { sessionId: "s", userId });
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual({ session });

    // Get has no side effects, so Connect also serves it as a cacheable GET.
    const query = new URLSearchParams({
      connect: "v1",
      encoding: "json",
      message: JSON.stringify({ sessionId: "s", userId }),
    });
    const viaGet = await fetch(`${running.baseUrl}/${SERVICE}/Get?${query}`);
    expect(viaGet.status).toBe(200);
    expect(await viaGet.json()).toEqual({ session });

    const conflict = await connectJson("Upsert", {
      session: { id: "s", userId },
      ttl: "60s",
      expectedVersion: "0",
    });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ code: "already_exists" });

    expect(seen.http1()).toEqual([
      post("Upsert", "application/json"),
      post("Get", "application/json"),
      { method: "GET", path: `/${SERVICE}/Get?${query}`, contentType: undefined },
      post("Upsert", "application/json"),
    ]);
    expect(seen.http2()).toEqual([]);
  });
});

/** A connect-node client kind over HTTP/1.1 to the server under test. */
function h1(
  protocol: ClientKind["protocol"],
  binary = true,
): () => ReturnType<ClientPool["transport"]> {
  return () => pool.transport({ protocol, binary, httpVersion: "1.1" });
}

describe.each([
  ["Connect", "binary", "application/proto", h1("connect")],
  ["Connect", "JSON", "application/json", h1("connect", false)],
  ["gRPC-Web", "binary", "application/grpc-web+proto", h1("grpc-web")],
  ["gRPC-Web", "JSON", "application/grpc-web+json", h1("grpc-web", false)],
])(
  "a connect-node %s client (%s) over HTTP/1.1",
  (_protocol, _encoding, contentType, transport) => {
    it("calls every RPC", async () => {
      const client = createClient(SessionStoreService, transport());
      const userId = uniqueUserId();
      const seen = traffic();
      const inserted = await client.upsert({
        session: sessionFixture(userId, "a"),
        ttl: ttl(60_000),
        expectedVersion: 0n,
      });
      expect(inserted.session?.version).toBe(1n);
      expect((await client.get({ sessionId: "a", userId })).session).toEqual(inserted.session);
      const touched = await client.touch({ sessionId: "a", userId, ttl: ttl(120_000) });
      expect(touched.session?.version).toBe(1n);
      await client.upsert({ session: sessionFixture(userId, "b"), ttl: ttl(60_000) });
      const page = await client.listByUser({ userId });
      expect(page.sessions.map((s) => s.id)).toEqual(["a", "b"]);
      expect((await client.delete({ sessionId: "b", userId })).deleted).toBe(true);
      expect((await client.deleteByUser({ userId, exceptSessionIds: [] })).deletedCount).toBe(1n);
      await expectCode(client.get({ sessionId: "a", userId }), Code.NotFound, "session not found");
      await expectCode(
        client.touch({ sessionId: "a", userId, ttl: ttl(0) }),
        Code.InvalidArgument,
        "ttl must be positive",
      );

      expect(seen.http1()).toEqual(
        [
          "Upsert",
          "Get",
          "Touch",
          "Upsert",
          "ListByUser",
          "Delete",
          "DeleteByUser",
          "Get",
          "Touch",
        ].map((method) => post(method, contentType)),
      );
      expect(seen.http2()).toEqual([]);
    });
  },
);

describe("gRPC over HTTP/2 and HTTP/1.1 clients on the same port", () => {
  it("see the same data, calls interleaved", async () => {
    const grpc = pool.sessions({ protocol: "grpc" });
    const connectH1 = createClient(SessionStoreService, h1("connect")());
    const userId = uniqueUserId();
    const seen = traffic();
    type GrpcJsSession = { session: { id: string; version: string } };

    const inserted = await grpc.upsert({
      session: sessionFixture(userId, "s1"),
      ttl: ttl(60_000),
      expectedVersion: 0n,
    });
    expect(inserted.session?.version).toBe(1n);

    const viaGrpcJs = await grpcJs.call<GrpcJsSession>("Get", { sessionId: "s1", userId });
    expect(viaGrpcJs.session).toMatchObject({ id: "s1", version: "1" });

    const updated = await connectH1.upsert({
      session: sessionFixture(userId, "s1"),
      ttl: ttl(60_000),
      expectedVersion: 1n,
    });
    expect(updated.session?.version).toBe(2n);

    const afterUpdate = await grpcJs.call<GrpcJsSession>("Get", { sessionId: "s1", userId });
    expect(afterUpdate.session.version).toBe("2");

    const viaCurl = await curlJson(`${SERVICE}/Get`, JSON.stringify({ sessionId: "s1", userId }));
    expect(viaCurl.httpVersion).toBe("1.1");
    expect(JSON.parse(viaCurl.body)).toMatchObject({ session: { id: "s1", version: "2" } });

    await grpcJs.call("Upsert", { session: { id: "s2", userId }, ttl: { seconds: "60" } });
    const listed = await connectH1.listByUser({ userId });
    expect(listed.sessions.map((s) => [s.id, s.version])).toEqual([
      ["s1", 2n],
      ["s2", 1n],
    ]);

    const deleted = await curlJson(
      `${SERVICE}/DeleteByUser`,
      JSON.stringify({ userId, exceptSessionIds: ["s1"] }),
    );
    expect(JSON.parse(deleted.body)).toEqual({ deletedCount: "1" });

    await expectCode(grpc.get({ sessionId: "s2", userId }), Code.NotFound, "session not found");
    expect((await grpc.listByUser({ userId })).sessions.map((s) => s.id)).toEqual(["s1"]);

    const grpcCalls = seen.http2();
    expect(grpcCalls.map((r) => r.path)).toEqual(
      ["Upsert", "Get", "Get", "Upsert", "Get", "ListByUser"].map((m) => `/${SERVICE}/${m}`),
    );
    for (const call of grpcCalls) expect(call.contentType).toMatch(/^application\/grpc(\+proto)?$/);
    expect(seen.http1()).toEqual([
      post("Upsert", "application/proto"),
      post("Get", "application/json"),
      post("ListByUser", "application/proto"),
      post("DeleteByUser", "application/json"),
    ]);
  });
});

/** A raw TCP connection to the server, collecting everything it answers. */
interface RawConnection {
  /** The server's side of the same connection. */
  readonly serverSide: Socket;
  /** Everything received, once the connection is closed (by a FIN or a reset). */
  readonly closed: Promise<string>;
  /** Writes and resolves once the data is handed to the kernel. */
  write(data: string): Promise<void>;
}

async function rawConnection(): Promise<RawConnection> {
  const client = connect(running.port, "127.0.0.1");
  const chunks: Buffer[] = [];
  client.on("data", (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  // A server may reset a connection it refuses instead of closing it: for
  // these tests both just mean closed, and "close" follows "error" anyway.
  client.on("error", () => {});
  const closed = new Promise<string>((resolve) => {
    client.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
  });
  const serverSide = await waitFor("the server to accept the connection", () =>
    accepted.find((socket) => socket.remotePort === client.localPort),
  );
  return {
    serverSide,
    closed,
    write: (data) =>
      new Promise((resolve, reject) =>
        client.write(data, "latin1", (error) => (error ? reject(error) : resolve())),
      ),
  };
}

/** A Connect JSON Get as raw HTTP/1.1, asking the server to close the connection after it. */
function rawGet(userId: string): string {
  const body = JSON.stringify({ sessionId: "s", userId });
  return [
    `POST /${SERVICE}/Get HTTP/1.1`,
    "Host: 127.0.0.1",
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

describe("connections that do not start like a known protocol", () => {
  it.each([
    ["an unknown method", "HELLO\r\n\r\n"],
    [
      "a TLS ClientHello (https:// to a cleartext port)",
      "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ],
    ["an HTTP/2 preface that goes wrong after its first bytes", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"],
  ])(
    "%s gets HTTP 400 or a closed connection, and the server keeps serving",
    async (_what, garbage) => {
      const connection = await rawConnection();
      await connection.write(garbage);
      const answer = await connection.closed;
      expect(answer, "a 400 response or nothing at all").toMatch(/^(?:$|HTTP\/1\.1 400 )/);

      const after = await curlJson(
        `${SERVICE}/Get`,
        JSON.stringify({ sessionId: "s", userId: "u" }),
      );
      expect(after.status).toBe(404);
      expect(JSON.parse(after.body)).toMatchObject({ code: "not_found" });
      const viaGrpc = await grpcJs.call("Get", { sessionId: "s", userId: "u" }).catch((e) => e);
      expect((viaGrpc as { details?: unknown }).details).toBe("session not found");
    },
  );

  it("a valid HTTP/2 preface followed by garbage gets a GOAWAY and a closed connection", async () => {
    const connection = await rawConnection();
    await connection.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nthese are not HTTP/2 frames");
    const frames = http2Frames(Buffer.from(await connection.closed, "latin1"));
    const goAway = frames.find((frame) => frame.type === GOAWAY);
    expect(goAway, `frames received: ${JSON.stringify(frames)}`).toBeDefined();
    // A GOAWAY's payload is the last stream id, then the error code.
    expect(goAway?.payload.readUInt32BE(4)).not.toBe(0);

    const after = await curlJson("grpc.health.v1.Health/Check", "{}");
    expect(JSON.parse(after.body)).toEqual({ status: "SERVING" });
  });

  it.each([
    // One byte that could still be the HTTP/2 preface: the server must wait for more.
    ["P"],
    // Two bytes that already rule the preface out: the server decides at once.
    ["PO"],
  ])("an HTTP/1.1 request whose first TCP write is %j is answered in full", async (first) => {
    const userId = uniqueUserId();
    await grpcJs.call("Upsert", { session: { id: "s", userId }, ttl: { seconds: "60" } });
    const request = rawGet(userId);
    const connection = await rawConnection();
    await connection.write(first);
    // Only once the server has read the first write does the rest go out,
    // so the two arrive as separate reads however the kernel batches them.
    await waitFor(
      "the server to read the first bytes",
      () => connection.serverSide.bytesRead === first.length,
    );
    await connection.write(request.slice(first.length));
    const answer = await connection.closed;
    const [head = "", body = ""] = answer.split("\r\n\r\n");
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(JSON.parse(body)).toMatchObject({ session: { id: "s", userId, version: "1" } });
  });
});

/** HTTP/2's GOAWAY frame type (RFC 9113, section 6.8). */
const GOAWAY = 0x07;

/** Splits bytes a server sent into HTTP/2 frames (9-byte header, then the payload). */
function http2Frames(bytes: Buffer): { type: number; payload: Buffer }[] {
  const frames: { type: number; payload: Buffer }[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    frames.push({
      type: bytes.readUInt8(at + 3),
      payload: bytes.subarray(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return frames;
}

describe("HTTP/1.1 connections and shutdown", () => {
  it("close() returns promptly while an HTTP/1.1 keep-alive client holds an idle connection", async () => {
    const other = await startTestServer(
      new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 }),
    );
    const agent = new Agent({ keepAlive: true });
    try {
      const status = await new Promise<number | undefined>((resolve, reject) => {
        request(
          {
            host: "127.0.0.1",
            port: other.port,
            path: `/${SERVICE}/Get`,
            method: "POST",
            headers: { "content-type": "application/json" },
            agent,
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode));
          },
        )
          .on("error", reject)
          .end(JSON.stringify({ sessionId: "s", userId: "u" }));
      });
      expect(status).toBe(404);
      const graceMs = 30_000;
      const started = Date.now();
      await other.server.close(graceMs);
      // The idle connection was closed at once, not cut at the end of the grace period.
      expect(Date.now() - started).toBeLessThan(graceMs);
      await waitFor("the idle connection to close", () => other.server.connections === 0);
    } finally {
      agent.destroy();
    }
  });

  it("closes a connection whose request headers trickle in past the headers timeout", async () => {
    const other = await startTestServer(
      new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 }),
      { http1HeadersTimeoutMs: 300 },
    );
    const client = connect(other.port, "127.0.0.1");
    client.on("error", () => {});
    let closed = false;
    client.once("close", () => {
      closed = true;
    });
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    client.write(`POST /${SERVICE}/Get HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    // One more header line every 100 ms: never idle, never done.
    const trickle = setInterval(() => client.write("X-Slow: yes\r\n"), 100);
    try {
      await waitFor("the server to close the trickling connection", () => closed, {
        timeoutMs: 15_000,
      });
    } finally {
      clearInterval(trickle);
      client.destroy();
      await other.server.close();
    }
  });
});

describe("requests that are no call, and calls that cannot be decoded", () => {
  it("curl without a content-type gets HTTP 415 and a body saying what is accepted", async () => {
    const result = await curl([
      "-sS",
      "-d",
      '{"sessionId":"s","userId":"u"}',
      `${running.baseUrl}/${SERVICE}/Get`,
    ]);
    expect(result.status).toBe(415);
    expect(result.body).toBe(
      "unsupported content-type for Get; POST with content-type application/json or application/proto (Connect), application/grpc (gRPC), or application/grpc-web or application/grpc-web-text (gRPC-Web)\n",
    );
  });

  it("an unknown method gets HTTP 404 naming the services, as text or as Connect's error JSON", async () => {
    const asText = await curl(["-sS", "-X", "POST", `${running.baseUrl}/${SERVICE}/Nope`]);
    expect(asText.status).toBe(404);
    expect(asText.body).toMatch(
      /^unknown method: call \/<service>\/<method> of sessionstore\.v1\.SessionStoreService, grpc\.health\.v1\.Health, /,
    );
    const asConnect = await curlJson(`${SERVICE}/Nope`, "{}");
    expect(asConnect.status).toBe(404);
    expect(JSON.parse(asConnect.body)).toMatchObject({
      code: "unimplemented",
      message: expect.stringMatching(/^unknown method: /),
    });
    const viaGrpc = (await pool
      .transport({ protocol: "grpc" })
      .unary({ ...SessionStoreService.method.get, name: "Nope" }, undefined, undefined, undefined, {
        sessionId: "s",
        userId: "u",
      })
      .catch((e: unknown) => e)) as { code?: Code };
    expect(viaGrpc.code).toBe(Code.Unimplemented);
  });

  it("a JSON body sent as application/proto is INVALID_ARGUMENT, logged at debug and counted", async () => {
    const result = await curl([
      "-sS",
      "-H",
      "content-type: application/proto",
      "-d",
      '{"sessionId":"s","userId":"u"}',
      `${running.baseUrl}/${SERVICE}/Get`,
    ]);
    expect(result.status).toBe(400);
    expect(JSON.parse(result.body)).toEqual({
      code: "invalid_argument",
      message: "request is not a valid sessionstore.v1.GetRequest",
      details: [errorInfoJson("INVALID_FIELD", { messageType: "sessionstore.v1.GetRequest" })],
    });
    await expect
      .poll(() =>
        running.server.telemetry.registry.getSingleMetricAsString("sessionstore_rpcs_total"),
      )
      .toContain(
        `sessionstore_rpcs_total{method="${SERVICE}/Get",code="INVALID_ARGUMENT",caller="anonymous"}`,
      );
    const line = running.logs.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find(
        (l) => l.msg === "rpc" && l.code === "INVALID_ARGUMENT" && l.method === `${SERVICE}/Get`,
      );
    expect(line).toMatchObject({ level: "debug", protocol: "connect", transport: "connect-node" });
  });

  it("gRPC and gRPC-Web with the JSON codec and a body that is not JSON are INVALID_ARGUMENT, quoting nothing", async () => {
    // Found by a random fuzzing run: JSON.parse's message quotes the body,
    // here cut in the middle of a surrogate pair, which the URI-encoded
    // grpc-message cannot carry; the call answered INTERNAL.
    const bodies = [
      '{"sessionId":"{{{{\u{1F600}{{{","us"rId":""}',
      '{"sessionId":"\\\u{1F600}"}',
      "not json",
    ];
    const calls = [
      { path: `/${SERVICE}/Get`, input: "sessionstore.v1.GetRequest" },
      // A streamed request message is decoded while the handler runs.
      {
        path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        input: "grpc.reflection.v1.ServerReflectionRequest",
      },
    ];
    const session = http2.connect(running.baseUrl);
    try {
      for (const contentType of ["application/grpc+json", "application/grpc-web+json"]) {
        for (const { path, input } of calls) {
          for (const body of bodies) {
            const response = await h2Exchange(
              session,
              { ":method": "POST", ":path": path, "content-type": contentType, te: "trailers" },
              envelope(Buffer.from(body, "utf8")),
            );
            expect(verdictOf(response), `${contentType} ${path} ${body}`).toEqual({
              ok: false,
              code: "3",
              message: `request is not a valid ${input}`,
            });
          }
        }
      }
    } finally {
      session.close();
    }
    expect(running.logs.text).not.toContain("unexpected error");
  });

  it("a body over MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED naming the setting", async () => {
    const response = await fetch(`${running.baseUrl}/${SERVICE}/Get`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sessionId: "x".repeat(1024 * 1024), userId: "u" }),
    });
    expect(response.status).toBe(429);
    expect(await response.json()).toEqual({
      code: "resource_exhausted",
      message: "request message is larger than MAX_REQUEST_BYTES (1048576 bytes)",
      details: [
        errorInfoJson("REQUEST_TOO_LARGE", { limit: "MAX_REQUEST_BYTES", maxBytes: "1048576" }),
      ],
    });
  });
});
