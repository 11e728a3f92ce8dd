import { execFile, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { MAX_PAYLOAD_DEPTH } from "../../src/service/validate.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { nestedLists, nestedObjects } from "../support/deep-payload.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { createTestPki, type Issued, type TestCa, type TestPki } from "../support/pki.js";
import { runCommand } from "../support/run-command.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EXAMPLE = "examples/python/sessionstore_example.py";
/** Debian's Python: the one python3-grpcio and python3-protobuf install into. */
const PYTHON = "/usr/bin/python3";
const PLUGIN = "grpc_python_plugin";
const WELL_KNOWN_TYPES = "/usr/include";
const INSTALL =
  "sudo apt-get install protobuf-compiler protobuf-compiler-grpc libprotobuf-dev python3-grpcio python3-protobuf";
/**
 * The Python child gets PATH only: a PYTHONPATH or grpc_proxy/http_proxy from
 * the caller's shell would otherwise change which modules load or where the
 * channel connects.
 */
const PYTHON_ENV = { PATH: process.env.PATH ?? "" };

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Debian's location first, then PATH, as a hand-built gRPC installs it elsewhere. */
function findPlugin(): string | undefined {
  const candidates = [
    `/usr/bin/${PLUGIN}`,
    ...(process.env.PATH ?? "").split(delimiter).map((dir) => join(dir, PLUGIN)),
  ];
  return candidates.find(executable);
}

/**
 * Fails (never skips) when a tool is missing, naming each missing one and the
 * Debian packages that provide them all: a skipped test would let the Python
 * client break unnoticed on the machine that lacks them.
 */
function requirePythonToolchain(): { plugin: string } {
  const missing: string[] = [];
  const protoc = spawnSync("protoc", ["--version"], { encoding: "utf8" });
  if (protoc.error || protoc.status !== 0) missing.push("protoc (protobuf-compiler)");
  const plugin = findPlugin();
  if (!plugin) missing.push(`${PLUGIN} (protobuf-compiler-grpc)`);
  if (!existsSync(join(WELL_KNOWN_TYPES, "google/protobuf/struct.proto"))) {
    missing.push(`${WELL_KNOWN_TYPES}/google/protobuf/struct.proto (libprotobuf-dev)`);
  }
  const modules = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"], {
    encoding: "utf8",
    env: PYTHON_ENV,
  });
  if (modules.error || modules.status !== 0) {
    missing.push(
      `${PYTHON} with the grpc and google.protobuf modules (python3-grpcio python3-protobuf)`,
    );
  }
  if (!plugin || missing.length > 0) {
    throw new Error(
      `The Python client test needs tools that are missing: ${missing.join("; ")}. ` +
        `Install them with: ${INSTALL}`,
    );
  }
  return { plugin };
}

/** Generates the Python stubs into `dir`, exactly as examples/python/README.md shows. */
async function generateStubs(dir: string, plugin: string): Promise<void> {
  await run(
    "protoc",
    [
      "-I",
      "proto",
      "-I",
      WELL_KNOWN_TYPES,
      `--python_out=${dir}`,
      `--grpc_out=${dir}`,
      `--plugin=protoc-gen-grpc=${plugin}`,
      "sessionstore/v1/session_store.proto",
    ],
    { cwd: ROOT, timeout: 30_000 },
  );
}

/**
 * Generates google/rpc/status.proto and error_details.proto into `dir` from
 * the google-proto-files dev dependency, as a Python client generates them
 * to read the ErrorInfo of an error (no .proto of Google's is copied into
 * this repository).
 */
async function generateRpcStubs(dir: string): Promise<void> {
  await run(
    "protoc",
    [
      "-I",
      "node_modules/google-proto-files",
      "-I",
      WELL_KNOWN_TYPES,
      `--python_out=${dir}`,
      "google/rpc/status.proto",
      "google/rpc/error_details.proto",
    ],
    { cwd: ROOT, timeout: 30_000 },
  );
}

/** Runs a Python script to completion; resolves with its exit code and output either way. */
function runPython(script: string, args: readonly string[], env: Record<string, string> = {}) {
  return runCommand(PYTHON, [script, ...args], {
    cwd: ROOT,
    env: { ...PYTHON_ENV, ...env },
    timeoutMs: 30_000,
  });
}

/** Runs the example against the server on `port`. */
function runExample(
  port: number,
  stubs: string,
  userId: string,
  extraArgs: readonly string[] = [],
  env: Record<string, string> = {},
) {
  const target = ["--target", `127.0.0.1:${port}`, "--stubs", stubs, "--user-id", userId];
  return runPython(EXAMPLE, [...target, ...extraArgs], env);
}

/** The example's output when every step passes. */
const ALL_STEPS = [
  "ok upsert version=1",
  "ok upsert-existing code=ALREADY_EXISTS",
  "ok get version=1",
  "ok get-long-deadline version=1",
  "ok touch version=1",
  "ok upsert-update version=2",
  "ok upsert-stale code=ABORTED",
  "ok list pages=2 sessions=2",
  "ok delete deleted=true",
  "ok get-deleted code=NOT_FOUND",
  "ok delete-by-user deleted_count=1",
  "ok list-empty sessions=0",
  "ok all steps passed",
];

/**
 * Compiles the Python stubs into a temporary directory for `body`, and a
 * throwaway PKI with a server certificate for 127.0.0.1, both removed after.
 * Called inside each test rather than in beforeAll: a missing tool then
 * fails the test by name, where a failing hook would report it as skipped.
 */
async function withStubs(
  body: (stubs: string, pki: TestPki, serverCert: Issued, ca: TestCa) => Promise<void>,
): Promise<void> {
  const { plugin } = requirePythonToolchain();
  const stubs = mkdtempSync(join(tmpdir(), "sessionstore-python-stubs-"));
  const pki = createTestPki();
  try {
    await generateStubs(stubs, plugin);
    const ca = pki.ca("ca");
    const serverCert = ca.issue("server", {
      san: ["DNS:localhost", "IP:127.0.0.1"],
      usage: "server",
    });
    await body(stubs, pki, serverCert, ca);
  } finally {
    pki.remove();
    rmSync(stubs, { recursive: true, force: true });
  }
}

describe("the Python client example", () => {
  it(
    "runs every RPC against the real server and never lets the ids reach a log",
    {
      timeout: 60_000,
    },
    () =>
      withStubs(async (stubs) => {
        let redis: RedisServer | undefined;
        let server: ServerProcess | undefined;
        try {
          redis = await startRedisServer();
          // trace logs everything the server can log, so the leak check below
          // covers its most verbose configuration.
          server = runServer(
            { PORT: "0", HOST: "127.0.0.1", REDIS_URL: redis.url, LOG_LEVEL: "trace" },
            [],
          );
          const port = await server.port();
          const userId = `user-${randomUUID()}`;

          const { code, stdout, stderr } = await runExample(port, stubs, userId);
          expect(code, `the example failed:\n${stdout}${stderr}`).toBe(0);
          expect(stdout.trimEnd().split("\n")).toEqual(ALL_STEPS);
          expect(stdout + stderr).not.toContain(userId);

          // A clean shutdown flushes the log, and its last line proves the whole
          // log was read before checking what it does not contain.
          const { output } = server;
          server.child.kill("SIGTERM");
          expect(await server.exited).toBe(0);
          await waitFor("the server's final log line", () =>
            output.stdout.includes('"msg":"stopped"'),
          );
          expect(output.stdout + output.stderr).not.toContain(userId);
        } finally {
          server?.kill();
          await redis?.stop();
        }
      }),
  );

  it(
    "runs every RPC over TLS with a bearer token, and never lets the token reach a log",
    {
      timeout: 60_000,
    },
    () =>
      withStubs(async (stubs, pki, cert, ca) => {
        let server: ServerProcess | undefined;
        try {
          const adminToken = randomBytes(24).toString("base64url");
          const readerToken = randomBytes(24).toString("base64url");
          const tokens = join(pki.dir, "tokens");
          writeFileSync(tokens, `python admin ${adminToken}\nreader read ${readerToken}\n`);
          server = runServer({
            PORT: "0",
            HOST: "127.0.0.1",
            LOG_LEVEL: "trace",
            TLS_CERT_FILE: cert.certFile,
            TLS_KEY_FILE: cert.keyFile,
            AUTH_TOKENS_FILE: tokens,
          });
          const port = await server.port();
          const tls = ["--ca-file", ca.certFile];

          const admin = await runExample(port, stubs, `user-${randomUUID()}`, tls, {
            SESSIONSTORE_TOKEN: adminToken,
          });
          expect(admin.code, `the example failed:\n${admin.stdout}${admin.stderr}`).toBe(0);
          expect(admin.stdout.trimEnd().split("\n")).toEqual(ALL_STEPS);

          // The TLS channel alone gets no further than the first call.
          const anonymous = await runExample(port, stubs, `user-${randomUUID()}`, tls);
          expect(anonymous).toMatchObject({
            code: 1,
            stdout: "FAIL upsert: unexpected status UNAUTHENTICATED\n",
          });
          // A token from --token-file, newline and all, gets its own scope.
          const readerFile = join(pki.dir, "reader-token");
          writeFileSync(readerFile, `${readerToken}\n`);
          const reader = await runExample(port, stubs, `user-${randomUUID()}`, [
            ...tls,
            "--token-file",
            readerFile,
          ]);
          expect(reader).toMatchObject({
            code: 1,
            stdout: "FAIL upsert: unexpected status PERMISSION_DENIED\n",
          });
          // A server the CA does not vouch for gets no connection, so no token.
          const rogue = await runExample(
            port,
            stubs,
            `user-${randomUUID()}`,
            ["--ca-file", pki.ca("rogue").certFile],
            { SESSIONSTORE_TOKEN: adminToken },
          );
          expect(rogue).toMatchObject({
            code: 1,
            stdout: "FAIL connect: no connection within 5 s\n",
          });

          const { output } = server;
          server.child.kill("SIGTERM");
          expect(await server.exited).toBe(0);
          await waitFor("the server's final log line", () =>
            output.stdout.includes('"msg":"stopped"'),
          );
          for (const result of [admin, anonymous, reader, rogue, output]) {
            for (const secret of [adminToken, readerToken]) {
              expect(result.stdout + result.stderr).not.toContain(secret);
            }
          }
        } finally {
          server?.kill();
        }
      }),
  );

  it(
    "under mutual TLS, gives a client certificate exactly the scope of its cert: line",
    {
      timeout: 60_000,
    },
    () =>
      withStubs(async (stubs, pki, cert, ca) => {
        let server: ServerProcess | undefined;
        try {
          const writer = ca.issue("writer", {
            san: ["URI:spiffe://test/python-writer"],
            usage: "client",
          });
          const tokens = join(pki.dir, "tokens");
          writeFileSync(tokens, "python-writer write cert:spiffe://test/python-writer\n");
          server = runServer({
            PORT: "0",
            HOST: "127.0.0.1",
            TLS_CERT_FILE: cert.certFile,
            TLS_KEY_FILE: cert.keyFile,
            TLS_CLIENT_CA_FILE: ca.certFile,
            AUTH_TOKENS_FILE: tokens,
          });
          const port = await server.port();

          // No token: the certificate is the credential. write allows every
          // step but the last one that needs admin, DeleteByUser.
          const result = await runExample(port, stubs, `user-${randomUUID()}`, [
            "--ca-file",
            ca.certFile,
            "--cert-file",
            writer.certFile,
            "--key-file",
            writer.keyFile,
          ]);
          expect(result.code, `${result.stdout}${result.stderr}`).toBe(1);
          expect(result.stdout.trimEnd().split("\n")).toEqual([
            ...ALL_STEPS.slice(0, ALL_STEPS.indexOf("ok delete-by-user deleted_count=1")),
            "FAIL delete-by-user: unexpected status PERMISSION_DENIED",
          ]);
        } finally {
          server?.kill();
        }
      }),
  );

  it(
    "reads the google.rpc.ErrorInfo of errors from grpc-status-details-bin",
    { timeout: 60_000 },
    () =>
      withStubs(async (stubs) => {
        let server: ServerProcess | undefined;
        try {
          await generateRpcStubs(stubs);
          server = runServer({ PORT: "0", HOST: "127.0.0.1", MAX_TTL_SECONDS: "3600" });
          const port = await server.port();
          const userId = `user-${randomUUID()}`;
          const result = await runPython("test/support/python/error_details.py", [
            "--target",
            `127.0.0.1:${port}`,
            "--stubs",
            stubs,
            "--user-id",
            userId,
          ]);
          expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
          expect(result.stdout.trimEnd().split("\n")).toEqual([
            "ok get-missing code=NOT_FOUND reason=SESSION_NOT_FOUND domain=sessionstore metadata=",
            "ok get-empty-id code=INVALID_ARGUMENT reason=INVALID_FIELD domain=sessionstore metadata=field=session_id",
            "ok upsert-ttl-too-long code=INVALID_ARGUMENT reason=TTL_OUT_OF_RANGE domain=sessionstore metadata=field=ttl,maxSeconds=3600",
          ]);
          expect(result.stdout + result.stderr).not.toContain(userId);
        } finally {
          server?.kill();
        }
      }),
  );

  it(
    `reads back sessions whose extra_payload nests ${MAX_PAYLOAD_DEPTH} levels deep, and is refused one level deeper`,
    { timeout: 60_000 },
    () =>
      withStubs(async (stubs) => {
        let server: ServerProcess | undefined;
        let clients: ClientPool | undefined;
        try {
          server = runServer({ PORT: "0", HOST: "127.0.0.1" });
          const port = await server.port();
          const userId = `user-${randomUUID()}`;
          // Stored by a connect-node client (Connect JSON: the path that used
          // to store payloads Python could not read).
          clients = clientPool(`http://127.0.0.1:${port}`);
          const sessions = clients.sessions({ protocol: "connect", binary: false });
          for (const [id, build] of [
            ["objects", nestedObjects],
            ["lists", nestedLists],
          ] as const) {
            await sessions.upsert({
              session: sessionFixture(userId, id, { extraPayload: build(MAX_PAYLOAD_DEPTH) }),
              ttl: ttl(60_000),
            });
          }

          const result = await runPython("test/support/python/deep_payload.py", [
            "--target",
            `127.0.0.1:${port}`,
            "--stubs",
            stubs,
            "--user-id",
            userId,
            "--max-depth",
            String(MAX_PAYLOAD_DEPTH),
            "--read",
            "objects",
            "--read",
            "lists",
          ]);
          const max = MAX_PAYLOAD_DEPTH;
          expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
          expect(result.stdout.trimEnd().split("\n")).toEqual([
            `ok get depth=${max}`,
            `ok get depth=${max}`,
            `ok list sessions=2 depths=${max},${max}`,
            `ok upsert-max depth=${max}`,
            "ok upsert-too-deep code=INVALID_ARGUMENT",
          ]);
          // The refused one was not written.
          const { sessions: listed } = await clients.sessions().listByUser({ userId });
          expect(listed.map((s) => s.id)).toEqual(["lists", "objects", "python-max"]);
        } finally {
          clients?.close();
          server?.kill();
        }
      }),
  );
});
