import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import {
  createSessionStoreClient,
  type SessionStoreClient,
  type SessionStoreClientOptions,
  type SessionStoreProtocol,
} from "@sessionstore/client";
import { createSessionStoreClient as createWebClient } from "@sessionstore/client/web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OK } from "../../src/pipeline/call.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { uniqueUserId } from "../support/ids.js";
import { outcome } from "../support/outcome.js";
import { createTestPki, type Issued, type TestCa, type TestPki } from "../support/pki.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

/**
 * @sessionstore/client's `token` and `tls` options against in-process
 * servers that serve TLS and mutual TLS and ask for credentials: what a
 * caller sets must be what reaches the server, and a server the client
 * cannot verify must get nothing.
 */

const token = () => randomBytes(24).toString("base64url");
const readerToken = token();
const adminToken = token();
const WRITER_SAN = "spiffe://test/writer";

let pki: TestPki;
let ca: TestCa;
let rogueCa: TestCa;
let writerCert: Issued;
let store: MemorySessionStore;
let tlsServer: RunningServer;
let mtlsServer: RunningServer;
let plainServer: RunningServer;

beforeAll(async () => {
  pki = createTestPki();
  ca = pki.ca("ca");
  rogueCa = pki.ca("rogue");
  const serverCert = ca.issue("server", {
    san: ["DNS:localhost", "IP:127.0.0.1"],
    usage: "server",
  });
  writerCert = ca.issue("writer", { san: [`URI:${WRITER_SAN}`], usage: "client" });
  const credentials = Credentials.parse(
    [
      `reader  read   ${readerToken}`,
      `admin   admin  ${adminToken}`,
      `writer  write  cert:${WRITER_SAN}`,
      "",
    ].join("\n"),
  );
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  const tls = { cert: serverCert.cert, key: serverCert.key };
  tlsServer = await startTestServer(store, { tls, credentials });
  mtlsServer = await startTestServer(store, { tls: { ...tls, clientCa: ca.cert }, credentials });
  plainServer = await startTestServer(store, { credentials });
});

afterAll(async () => {
  // The client has no close (as connect-node's transports have none): its
  // idle connection is unref'd and would close after 15 minutes, so the
  // servers end those connections here, at once.
  await tlsServer?.server.close(0);
  await mtlsServer?.server.close(0);
  await plainServer?.server.close(0);
  await store?.close();
  pki?.remove();
});

/** What a call ended with: OK, or its code and message. */

const upsert = (client: SessionStoreClient, userId: string, options = {}) =>
  client.upsert(
    {
      session: { id: "s", userId, refreshTokenId: "rt" },
      ttl: { seconds: 60n },
    },
    { timeoutMs: 5000, ...options },
  );

const stored = async (userId: string) =>
  (await store.listByUser(userId, { after: undefined, limit: 10 })).sessions.length;

describe("over TLS with a bearer token", () => {
  const client = (options: Omit<SessionStoreClientOptions, "baseUrl">) =>
    createSessionStoreClient({ baseUrl: tlsServer.baseUrl, ...options });

  it.each<SessionStoreProtocol>(["grpc", "grpc-web", "connect"])(
    "%s: sends the token on every call, verified against the given CA",
    async (protocol) => {
      const userId = uniqueUserId();
      const admin = client({ protocol, token: adminToken, tls: { ca: ca.cert } });
      await upsert(admin, userId);
      const { session } = await admin.get({ sessionId: "s", userId }, { timeoutMs: 5000 });
      expect(session?.version).toBe(1n);
      // The same client without the token is refused: the token is what let it in.
      const anonymous = client({ protocol, tls: { ca: ca.cert } });
      expect((await outcome(() => upsert(anonymous, uniqueUserId()))).code).toBe(
        Code.Unauthenticated,
      );
      // And the reader's token gets the reader's scope.
      const reader = client({ protocol, token: readerToken, tls: { ca: ca.cert.toString() } });
      expect((await outcome(() => upsert(reader, userId))).code).toBe(Code.PermissionDenied);
      expect(await stored(userId)).toBe(1);
    },
  );

  it("fails, sending nothing, when the server's certificate does not chain to the CA", async () => {
    const userId = uniqueUserId();
    const seen = await outcome(() =>
      upsert(client({ token: adminToken, tls: { ca: rogueCa.cert } }), userId),
    );
    // connect-node reports a failed handshake as INTERNAL, with OpenSSL's reason.
    expect(seen.code).toBe(Code.Internal);
    // Node 24 appends a hint (--use-system-ca) to OpenSSL's reason.
    expect(seen.message).toMatch(/^unable to verify the first certificate/);
    expect(seen.message).not.toContain(adminToken);
    expect(await stored(userId)).toBe(0);
  });

  it("trusts Node's default CAs on an https:// baseUrl without tls options", async () => {
    // The test CA is no public CA, so the default trust store refuses it:
    // https:// alone means TLS, verified, not "anything goes".
    const userId = uniqueUserId();
    const seen = await outcome(() => upsert(client({ token: adminToken }), userId));
    expect(seen.code).toBe(Code.Internal);
    // Node 24 appends a hint (--use-system-ca) to OpenSSL's reason.
    expect(seen.message).toMatch(/^unable to verify the first certificate/);
    expect(await stored(userId)).toBe(0);
  });

  it("asks a token function before every call, so a rotated token applies at once", async () => {
    const userId = uniqueUserId();
    const issued = [readerToken, adminToken, adminToken];
    let asked = 0;
    const rotating = client({
      tls: { ca: ca.cert },
      // Async, as a secret manager would be.
      token: async () => issued[asked++] ?? "",
    });
    expect((await outcome(() => upsert(rotating, userId))).code).toBe(Code.PermissionDenied);
    expect(asked).toBe(1);
    expect((await outcome(() => upsert(rotating, userId))).code).toBe(OK);
    expect((await outcome(() => rotating.deleteByUser({ userId }))).code).toBe(OK);
    expect(asked).toBe(3);
    // Out of tokens: "" is refused before anything is sent.
    const empty = await outcome(() => upsert(rotating, userId));
    expect(empty).toEqual({
      code: Code.Unauthenticated,
      message: "the bearer token function's token is empty",
    });
    expect(await stored(userId)).toBe(0);
  });

  it("lets a call's own authorization header win over the client's token", async () => {
    const userId = uniqueUserId();
    const reader = client({ token: readerToken, tls: { ca: ca.cert } });
    const seen = await outcome(() =>
      upsert(reader, userId, { headers: { authorization: `Bearer ${adminToken}` } }),
    );
    expect(seen.code).toBe(OK);
  });
});

describe("over mutual TLS", () => {
  const client = (options: Omit<SessionStoreClientOptions, "baseUrl">) =>
    createSessionStoreClient({ baseUrl: mtlsServer.baseUrl, ...options });

  it.each<SessionStoreProtocol>(["grpc", "connect"])(
    "%s: the client certificate is the credential, with exactly its scope",
    async (protocol) => {
      const userId = uniqueUserId();
      const writer = client({
        protocol,
        tls: { ca: ca.cert, cert: writerCert.cert, key: writerCert.key },
      });
      expect((await outcome(() => upsert(writer, userId))).code).toBe(OK);
      expect(await outcome(() => writer.deleteByUser({ userId }))).toEqual({
        code: Code.PermissionDenied,
        message: "the caller's scope (write) does not allow DeleteByUser, which needs admin",
      });
      expect(await stored(userId)).toBe(1);
    },
  );

  it("is refused in the handshake without a client certificate, token or not", async () => {
    const userId = uniqueUserId();
    const seen = await outcome(() =>
      upsert(client({ token: adminToken, tls: { ca: ca.cert } }), userId),
    );
    expect(seen.code).toBe(Code.Internal);
    expect(seen.message).toMatch(/alert certificate required/);
    expect(await stored(userId)).toBe(0);
  });
});

describe("the browser entry", () => {
  it.each(["grpc-web", "connect"] as const)(
    "%s over fetch: sends the token, fixed or from a function",
    async (protocol) => {
      // Cleartext: fetch's TLS is the browser's (or Node's) business, not the client's.
      const { baseUrl } = plainServer;
      const userId = uniqueUserId();
      expect(
        (await outcome(() => upsert(createWebClient({ baseUrl, protocol }), userId))).code,
      ).toBe(Code.Unauthenticated);
      let asked = 0;
      const rotating = createWebClient({
        baseUrl,
        protocol,
        token: () => {
          asked++;
          return adminToken;
        },
      });
      expect((await outcome(() => upsert(rotating, userId))).code).toBe(OK);
      const reader = createWebClient({ baseUrl, protocol, token: readerToken });
      expect((await outcome(() => reader.get({ sessionId: "s", userId }))).code).toBe(OK);
      expect((await outcome(() => upsert(reader, userId))).code).toBe(Code.PermissionDenied);
      expect((await outcome(() => rotating.deleteByUser({ userId }))).code).toBe(OK);
      expect(asked).toBe(2);
      expect(await stored(userId)).toBe(0);
    },
  );
});

describe("options that cannot work fail when the client is made", () => {
  it("refuses tls on a cleartext baseUrl, and a certificate without its key", () => {
    expect(() =>
      createSessionStoreClient({ baseUrl: "http://127.0.0.1:1", tls: { ca: ca.cert } }),
    ).toThrow(new TypeError("tls needs an https:// baseUrl; http://127.0.0.1:1 is cleartext"));
    expect(() =>
      createSessionStoreClient({ baseUrl: "https://127.0.0.1:1", tls: { cert: writerCert.cert } }),
    ).toThrow(/tls.cert and tls.key go together/);
  });

  it("refuses a token that is no bearer token, without repeating it, in both entries", () => {
    const secret = `${token()}\n`;
    for (const create of [createSessionStoreClient, createWebClient]) {
      let message = "";
      try {
        create({ baseUrl: "https://127.0.0.1:1", token: secret });
      } catch (error) {
        expect(error).toBeInstanceOf(TypeError);
        message = (error as Error).message;
      }
      expect(message).toMatch(/^the bearer token is not an RFC 6750 bearer token/);
      expect(message).not.toContain(secret.trim());
    }
  });
});
