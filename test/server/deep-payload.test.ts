import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PAYLOAD_DEPTH } from "../../src/service/validate.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { nestedLists, nestedObjects } from "../support/deep-payload.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { outcome } from "../support/outcome.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

// extra_payload's nesting limit on every protocol and both gRPC paths: at
// the limit a session is stored and every client reads it back as sent;
// one level deeper, and far deeper than the decoders' own limit of 100,
// every protocol answers the same INVALID_ARGUMENT naming the field and
// nothing is written. (Python grpcio reads it back in python-client.test.ts.)

let store: MemorySessionStore;
let fast: RunningServer;
let connectNode: RunningServer;
let pool: ClientPool;
let grpcJs: GrpcJsClient;

beforeAll(async () => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  fast = await startTestServer(store);
  connectNode = await startTestServer(store, { grpcFastPath: false });
  pool = clientPool(fast.baseUrl);
  grpcJs = createGrpcJsClient(fast.port);
});

afterAll(async () => {
  pool?.close();
  grpcJs?.close();
  await fast?.stop();
  await connectNode?.stop();
  await store?.close();
});

const KINDS: readonly (ClientKind & { name: string })[] = [
  { name: "gRPC (fast path)", protocol: "grpc" },
  { name: "gRPC gzip (connect-node)", protocol: "grpc", gzip: true },
  { name: "gRPC-Web binary", protocol: "grpc-web" },
  { name: "gRPC-Web JSON", protocol: "grpc-web", binary: false },
  { name: "Connect binary", protocol: "connect" },
  { name: "Connect JSON", protocol: "connect", binary: false },
  { name: "Connect JSON over HTTP/1.1", protocol: "connect", binary: false, httpVersion: "1.1" },
];

const SHAPES = { objects: nestedObjects, lists: nestedLists } as const;
const TOO_DEEP = `session.extra_payload must nest at most ${MAX_PAYLOAD_DEPTH} levels deep`;

describe(`an extra_payload ${MAX_PAYLOAD_DEPTH} levels deep (the maximum)`, () => {
  for (const [shape, build] of Object.entries(SHAPES)) {
    it(`of nested ${shape} is stored by every protocol and read back as sent by every client`, async () => {
      const userId = uniqueUserId();
      const payload = build(MAX_PAYLOAD_DEPTH);
      for (const [i, kind] of KINDS.entries()) {
        const sessions = pool.sessions(kind);
        const stored = await sessions.upsert({
          session: sessionFixture(userId, `s${i}`, { extraPayload: payload }),
          ttl: ttl(60_000),
        });
        expect(stored.session?.extraPayload, kind.name).toEqual(payload);
      }
      for (const kind of KINDS) {
        const { sessions } = await pool.sessions(kind).listByUser({ userId });
        expect(
          sessions.map((s) => s.extraPayload),
          kind.name,
        ).toEqual(KINDS.map(() => payload));
        const got = await pool.sessions(kind).get({ sessionId: "s0", userId });
        expect(got.session?.extraPayload, kind.name).toEqual(payload);
      }
      // grpc-js with protobuf.js, an independent codec, sees the same payload.
      const got = await grpcJs.call<{ session: { extraPayload: unknown } }>("Get", {
        sessionId: "s0",
        userId,
      });
      expect(protobufJsStructToJson(got.session.extraPayload)).toEqual(payload);
    });
  }
});

describe("an extra_payload nested deeper", () => {
  // One level over, the decoders' own limit (about 100 message levels
  // whole request, reached at different depths in binary and JSON), and
  // far beyond it.
  for (const depth of [MAX_PAYLOAD_DEPTH + 1, 99, 100, 197, 199, 401]) {
    for (const [shape, build] of Object.entries(SHAPES)) {
      it(`(${depth} levels of ${shape}) is INVALID_ARGUMENT naming the field on every protocol, and nothing is written`, async () => {
        const userId = uniqueUserId();
        const payload = build(depth);
        const servers = { "fast path on": fast, "fast path off": connectNode };
        for (const [serverName, server] of Object.entries(servers)) {
          const serverPool = clientPool(server.baseUrl);
          try {
            for (const kind of KINDS) {
              const result = await outcome(() =>
                serverPool.sessions(kind).upsert({
                  session: sessionFixture(userId, "s", { extraPayload: payload }),
                  ttl: ttl(60_000),
                }),
              );
              expect(result, `${kind.name}, ${serverName}`).toEqual({
                code: Code.InvalidArgument,
                message: TOO_DEEP,
              });
            }
          } finally {
            serverPool.close();
          }
        }
        // protobuf.js refuses to encode 100 levels or more itself.
        if (depth < 100) {
          const grpcJsResult = await outcome(() =>
            grpcJs.call("Upsert", {
              session: { id: "s", userId, extraPayload: jsonToProtobufJsStruct(payload) },
              ttl: { seconds: 60 },
            }),
          );
          expect(grpcJsResult).toEqual({ code: Code.InvalidArgument, message: TOO_DEEP });
        }
        const page = await store.listByUser(userId, { after: undefined, limit: 10 });
        expect(page.sessions).toEqual([]);
      });
    }
  }
});

/** protobuf.js (proto-loader) Struct objects, as grpc-js sends and receives them. */
type PbjsValue = {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, PbjsValue> };
  listValue?: { values?: PbjsValue[] };
  kind?: string;
};

function protobufJsStructToJson(struct: unknown): JsonObject {
  const fields = (struct as { fields?: Record<string, PbjsValue> }).fields ?? {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, protobufJsValueToJson(v)]));
}

function protobufJsValueToJson(value: PbjsValue): JsonObject[string] {
  switch (value.kind) {
    case "structValue":
      return protobufJsStructToJson(value.structValue);
    case "listValue":
      return (value.listValue?.values ?? []).map(protobufJsValueToJson);
    case "numberValue":
      return value.numberValue as number;
    case "stringValue":
      return value.stringValue as string;
    case "boolValue":
      return value.boolValue as boolean;
    default:
      return null;
  }
}

function jsonToProtobufJsStruct(json: JsonObject): { fields: Record<string, PbjsValue> } {
  return {
    fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, jsonToProtobufJsValue(v)])),
  };
}

function jsonToProtobufJsValue(json: JsonObject[string]): PbjsValue {
  if (json === null) return { nullValue: 0 };
  if (Array.isArray(json)) return { listValue: { values: json.map(jsonToProtobufJsValue) } };
  switch (typeof json) {
    case "number":
      return { numberValue: json };
    case "string":
      return { stringValue: json };
    case "boolean":
      return { boolValue: json };
    default:
      return { structValue: jsonToProtobufJsStruct(json as JsonObject) };
  }
}
