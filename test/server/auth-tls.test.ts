import { randomBytes } from "node:crypto";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { OK } from "../../src/pipeline/call.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { type Outcome, outcome } from "../support/outcome.js";
import { createTestPki, type Issued, type TestCa, type TestPki } from "../support/pki.js";
import {
  type ClientTls,
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

/**
 * Bearer tokens and certificate identities over TLS and mutual TLS, from
 * independent stacks: grpc-js (its own HTTP/2 and TLS client) and
 * connect-node on every protocol, each on the fast path and, for gRPC, on
 * connect-node's path too. (Python's grpcio does the same in
 * python-client.test.ts.) TLS must change nothing about who gets in.
 */

const token = () => randomBytes(24).toString("base64url");
const readerToken = token();
const writerToken = token();
/** The admin token of the caller whose certificate has only the write scope. */
const certCallerAdminToken = token();
const WRITER_SAN = "spiffe://test/cert-writer";

const credentials = Credentials.parse(
  [
    `reader       read   ${readerToken}`,
    `writer       write  ${writerToken}`,
    `cert-writer  write  cert:${WRITER_SAN}`,
    `cert-writer  admin  ${certCallerAdminToken}`,
    "",
  ].join("\n"),
);

let pki: TestPki;
let ca: TestCa;
let certWriter: Issued;
let store: MemorySessionStore;
const servers: RunningServer[] = [];
const pools: ClientPool[] = [];
const grpcJsClients: GrpcJsClient[] = [];

beforeAll(() => {
  pki = createTestPki();
  ca = pki.ca("ca");
  certWriter = ca.issue("cert-writer", { san: [`URI:${WRITER_SAN}`], usage: "client" });
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
});

afterAll(async () => {
  for (const pool of pools) pool.close();
  for (const client of grpcJsClients) client.close();
  for (const server of servers) await server.stop();
  await store?.close();
  pki?.remove();
});

/** One client stack talking to one server, with an optional authorization header. */
interface Path {
  readonly name: string;
  upsert(userId: string, authorization?: string): Promise<Outcome>;
  deleteByUser(userId: string, authorization?: string): Promise<Outcome>;
}

function connectPath(name: string, transport: Transport): Path {
  const client = createClient(SessionStoreService, transport);
  const headers = (authorization?: string) =>
    authorization === undefined ? {} : { headers: { authorization } };
  return {
    name,
    upsert: (userId, auth) =>
      outcome(() =>
        client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }, headers(auth)),
      ),
    deleteByUser: (userId, auth) => outcome(() => client.deleteByUser({ userId }, headers(auth))),
  };
}

function grpcJsPath(name: string, client: GrpcJsClient): Path {
  const metadata = (authorization?: string) => {
    const m = new Metadata();
    if (authorization !== undefined) m.set("authorization", authorization);
    return { metadata: m };
  };
  const now = { seconds: Math.floor(Date.now() / 1000) };
  return {
    name,
    upsert: (userId, auth) =>
      outcome(() =>
        client.call(
          "Upsert",
          {
            session: { id: "s", userId, refreshTokenId: "rt", createdAt: now, refreshedAt: now },
            ttl: { seconds: 60 },
          },
          metadata(auth),
        ),
      ),
    deleteByUser: (userId, auth) =>
      outcome(() => client.call("DeleteByUser", { userId }, metadata(auth))),
  };
}

const KINDS: [string, ClientKind][] = [
  ["connect-node gRPC", { protocol: "grpc" }],
  ["gRPC-Web, HTTP/2", { protocol: "grpc-web" }],
  ["gRPC-Web, HTTP/1.1", { protocol: "grpc-web", httpVersion: "1.1" }],
  ["Connect binary, HTTP/2", { protocol: "connect" }],
  ["Connect JSON, HTTP/1.1", { protocol: "connect", binary: false, httpVersion: "1.1" }],
];

/**
 * Every path to servers with these TLS credentials: grpc-js and each
 * connect-node kind on the fast path, and connect-node gRPC with it off.
 */
async function pathsTo(clientCa: Buffer | undefined, clientTls: ClientTls): Promise<Path[]> {
  const serverCert = ca.issue(`server-${servers.length}`, {
    san: ["DNS:localhost", "IP:127.0.0.1"],
    usage: "server",
  });
  const tls = { cert: serverCert.cert, key: serverCert.key, ...(clientCa ? { clientCa } : {}) };
  const fast = await startTestServer(store, { tls, credentials });
  const slow = await startTestServer(store, { tls, credentials, grpcFastPath: false });
  servers.push(fast, slow);
  const fastPool = clientPool(fast.baseUrl, clientTls);
  const slowPool = clientPool(slow.baseUrl, clientTls);
  pools.push(fastPool, slowPool);
  const grpcJs = createGrpcJsClient(fast.port, clientTls);
  grpcJsClients.push(grpcJs);
  return [
    grpcJsPath("grpc-js, fast path", grpcJs),
    ...KINDS.map(([name, kind]) => connectPath(`${name}, fast path`, fastPool.transport(kind))),
    connectPath("connect-node gRPC, fast path off", slowPool.transport({ protocol: "grpc" })),
  ];
}

const bearer = (secret: string) => `Bearer ${secret}`;
const stored = async (userId: string) =>
  (await store.listByUser(userId, { after: undefined, limit: 10 })).sessions.length;

describe("over TLS", () => {
  let paths: Path[] = [];
  beforeAll(async () => {
    paths = await pathsTo(undefined, { ca: ca.cert });
  });

  it("lets each path in with a token, with exactly the token's scope", async () => {
    expect(paths).toHaveLength(7);
    for (const path of paths) {
      const userId = uniqueUserId();
      expect(await path.upsert(userId), path.name).toEqual({
        code: Code.Unauthenticated,
        message: "missing credentials: send 'authorization: Bearer <token>'",
      });
      expect((await path.upsert(userId, bearer(readerToken))).code, path.name).toBe(
        Code.PermissionDenied,
      );
      expect(await stored(userId), path.name).toBe(0);
      expect((await path.upsert(userId, bearer(writerToken))).code, path.name).toBe(OK);
      expect((await path.deleteByUser(userId, bearer(writerToken))).code, path.name).toBe(
        Code.PermissionDenied,
      );
      expect(await stored(userId), path.name).toBe(1);
    }
  });
});

describe("over mutual TLS", () => {
  let paths: Path[] = [];
  beforeAll(async () => {
    paths = await pathsTo(ca.cert, { ca: ca.cert, cert: certWriter.cert, key: certWriter.key });
  });

  it("takes the client certificate as the credential, with its cert: line's scope", async () => {
    for (const path of paths) {
      const userId = uniqueUserId();
      expect((await path.upsert(userId)).code, path.name).toBe(OK);
      expect(await path.deleteByUser(userId), path.name).toEqual({
        code: Code.PermissionDenied,
        message: "the caller's scope (write) does not allow DeleteByUser, which needs admin",
      });
      expect(await stored(userId), path.name).toBe(1);
    }
  });

  it("with a token too: the same caller gets the lesser scope, another caller none", async () => {
    for (const path of paths) {
      const userId = uniqueUserId();
      // The certificate's caller's own admin token does not lift it above write.
      expect((await path.upsert(userId, bearer(certCallerAdminToken))).code, path.name).toBe(OK);
      expect((await path.deleteByUser(userId, bearer(certCallerAdminToken))).code, path.name).toBe(
        Code.PermissionDenied,
      );
      expect(await path.deleteByUser(userId, bearer(writerToken)), path.name).toEqual({
        code: Code.Unauthenticated,
        message: "the bearer token and the client certificate belong to different callers",
      });
      expect(await stored(userId), path.name).toBe(1);
    }
  });

  it("refuses grpc-js in the handshake without a client certificate, token or not", async () => {
    const server = servers.at(-2);
    if (!server) throw new Error("no mutual TLS server");
    const bare = createGrpcJsClient(server.port, { ca: ca.cert });
    grpcJsClients.push(bare);
    const userId = uniqueUserId();
    const seen = await grpcJsPath("grpc-js without a certificate", bare).upsert(
      userId,
      bearer(writerToken),
    );
    expect(seen.code).toBe(Code.Unavailable);
    expect(await stored(userId)).toBe(0);
  });
});
