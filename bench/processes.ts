import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { entryPointCommand } from "../harness/entry-point.js";
import { offlineGoEnv } from "../harness/offline-go.js";
import { waitFor } from "../harness/wait-for.js";
import { scriptSource } from "../src/store/redis/redis-session-store.js";
import { rawGrpcClient } from "./load.js";
import { BARE_WITH_REDIS } from "./report.js";
import { methodPath, requests } from "./workload.js";

/** A server process under test. */
export interface ServerUnderTest {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** What it wrote to stdout. */
  stdout(): string;
  stop(): Promise<void>;
}

interface SpawnOptions {
  readonly nodeFlags?: readonly string[];
  /** An executable to run instead of node; nodeFlags then do not apply. */
  readonly command?: string;
  /** A name for logs and reports, instead of the default. */
  readonly name?: string;
  /** Environment variables on top of the defaults. */
  readonly env?: Readonly<Record<string, string>>;
  /** Metadata the readiness call sends: the credentials of a server that asks for them. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Spawns `node <args>` (or `command <args>`) with PORT=0, reads the port
 * it chose from the first JSON line on stdout that has one, and resolves
 * once it answers a gRPC call (NOT_FOUND for an unknown session is an
 * answer).
 */
async function spawnServer(
  name: string,
  args: string[],
  env: Record<string, string>,
  { nodeFlags = [], command, metadata = {} }: SpawnOptions = {},
): Promise<ServerUnderTest> {
  const argv = command ? args : [...nodeFlags, ...args];
  const child: ChildProcess = spawn(command ?? process.execPath, argv, {
    env: { PATH: process.env.PATH ?? "", ...env, PORT: "0", HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  const stop = () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once("exit", () => done());
      child.kill("SIGTERM");
    });
  try {
    const port = await waitFor(
      `${name} to say which port it listens on`,
      () => {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
        for (const line of stdout.split("\n")) {
          if (!line.startsWith("{")) continue;
          const { port } = JSON.parse(line) as { port?: number };
          if (port) return port;
        }
        return undefined;
      },
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    const client = rawGrpcClient(port, metadata);
    try {
      await waitFor(
        `${name} to answer on port ${port}`,
        () =>
          client.call(methodPath("Get"), requests.get("ready", "ready")).then(
            () => true,
            (error: { code?: number }) => error.code === 5,
          ),
        { timeoutMs: 15_000, intervalMs: 50 },
      );
    } finally {
      client.close();
    }
    return { name, pid: child.pid as number, port, stdout: () => stdout, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

const MAIN = "dist/src/bin/main.js";

/**
 * The product as users run it (see entryPointCommand), with REDIS_URL. It logs
 * at info: the line saying where it listens, and no per-RPC lines.
 */
export function startService(redisUrl: string, options: SpawnOptions = {}) {
  const command = entryPointCommand(MAIN);
  return spawnServer(
    options.name ?? "service",
    [MAIN],
    // No admin listener: several service processes run at once.
    {
      ...command.env,
      REDIS_URL: redisUrl,
      LOG_LEVEL: "info",
      ADMIN_PORT: "off",
      ...options.env,
    },
    {
      nodeFlags: [...command.nodeFlags, ...(options.nodeFlags ?? [])],
      ...(options.metadata ? { metadata: options.metadata } : {}),
    },
  );
}

/** The minimal @grpc/grpc-js peer over the same store and handlers. */
export function startPeer(redisUrl: string) {
  return spawnServer("grpc-js peer", ["dist/bench/grpc-js-peer.js"], { REDIS_URL: redisUrl });
}

/**
 * A bare node:http2 server answering every call with a canned response
 * (`responses.upsert` for Upsert, `responses.get` for anything else), after
 * the service's Redis script for the call when given `redisUrl` (see
 * bare-h2-server.ts).
 */
export function startBareServer(
  responses: { readonly get: Uint8Array; readonly upsert?: Uint8Array },
  redisUrl?: string,
  options: Pick<SpawnOptions, "nodeFlags" | "name"> = {},
) {
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
  return spawnServer(
    options.name ?? (redisUrl ? BARE_WITH_REDIS : "bare node:http2"),
    [
      "dist/bench/bare-h2-server.js",
      hex(responses.get),
      ...(responses.upsert ? [hex(responses.upsert)] : []),
    ],
    redisUrl ? { REDIS_URL: redisUrl } : {},
    options.nodeFlags ? { nodeFlags: options.nodeFlags } : {},
  );
}

/** The Debian packages the Go peer is built from, offline. */
export const GO_PEER_PACKAGES =
  "golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-github-gomodule-redigo-dev";

/**
 * The Go peer (bench/go-peer): grpc-go and redigo doing the service's
 * Redis work for Get and Upsert, run with GOMAXPROCS=1 so that it is
 * measured on one core like Node. Built here, into a temporary directory
 * removed when it stops, the way test/server/go-package.test.ts builds the
 * Go client: in GOPATH mode against Debian's packaged sources, nothing
 * downloaded, with the generated code of clients/go copied at its import
 * path. The scripts it runs are the store's own (scriptSource), written
 * beside the binary. Without Go or one of its packages it is not started,
 * and the answer says why.
 */
export async function startGoPeer(
  redisUrl: string,
): Promise<ServerUnderTest | { readonly unavailable: string }> {
  const temp = mkdtempSync(join(tmpdir(), "sessionstore-go-peer-"));
  const remove = () => rmSync(temp, { recursive: true, force: true });
  try {
    const built = await buildGoPeer(temp);
    if (typeof built !== "string") {
      remove();
      return built;
    }
    for (const name of ["get", "upsert"]) {
      writeFileSync(join(temp, `${name}.lua`), scriptSource(name));
    }
    const server = await spawnServer(
      "Go peer",
      ["-scripts", temp],
      { REDIS_URL: redisUrl, GOMAXPROCS: "1" },
      { command: built },
    );
    return {
      ...server,
      stop: async () => {
        await server.stop();
        remove();
      },
    };
  } catch (error) {
    remove();
    throw error;
  }
}

/**
 * Builds the Go peer in `temp`; resolves to the binary's path, or to why
 * it cannot be built here (no Go, or a package missing). Any other build
 * failure is a bug of the peer, and throws.
 */
async function buildGoPeer(temp: string): Promise<string | { readonly unavailable: string }> {
  const source = join(temp, "src", "sessionstore", "go-peer");
  mkdirSync(join(temp, "src", "sessionstore", "clients"), { recursive: true });
  cpSync("clients/go", join(temp, "src", "sessionstore", "clients", "go"), { recursive: true });
  cpSync("bench/go-peer", source, { recursive: true });
  const binary = join(temp, "go-peer");
  const env = offlineGoEnv(temp);
  try {
    await promisify(execFile)("go", ["build", "-o", binary, "."], { cwd: source, env });
    return binary;
  } catch (error) {
    const { code, stderr = "" } = error as { code?: unknown; stderr?: string };
    if (code === "ENOENT")
      return { unavailable: `Go is not installed (needs: ${GO_PEER_PACKAGES})` };
    const missing = /cannot find package "([^"]+)"/.exec(stderr);
    if (missing)
      return { unavailable: `Go package ${missing[1]} is missing (needs: ${GO_PEER_PACKAGES})` };
    throw new Error(`building the Go peer failed:\n${stderr}`);
  }
}
