import { createHash, randomBytes } from "node:crypto";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { OK } from "../../src/pipeline/call.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { type Outcome, outcome } from "../support/outcome.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

/**
 * Bearer-token authentication and scopes, tried on every path a call can
 * take: the gRPC fast path (connect and grpc-js clients), connect-node's
 * gRPC (fast path off), gRPC-Web and Connect over HTTP/2 and HTTP/1.1.
 * Each attempt to get around a control must fail the same way on each, and
 * a refused write must change nothing.
 */

const token = () => randomBytes(24).toString("base64url");
const readerToken = token();
const writerToken = token();
const adminToken = token();
const TOKENS_FILE = [
  "# name   scope  token",
  `reader   read   ${readerToken}`,
  // Only the digest of the writer's token is in the file.
  `writer   write  sha256:${createHash("sha256").update(writerToken).digest("hex")}`,
  `admin    admin  ${adminToken}`,
  "",
].join("\n");

const credentials = Credentials.parse(TOKENS_FILE);

let store: MemorySessionStore;
let running: RunningServer;
let connectNodeOnly: RunningServer;
let pool: ClientPool;
let connectNodeOnlyPool: ClientPool;
let grpcJs: GrpcJsClient;

beforeAll(async () => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, { credentials });
  connectNodeOnly = await startTestServer(store, { credentials, grpcFastPath: false });
  pool = clientPool(running.baseUrl);
  connectNodeOnlyPool = clientPool(connectNodeOnly.baseUrl);
  grpcJs = createGrpcJsClient(running.port);
});

afterAll(async () => {
  pool?.close();
  connectNodeOnlyPool?.close();
  grpcJs?.close();
  await running?.stop();
  await connectNodeOnly?.stop();
  await store?.close();
});

/** A way to call the service: one protocol and path, with an optional authorization header. */
interface Path {
  readonly name: string;
  upsert(userId: string, authorization: string | undefined): Promise<Outcome>;
  deleteByUser(userId: string, authorization: string | undefined): Promise<Outcome>;
  get(userId: string, authorization: string | undefined): Promise<Outcome>;
  refresh(userId: string, authorization: string | undefined): Promise<Outcome>;
}

/** The Refresh every path sends: of session "s", which the tests never give this token. */
const REFRESH = {
  sessionId: "s",
  presentedRefreshTokenId: "rt-presented",
  newRefreshTokenId: "rt-next",
};

function connectPath(name: string, transport: () => Transport): Path {
  const client = () => createClient(SessionStoreService, transport());
  const headers = (authorization: string | undefined) =>
    authorization === undefined ? {} : { headers: { authorization } };
  return {
    name,
    upsert: (userId, auth) =>
      outcome(() =>
        client().upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }, headers(auth)),
      ),
    deleteByUser: (userId, auth) => outcome(() => client().deleteByUser({ userId }, headers(auth))),
    get: (userId, auth) => outcome(() => client().get({ sessionId: "s", userId }, headers(auth))),
    refresh: (userId, auth) =>
      outcome(() => client().refresh({ ...REFRESH, userId, ttl: ttl(60_000) }, headers(auth))),
  };
}

const grpcJsPath: Path = {
  name: "gRPC fast path, grpc-js client",
  upsert: (userId, auth) =>
    outcome(() =>
      grpcJs.call(
        "Upsert",
        {
          session: {
            id: "s",
            userId,
            refreshTokenId: "rt",
            createdAt: { seconds: Math.floor(Date.now() / 1000) },
            refreshedAt: { seconds: Math.floor(Date.now() / 1000) },
          },
          ttl: { seconds: 60 },
        },
        { metadata: metadataOf(auth) },
      ),
    ),
  deleteByUser: (userId, auth) =>
    outcome(() => grpcJs.call("DeleteByUser", { userId }, { metadata: metadataOf(auth) })),
  get: (userId, auth) =>
    outcome(() => grpcJs.call("Get", { sessionId: "s", userId }, { metadata: metadataOf(auth) })),
  refresh: (userId, auth) =>
    outcome(() =>
      grpcJs.call(
        "Refresh",
        { ...REFRESH, userId, ttl: { seconds: 60 } },
        { metadata: metadataOf(auth) },
      ),
    ),
};

function metadataOf(authorization: string | undefined): Metadata {
  const metadata = new Metadata();
  if (authorization !== undefined) metadata.set("authorization", authorization);
  return metadata;
}

const KINDS: [string, ClientKind][] = [
  ["gRPC fast path, connect client", { protocol: "grpc" }],
  ["gRPC-Web, HTTP/2", { protocol: "grpc-web" }],
  ["gRPC-Web, HTTP/1.1", { protocol: "grpc-web", httpVersion: "1.1" }],
  ["Connect binary, HTTP/2", { protocol: "connect" }],
  ["Connect JSON, HTTP/1.1", { protocol: "connect", binary: false, httpVersion: "1.1" }],
];

const PATHS: Path[] = [
  grpcJsPath,
  ...KINDS.map(([name, kind]) => connectPath(name, () => pool.transport(kind))),
  connectPath("gRPC on connect-node (fast path off)", () =>
    connectNodeOnlyPool.transport({ protocol: "grpc" }),
  ),
];

const bearer = (secret: string) => `Bearer ${secret}`;

/** Whether the user has the session the attempts try to write, read by the admin. */
async function stored(userId: string): Promise<boolean> {
  return (await store.listByUser(userId, { after: undefined, limit: 10 })).sessions.length > 0;
}

describe.each(PATHS)("$name", (path) => {
  it("refuses a call without credentials: UNAUTHENTICATED, nothing written", async () => {
    const userId = uniqueUserId();
    const seen = await path.upsert(userId, undefined);
    expect(seen.code).toBe(Code.Unauthenticated);
    expect(seen.message).toBe("missing credentials: send 'authorization: Bearer <token>'");
    expect(await stored(userId)).toBe(false);
  });

  it("refuses unknown and malformed credentials without repeating them", async () => {
    const userId = uniqueUserId();
    const guess = token();
    const attempts: [string, string][] = [
      [bearer(guess), "unknown bearer token"],
      // A token one character off a real one is as unknown as any other.
      [
        bearer(`${adminToken.slice(0, -1)}${adminToken.endsWith("A") ? "B" : "A"}`),
        "unknown bearer token",
      ],
      // The hash in the file is not itself a credential.
      [bearer(createHash("sha256").update(writerToken).digest("hex")), "unknown bearer token"],
      [
        `Basic ${Buffer.from(`admin:${adminToken}`).toString("base64")}`,
        "malformed authorization header: expected 'Bearer <token>'",
      ],
      [adminToken, "malformed authorization header: expected 'Bearer <token>'"],
      ["Bearer", "malformed authorization header: expected 'Bearer <token>'"],
    ];
    for (const [authorization, message] of attempts) {
      const seen = await path.upsert(userId, authorization);
      expect(seen, authorization.slice(0, 12)).toEqual({ code: Code.Unauthenticated, message });
    }
    expect(await stored(userId)).toBe(false);
  });

  it("lets each scope do exactly what it allows", async () => {
    const userId = uniqueUserId();
    // read: Get passes auth (NOT_FOUND: no such session yet), Upsert does not.
    expect((await path.get(userId, bearer(readerToken))).code).toBe(Code.NotFound);
    const readUpsert = await path.upsert(userId, bearer(readerToken));
    expect(readUpsert).toEqual({
      code: Code.PermissionDenied,
      message: "the caller's scope (read) does not allow Upsert, which needs write",
    });
    expect(await stored(userId)).toBe(false);
    // Refresh needs write as well (then NOT_FOUND: no such session yet).
    expect(await path.refresh(userId, bearer(readerToken))).toEqual({
      code: Code.PermissionDenied,
      message: "the caller's scope (read) does not allow Refresh, which needs write",
    });
    expect((await path.refresh(userId, bearer(writerToken))).code).toBe(Code.NotFound);
    // write (by the digest in the file): Upsert, but not DeleteByUser.
    expect((await path.upsert(userId, bearer(writerToken))).code).toBe(OK);
    expect((await path.get(userId, bearer(readerToken))).code).toBe(OK);
    expect(await path.deleteByUser(userId, bearer(writerToken))).toEqual({
      code: Code.PermissionDenied,
      message: "the caller's scope (write) does not allow DeleteByUser, which needs admin",
    });
    expect(await stored(userId)).toBe(true);
    // admin: everything.
    expect((await path.deleteByUser(userId, bearer(adminToken))).code).toBe(OK);
    expect(await stored(userId)).toBe(false);
  });

  it("accepts the scheme in any case, as HTTP does", async () => {
    const userId = uniqueUserId();
    expect((await path.upsert(userId, `bearer ${writerToken}`)).code).toBe(OK);
    expect((await path.upsert(userId, `BEARER ${writerToken}`)).code).toBe(OK);
  });
});

describe("health and reflection", () => {
  it("leaves health open: probes send no token", async () => {
    for (const kind of KINDS.map(([, k]) => k)) {
      const health = createClient(Health, pool.transport(kind));
      const { status } = await health.check({ service: "" });
      expect(status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  it("asks reflection callers for credentials by default, any scope", async () => {
    const reflection = createClient(ServerReflection, pool.transport({ protocol: "grpc" }));
    const list = (headers: Record<string, string>) =>
      outcome(async () => {
        for await (const response of reflection.serverReflectionInfo(
          (async function* () {
            yield { messageRequest: { case: "listServices", value: "" } };
          })(),
          { headers },
        )) {
          return response;
        }
      });
    expect((await list({})).code).toBe(Code.Unauthenticated);
    expect((await list({ authorization: bearer(token()) })).code).toBe(Code.Unauthenticated);
    expect((await list({ authorization: bearer(readerToken) })).code).toBe(OK);
  });

  it("counts refusals by reason and names callers, never tokens, in metrics and logs", async () => {
    const userId = uniqueUserId();
    const client = pool.sessions({ protocol: "grpc" });
    await outcome(() =>
      client.get({ sessionId: "s", userId }, { headers: { authorization: bearer(readerToken) } }),
    );
    await outcome(() => client.get({ sessionId: "s", userId }));
    const metrics = await running.server.telemetry.registry.metrics();
    expect(metrics).toMatch(
      /sessionstore_auth_failures_total\{reason="missing_credentials"\} [1-9]/,
    );
    expect(metrics).toMatch(/sessionstore_auth_failures_total\{reason="unknown_token"\} [1-9]/);
    expect(metrics).toMatch(/sessionstore_auth_failures_total\{reason="permission_denied"\} [1-9]/);
    expect(metrics).toMatch(
      /sessionstore_rpcs_total\{method="sessionstore.v1.SessionStoreService\/Get",code="NOT_FOUND",caller="reader"\} [1-9]/,
    );
    expect(metrics).toMatch(/caller="anonymous"/);
    const rpcLines = running.logs.lines.filter((line) => line.includes('"msg":"rpc"'));
    expect(rpcLines.some((line) => line.includes('"caller":"reader"'))).toBe(true);
    for (const secret of [readerToken, writerToken, adminToken, userId]) {
      expect(metrics).not.toContain(secret);
      expect(running.logs.text).not.toContain(secret);
    }
  });
});

describe("reflection settings", () => {
  it("serves reflection to anyone when open, and not at all when off", async () => {
    const open = await startTestServer(store, { credentials, reflection: "open" });
    const off = await startTestServer(store, { credentials, reflection: "off" });
    const openPool = clientPool(open.baseUrl);
    const offPool = clientPool(off.baseUrl);
    try {
      const list = (p: ClientPool, headers: Record<string, string> = {}) =>
        outcome(async () => {
          const reflection = createClient(ServerReflection, p.transport({ protocol: "grpc" }));
          for await (const response of reflection.serverReflectionInfo(
            (async function* () {
              yield { messageRequest: { case: "listServices", value: "" } };
            })(),
            { headers },
          )) {
            return response;
          }
        });
      expect((await list(openPool)).code).toBe(OK);
      expect((await list(offPool, { authorization: bearer(adminToken) })).code).toBe(
        Code.Unimplemented,
      );
    } finally {
      openPool.close();
      offPool.close();
      await open.stop();
      await off.stop();
    }
  });

  it("asks health callers for credentials too with healthAuth", async () => {
    const guarded = await startTestServer(store, { credentials, healthAuth: true });
    const guardedPool = clientPool(guarded.baseUrl);
    try {
      const health = createClient(Health, guardedPool.transport({ protocol: "grpc" }));
      expect((await outcome(() => health.check({ service: "" }))).code).toBe(Code.Unauthenticated);
      const withToken = await outcome(() =>
        health.check({ service: "" }, { headers: { authorization: bearer(readerToken) } }),
      );
      expect(withToken.code).toBe(OK);
    } finally {
      guardedPool.close();
      await guarded.stop();
    }
  });
});
