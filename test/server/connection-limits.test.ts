import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import type { CallPolicy } from "../../src/pipeline/call.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { clientPool } from "../support/clients.js";
import { createTestPki, type TestPki } from "../support/pki.js";
import {
  FLAG,
  FRAME,
  frame,
  goawayCode,
  PREFACE,
  rawFrames,
  requestHeaders,
} from "../support/raw-h2.js";
import { recordingPolicy } from "../support/recording-policy.js";
import {
  createGrpcJsClient,
  type RunningServer,
  startTestServer,
  type TestServerOptions,
} from "../support/test-server.js";

let store: MemorySessionStore;
/** Servers and clients a test started, closed after it (clients first). */
const cleanups: (() => unknown)[] = [];

beforeAll(() => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await store?.close();
});

async function serve(options: TestServerOptions): Promise<RunningServer> {
  const running = await startTestServer(store, options);
  cleanups.push(() => running.stop());
  return running;
}

function connect(running: RunningServer): http2.ClientHttp2Session {
  const session = http2.connect(running.baseUrl);
  session.on("error", () => {});
  cleanups.push(() => session.destroy());
  return session;
}

/** A Get over a raw HTTP/2 stream: the response headers (gRPC Trailers-Only carries the status there). */
function rawGet(
  session: http2.ClientHttp2Session,
  extra: Record<string, string> = {},
): Promise<{
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  rstCode: number;
}> {
  return new Promise((resolve) => {
    const stream = session.request({
      ":method": "POST",
      ":path": `/${SessionStoreService.typeName}/Get`,
      "content-type": "application/grpc",
      te: "trailers",
      ...extra,
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("error", () => {});
    stream.on("close", () => resolve({ headers, trailers, rstCode: stream.rstCode ?? 0 }));
    stream.resume();
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

/** A policy that holds calls sent with `x-hold: yes` until `release` is called. */
function holdingPolicy(): { holding: CallPolicy; release: () => void } {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const holding: CallPolicy = {
    name: "holding",
    async begin(call) {
      if (call.headers.get("x-hold") === "yes") await held;
      return undefined;
    },
  };
  return { holding, release };
}

/** Resolves once the session has had its SETTINGS exchanged (a PING went both ways). */
async function settled(session: http2.ClientHttp2Session): Promise<void> {
  if (session.connecting) await new Promise((resolve) => session.once("connect", resolve));
  return new Promise((resolve, reject) =>
    session.ping((error) => (error ? reject(error) : resolve())),
  );
}

describe("MAX_CONCURRENT_STREAMS", () => {
  it("refuses streams past the limit, and a gRPC client queues its calls under it", async () => {
    // Holds every Upsert until `release`, counting the calls in flight.
    let inFlight = 0;
    let most = 0;
    let release: () => void = () => {};
    let released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const holding: CallPolicy = {
      name: "holding",
      async begin(call) {
        if (!call.procedure.endsWith("/Upsert")) return undefined;
        inFlight++;
        most = Math.max(most, inFlight);
        await released;
        return () => {
          inFlight--;
        };
      },
    };
    const running = await serve({ policies: [holding], limits: { maxConcurrentStreams: 2 } });

    // Three streams on one connection: only two are ever open at once.
    const session = connect(running);
    await settled(session);
    const streams = [1, 2, 3].map(() => {
      const stream = session.request({
        ":method": "POST",
        ":path": `/${SessionStoreService.typeName}/Upsert`,
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      return stream;
    });
    // Node's client honours the limit and holds the third back (a peer that
    // does not is refused: see below); only 2 reach the pipeline.
    await waitFor("two calls to be held", () => inFlight === 2);
    for (const stream of streams) stream.close(http2.constants.NGHTTP2_CANCEL);

    // @grpc/grpc-js queues its calls and completes all of them.
    release();
    await waitFor("the held calls to end", () => inFlight === 0);
    most = 0;
    released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const client = createGrpcJsClient(running.port);
    cleanups.push(() => client.close());
    const calls = Array.from({ length: 12 }, (_, i) =>
      client.call("Upsert", {
        session: { id: `s${i}`, userId: "concurrent" },
        ttl: { seconds: "60" },
      }),
    );
    await waitFor("two calls to be held", () => inFlight === 2);
    release();
    await Promise.all(calls);
    expect(most).toBe(2);
    expect(
      (await store.listByUser("concurrent", { after: undefined, limit: 100 })).sessions,
    ).toHaveLength(12);
  });

  it("refuses streams over the limit: REFUSED_STREAM before the SETTINGS are acknowledged, GOAWAY after", async () => {
    const running = await serve({ limits: { maxConcurrentStreams: 1 } });
    const open = (ack: boolean) => {
      const socket = net.connect(running.port, "127.0.0.1");
      cleanups.push(() => socket.destroy());
      const frames = rawFrames(socket);
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      socket.write(frame(0x4, 0, 0, Buffer.alloc(0)));
      if (ack) socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
      // Two streams left open (no END_STREAM), as a client ignoring the limit would.
      for (const id of [1, 3]) socket.write(frame(0x1, 0x4, id, requestHeaders()));
      return frames;
    };
    const early = open(false);
    const reset = await waitFor("a RST_STREAM", () => early.find((f) => f.type === 0x3));
    expect(reset.stream).toBe(3);
    expect(reset.payload.readUInt32BE(0)).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
    // Once the client has acknowledged the limit, exceeding it is a protocol
    // error of the connection (nghttp2's choice, which RFC 9113 allows).
    const late = open(true);
    const goaway = await waitFor("a GOAWAY", () => late.find((f) => f.type === 0x7));
    expect(goaway.payload.readUInt32BE(0) & 0x7fffffff).toBe(1);
  });
});

describe("MAX_HEADER_LIST_SIZE", () => {
  const LIMIT = 4096;
  const big = { "x-big": "a".repeat(5000) };
  const MESSAGE = `request headers are larger than MAX_HEADER_LIST_SIZE (${LIMIT} bytes)`;

  it("answers HTTP/1.1 with 431 naming the setting, and serves headers under it", async () => {
    const running = await serve({ limits: { maxHeaderListSize: LIMIT } });
    const url = `${running.baseUrl}/${SessionStoreService.typeName}/Get`;
    const body = JSON.stringify({ sessionId: "s", userId: "u" });
    const post = (headers: Record<string, string>) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close", ...headers },
        body,
      });
    const over = await post(big);
    expect(over.status).toBe(431);
    expect(await over.text()).toBe(`${MESSAGE}\n`);
    const under = await post({ "x-small": "a".repeat(1000) });
    expect(under.status).toBe(404);
    expect(await under.json()).toMatchObject({ code: "not_found" });
  });

  it("refuses an HTTP/2 request over it, before and after the client acknowledged the SETTINGS", async () => {
    const running = await serve({ limits: { maxHeaderListSize: LIMIT } });
    // Sent at once, before the SETTINGS are acknowledged: the listener answers.
    const session = connect(running);
    const early = await rawGet(session, big);
    expect(early.headers).toMatchObject({ "grpc-status": "8", "grpc-message": MESSAGE });
    // Afterwards Node resets the stream itself: gRPC clients say RESOURCE_EXHAUSTED.
    await settled(session);
    expect((await rawGet(session, big)).rstCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // (An empty Get is INVALID_ARGUMENT: it got past the headers.)
    expect((await rawGet(session, { "x-small": "a".repeat(1000) })).headers).toMatchObject({
      "grpc-status": String(Code.InvalidArgument),
    });
    // A gRPC client sees RESOURCE_EXHAUSTED either way.
    const client = createGrpcJsClient(running.port);
    cleanups.push(() => client.close());
    const { Metadata } = await import("@grpc/grpc-js");
    for (let i = 0; i < 2; i++) {
      const metadata = new Metadata();
      metadata.set("x-big", "a".repeat(5000));
      const error = (await client
        .call("Get", { sessionId: "s", userId: "u" }, { metadata })
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(error.code).toBe(Code.ResourceExhausted);
    }
  });
});

describe("IDLE_TIMEOUT", () => {
  it("closes an idle HTTP/2 connection with GOAWAY, but never during a call", async () => {
    const { holding, release } = holdingPolicy();
    const running = await serve({ policies: [holding], limits: { idleTimeoutMs: 200 } });
    const session = connect(running);
    let goaway: number | undefined;
    session.on("goaway", (code) => {
      goaway = code;
    });
    const call = rawGet(session, { "x-hold": "yes" });
    // Well past the idle timeout, the connection is still open for the call.
    const until = Date.now() + 800;
    await waitFor("800 ms with the call in flight", () => Date.now() > until, { intervalMs: 50 });
    expect(goaway).toBeUndefined();
    release();
    expect((await call).headers["grpc-status"]).toBe(String(Code.InvalidArgument));
    await waitFor("GOAWAY after the call", () => goaway !== undefined, { timeoutMs: 3000 });
    expect(goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await waitFor("the connection to close", () => session.closed || session.destroyed);
  });

  it("closes a connection stalled in the middle of a header block", async () => {
    // HEADERS without END_HEADERS and no CONTINUATION: nghttp2 holds the
    // stream, Node never surfaces it, and a graceful close alone would wait
    // for it forever; IdleSessions destroys the connection after its GOAWAY.
    const running = await serve({ limits: { idleTimeoutMs: 200 } });
    const socket = net.connect(running.port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    const frames = rawFrames(socket);
    let closed = false;
    socket.on("close", () => {
      closed = true;
    });
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    socket.write(frame(0x4, 0, 0, Buffer.alloc(0)));
    socket.write(frame(0x1, 0, 1, requestHeaders()));
    await waitFor("the server to close the connection", () => closed, { timeoutMs: 3000 });
    const goaway = frames.find((f) => f.type === 0x7);
    expect(goaway?.payload.readUInt32BE(4)).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it("closes an idle HTTP/1.1 keep-alive connection", async () => {
    const running = await serve({ limits: { idleTimeoutMs: 200 } });
    const socket = net.connect(running.port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    let response = "";
    let closed = false;
    socket.on("data", (chunk: Buffer) => {
      response += chunk.toString("latin1");
    });
    socket.on("close", () => {
      closed = true;
    });
    socket.write("GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n");
    await waitFor("a response", () => response.includes("\r\n\r\n"));
    expect(response).toMatch(/keep-alive: timeout=\d+/i);
    await waitFor("the server to close the connection", () => closed, { timeoutMs: 3000 });
  });
});

describe("MAX_CONNECTIONS_PER_PEER", () => {
  it("refuses a peer's connections past the cap, in its protocol, leaving the others served", async () => {
    const running = await serve({ limits: { maxConnectionsPerPeer: 2 } });
    const first = connect(running);
    const second = connect(running);
    await settled(first);
    await settled(second);

    // HTTP/2: SETTINGS, then GOAWAY(ENHANCE_YOUR_CALM) naming the limit.
    const third = connect(running);
    const goaway = await new Promise<[number, Buffer | undefined]>((resolve) =>
      third.once("goaway", (code, _last, data) => resolve([code, data])),
    );
    const reason = "too many connections from this address: MAX_CONNECTIONS_PER_PEER is 2";
    expect(goaway[0]).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(goaway[1]?.toString()).toBe(reason);

    // HTTP/1.1: 429 with connection: close and the limit in the body.
    const socket = net.connect(running.port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    let response = "";
    socket.on("data", (chunk: Buffer) => {
      response += chunk.toString("latin1");
    });
    socket.write("GET / HTTP/1.1\r\nhost: localhost\r\n\r\n");
    await waitFor("the refusal", () => response.endsWith("\n\n") || response.includes(reason));
    expect(response).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
    expect(response).toMatch(/\r\nconnection: close\r\n/);
    expect(response).toContain(reason);

    // The first two still work, and the refusals are counted and logged without the address.
    for (const session of [first, second]) {
      expect((await rawGet(session)).headers["grpc-status"]).toBe(String(Code.InvalidArgument));
    }
    const metric = await running.server.telemetry.registry.getSingleMetricAsString(
      "sessionstore_connections_refused_total",
    );
    expect(metric).toContain(
      'sessionstore_connections_refused_total{limit="MAX_CONNECTIONS_PER_PEER"} 2',
    );
    expect(running.logs.text).toContain(
      "refused connections from a client at its connection limit",
    );
    expect(running.logs.text).not.toContain("127.0.0.1");

    // Once one closes, the peer may connect again.
    first.close();
    await waitFor("the first connection to close", () => running.server.connections <= 3);
    const pool = clientPool(running.baseUrl);
    cleanups.push(() => pool.close());
    await waitFor("a new connection to be served", async () => {
      const error = await pool
        .sessions({ protocol: "connect" })
        .get({ sessionId: "s", userId: "u" })
        .catch(ConnectError.from);
      return error instanceof ConnectError && error.code === Code.NotFound;
    });
  });
});

describe("rapid reset (CVE-2023-44487)", () => {
  /** CA and server certificate for the TLS variant, made once. */
  let pki: TestPki | undefined;
  let tlsServer: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
  afterAll(() => pki?.remove());
  function serverTls() {
    if (!tlsServer) {
      pki = createTestPki();
      const ca = pki.ca("ca");
      const issued = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
      tlsServer = { ca: ca.cert, cert: issued.cert, key: issued.key };
    }
    return tlsServer;
  }

  /**
   * A raw HTTP/2 connection (with prior knowledge, or TLS with ALPN h2)
   * that has sent its preface and SETTINGS, and acknowledged the server's.
   */
  async function rawConnection(running: RunningServer, overTls: boolean) {
    const socket = overTls
      ? tls.connect({
          port: running.port,
          host: "127.0.0.1",
          ca: serverTls().ca,
          ALPNProtocols: ["h2"],
        })
      : net.connect(running.port, "127.0.0.1");
    cleanups.push(() => socket.destroy());
    const frames = rawFrames(socket);
    let closed = false;
    socket.on("close", () => {
      closed = true;
    });
    await new Promise((resolve) => socket.once(overTls ? "secureConnect" : "connect", resolve));
    socket.write(
      Buffer.concat([
        PREFACE,
        frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)),
        frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0)),
      ]),
    );
    return { socket, frames, closed: () => closed };
  }

  /** `count` Gets, each cancelled (RST_STREAM CANCEL) right behind its HEADERS, from stream `first` on. */
  function openedAndCancelled(first: number, count: number): Buffer {
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
    return Buffer.concat(
      Array.from({ length: count }, (_, i) => [
        frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, first + 2 * i, requestHeaders()),
        frame(FRAME.RST_STREAM, 0, first + 2 * i, cancel),
      ]).flat(),
    );
  }

  it.each([
    ["cleartext", false],
    ["TLS", true],
  ])(
    "destroys a connection that resets its streams as it opens them (%s), serving none of them and leaving other connections alone",
    async (_, overTls) => {
      const { holding, release } = holdingPolicy();
      const recording = recordingPolicy();
      const running = await serve({
        policies: [recording, holding],
        ...(overTls ? { tls: { cert: serverTls().cert, key: serverTls().key } } : {}),
      });
      // A well-behaved client with a call in flight on its own connection.
      const client = http2.connect(running.baseUrl, overTls ? { ca: serverTls().ca } : {});
      client.on("error", () => {});
      cleanups.push(() => client.destroy());
      const inFlight = rawGet(client, { "x-hold": "yes" });
      await waitFor("the call to reach the pipeline", () => recording.calls.length === 1);

      // 300 streams opened and cancelled at once, in one write.
      const attacker = await rawConnection(running, overTls);
      attacker.socket.write(openedAndCancelled(1, 300));
      // Destroyed at once, not left to IDLE_TIMEOUT (300 s here), with
      // GOAWAY ENHANCE_YOUR_CALM (over TLS the socket may close before the
      // GOAWAY is through).
      await waitFor("the server to close the connection", attacker.closed, { timeoutMs: 1000 });
      const goaway = attacker.frames.find((f) => f.type === FRAME.GOAWAY);
      if (!overTls || goaway) {
        expect(goaway && goawayCode(goaway)).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      }
      // Not one of them was served (each was reset before its turn came).
      expect(recording.calls).toHaveLength(1);
      expect(running.logs.text).toContain("rapid reset");
      expect(running.logs.text).not.toContain("127.0.0.1");

      // The other connection and its call are untouched.
      release();
      expect((await inFlight).headers["grpc-status"]).toBe(String(Code.InvalidArgument));
      expect((await rawGet(client)).headers["grpc-status"]).toBe(String(Code.InvalidArgument));
      client.close();
    },
  );

  it("holds new HTTP/2 connections from the address of a connection it cut off, for a moment", async () => {
    const running = await serve({});
    const attacker = await rawConnection(running, false);
    attacker.socket.write(openedAndCancelled(1, 300));
    await waitFor("the server to close the connection", attacker.closed, { timeoutMs: 1000 });
    // The same address (127.0.0.1) connects again: its first call waits
    // 250 ms (HOLD_MS) before the server reads it.
    const session = connect(running);
    const start = performance.now();
    expect((await rawGet(session)).headers["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(performance.now() - start).toBeGreaterThanOrEqual(240);
    session.close();
  });

  it("keeps a connection that resets 50 streams as it opens them, and serves its next call", async () => {
    const running = await serve({});
    const connection = await rawConnection(running, false);
    const message = frame(FRAME.DATA, FLAG.END_STREAM, 101, Buffer.alloc(5));
    connection.socket.write(
      Buffer.concat([
        openedAndCancelled(1, 50),
        frame(FRAME.HEADERS, FLAG.END_HEADERS, 101, requestHeaders()),
        message,
      ]),
    );
    await waitFor("the answer to the 51st stream", () =>
      connection.frames.find((f) => f.type === FRAME.HEADERS && f.stream === 101),
    );
    expect(connection.frames.find((f) => f.type === FRAME.GOAWAY)).toBeUndefined();
    expect(connection.closed()).toBe(false);
  });
});
