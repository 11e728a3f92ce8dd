import { X509Certificate } from "node:crypto";
import http2 from "node:http2";
import tls from "node:tls";
import { Code } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OK } from "../../src/pipeline/call.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { outcome } from "../support/outcome.js";
import { createTestPki, type Issued, type TestCa, type TestPki } from "../support/pki.js";
import { endlessBody } from "../support/raw-exchange.js";
import { createGrpcJsClient, type RunningServer, startTestServer } from "../support/test-server.js";

/**
 * TLS and mutual TLS on the one port, tried with real clients: grpc-js and
 * connect over HTTP/2 (ALPN h2), gRPC-Web and Connect over HTTP/1.1 (ALPN
 * http/1.1), and clients that should not get in (cleartext, old TLS, no
 * client certificate, one from another CA, an expired one).
 */

const WRITER_TOKEN = "writer-token-0123456789abcdef";
const READER_TOKEN = "reader-token-0123456789abcdef";
const BILLING = "spiffe://test/ns/billing/sa/api";
const credentials = Credentials.parse(
  [
    `writer  write  ${WRITER_TOKEN}`,
    `reader  read   ${READER_TOKEN}`,
    `billing write  cert:${BILLING}`,
    "probe   read   cert:probe.internal",
  ].join("\n"),
);

let pki: TestPki;
let ca: TestCa;
let serverCert: Issued;
let store: MemorySessionStore;

beforeAll(() => {
  pki = createTestPki();
  ca = pki.ca("ca");
  serverCert = ca.issue("server", { san: ["DNS:localhost", "IP:127.0.0.1"], usage: "server" });
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
});

afterAll(async () => {
  await store?.close();
  pki?.remove();
});

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
const upsertRequest = (userId: string) => ({
  session: sessionFixture(userId, "s"),
  ttl: ttl(60_000),
});

/** The certificate a fresh TLS connection to `port` is shown, and the ALPN protocol agreed. */
function handshake(
  port: number,
  options: tls.ConnectionOptions = {},
): Promise<{ fingerprint: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: "127.0.0.1", ca: ca.cert, ...options }, () => {
      const fingerprint = socket.getPeerX509Certificate()?.fingerprint256 ?? "";
      const alpn = socket.alpnProtocol ?? false;
      socket.end();
      resolve({ fingerprint, alpn });
    });
    socket.once("error", reject);
  });
}

/**
 * How a client is refused: the TLS alert's error code, or "closed". Under
 * TLS 1.3 the client's side of the handshake completes before the server
 * has checked the client's certificate, so the refusal arrives on the
 * first read; a connection the server accepted stays open (it waits for
 * the client's HTTP/2 preface), so this resolves only on a refusal.
 */
function refusal(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ port, host: "127.0.0.1", ca: ca.cert, ...options });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "no code"));
    socket.once("close", () => resolve("closed"));
    socket.resume();
  });
}

/** The server's count of failed TLS handshakes. */
async function handshakeFailures(running: RunningServer): Promise<number> {
  const metrics = await running.server.telemetry.registry.metrics();
  const match = /sessionstore_auth_failures_total\{reason="tls_handshake"\} (\d+)/.exec(metrics);
  return Number(match?.[1] ?? 0);
}

describe("TLS", () => {
  let running: RunningServer;

  beforeAll(async () => {
    running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key },
      credentials,
    });
  });

  afterAll(async () => {
    await running?.stop();
  });

  it("offers h2 and http/1.1 by ALPN and TLS 1.2 at the least", async () => {
    expect((await handshake(running.port, { ALPNProtocols: ["h2"] })).alpn).toBe("h2");
    expect((await handshake(running.port, { ALPNProtocols: ["http/1.1"] })).alpn).toBe("http/1.1");
    await expect(
      handshake(running.port, { minVersion: "TLSv1", maxVersion: "TLSv1.1" }),
    ).rejects.toThrow();
  });

  it("refuses cleartext clients on the TLS port", async () => {
    const grpcJs = createGrpcJsClient(running.port);
    try {
      const error = (await grpcJs
        .call("Get", { sessionId: "s", userId: "u" }, { deadlineMs: 2000 })
        .catch((e: grpc.ServiceError) => e)) as grpc.ServiceError;
      expect(error.code).toBe(Code.Unavailable);
    } finally {
      grpcJs.close();
    }
    const session = http2.connect(`http://127.0.0.1:${running.port}`);
    const closed = await new Promise<string>((resolve) => {
      session.once("error", (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
      session.once("close", () => resolve("closed"));
      session.request({ ":path": "/" }).on("error", () => {});
    });
    expect(closed).toMatch(/error|closed/);
    session.destroy();
    const metrics = await running.server.telemetry.registry.metrics();
    expect(metrics).toMatch(/sessionstore_auth_failures_total\{reason="tls_handshake"\} [1-9]/);
  });
});

describe("HTTP/1.1 over TLS", () => {
  it("answers a request whose body goes on past the drain, then closes its connection within 2 s", async () => {
    const running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key },
    });
    try {
      const connect = () =>
        tls.connect({
          port: running.port,
          host: "127.0.0.1",
          ca: ca.cert,
          servername: "localhost",
          ALPNProtocols: ["http/1.1"],
        });
      const result = await endlessBody(connect, "/sessionstore.v1.SessionStoreService/Nope", {
        "content-type": "application/json",
      });
      expect(result.response.split("\r\n")[0]).toBe("HTTP/1.1 404 Not Found");
      expect(result.closedAfterAnswerMs).toBeLessThan(2000);
    } finally {
      await running.stop();
    }
  });
});

describe("mutual TLS", () => {
  let running: RunningServer;
  let billing: Issued;
  let probe: Issued;
  let unlisted: Issued;
  let expired: Issued;
  let rogue: Issued;

  beforeAll(async () => {
    billing = ca.issue("billing", { san: [`URI:${BILLING}`], usage: "client" });
    probe = ca.issue("probe", { san: ["DNS:probe.internal"], usage: "client" });
    unlisted = ca.issue("unlisted", { san: ["URI:spiffe://test/ns/other/sa/x"], usage: "client" });
    expired = ca.issue("expired", { san: [`URI:${BILLING}`], usage: "client", expired: true });
    rogue = pki.ca("rogue").issue("rogue-billing", { san: [`URI:${BILLING}`], usage: "client" });
    running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key, clientCa: ca.cert },
      credentials,
    });
  });

  afterAll(async () => {
    await running?.stop();
  });

  it.each([
    ["no client certificate", undefined],
    ["a certificate from another CA", "rogue"],
    ["an expired certificate", "expired"],
  ] as const)("refuses %s in the handshake", async (_name, which) => {
    const cert = which === "rogue" ? rogue : which === "expired" ? expired : undefined;
    const options = cert ? { cert: cert.cert, key: cert.key } : {};
    const before = await handshakeFailures(running);
    expect(await refusal(running.port, options)).toMatch(/ALERT|closed/);
    expect(await handshakeFailures(running)).toBe(before + 1);
    const userId = uniqueUserId();
    const pool = clientPool(running.baseUrl, { ca: ca.cert, ...options });
    try {
      const seen = await outcome(() =>
        pool.sessions({ protocol: "grpc" }).upsert(upsertRequest(userId), bearer(WRITER_TOKEN)),
      );
      expect(seen.code).not.toBe(OK);
    } finally {
      pool.close();
    }
    const grpcJs = createGrpcJsClient(running.port, { ca: ca.cert, ...options });
    try {
      const error = await grpcJs.call("Get", { sessionId: "s", userId }, { deadlineMs: 3000 }).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(error?.code).toBeDefined();
      expect(error?.code).not.toBe(Code.NotFound);
    } finally {
      grpcJs.close();
    }
    expect((await store.listByUser(userId, { after: undefined, limit: 1 })).sessions).toEqual([]);
  });

  it("identifies a caller by a DNS SAN as well as by a URI SAN", async () => {
    const pool = clientPool(running.baseUrl, { ca: ca.cert, cert: probe.cert, key: probe.key });
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      expect((await outcome(() => client.get({ sessionId: "s", userId }))).code).toBe(
        Code.NotFound,
      );
      expect((await outcome(() => client.upsert(upsertRequest(userId)))).code).toBe(
        Code.PermissionDenied,
      );
    } finally {
      pool.close();
    }
  });

  it("lets a certificate without a cert: line in only with a valid token", async () => {
    const pool = clientPool(running.baseUrl, {
      ca: ca.cert,
      cert: unlisted.cert,
      key: unlisted.key,
    });
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      expect(await outcome(() => client.upsert(upsertRequest(userId)))).toEqual({
        code: Code.Unauthenticated,
        message: "the client certificate names no known caller, and no bearer token was sent",
      });
      expect(
        (await outcome(() => client.upsert(upsertRequest(userId), bearer(WRITER_TOKEN)))).code,
      ).toBe(OK);
    } finally {
      pool.close();
    }
  });

  it("refuses a known certificate sent with an unknown token", async () => {
    const pool = clientPool(running.baseUrl, { ca: ca.cert, cert: billing.cert, key: billing.key });
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      expect(
        await outcome(() =>
          client.upsert(upsertRequest(userId), bearer("not-a-known-token-at-all")),
        ),
      ).toEqual({
        code: Code.Unauthenticated,
        message: "unknown bearer token",
      });
      expect(
        await outcome(() => client.upsert(upsertRequest(userId), bearer(WRITER_TOKEN))),
      ).toEqual({
        code: Code.Unauthenticated,
        message: "the bearer token and the client certificate belong to different callers",
      });
      expect((await store.listByUser(userId, { after: undefined, limit: 1 })).sessions).toEqual([]);
    } finally {
      pool.close();
    }
  });
});

describe("limits over TLS", () => {
  it("refuses a peer's connection past MAX_CONNECTIONS_PER_PEER after the handshake, naming the limit", async () => {
    const running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key },
      credentials,
      limits: { maxConnectionsPerPeer: 1 },
    });
    const connect = () => http2.connect(running.baseUrl, { ca: ca.cert });
    const first = connect();
    const second = connect();
    // The refused session ends in error (ENHANCE_YOUR_CALM), after its GOAWAY.
    second.on("error", () => {});
    try {
      await new Promise((resolve) => first.once("connect", resolve));
      const [code, data] = await new Promise<[number, Buffer | undefined]>((resolve) =>
        second.once("goaway", (goawayCode, _last, opaque) => resolve([goawayCode, opaque])),
      );
      expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      expect(data?.toString()).toBe(
        "too many connections from this address: MAX_CONNECTIONS_PER_PEER is 1",
      );
      // The admitted connection is served (auth answers: no token was sent).
      const status = await new Promise<string | undefined>((resolve) => {
        const stream = first.request({
          ":method": "POST",
          ":path": "/sessionstore.v1.SessionStoreService/Get",
          "content-type": "application/grpc",
        });
        stream.on("response", (headers) => resolve(headers["grpc-status"] as string | undefined));
        stream.end();
      });
      expect(status).toBe(String(Code.Unauthenticated));
    } finally {
      first.destroy();
      second.destroy();
      await running.stop();
    }
  });

  it("applies a caller's own rate from the tokens file, after authentication", async () => {
    const limited = Credentials.parse(
      [`slow write ${WRITER_TOKEN} 2/h`, `fast write ${READER_TOKEN}`].join("\n"),
    );
    const running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key },
      credentials: limited,
      limits: { rateLimit: { perSecond: 1000, burst: 1000 } },
    });
    const pool = clientPool(running.baseUrl, { ca: ca.cert });
    try {
      const client = pool.sessions({ protocol: "connect", binary: false, httpVersion: "1.1" });
      const userId = uniqueUserId();
      const codes: (Code | typeof OK)[] = [];
      for (let i = 0; i < 3; i++) {
        codes.push(
          (await outcome(() => client.get({ sessionId: "s", userId }, bearer(WRITER_TOKEN)))).code,
        );
      }
      expect(codes).toEqual([Code.NotFound, Code.NotFound, Code.ResourceExhausted]);
      // Another caller, on the server's default, is not held back.
      expect(
        (await outcome(() => client.get({ sessionId: "s", userId }, bearer(READER_TOKEN)))).code,
      ).toBe(Code.NotFound);
      // Refused credentials never reach the limit: they are not charged to anyone.
      expect((await outcome(() => client.get({ sessionId: "s", userId }))).code).toBe(
        Code.Unauthenticated,
      );
    } finally {
      pool.close();
      await running.stop();
    }
  });
});

describe("client CA renewal", () => {
  it("verifies new connections against the new client CA, keeping open ones", async () => {
    const next = pki.ca("next-ca");
    const oldClient = ca.issue("old-ca-client", { san: [`URI:${BILLING}`], usage: "client" });
    const newClient = next.issue("new-ca-client", { san: [`URI:${BILLING}`], usage: "client" });
    const running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key, clientCa: ca.cert },
      credentials,
    });
    const open = clientPool(running.baseUrl, {
      ca: ca.cert,
      cert: oldClient.cert,
      key: oldClient.key,
    });
    try {
      const before = open.sessions({ protocol: "grpc" });
      expect(
        (await outcome(() => before.get({ sessionId: "s", userId: uniqueUserId() }))).code,
      ).toBe(Code.NotFound);
      running.server.setTls({ cert: serverCert.cert, key: serverCert.key, clientCa: next.cert });
      const asOld = { cert: oldClient.cert, key: oldClient.key };
      expect(await refusal(running.port, asOld)).toMatch(/ALERT|closed/);
      const fresh = clientPool(running.baseUrl, {
        ca: ca.cert,
        cert: newClient.cert,
        key: newClient.key,
      });
      try {
        const seen = await outcome(() =>
          fresh.sessions({ protocol: "grpc" }).get({ sessionId: "s", userId: uniqueUserId() }),
        );
        expect(seen.code).toBe(Code.NotFound);
      } finally {
        fresh.close();
      }
      // The connection verified against the old CA still serves calls.
      expect(
        (await outcome(() => before.get({ sessionId: "s", userId: uniqueUserId() }))).code,
      ).toBe(Code.NotFound);
    } finally {
      open.close();
      await running.stop();
    }
  });
});

describe("certificate renewal", () => {
  it("shows new connections the new certificate and keeps old connections working", async () => {
    const running = await startTestServer(store, {
      tls: { cert: serverCert.cert, key: serverCert.key },
      credentials,
    });
    const pool = clientPool(running.baseUrl, { ca: ca.cert });
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const userId = uniqueUserId();
      await client.upsert(upsertRequest(userId), bearer(WRITER_TOKEN));
      const before = await handshake(running.port);
      expect(before.fingerprint).toBe(new X509Certificate(serverCert.cert).fingerprint256);

      const renewed = ca.issue("server-renewed", { san: ["IP:127.0.0.1"], usage: "server" });
      running.server.setTls({ cert: renewed.cert, key: renewed.key });

      expect((await handshake(running.port)).fingerprint).toBe(
        new X509Certificate(renewed.cert).fingerprint256,
      );
      // The HTTP/2 connection opened before the renewal still serves calls.
      const { session } = await client.get({ sessionId: "s", userId }, bearer(READER_TOKEN));
      expect(session?.userId).toBe(userId);
      expect(() =>
        running.server.setTls({ cert: renewed.cert, key: renewed.key, clientCa: ca.cert }),
      ).toThrow("turning client certificates on or off needs a restart");
      expect(() => running.server.setTls({ cert: renewed.cert, key: serverCert.key })).toThrow();
      expect((await handshake(running.port)).fingerprint).toBe(
        new X509Certificate(renewed.cert).fingerprint256,
      );
    } finally {
      pool.close();
      await running.stop();
    }
  });
});
