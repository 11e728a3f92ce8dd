// sessionstore-ctl, the client package's admin command, run as a child
// process (node on its compiled JavaScript, as its `bin` runs) against live
// servers in this process: one in cleartext, and one with mutual TLS and
// bearer tokens of each scope. Every run's output is checked for the
// tokens, which must never appear.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  createSessionStoreClient,
  GetResponseSchema,
  SessionSchema,
  type SessionStoreClient,
} from "@sessionstore/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../harness/free-port.js";
import { waitFor } from "../../harness/wait-for.js";
import { Credentials } from "../../src/pipeline/credentials.js";
import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import type { PageRequest, StoreSignal } from "../../src/store/session-store.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { createTestPki, type Issued, type TestPki } from "../support/pki.js";
import { type RunningServer, startTestServer } from "../support/test-server.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLIENT = join(ROOT, "clients/typescript");
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");

/** The memory store, counting ListByUser pages and with a ping that can be made to fail. */
class ObservedStore extends MemorySessionStore {
  listCalls = 0;
  reachable = true;

  override async listByUser(userId: string, page: PageRequest, signal?: StoreSignal) {
    this.listCalls++;
    return super.listByUser(userId, page, signal);
  }

  override async ping(signal?: StoreSignal): Promise<void> {
    if (!this.reachable) throw new Error("test: the store is unreachable");
    return super.ping(signal);
  }
}

const token = () => randomBytes(24).toString("base64url");
const readerToken = token();
const writerToken = token();
const adminToken = token();
const TOKENS = [readerToken, writerToken, adminToken];
const credentials = Credentials.parse(
  [
    `reader read ${readerToken}`,
    `writer write sha256:${createHash("sha256").update(writerToken).digest("hex")}`,
    `admin admin ${adminToken}`,
    "",
  ].join("\n"),
);

let temp = "";
let main = "";
let store: ObservedStore;
let plain: RunningServer;
let secure: RunningServer;
let client: SessionStoreClient;
let pki: TestPki;
let caFile = "";
let clientCert: Issued;
const tokenFiles: Record<string, string> = {};

beforeAll(async () => {
  // The package's build, made apart from clients/typescript/dist (which the
  // client-package test's `npm pack` rebuilds meanwhile): the package's
  // manifest beside it for "type": "module", its dependencies through a
  // link to this workspace's node_modules.
  temp = await mkdtemp(join(tmpdir(), "sessionstore-ctl-"));
  const build = new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath,
      [TSC, "-p", join(CLIENT, "tsconfig.json"), "--outDir", join(temp, "dist")],
      { timeout: 60_000 },
      (error, stdout) => (error ? reject(new Error(`tsc failed:\n${stdout}`)) : resolve()),
    );
  });
  await Promise.all([
    build,
    copyFile(join(CLIENT, "package.json"), join(temp, "package.json")),
    symlink(join(ROOT, "node_modules"), join(temp, "node_modules"), "dir"),
  ]);
  main = join(temp, "dist/cli/main.js");

  pki = createTestPki();
  const ca = pki.ca("ctl");
  caFile = ca.certFile;
  const serverCert = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
  clientCert = ca.issue("operator", { san: ["DNS:operator"], usage: "client" });
  for (const [name, value] of Object.entries({ reader: readerToken, admin: adminToken })) {
    tokenFiles[name] = join(temp, `${name}.token`);
    // A trailing newline, as `echo` and editors leave one.
    await writeFile(tokenFiles[name], `${value}\n`, { mode: 0o600 });
  }

  store = new ObservedStore({ maxSessionsPerUser: 0, sweepIntervalMs: 0 });
  plain = await startTestServer(store);
  secure = await startTestServer(store, {
    credentials,
    tls: { cert: serverCert.cert, key: serverCert.key, clientCa: ca.cert },
  });
  client = createSessionStoreClient({ baseUrl: plain.baseUrl });
}, 60_000);

afterAll(async () => {
  // The in-process client keeps its connection: the servers end it at once.
  await plain?.server.close(0);
  await secure?.server.close(0);
  await store?.close();
  pki?.remove();
  if (temp) await rm(temp, { recursive: true, force: true });
});

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running sessionstore-ctl, with what it has written so far. */
interface Running {
  readonly child: ChildProcess;
  readonly output: { stdout: string; stderr: string };
  readonly exited: Promise<Run>;
}

/**
 * Starts sessionstore-ctl with exactly `env` (and PATH), so nothing of the
 * test runner's environment reaches it. Whatever it writes is checked for
 * the tokens when it exits.
 */
function start(args: readonly string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [main, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    output.stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output.stderr += chunk.toString("utf8");
  });
  const exited = new Promise<Run>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      const printed = output.stdout + output.stderr;
      if (TOKENS.some((secret) => printed.includes(secret))) {
        reject(new Error(`sessionstore-ctl ${args[0]} printed a token`));
      } else {
        resolve({ code, ...output });
      }
    });
  });
  return { child, output, exited };
}

/** Runs sessionstore-ctl to its end, at most 15 s. */
async function ctl(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const running = start(args, env);
  const timer = setTimeout(() => running.child.kill("SIGKILL"), 15_000);
  try {
    return await running.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** The options that reach the cleartext server. */
const plainTarget = () => ["--target", plain.baseUrl];
/** The options that reach the mutual-TLS server, without a token. */
const secureTarget = () => [
  "--target",
  secure.baseUrl,
  "--ca",
  caFile,
  "--cert",
  clientCert.certFile,
  "--key",
  clientCert.keyFile,
];

const put = (userId: string, sessionId: string, overrides = {}) =>
  client.upsert({ session: sessionFixture(userId, sessionId, overrides), ttl: ttl(3_600_000) });

/** A table's lines split into cells, checking that every column starts where its header does. */
function cellsOf(output: string): string[][] {
  const [header = "", ...rows] = output.trimEnd().split("\n");
  const starts = [...header.matchAll(/(?:^|\s{2})(\S)/g)].map(
    (m) => (m.index ?? 0) + m[0].length - 1,
  );
  return [header, ...rows].map((line) => {
    const cells = starts.map((from, i) => line.slice(from, starts[i + 1]).trim());
    // Aligned: each cell starts at its column (nothing spills over from the left).
    for (const from of starts.slice(1)) expect(line.slice(from - 2, from), line).toBe("  ");
    return cells;
  });
}

describe("sessionstore-ctl --help", () => {
  it("describes the tool and every command, and exits 0", async () => {
    const commands = ["get", "list", "revoke", "revoke-all", "touch", "health", "watch"];
    const [tool, viaHelp, ...each] = await Promise.all([
      ctl(["--help"]),
      ctl(["help", "touch"]),
      ...commands.map((command) => ctl([command, "-h"])),
    ]);
    expect(tool.code).toBe(0);
    for (const command of commands) expect(tool.stdout).toContain(`\n  ${command} `);
    expect(tool.stdout).toMatch(/Exit codes: 0 ok, 1 .*\n.*3 not found, 4 unauthenticated/);
    expect(tool.stdout).toContain("SESSIONSTORE_TOKEN_FILE");
    expect(viaHelp).toMatchObject({ code: 0, stderr: "" });
    expect(viaHelp.stdout).toContain("Usage: sessionstore-ctl touch <user> <session> --ttl");
    each.forEach((run, i) => {
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Usage: sessionstore-ctl ${commands[i]} `);
    });
    expect(each[3]?.stdout).toContain("--except <session>");
    expect(each[6]?.stdout).toContain("--after <event id>");
  });

  it("exits 2 with the command's help pointed at for a usage error, calling nothing", async () => {
    const calls = store.listCalls;
    const runs = await Promise.all([
      ctl([]),
      ctl(["frobnicate"]),
      ctl(["list", ...plainTarget()]),
      ctl(["list", "u", "--ttl", "1h", ...plainTarget()]),
      ctl(["list", "u", "--bogus", ...plainTarget()]),
      ctl(["list", "u"]),
      ctl(["list", "u", "--target", "localhost:50051"]),
      ctl(["list", "u", "--protocol", "carrier-pigeon", ...plainTarget()]),
      ctl(["list", "u", "--timeout", "soon", ...plainTarget()]),
      ctl(["touch", "u", "s", ...plainTarget()]),
      ctl(["touch", "u", "s", "--ttl", "forever", ...plainTarget()]),
      ctl(["list", "u", "--page-size", "0", ...plainTarget()]),
    ]);
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toMatch(/^sessionstore-ctl: .+\nSee sessionstore-ctl (\S+ )?--help\.\n$/);
    }
    expect(runs[2]?.stderr).toContain("list takes <user>, got 0 argument(s)");
    expect(runs[3]?.stderr).toContain("--ttl is not an option of list");
    expect(runs[5]?.stderr).toContain("no target: pass --target <url> or set SESSIONSTORE_TARGET");
    expect(runs[9]?.stderr).toContain("touch needs --ttl <duration>");
    expect(store.listCalls).toBe(calls);
  });
});

describe("sessionstore-ctl against a cleartext server", () => {
  it("get prints one session's fields, and with --json its GetResponse", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1", { lastKnownIp: "198.51.100.4" });
    const [table, json] = await Promise.all([
      ctl(["get", userId, "s1", ...plainTarget()]),
      ctl(["get", userId, "s1", "--json", ...plainTarget()]),
    ]);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    const fields = Object.fromEntries(cellsOf(table.stdout).map(([k = "", v = ""]) => [k, v]));
    const stored = await client.get({ userId, sessionId: "s1" });
    const second = (at: Timestamp | undefined) =>
      at ? `${new Date(timestampMs(at)).toISOString().slice(0, 19)}Z` : "unset";
    expect(fields).toMatchObject({
      FIELD: "VALUE",
      session: "s1",
      user: userId,
      version: "1",
      ip: "198.51.100.4",
      "token transport": "COOKIE",
      expires: "-",
      "storage expires": second(stored.session?.storageExpiresAt),
      payload: JSON.stringify(stored.session?.extraPayload),
    });
    expect(json).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(json.stdout)).toEqual(
      toJson(GetResponseSchema, stored, { alwaysEmitImplicit: true }),
    );
  });

  it("get of a missing session exits 3 with the status and reason on stderr (JSON with --json)", async () => {
    const userId = uniqueUserId();
    const [text, json] = await Promise.all([
      ctl(["get", userId, "nope", ...plainTarget()]),
      ctl(["get", userId, "nope", "--json", ...plainTarget()]),
    ]);
    expect(text).toEqual({
      code: 3,
      stdout: "",
      stderr: "sessionstore-ctl: NOT_FOUND: session not found (reason SESSION_NOT_FOUND)\n",
    });
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stderr)).toEqual({
      error: {
        code: "NOT_FOUND",
        message: "session not found",
        reason: "SESSION_NOT_FOUND",
        metadata: {},
      },
    });
  });

  it("list fetches every page into one aligned table, or one JSON document", async () => {
    const userId = uniqueUserId();
    const ids = ["a", "b", "c", "d", "e"];
    for (const id of ids) await put(userId, id, { lastKnownIp: id === "c" ? "" : "192.0.2.1" });
    const before = store.listCalls;
    const table = await ctl(["list", userId, "--page-size", "2", ...plainTarget()]);
    expect(store.listCalls - before).toBe(3);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    const [header, ...rows] = cellsOf(table.stdout);
    expect(header).toEqual(["SESSION", "VERSION", "CREATED", "REFRESHED", "STORAGE EXPIRES", "IP"]);
    expect(rows.map((row) => [row[0], row[1], row[5]])).toEqual(
      ids.map((id) => [id, "1", id === "c" ? "-" : "192.0.2.1"]),
    );
    for (const row of rows) expect(row[2]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const json = await ctl(["list", userId, "--json", "--page-size", "3", ...plainTarget()]);
    expect(json.code).toBe(0);
    const listed = (await client.listByUser({ userId })).sessions;
    expect(JSON.parse(json.stdout)).toEqual({
      sessions: listed.map((s) => toJson(SessionSchema, s, { alwaysEmitImplicit: true })),
    });

    const empty = await ctl(["list", uniqueUserId(), ...plainTarget()]);
    expect(empty).toMatchObject({ code: 0, stderr: "" });
    expect(cellsOf(empty.stdout)).toHaveLength(1);
  });

  it("revoke deletes one session, and exits 3 when there was none", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    await put(userId, "s2");
    const revoked = await ctl(["revoke", userId, "s1", ...plainTarget()]);
    expect(revoked).toEqual({
      code: 0,
      stdout: `revoked session s1 of user ${userId}\n`,
      stderr: "",
    });
    const again = await ctl(["revoke", userId, "s1", ...plainTarget()]);
    expect(again).toMatchObject({ code: 3, stdout: "" });
    expect(again.stderr).toContain("nothing was revoked");
    const json = await ctl(["revoke", userId, "s2", "--json", ...plainTarget()]);
    expect(json).toMatchObject({ code: 0, stdout: '{"deleted":true}\n' });
    const jsonAgain = await ctl(["revoke", userId, "s2", "--json", ...plainTarget()]);
    expect(jsonAgain).toMatchObject({ code: 3, stdout: '{"deleted":false}\n' });
    expect((await client.listByUser({ userId })).sessions).toEqual([]);
  });

  it("revoke-all deletes all of a user's sessions but those given to --except", async () => {
    const userId = uniqueUserId();
    for (const id of ["keep-1", "s1", "keep-2", "s2", "s3"]) await put(userId, id);
    const run = await ctl([
      "revoke-all",
      userId,
      "--except",
      "keep-1",
      "--except=keep-2",
      ...plainTarget(),
    ]);
    expect(run).toEqual({
      code: 0,
      stdout: `revoked 3 session(s) of user ${userId} (kept keep-1, keep-2)\n`,
      stderr: "",
    });
    const left = (await client.listByUser({ userId })).sessions.map((s) => s.id);
    expect(left).toEqual(["keep-1", "keep-2"]);
    const json = await ctl(["revoke-all", userId, "--json", ...plainTarget()]);
    expect(json).toMatchObject({ code: 0, stdout: '{"deletedCount":"2"}\n' });
  });

  it("touch keeps a session for --ttl from now; a missing session exits 3", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    const from = Date.now();
    const [table, json] = await Promise.all([
      ctl(["touch", userId, "s1", "--ttl", "2h", ...plainTarget()]),
      ctl(["touch", userId, "s1", "--ttl", "1h30m", "--json", ...plainTarget()]),
    ]);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    expect(table.stdout).toMatch(/^storage expires\s+\d{4}-/m);
    expect(json.code).toBe(0);
    const { session } = JSON.parse(json.stdout) as { session: { storageExpiresAt: string } };
    const expiresIn = Date.parse(session.storageExpiresAt) - from;
    expect(expiresIn).toBeGreaterThanOrEqual(90 * 60_000);
    expect(expiresIn).toBeLessThan(90 * 60_000 + 10_000);
    const missing = await ctl(["touch", userId, "gone", "--ttl", "1h", ...plainTarget()]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("NOT_FOUND");
  });

  it("health prints the status: 0 when SERVING, 5 when not, 3 for an unknown service", async () => {
    const [server, service, json, unknown] = await Promise.all([
      ctl(["health", ...plainTarget()]),
      ctl(["health", "sessionstore.v1.SessionStoreService", ...plainTarget()]),
      ctl(["health", "--json", ...plainTarget()]),
      ctl(["health", "no.such.Service", ...plainTarget()]),
    ]);
    expect(server).toEqual({ code: 0, stdout: "SERVING\n", stderr: "" });
    expect(service).toEqual({ code: 0, stdout: "SERVING\n", stderr: "" });
    expect(json).toMatchObject({ code: 0, stdout: '{"status":"SERVING"}\n' });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain("NOT_FOUND");

    store.reachable = false;
    try {
      await waitFor("health to notice the store is gone", () => !plain.server.health.isServing);
      const down = await ctl(["health", ...plainTarget()]);
      expect(down).toEqual({ code: 5, stdout: "NOT_SERVING\n", stderr: "" });
    } finally {
      store.reachable = true;
    }
    await waitFor("health to come back", () => plain.server.health.isServing);
  });

  it("speaks Connect and gRPC-Web too (--protocol, SESSIONSTORE_PROTOCOL)", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    const [connect, grpcWeb] = await Promise.all([
      ctl(["get", userId, "s1", "--protocol", "connect", ...plainTarget()]),
      ctl(["get", userId, "s1"], {
        SESSIONSTORE_TARGET: plain.baseUrl,
        SESSIONSTORE_PROTOCOL: "grpc-web",
      }),
    ]);
    expect(connect.code).toBe(0);
    expect(grpcWeb.code).toBe(0);
    expect(grpcWeb.stdout).toMatch(/^session\s+s1$/m);
  });

  it("exits 5 when nothing listens at the target", async () => {
    const port = await freePort();
    const run = await ctl(["get", "u", "s", "--target", `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/^sessionstore-ctl: UNAVAILABLE: .*ECONNREFUSED/);
    const watch = await ctl(["watch", "u", "--target", `http://127.0.0.1:${port}`]);
    expect(watch.code).toBe(5);
  });
});

describe("sessionstore-ctl watch", () => {
  /** Ends a watch as Ctrl-C or a service manager would, and returns how it ended. */
  async function stop(running: Running): Promise<Run> {
    running.child.kill("SIGTERM");
    return running.exited;
  }

  const lines = (running: Running) => running.output.stdout.split("\n").filter(Boolean);

  it("prints each change of a user's sessions as it happens, resuming after --after, until SIGTERM", async () => {
    const userId = uniqueUserId();
    await put(userId, "start");
    const { lastId } = await store.readEvents(userId, undefined, 0);
    const watch = start(["watch", userId, "--after", lastId, ...plainTarget()]);
    try {
      await put(userId, "s1");
      await waitFor("the upsert's line", () => lines(watch).length === 1, { timeoutMs: 10_000 });
      await client.touch({ userId, sessionId: "s1", ttl: ttl(60_000) });
      await waitFor("the touch's line", () => lines(watch).length === 2);
      await client.delete({ userId, sessionId: "s1" });
      await waitFor("the delete's line", () => lines(watch).length === 3);
    } finally {
      const ended = await stop(watch);
      expect(ended).toMatchObject({ code: 0, stderr: "" });
    }
    const event = (type: string) =>
      new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z  ${type}\\s+s1  version=1  event=\\d+-\\d+$`);
    expect(lines(watch)).toEqual([
      expect.stringMatching(event("UPSERTED")),
      expect.stringMatching(event("TOUCHED")),
      expect.stringMatching(event("DELETED")),
    ]);
  });

  it("--session --json prints one session's events as JSON lines, from now on", async () => {
    const userId = uniqueUserId();
    const watch = start(["watch", userId, "--session", "s1", "--json", ...plainTarget()]);
    try {
      // From now on: the watch sees the writes made once its stream is open,
      // so write until one arrives. Another session's writes never do.
      await waitFor(
        "the watch to see a write",
        async () => {
          await put(userId, "other");
          await put(userId, "s1");
          return lines(watch).length > 0;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      await client.deleteByUser({ userId });
      await waitFor("the DeleteByUser's line", () =>
        lines(watch).some((line) => line.includes("EVENT_TYPE_DELETED_BY_USER")),
      );
    } finally {
      expect(await stop(watch)).toMatchObject({ code: 0, stderr: "" });
    }
    const events = lines(watch).map((line) => JSON.parse(line) as Record<string, unknown>);
    const last = events.pop();
    expect(last).toMatchObject({ type: "EVENT_TYPE_DELETED_BY_USER", sessionId: "", userId });
    expect(events.length).toBeGreaterThan(0);
    for (const event of events) {
      expect(event).toEqual({
        eventId: expect.stringMatching(/^\d+-\d+$/),
        type: "EVENT_TYPE_UPSERTED",
        sessionId: "s1",
        userId,
        version: expect.stringMatching(/^\d+$/),
        time: expect.stringMatching(/Z$/),
      });
    }
  });

  it("ends with the error's exit code when the stream fails for good", async () => {
    const bad = await ctl(["watch", uniqueUserId(), "--after", "not-a-cursor", ...plainTarget()]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^sessionstore-ctl: INVALID_ARGUMENT: .*\(reason /);
    // Health is open to anyone; the watch is not.
    const anonymous = await ctl(["watch", uniqueUserId(), ...secureTarget()]);
    expect(anonymous.code).toBe(4);
    expect(anonymous.stderr).toContain("UNAUTHENTICATED");
  });
});

describe("sessionstore-ctl against a server with mutual TLS and tokens", () => {
  it("verifies the server with --ca and authenticates with a token from a file or the environment", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    const runs = await Promise.all([
      ctl(["get", userId, "s1", ...secureTarget(), "--token-file", tokenFiles.reader ?? ""]),
      ctl(["get", userId, "s1", ...secureTarget()], {
        SESSIONSTORE_TOKEN_FILE: tokenFiles.reader ?? "",
      }),
      ctl(["get", userId, "s1", ...secureTarget()], { SESSIONSTORE_TOKEN: readerToken }),
      // Everything from the environment.
      ctl(["get", userId, "s1"], {
        SESSIONSTORE_TARGET: secure.baseUrl,
        SESSIONSTORE_CA_FILE: caFile,
        SESSIONSTORE_CERT_FILE: clientCert.certFile,
        SESSIONSTORE_KEY_FILE: clientCert.keyFile,
        SESSIONSTORE_TOKEN: readerToken,
      }),
    ]);
    for (const run of runs) {
      expect(run, run.stderr).toMatchObject({ code: 0, stderr: "" });
      expect(run.stdout).toMatch(/^session\s+s1$/m);
    }
  });

  it("takes --token too, warning that ps shows it, and never prints it", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    // With "=": a base64url token may start with "-", which parseArgs would
    // otherwise take for an option.
    const run = await ctl(["get", userId, "s1", ...secureTarget(), `--token=${readerToken}`]);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain("a token on the command line is visible in ps");
  });

  it("exits 4 without a token or with one lacking the scope, and changes nothing", async () => {
    const userId = uniqueUserId();
    await put(userId, "s1");
    const [anonymous, reader, writer, unknown] = await Promise.all([
      ctl(["revoke-all", userId, ...secureTarget()]),
      ctl(["revoke", userId, "s1", ...secureTarget(), "--token-file", tokenFiles.reader ?? ""]),
      ctl(["revoke-all", userId, ...secureTarget()], { SESSIONSTORE_TOKEN: writerToken }),
      ctl(["get", userId, "s1", ...secureTarget()], { SESSIONSTORE_TOKEN: token() }),
    ]);
    expect(anonymous.code).toBe(4);
    expect(anonymous.stderr).toMatch(/^sessionstore-ctl: UNAUTHENTICATED: .*\(reason /);
    expect(reader.code).toBe(4);
    expect(reader.stderr).toMatch(/PERMISSION_DENIED: .*\(reason PERMISSION_DENIED .*scope=write/);
    expect(writer.code).toBe(4);
    expect(writer.stderr).toMatch(/PERMISSION_DENIED: .*scope=admin/);
    expect(unknown.code).toBe(4);
    expect((await client.listByUser({ userId })).sessions.map((s) => s.id)).toEqual(["s1"]);

    const admin = await ctl(["revoke-all", userId, ...secureTarget()], {
      SESSIONSTORE_TOKEN_FILE: tokenFiles.admin ?? "",
    });
    expect(admin).toMatchObject({ code: 0, stderr: "" });
  });

  it("refuses what cannot work before calling: two tokens, an unreadable file, TLS over http://", async () => {
    const runs = await Promise.all([
      ctl(["health", ...secureTarget(), "--token-file", tokenFiles.reader ?? ""], {
        // The variable is a level below the option: the option wins.
        SESSIONSTORE_TOKEN: "not a token",
      }),
      ctl(["health", ...secureTarget(), `--token=${readerToken}`, "--token-file", "/x"]),
      ctl(["health", ...secureTarget(), "--token-file", join(temp, "missing.token")]),
      ctl(["health", ...plainTarget(), "--ca", caFile]),
      ctl(["health", ...secureTarget()], { SESSIONSTORE_TOKEN: "has spaces in it" }),
    ]);
    expect(runs.map((run) => run.code)).toEqual([0, 2, 2, 2, 2]);
    expect(runs[1]?.stderr).toContain("--token-file and --token: give one, not both");
    expect(runs[2]?.stderr).toContain("cannot read the token file");
    expect(runs[2]?.stderr).toContain("ENOENT");
    expect(runs[3]?.stderr).toContain("tls needs an https:// baseUrl");
    expect(runs[4]?.stderr).toContain("the bearer token is not an RFC 6750 bearer token");
    expect(runs[4]?.stderr).not.toContain("has spaces");
  });

  it("fails a server it cannot verify (no --ca) with exit 1 and the TLS error", async () => {
    const run = await ctl(["health", "--target", secure.baseUrl], {
      SESSIONSTORE_TOKEN: readerToken,
    });
    expect(run.code).toBe(1);
    // Node's default CAs do not know the test CA.
    expect(run.stderr).toMatch(/^sessionstore-ctl: INTERNAL: .*certificate/);
  });
});
