import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflectionRequestSchema as RequestV1Schema,
  type ServerReflectionResponse as ResponseV1,
  ServerReflection as ServerReflectionV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflectionRequestSchema as RequestV1AlphaSchema,
  type ServerReflectionResponse as ResponseV1Alpha,
  ServerReflection as ServerReflectionV1Alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_health_v1_health } from "../../gen/health/v1/health_pb.js";
import { waitFor } from "../../harness/wait-for.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { errorInfoBase64 } from "../support/error-info.js";
import { uniqueUserId } from "../support/ids.js";
import { recordingPolicy } from "../support/recording-policy.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

const run = promisify(execFile);
const BUF = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));

const SESSION_STORE_PROTO = "sessionstore/v1/session_store.proto";
/** The RPCs of SessionStoreService, in the order the proto declares them. */
const SESSION_STORE_METHODS = [
  "Get",
  "Upsert",
  "Touch",
  "Delete",
  "ListByUser",
  "DeleteByUser",
  "Refresh",
  "WatchUser",
  "WatchSession",
];
const HEALTH_PROTO = file_health_v1_health.proto.name;
/** gRPC's NOT_FOUND, as reflection's error_response carries it. */
const NOT_FOUND = 5;

let store: MemorySessionStore;
let running: RunningServer;
/** One HTTP/2 connection for the typed reflection clients. */
let transport: Transport;
/** Every call the server saw, to see which reflection version buf used. */
const recording = recordingPolicy();
let pool: ClientPool;

beforeAll(async () => {
  store = new MemorySessionStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  running = await startTestServer(store, { policies: [recording] });
  pool = clientPool(running.baseUrl);
  transport = pool.transport({ protocol: "grpc" });
});

afterAll(async () => {
  pool?.close();
  await running?.stop();
  await store?.close();
});

interface BufResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `buf curl` with the given arguments. Never with --schema: every
 * schema buf needs must come from the server's reflection service. A failed
 * RPC is a result (buf exits with the gRPC code shifted left by 3); buf not
 * starting or hanging is a test failure.
 */
async function bufCurl(args: readonly string[]): Promise<BufResult> {
  try {
    const { stdout, stderr } = await run(BUF, ["curl", ...args], { timeout: 15_000 });
    return { exitCode: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== "number") throw error;
    return { exitCode: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

/** Parses buf's JSON output of a successful call, showing its stderr when it failed. */
function outputOf(result: BufResult): unknown {
  expect(result.exitCode, `buf curl failed: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout);
}

/** The lines buf printed, showing its stderr when it failed. */
function outputLines(result: BufResult): string[] {
  expect(result.exitCode, `buf curl failed: ${result.stderr}`).toBe(0);
  return result.stdout.split("\n").filter((line) => line !== "");
}

describe.each(["grpc-v1", "grpc-v1alpha"])("buf curl with --reflect-protocol %s", (reflect) => {
  const call = (method: string, body: unknown) =>
    bufCurl([
      "--reflect-protocol",
      reflect,
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-d",
      JSON.stringify(body),
      `${running.baseUrl}/${method}`,
    ]);

  it("lists exactly the served services, asking the chosen reflection version", async () => {
    const seen = recording.since();
    const listed = outputLines(
      await bufCurl(["--reflect-protocol", reflect, "--list-services", running.baseUrl]),
    );
    const version = reflect === "grpc-v1" ? "v1" : "v1alpha";
    expect(seen().map((call) => call.procedure)).toEqual([
      `grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    ]);
    expect(listed.sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "sessionstore.v1.SessionStoreService",
    ]);
  });

  it("lists every SessionStoreService method and the health methods", async () => {
    const listed = outputLines(
      await bufCurl(["--reflect-protocol", reflect, "--list-methods", running.baseUrl]),
    );
    expect(listed).toEqual(
      expect.arrayContaining([
        ...SESSION_STORE_METHODS.map((method) => `sessionstore.v1.SessionStoreService/${method}`),
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
      ]),
    );
  });

  it("upserts and gets a session with Struct, Timestamp and Duration fields", async () => {
    const userId = uniqueUserId();
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const extraPayload = {
      theme: "dark",
      roles: ["admin", "dev"],
      tenant: { id: 42, name: "acme" },
      mfa: true,
      nothing: null,
    };
    const upserted = outputOf(
      await call("sessionstore.v1.SessionStoreService/Upsert", {
        session: { id: "s1", userId, expiresAt, extraPayload },
        ttl: "3600s",
      }),
    ) as { session: Record<string, unknown> };
    expect(upserted.session).toMatchObject({ id: "s1", userId, version: "1", extraPayload });
    // Timestamps print in RFC 3339 with as many fraction digits as needed:
    // compare instants, not strings.
    expect(Date.parse(String(upserted.session.expiresAt))).toBe(Date.parse(expiresAt));
    // now + ttl lies past expires_at, which therefore bounds the storage time.
    expect(Date.parse(String(upserted.session.storageExpiresAt))).toBe(Date.parse(expiresAt));

    const got = outputOf(
      await call("sessionstore.v1.SessionStoreService/Get", { sessionId: "s1", userId }),
    );
    expect(got).toEqual(upserted);
  });

  it("exits non-zero with not_found for a missing session", async () => {
    const result = await call("sessionstore.v1.SessionStoreService/Get", {
      sessionId: "missing",
      userId: uniqueUserId(),
    });
    expect(result.exitCode).toBe(NOT_FOUND << 3);
    expect(result.stdout).toBe("");
    expect(JSON.parse(result.stderr)).toEqual({
      code: "not_found",
      message: "session not found",
      details: [{ type: "google.rpc.ErrorInfo", value: errorInfoBase64("SESSION_NOT_FOUND") }],
    });
  });

  it("checks health", async () => {
    expect(outputOf(await call("grpc.health.v1.Health/Check", {}))).toEqual({ status: "SERVING" });
    expect(
      outputOf(
        await call("grpc.health.v1.Health/Check", {
          service: "sessionstore.v1.SessionStoreService",
        }),
      ),
    ).toEqual({ status: "SERVING" });
  });
});

/** The files of a file_descriptor_response, decoded; fails on any other answer. */
function filesOf(response: ResponseV1 | ResponseV1Alpha): FileDescriptorProto[] {
  const answer = response.messageResponse;
  if (answer.case !== "fileDescriptorResponse") {
    throw new Error(`expected file descriptors, got ${answer.case}: ${JSON.stringify(answer)}`);
  }
  return answer.value.fileDescriptorProto.map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  );
}

/** The error code of an error_response; fails on any other answer. */
function errorCodeOf(response: ResponseV1 | ResponseV1Alpha): number {
  const answer = response.messageResponse;
  if (answer.case !== "errorResponse") {
    throw new Error(`expected an error, got ${answer.case}: ${JSON.stringify(answer)}`);
  }
  return answer.value.errorCode;
}

/**
 * Asserts the files a client needs to build a descriptor pool: each file
 * once, and every import of every file among them (transitively closed).
 */
function expectSelfContained(files: readonly FileDescriptorProto[]): void {
  const names = files.map((file) => file.name);
  expect(new Set(names).size, `duplicates in ${names.join(", ")}`).toBe(names.length);
  for (const file of files) {
    for (const dependency of file.dependency) expect(names).toContain(dependency);
  }
}

/** Fully-qualified names of what a file declares, as file_containing_symbol looks them up. */
function declaredNames(file: FileDescriptorProto): string[] {
  const scope = file.package === "" ? "" : `${file.package}.`;
  const names: string[] = [];
  // Enum values are scoped like their enum (siblings, not children of it).
  const addEnum = (prefix: string, enumeration: EnumDescriptorProto) => {
    names.push(`${prefix}${enumeration.name}`);
    for (const value of enumeration.value) names.push(`${prefix}${value.name}`);
  };
  const addMessage = (prefix: string, message: DescriptorProto) => {
    const name = `${prefix}${message.name}`;
    names.push(name);
    for (const field of message.field) names.push(`${name}.${field.name}`);
    for (const enumeration of message.enumType) addEnum(`${name}.`, enumeration);
    for (const nested of message.nestedType) addMessage(`${name}.`, nested);
  };
  for (const message of file.messageType) addMessage(scope, message);
  for (const enumeration of file.enumType) addEnum(scope, enumeration);
  for (const service of file.service) {
    names.push(`${scope}${service.name}`);
    for (const method of service.method) names.push(`${scope}${service.name}.${method.name}`);
  }
  return names;
}

/**
 * Sends all requests on one bidi stream and collects every response,
 * expecting exactly one per request.
 */
async function exchange<Req, Res>(
  call: (requests: AsyncIterable<Req>) => AsyncIterable<Res>,
  requests: readonly Req[],
): Promise<Res[]> {
  const responses: Res[] = [];
  for await (const response of call(
    (async function* () {
      yield* requests;
    })(),
  )) {
    responses.push(response);
  }
  expect(responses).toHaveLength(requests.length);
  return responses;
}

describe("grpc.reflection.v1.ServerReflection with a typed client", () => {
  type RequestInit = MessageInitShape<typeof RequestV1Schema>;
  const HOST = "sessionstore.test";

  /** One v1 reflection stream carrying `requests`. */
  function reflect(requests: readonly RequestInit[]): Promise<ResponseV1[]> {
    return exchange(createClient(ServerReflectionV1, transport).serverReflectionInfo, requests);
  }

  async function reflectOne(request: RequestInit): Promise<ResponseV1> {
    const [response] = await reflect([request]);
    if (!response) throw new Error("no response");
    return response;
  }

  it("answers file_by_filename with the file first, then its imports", async () => {
    const files = filesOf(
      await reflectOne({
        messageRequest: { case: "fileByFilename", value: SESSION_STORE_PROTO },
      }),
    );
    const [first] = files;
    expect(first?.name).toBe(SESSION_STORE_PROTO);
    expect(first?.package).toBe("sessionstore.v1");
    expect(first?.dependency).toEqual([
      "google/protobuf/duration.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
    ]);
    expect(files.map((file) => file.name).sort()).toEqual([
      "google/protobuf/duration.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
      SESSION_STORE_PROTO,
    ]);
    expectSelfContained(files);
    expect(first?.service.map((service) => service.name)).toEqual(["SessionStoreService"]);
    expect(first?.service[0]?.method.map((method) => method.name)).toEqual(SESSION_STORE_METHODS);
    const watch = first?.service[0]?.method.find((method) => method.name === "WatchUser");
    expect(watch).toMatchObject({
      serverStreaming: true,
      outputType: ".sessionstore.v1.SessionEvent",
    });
    const session = first?.messageType.find((message) => message.name === "Session");
    expect(session?.field.find((field) => field.name === "extra_payload")).toMatchObject({
      number: 9,
      typeName: ".google.protobuf.Struct",
    });
  });

  it.each([
    ["a service", "sessionstore.v1.SessionStoreService", SESSION_STORE_PROTO],
    ["a method", "sessionstore.v1.SessionStoreService.Upsert", SESSION_STORE_PROTO],
    ["a message", "sessionstore.v1.Session", SESSION_STORE_PROTO],
    ["a field", "sessionstore.v1.Session.extra_payload", SESSION_STORE_PROTO],
    ["an enum", "sessionstore.v1.TokenTransport", SESSION_STORE_PROTO],
    [
      "an enum value (scoped like its enum)",
      "sessionstore.v1.TOKEN_TRANSPORT_COOKIE",
      SESSION_STORE_PROTO,
    ],
    ["the health service", "grpc.health.v1.Health", HEALTH_PROTO],
    ["a well-known type", "google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
  ])("answers file_containing_symbol for %s (%s)", async (_kind, symbol, fileName) => {
    const files = filesOf(
      await reflectOne({ messageRequest: { case: "fileContainingSymbol", value: symbol } }),
    );
    const [first] = files;
    expect(first?.name).toBe(fileName);
    expect(first && declaredNames(first)).toContain(symbol);
    expectSelfContained(files);
  });

  it("answers unknown files, symbols and extensions with NOT_FOUND", async () => {
    const responses = await reflect([
      { messageRequest: { case: "fileByFilename", value: "sessionstore/v1/nope.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "sessionstore.v1.Nope" } },
      // A name inside a known message that the message does not declare.
      { messageRequest: { case: "fileContainingSymbol", value: "sessionstore.v1.Session.nope" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "sessionstore.v1.Session", extensionNumber: 100 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "sessionstore.v1.Nope" } },
    ]);
    expect(responses.map(errorCodeOf)).toEqual([
      NOT_FOUND,
      NOT_FOUND,
      NOT_FOUND,
      NOT_FOUND,
      NOT_FOUND,
    ]);
  });

  it("answers all_extension_numbers_of_type with the type and no numbers", async () => {
    const response = await reflectOne({
      messageRequest: { case: "allExtensionNumbersOfType", value: "sessionstore.v1.Session" },
    });
    expect(response.messageResponse.case).toBe("allExtensionNumbersResponse");
    expect(response.messageResponse.value).toMatchObject({
      baseTypeName: "sessionstore.v1.Session",
      extensionNumber: [],
    });
  });

  it("echoes valid_host and original_request in every response of one stream, in order", async () => {
    const requests: RequestInit[] = [
      { host: HOST, messageRequest: { case: "listServices", value: "*" } },
      { host: HOST, messageRequest: { case: "fileByFilename", value: SESSION_STORE_PROTO } },
      {
        host: HOST,
        messageRequest: { case: "fileContainingSymbol", value: "sessionstore.v1.Session" },
      },
      { host: HOST, messageRequest: { case: "fileContainingSymbol", value: "no.Such" } },
      {
        host: HOST,
        messageRequest: { case: "allExtensionNumbersOfType", value: "sessionstore.v1.Session" },
      },
    ];
    const responses = await reflect(requests);
    expect(responses.map((response) => response.messageResponse.case)).toEqual([
      "listServicesResponse",
      "fileDescriptorResponse",
      "fileDescriptorResponse",
      "errorResponse",
      "allExtensionNumbersResponse",
    ]);
    responses.forEach((response, i) => {
      expect(response.validHost).toBe(HOST);
      expect(response.originalRequest).toEqual(create(RequestV1Schema, requests[i]));
    });
  });

  it("lists the services", async () => {
    const response = await reflectOne({ messageRequest: { case: "listServices", value: "" } });
    if (response.messageResponse.case !== "listServicesResponse") {
      throw new Error(`expected a service list, got ${response.messageResponse.case}`);
    }
    expect(response.messageResponse.value.service.map((service) => service.name).sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "sessionstore.v1.SessionStoreService",
    ]);
  });
});

describe("grpc.reflection.v1alpha.ServerReflection with a typed client", () => {
  type RequestInit = MessageInitShape<typeof RequestV1AlphaSchema>;
  const HOST = "sessionstore.test";

  function reflect(requests: readonly RequestInit[]): Promise<ResponseV1Alpha[]> {
    return exchange(
      createClient(ServerReflectionV1Alpha, transport).serverReflectionInfo,
      requests,
    );
  }

  it("lists the services, finds a symbol's file and reports NOT_FOUND, echoing each request", async () => {
    const requests: RequestInit[] = [
      { host: HOST, messageRequest: { case: "listServices", value: "*" } },
      {
        host: HOST,
        messageRequest: { case: "fileContainingSymbol", value: "sessionstore.v1.Session" },
      },
      { host: HOST, messageRequest: { case: "fileByFilename", value: "nope.proto" } },
    ];
    const [list, symbol, missing] = await reflect(requests);

    if (list?.messageResponse.case !== "listServicesResponse") {
      throw new Error(`expected a service list, got ${list?.messageResponse.case}`);
    }
    expect(list.messageResponse.value.service.map((service) => service.name).sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "sessionstore.v1.SessionStoreService",
    ]);

    const files = symbol ? filesOf(symbol) : [];
    expect(files[0]?.name).toBe(SESSION_STORE_PROTO);
    expect(files[0] && declaredNames(files[0])).toContain("sessionstore.v1.Session");
    expectSelfContained(files);

    expect(missing && errorCodeOf(missing)).toBe(NOT_FOUND);

    [list, symbol, missing].forEach((response, i) => {
      expect(response?.validHost).toBe(HOST);
      expect(response?.originalRequest).toEqual(create(RequestV1AlphaSchema, requests[i]));
    });
  });
});

describe("buf curl watching", () => {
  it("streams a user's events with the README's WatchUser command until MAX_DEADLINE ends it", async () => {
    // A server of its own whose MAX_DEADLINE ends the stream, so that buf
    // exits by itself after printing what it received.
    const short = await startTestServer(store, { limits: { maxDeadlineMs: 1500 } });
    try {
      const userId = uniqueUserId();
      const watch = execFile(BUF, [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        JSON.stringify({ userId }),
        `${short.baseUrl}/sessionstore.v1.SessionStoreService/WatchUser`,
      ]);
      let stdout = "";
      let stderr = "";
      watch.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString("utf8");
      });
      watch.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString("utf8");
      });
      const exitCode = new Promise<number | null>((resolve) => watch.on("exit", resolve));
      // Written until buf's stream is live and has printed two events.
      await waitFor("buf curl to print two events", async () => {
        await store.upsert({
          userId,
          sessionId: "s1",
          data: new Uint8Array(),
          ttlMs: 60_000,
          expiresAtMs: undefined,
          expectedVersion: undefined,
        });
        return (stdout.match(/"eventId"/g) ?? []).length >= 2;
      });
      // buf exits with the gRPC code shifted left by 3.
      expect(await exitCode).toBe(Code.DeadlineExceeded << 3);
      expect(stderr).toContain("deadline_exceeded");
      const events = stdout
        .split(/\n(?=\{)/)
        .map((text) => JSON.parse(text) as Record<string, unknown>);
      expect(events[0]).toMatchObject({ type: "EVENT_TYPE_UPSERTED", sessionId: "s1", userId });
      expect(events[0]?.eventId).toMatch(/^\d+-\d+$/);
      expect(Number(events[1]?.version)).toBe(Number(events[0]?.version) + 1);
    } finally {
      await short.stop();
    }
  });
});
