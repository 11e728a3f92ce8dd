import { randomBytes } from "node:crypto";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { errorInfo, errorReason, SESSIONSTORE_ERROR_DOMAIN } from "@sessionstore/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { ERROR_DOMAIN, REASONS, type Reason } from "../../src/error-info.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MAX_PAYLOAD_DEPTH } from "../../src/service/validate.js";
import { NotReplicatedError, StoreUnavailableError } from "../../src/store/errors.js";
import type { StoreSignal, UpsertInput } from "../../src/store/session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { nestedObjects } from "../support/deep-payload.js";
import {
  decodeGrpcStatus,
  expectedErrorInfo,
  plainErrorInfo,
  type SeenErrorInfo,
} from "../support/error-info.js";
import { sessionFixture } from "../support/fixtures.js";
import { HangingStore } from "../support/hanging-store.js";
import { uniqueUserId } from "../support/ids.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

/**
 * Every error carries one google.rpc.ErrorInfo (domain "sessionstore", the
 * reason, metadata naming the field or limit), whichever path serves the
 * call: the gRPC fast path, connect-node's gRPC, gRPC-Web, Connect binary
 * and Connect JSON. Read with grpc-js (grpc-status-details-bin decoded as a
 * google.rpc.Status by a reader of the test's own) and with connect clients
 * (findDetails, and the client package's errorReason and errorInfo).
 */

const token = () => randomBytes(24).toString("base64url");
const adminToken = token();
const readerToken = token();
const limitedToken = token();
const credentials = Credentials.parse(
  [
    `admin    admin  ${adminToken}`,
    `reader   read   ${readerToken}`,
    // One call an hour: the second call of every test is refused.
    `limited  admin  ${limitedToken}  1/h,burst=1`,
    "",
  ].join("\n"),
);
const MAX_REQUEST_BYTES = 128 * 1024;
const MAX_PAYLOAD_BYTES = 65_536;
const MAX_TTL_SECONDS = 34_560_000;
const MAX_DEADLINE_MS = 1000;

/**
 * The memory store, failing as Redis can for marked session ids: a Get of
 * "unavailable" as when Redis cannot be reached, an Upsert of
 * "not-replicated" as when replicas did not acknowledge the write; and a
 * Get of "hang" waits for its signal (see HangingStore).
 */
class FailingStore extends HangingStore {
  override get(userId: string, sessionId: string, signal?: AbortSignal) {
    if (sessionId === "unavailable") {
      return Promise.reject(new StoreUnavailableError(new Error("connect ECONNREFUSED")));
    }
    return super.get(userId, sessionId, signal);
  }

  override upsert(input: UpsertInput, signal?: StoreSignal) {
    if (input.sessionId === "not-replicated") return Promise.reject(new NotReplicatedError(0, 1));
    return super.upsert(input, signal);
  }
}

/** What a failed call carried, as one client read it. */
interface Seen {
  readonly code: Code;
  readonly message: string;
  readonly errorInfos: SeenErrorInfo[];
}

type Methods = typeof SessionStoreService.method;
type UnaryName = "get" | "upsert" | "touch" | "delete" | "listByUser" | "deleteByUser" | "refresh";
type RequestOf<M extends UnaryName> = MessageInitShape<Methods[M]["input"]>;

/** One way of calling the service: a client stack and the server path it reaches. */
interface CallPath {
  readonly name: string;
  /**
   * False for grpc-js calling connect-node: a call connect-node answers
   * before reading its body (a rejection by a policy, a request over
   * MAX_REQUEST_BYTES) reaches grpc-js as INTERNAL "Received RST_STREAM with
   * code 0", status and details unread, before and after this change (see
   * writeResponse in connect-node-transport.ts). The connect client reads
   * those answers on that path.
   */
  readonly readsEarlyAnswers: boolean;
  call<M extends UnaryName>(method: M, request: RequestOf<M>, bearer?: string): Promise<Seen>;
}

let store: FailingStore;
let running: RunningServer;
let connectNodeOnly: RunningServer;
let pool: ClientPool;
let connectNodeOnlyPool: ClientPool;
const grpcJsClients: grpc.Client[] = [];

const LIMITS = {
  maxRequestBytes: MAX_REQUEST_BYTES,
  credentials,
  limits: { maxDeadlineMs: MAX_DEADLINE_MS },
} as const;

beforeAll(async () => {
  store = new FailingStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, LIMITS);
  connectNodeOnly = await startTestServer(store, { ...LIMITS, grpcFastPath: false });
  pool = clientPool(running.baseUrl);
  connectNodeOnlyPool = clientPool(connectNodeOnly.baseUrl);
});

afterAll(async () => {
  pool?.close();
  connectNodeOnlyPool?.close();
  for (const client of grpcJsClients) client.close();
  await running?.stop();
  await connectNodeOnly?.stop();
  await store?.close();
});

/**
 * What a grpc-js error carried. grpc-status-details-bin is a google.rpc.Status
 * that repeats the code and the message: its message is the one to show, as
 * grpc-js decodes grpc-message with decodeURI, which leaves a ":" that
 * connect-node percent-encoded as "%3A".
 */
function seenByGrpcJs(error: grpc.ServiceError): Seen {
  const bin = error.metadata.get("grpc-status-details-bin");
  expect(bin, `one grpc-status-details-bin: ${error.code} ${error.details}`).toHaveLength(1);
  const status = decodeGrpcStatus(bin[0] as Buffer);
  expect(status.code).toBe(error.code);
  expect(status.message).toBe(decodeURIComponent(error.details));
  return {
    code: error.code as number as Code,
    message: status.message,
    errorInfos: status.errorInfos,
  };
}

/**
 * A grpc-js client of `port`'s SessionStoreService, with protobuf-es as its
 * codec: grpc-js reads the status, the message and grpc-status-details-bin.
 */
function grpcJsPath(name: string, port: () => number, readsEarlyAnswers: boolean): CallPath {
  let client: grpc.Client | undefined;
  return {
    name,
    readsEarlyAnswers,
    call(method, request, bearer = adminToken) {
      client ??= new grpc.Client(`127.0.0.1:${port()}`, grpc.credentials.createInsecure());
      if (!grpcJsClients.includes(client)) grpcJsClients.push(client);
      const desc = SessionStoreService.method[method];
      const input: DescMessage = desc.input;
      const output: DescMessage = desc.output;
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${bearer}`);
      const open = client;
      return new Promise<Seen>((resolve, reject) => {
        open.makeUnaryRequest(
          `/${SessionStoreService.typeName}/${desc.name}`,
          (message: typeof request) =>
            Buffer.from(toBinary(input, create(input, message as never))),
          (bytes: Buffer) => fromBinary(output, bytes),
          request,
          metadata,
          { deadline: Date.now() + 5000 },
          (error: grpc.ServiceError | null) => {
            if (!error) return reject(new Error(`${method} succeeded`));
            try {
              resolve(seenByGrpcJs(error));
            } catch (failed) {
              reject(failed);
            }
          },
        );
      });
    },
  };
}

/** A connect-node client of the server's port, reading details with findDetails and the client package. */
function connectPath(name: string, kind: ClientKind, clients = () => pool): CallPath {
  return {
    name,
    readsEarlyAnswers: true,
    async call(method, request, bearer = adminToken) {
      const client = clients().sessions(kind);
      const headers = { authorization: `Bearer ${bearer}` };
      try {
        await (client[method] as (r: RequestOf<typeof method>, o: object) => Promise<unknown>)(
          request,
          { headers, timeoutMs: 5000 },
        );
      } catch (error) {
        expect(error).toBeInstanceOf(ConnectError);
        const e = error as ConnectError;
        const errorInfos = e.findDetails(ErrorInfoSchema).map(plainErrorInfo);
        // The client package's helpers read the same.
        const own = errorInfos.find((info) => info.domain === SESSIONSTORE_ERROR_DOMAIN);
        expect(errorReason(e)).toBe(own?.reason);
        expect(errorInfo(e)).toEqual(own && { reason: own.reason, metadata: own.metadata });
        return { code: e.code, message: e.rawMessage, errorInfos };
      }
      throw new Error(`${method} succeeded`);
    },
  };
}

const PATHS: readonly CallPath[] = [
  grpcJsPath("gRPC fast path, grpc-js", () => running.port, true),
  grpcJsPath("gRPC connect-node, grpc-js", () => connectNodeOnly.port, false),
  connectPath("gRPC fast path, connect", { protocol: "grpc" }),
  connectPath("gRPC connect-node, connect", { protocol: "grpc" }, () => connectNodeOnlyPool),
  connectPath("gRPC-Web", { protocol: "grpc-web" }),
  connectPath("Connect binary", { protocol: "connect" }),
  connectPath("Connect JSON", { protocol: "connect", binary: false }),
];

/** A failing call, made once on each path, and what it must carry. */
interface Case {
  readonly reason: Reason;
  readonly metadata: Record<string, string>;
  /** Runs the call on `path` (with whatever it needs first) and returns what the last call saw. */
  readonly run: (path: CallPath, userId: string) => Promise<Seen>;
  /** Text that must appear in neither the message nor the metadata (a secret or an id). */
  readonly secret?: (userId: string) => string;
  /** Answered before the request body is read (see CallPath.readsEarlyAnswers). */
  readonly early?: true;
}

const ttl = (seconds: number) => ({ seconds: BigInt(seconds), nanos: 0 });

/** Stores session "s" of `userId` (version 1) through the server. */
async function seed(userId: string): Promise<void> {
  await pool
    .sessions()
    .upsert(
      { session: sessionFixture(userId, "s"), ttl: ttl(60) },
      { headers: { authorization: `Bearer ${adminToken}` } },
    );
}

const CASES: readonly Case[] = [
  {
    reason: "INVALID_FIELD",
    metadata: { field: "session_id" },
    run: (path, userId) => path.call("get", { sessionId: "", userId }),
  },
  {
    reason: "TTL_OUT_OF_RANGE",
    metadata: { field: "ttl", maxSeconds: String(MAX_TTL_SECONDS) },
    run: (path, userId) =>
      path.call("upsert", { session: sessionFixture(userId, "s"), ttl: ttl(MAX_TTL_SECONDS + 1) }),
  },
  {
    reason: "PAYLOAD_TOO_LARGE",
    metadata: {
      field: "session.extra_payload",
      limit: "MAX_PAYLOAD_BYTES",
      maxBytes: String(MAX_PAYLOAD_BYTES),
    },
    run: (path, userId) =>
      path.call("upsert", {
        session: sessionFixture(userId, "s", {
          extraPayload: { blob: "x".repeat(MAX_PAYLOAD_BYTES) },
        }),
        ttl: ttl(60),
      }),
  },
  {
    reason: "PAYLOAD_TOO_DEEP",
    metadata: { field: "session.extra_payload", maxDepth: String(MAX_PAYLOAD_DEPTH) },
    run: (path, userId) =>
      path.call("upsert", {
        session: sessionFixture(userId, "s", {
          extraPayload: nestedObjects(MAX_PAYLOAD_DEPTH + 1),
        }),
        ttl: ttl(60),
      }),
  },
  {
    reason: "EXPIRES_AT_PASSED",
    metadata: { field: "session.expires_at" },
    run: (path, userId) =>
      path.call("upsert", {
        session: sessionFixture(userId, "s", { expiresAt: timestampFromMs(Date.now() - 60_000) }),
        ttl: ttl(60),
      }),
  },
  {
    reason: "SESSION_NOT_FOUND",
    metadata: {},
    run: (path, userId) => path.call("get", { sessionId: "missing-session-id", userId }),
    secret: () => "missing-session-id",
  },
  {
    reason: "SESSION_EXISTS",
    metadata: { field: "expected_version" },
    run: async (path, userId) => {
      await seed(userId);
      return path.call("upsert", {
        session: sessionFixture(userId, "s"),
        ttl: ttl(60),
        expectedVersion: 0n,
      });
    },
  },
  {
    reason: "VERSION_MISMATCH",
    metadata: { field: "expected_version" },
    run: async (path, userId) => {
      await seed(userId);
      return path.call("delete", { sessionId: "s", userId, expectedVersion: 7n });
    },
  },
  {
    reason: "REFRESH_TOKEN_REUSED",
    metadata: { field: "presented_refresh_token_id" },
    run: async (path, userId) => {
      await seed(userId);
      return path.call("refresh", {
        sessionId: "s",
        userId,
        presentedRefreshTokenId: "stolen-refresh-token",
        newRefreshTokenId: "next-refresh-token",
        ttl: ttl(60),
      });
    },
    secret: () => "stolen-refresh-token",
  },
  {
    reason: "REFRESH_STATE_MISSING",
    metadata: {},
    run: async (path, userId) => {
      await pool
        .sessions()
        .upsert(
          { session: sessionFixture(userId, "s", { refreshTokenId: "" }), ttl: ttl(60) },
          { headers: { authorization: `Bearer ${adminToken}` } },
        );
      return path.call("refresh", {
        sessionId: "s",
        userId,
        presentedRefreshTokenId: "some-refresh-token",
        newRefreshTokenId: "next-refresh-token",
        ttl: ttl(60),
      });
    },
  },
  {
    reason: "REQUEST_TOO_LARGE",
    early: true,
    metadata: { limit: "MAX_REQUEST_BYTES", maxBytes: String(MAX_REQUEST_BYTES) },
    run: (path, userId) => path.call("get", { sessionId: "x".repeat(MAX_REQUEST_BYTES), userId }),
  },
  {
    reason: "RATE_LIMITED",
    early: true,
    metadata: {
      limit: "AUTH_TOKENS_FILE",
      rate: "1/h, burst 1",
      retryAfterMs: expect.stringMatching(/^[1-9]\d*$/),
    },
    run: async (path, userId) => {
      // The first call of the caller may pass (it takes the one token).
      await path.call("get", { sessionId: "s", userId }, limitedToken);
      return path.call("get", { sessionId: "s", userId }, limitedToken);
    },
    secret: () => limitedToken,
  },
  {
    reason: "UNAUTHENTICATED",
    early: true,
    metadata: { failure: "unknown_token" },
    run: (path, userId) => path.call("get", { sessionId: "s", userId }, "not-a-known-token"),
    secret: () => "not-a-known-token",
  },
  {
    reason: "PERMISSION_DENIED",
    early: true,
    metadata: { failure: "permission_denied", scope: "write", method: "Upsert" },
    run: (path, userId) =>
      path.call("upsert", { session: sessionFixture(userId, "s"), ttl: ttl(60) }, readerToken),
    secret: () => readerToken,
  },
  {
    reason: "STORE_UNAVAILABLE",
    metadata: {},
    run: (path, userId) => path.call("get", { sessionId: "unavailable", userId }),
  },
  {
    reason: "WRITE_NOT_REPLICATED",
    metadata: { limit: "REDIS_WAIT_REPLICAS", acknowledged: "0", required: "1" },
    run: (path, userId) =>
      path.call("upsert", { session: sessionFixture(userId, "not-replicated"), ttl: ttl(60) }),
  },
  {
    reason: "DEADLINE_EXCEEDED",
    metadata: { limit: "MAX_DEADLINE", maxMs: String(MAX_DEADLINE_MS) },
    // The client allows 5 s; the server's MAX_DEADLINE ends the call first.
    run: (path, userId) => path.call("get", { sessionId: "hang", userId }),
  },
];

describe("every error carries one google.rpc.ErrorInfo on every path", () => {
  // One test per reason; the paths run at once, so the deadline case costs
  // one MAX_DEADLINE, not six.
  it.each(CASES)("$reason", async ({ reason, metadata, run, secret, early }) => {
    const paths = PATHS.filter((path) => !early || path.readsEarlyAnswers);
    const seen = await Promise.all(
      paths.map(async (path) => {
        const userId = uniqueUserId();
        const got = await run(path, userId);
        return { path: path.name, got, userId };
      }),
    );
    for (const { path, got, userId } of seen) {
      expect({ path, code: got.code }).toEqual({ path, code: REASONS[reason] });
      expect({ path, errorInfos: got.errorInfos }).toEqual({
        path,
        errorInfos: [expectedErrorInfo(reason, metadata)],
      });
      const said = got.message + JSON.stringify(got.errorInfos);
      expect(said).not.toContain(userId);
      if (secret) expect(said).not.toContain(secret(userId));
    }
    // Every path words the message alike (but for the rate limit's wait).
    expect(new Set(seen.map(({ got }) => got.message.replace(/\d+ ms/, "N ms"))).size).toBe(1);
  });
});

describe("the client package's errorReason and errorInfo", () => {
  it("read the reason and metadata of a SessionStore error", async () => {
    const sessions = pool.sessions({ protocol: "connect", binary: false });
    const error = await sessions
      .upsert(
        { session: sessionFixture(uniqueUserId(), "s"), ttl: durationFromMs(0) },
        { headers: { authorization: `Bearer ${adminToken}` } },
      )
      .catch((e: unknown) => e);
    expect(errorReason(error)).toBe("TTL_OUT_OF_RANGE");
    expect(errorInfo(error)).toEqual({ reason: "TTL_OUT_OF_RANGE", metadata: { field: "ttl" } });
    expect(SESSIONSTORE_ERROR_DOMAIN).toBe(ERROR_DOMAIN);
  });

  it("are undefined for errors that did not come from SessionStore", async () => {
    // A port nobody listens on: the client's own UNAVAILABLE, without details.
    const closed = createClient(
      SessionStoreService,
      createGrpcTransport({ baseUrl: "http://127.0.0.1:1" }),
    );
    const refused = await closed.get({ sessionId: "s", userId: "u" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectError);
    expect(errorReason(refused)).toBeUndefined();
    expect(errorInfo(refused)).toBeUndefined();
    expect(errorReason(new Error("not a ConnectError"))).toBeUndefined();
    // An ErrorInfo of another domain is not SessionStore's.
    const foreign = new ConnectError("from elsewhere", Code.NotFound, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "SESSION_NOT_FOUND", domain: "example.com" } },
    ]);
    expect(errorReason(foreign)).toBeUndefined();
  });
});
