import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AnySchema, anyUnpack, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import {
  GetRequestSchema,
  GetResponseSchema,
  SessionStoreService,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { type CallPolicy, OK } from "../../src/pipeline/call.js";
import { createPipeline } from "../../src/pipeline/pipeline.js";
import { createServer } from "../../src/server.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientKind, type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { recordingPolicy } from "../support/recording-policy.js";
import {
  createGrpcJsClient,
  type GrpcJsClient,
  type RunningServer,
  startTestServer,
} from "../support/test-server.js";

/** The header that makes the test policy reject a call. */
const MARKER = "x-test-reject";
const REJECTION = "rejected by the test policy";
/** What the rejection carries in its status details. */
const DETAIL = "marker-detail";

/** A test-only policy: rejects calls carrying the marker, with details. */
const markerPolicy: CallPolicy = {
  name: "marker",
  begin(call) {
    if (call.headers.get(MARKER) === "yes") {
      throw new ConnectError(REJECTION, Code.PermissionDenied, undefined, [
        { desc: StringValueSchema, value: { value: DETAIL } },
      ]);
    }
    return undefined;
  },
};

const recording = recordingPolicy();
let store: MemorySessionStore;
let running: RunningServer;
let connectNodeOnly: RunningServer;
let pool: ClientPool;
let connectNodeOnlyPool: ClientPool;
let grpcJs: GrpcJsClient;

beforeAll(async () => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, { policies: [recording, markerPolicy] });
  connectNodeOnly = await startTestServer(store, {
    policies: [recording, markerPolicy],
    grpcFastPath: false,
  });
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

/** What a call ended with, as one client saw it. */
interface Seen {
  readonly code: Code | typeof OK;
  readonly message: string;
  readonly details: string[];
}

async function viaConnect(transport: Transport, marked: boolean, userId: string): Promise<Seen> {
  const client = createClient(SessionStoreService, transport);
  const headers = marked ? { [MARKER]: "yes" } : {};
  try {
    await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) }, { headers });
    return { code: OK, message: "", details: [] };
  } catch (error) {
    const e = ConnectError.from(error);
    return {
      code: e.code,
      message: e.rawMessage,
      details: e.findDetails(StringValueSchema).map((d) => d.value),
    };
  }
}

/** The StringValue details of a grpc-status-details-bin value (a google.rpc.Status). */
function detailsOf(statusDetailsBin: Uint8Array): string[] {
  const reader = new BinaryReader(statusDetailsBin);
  const found: string[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3) {
      const detail = anyUnpack(fromBinary(AnySchema, reader.bytes()), StringValueSchema);
      if (detail) found.push(detail.value);
    } else {
      reader.skip(wireType);
    }
  }
  return found;
}

async function viaGrpcJs(marked: boolean, userId: string): Promise<Seen> {
  const metadata = new grpc.Metadata();
  if (marked) metadata.set(MARKER, "yes");
  try {
    await grpcJs.call(
      "Upsert",
      { session: { id: "s", userId }, ttl: { seconds: "60" } },
      { metadata },
    );
    return { code: OK, message: "", details: [] };
  } catch (error) {
    const e = error as grpc.ServiceError;
    const [bin] = e.metadata.get("grpc-status-details-bin");
    return {
      code: e.code as number as Code,
      message: e.details,
      details: bin instanceof Buffer ? detailsOf(bin) : [],
    };
  }
}

/** gRPC-Web's text variant, which no connect client speaks: a Get by hand over fetch or HTTP/2. */
async function viaGrpcWebText(
  httpVersion: "1.1" | "2",
  marked: boolean,
  userId: string,
): Promise<Seen> {
  const message = toBinary(GetRequestSchema, create(GetRequestSchema, { sessionId: "s", userId }));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  const headers: Record<string, string> = {
    "content-type": "application/grpc-web-text",
    "x-grpc-web": "1",
    ...(marked ? { [MARKER]: "yes" } : {}),
  };
  const body = frame.toString("base64");
  const { contentType, text } =
    httpVersion === "1.1"
      ? await fetch(`${running.baseUrl}/${SessionStoreService.typeName}/Get`, {
          method: "POST",
          headers,
          body,
        }).then(async (r) => ({ contentType: r.headers.get("content-type"), text: await r.text() }))
      : await http2Post(`/${SessionStoreService.typeName}/Get`, headers, body);
  expect(contentType).toBe("application/grpc-web-text+proto");
  const bytes = Buffer.from(text, "base64");
  let status: Seen = { code: Code.Internal, message: "no trailer", details: [] };
  for (let pos = 0; pos + 5 <= bytes.length; ) {
    const end = pos + 5 + bytes.readUInt32BE(pos + 1);
    const data = bytes.subarray(pos + 5, end);
    if ((bytes[pos] as number) & 0x80) {
      const trailer = Object.fromEntries(
        data
          .toString("latin1")
          .split("\r\n")
          .filter(Boolean)
          .map((line) => {
            const colon = line.indexOf(":");
            return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
          }),
      );
      const bin = trailer["grpc-status-details-bin"];
      status = {
        code: Number(trailer["grpc-status"]) as Code,
        message: decodeURIComponent(trailer["grpc-message"] ?? ""),
        details: bin ? detailsOf(Buffer.from(bin, "base64")) : [],
      };
    } else {
      fromBinary(GetResponseSchema, data);
    }
    pos = end;
  }
  return status;
}

function http2Post(
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ contentType: string | null; text: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(running.baseUrl);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    let contentType: string | null = null;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      contentType = String(h["content-type"]);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      session.close();
      resolve({ contentType, text: Buffer.concat(chunks).toString("latin1") });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

/** How one path is reached, and what an unmarked call through it ends with. */
type CallVia = (marked: boolean, userId: string) => Promise<Seen>;

const connectClients: [string, ClientKind, string][] = [
  ["gRPC", { protocol: "grpc" }, "fast-path"],
  ["gRPC with gzip compression", { protocol: "grpc", gzip: true }, "connect-node"],
  ["gRPC-Web binary over HTTP/2", { protocol: "grpc-web" }, "fast-path"],
  ["gRPC-Web binary over HTTP/1.1", { protocol: "grpc-web", httpVersion: "1.1" }, "connect-node"],
  [
    "gRPC-Web JSON over HTTP/1.1",
    { protocol: "grpc-web", binary: false, httpVersion: "1.1" },
    "connect-node",
  ],
  ["Connect binary over HTTP/2", { protocol: "connect" }, "fast-path"],
  ["Connect JSON over HTTP/2", { protocol: "connect", binary: false }, "fast-path"],
  ["Connect binary over HTTP/1.1", { protocol: "connect", httpVersion: "1.1" }, "connect-node"],
  [
    "Connect JSON over HTTP/1.1",
    { protocol: "connect", binary: false, httpVersion: "1.1" },
    "connect-node",
  ],
];

// The connect and grpc-js clients upsert (OK); the hand-made gRPC-Web text
// call is a Get of a session that does not exist (NOT_FOUND).
const paths: [string, CallVia, string, Code | typeof OK][] = [
  ...connectClients.map(([name, kind, transport]): [string, CallVia, string, typeof OK] => [
    `${name} (connect-node client)`,
    (marked, userId) => viaConnect(pool.transport(kind), marked, userId),
    transport,
    OK,
  ]),
  ["gRPC (@grpc/grpc-js client)", viaGrpcJs, "fast-path", OK],
  [
    "gRPC-Web text over HTTP/1.1",
    (m, u) => viaGrpcWebText("1.1", m, u),
    "connect-node",
    Code.NotFound,
  ],
  ["gRPC-Web text over HTTP/2", (m, u) => viaGrpcWebText("2", m, u), "connect-node", Code.NotFound],
  [
    "gRPC with the fast path off",
    (marked, userId) =>
      viaConnect(connectNodeOnlyPool.transport({ protocol: "grpc" }), marked, userId),
    "connect-node",
    OK,
  ],
];

describe.each(paths)("a policy of the pipeline, on %s", (_name, callVia, transport, unmarked) => {
  it("rejects a marked call with its status, message and details, before the handler runs", async () => {
    const userId = uniqueUserId();
    const seen = recording.since();
    const rejected = await callVia(true, userId);
    expect(rejected).toEqual({
      code: Code.PermissionDenied,
      message: REJECTION,
      details: [DETAIL],
    });
    // The handler never ran: nothing was stored (checked without the marker).
    expect(await store.get(userId, "s")).toBeUndefined();
    // The policy hears of the end once the response is out, so maybe after the client.
    await expect.poll(() => seen()[0]).toMatchObject({ transport, code: Code.PermissionDenied });
  });

  it("lets an unmarked call through and is told its final status", async () => {
    const userId = uniqueUserId();
    const seen = recording.since();
    expect((await callVia(false, userId)).code).toBe(unmarked);
    await expect.poll(() => seen()[0]).toMatchObject({ transport, code: unmarked });
  });
});

describe("a policy of the pipeline, on the standard services", () => {
  const marked = { headers: { [MARKER]: "yes" } };

  it("rejects health Check and Watch calls over gRPC, gRPC-Web and Connect", async () => {
    for (const kind of [
      { protocol: "grpc" },
      { protocol: "grpc-web" },
      { protocol: "connect" },
      { protocol: "connect", httpVersion: "1.1", binary: false },
    ] satisfies ClientKind[]) {
      const health = createClient(Health, pool.transport(kind));
      expect((await health.check({ service: "" })).status).toBe(1);
      const check = await health.check({ service: "" }, marked).catch(ConnectError.from);
      expect(check).toMatchObject({ code: Code.PermissionDenied, rawMessage: REJECTION });
      const watch = health.watch({ service: "" }, marked);
      const watched = await watch[Symbol.asyncIterator]().next().catch(ConnectError.from);
      expect(watched).toMatchObject({ code: Code.PermissionDenied, rawMessage: REJECTION });
    }
  });

  it("rejects reflection streams", async () => {
    const reflection = createClient(ServerReflection, pool.transport({ protocol: "grpc" }));
    async function* request() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    }
    const seen = recording.since();
    const open = reflection.serverReflectionInfo(request());
    const first = await open[Symbol.asyncIterator]().next();
    expect(first.done).toBe(false);
    const rejected = await reflection
      .serverReflectionInfo(request(), marked)
      [Symbol.asyncIterator]()
      .next()
      .catch(ConnectError.from);
    expect(rejected).toMatchObject({ code: Code.PermissionDenied, rawMessage: REJECTION });
    await expect
      .poll(() => seen().map((c) => [c.procedure, c.code]))
      .toEqual([
        ["grpc.reflection.v1.ServerReflection/ServerReflectionInfo", OK],
        ["grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Code.PermissionDenied],
      ]);
  });
});

describe("the pipeline", () => {
  const logger = createLogger("silent");

  it("refuses at startup a policy that a transport cannot run, naming both", () => {
    const needsCertificate: CallPolicy = {
      name: "mtls",
      requires: ["peer-certificate"],
      begin: () => undefined,
    };
    expect(() =>
      createServer({
        store,
        logger,
        maxTtlSeconds: 60,
        maxPayloadBytes: 1024,
        maxRequestBytes: 1024,
        policies: [needsCertificate],
      }),
    ).toThrow(
      "the mtls policy needs peer-certificate, which the connect-node transport cannot provide",
    );
    const onlyOne = {
      name: "tls-terminating",
      provides: new Set(["peer-certificate"] as const),
    };
    expect(() =>
      createPipeline({
        policies: [needsCertificate],
        transports: [onlyOne, { name: "fast-path", provides: new Set() }],
        logger,
      }),
    ).toThrow("which the fast-path transport cannot provide");
    expect(
      createPipeline({ policies: [needsCertificate], transports: [onlyOne], logger }).policies,
    ).toEqual([needsCertificate]);
  });
});
