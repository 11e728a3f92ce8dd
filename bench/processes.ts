import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { onFreePorts } from "../harness/free-port.js";
import { waitFor } from "../harness/wait-for.js";
import { rawGrpcClient } from "./load.js";
import { methodPath, requests } from "./workload.js";

/** A server process under test. */
export interface ServerUnderTest {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** What it wrote to stdout, when started with `captureStdout`. */
  stdout(): string;
  stop(): Promise<void>;
}

interface SpawnOptions {
  readonly nodeFlags?: readonly string[];
  readonly captureStdout?: boolean;
}

/**
 * Spawns `node <args>` on a free port and resolves once it answers a gRPC
 * call (NOT_FOUND for an unknown session is an answer). A free port can be
 * taken by another process before the server binds it, so a server that
 * exits before answering is started again on another port.
 */
function spawnServer(
  name: string,
  args: string[],
  env: Record<string, string>,
  options: SpawnOptions = {},
): Promise<ServerUnderTest> {
  return onFreePorts(1, ([port = 0]) => spawnOnce(name, args, env, options, port));
}

async function spawnOnce(
  name: string,
  args: string[],
  env: Record<string, string>,
  { nodeFlags = [], captureStdout = false }: SpawnOptions,
  port: number,
): Promise<ServerUnderTest | undefined> {
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", captureStdout ? "pipe" : "inherit", "inherit"],
  });
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  const client = rawGrpcClient(port);
  try {
    const outcome = await waitFor(
      `${name} to answer on port ${port}`,
      async () => {
        if (child.exitCode !== null) return "exited";
        const answered = await client.call(methodPath("Get"), requests.get("ready", "ready")).then(
          () => true,
          (error: { code?: number }) => error.code === 5,
        );
        return answered && "answered";
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    if (outcome === "exited") return undefined;
  } finally {
    client.close();
  }
  return {
    name,
    pid: child.pid as number,
    port,
    stdout: () => stdout,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGTERM");
      }),
  };
}

const MAIN = "dist/src/bin/main.js";

/**
 * How users run the server: the environment and Node flags of the entry
 * point's `#!/usr/bin/env -S VAR=value node --flag` line, which `npm start`
 * and the Docker image execute.
 */
export function serviceCommand(): { env: Record<string, string>; nodeFlags: string[] } {
  const shebang = readFileSync(MAIN, "utf8").split("\n", 1)[0] ?? "";
  const words = shebang.replace(/^#!\/usr\/bin\/env -S /, "").split(/\s+/);
  const node = words.indexOf("node");
  const env = Object.fromEntries(
    words.slice(0, node).map((w) => w.split("=", 2) as [string, string]),
  );
  return { env, nodeFlags: words.slice(node + 1) };
}

/** The product as users run it (see serviceCommand), with REDIS_URL. */
export function startService(redisUrl: string, options: SpawnOptions = {}) {
  const command = serviceCommand();
  return spawnServer(
    "service",
    [MAIN],
    // No admin listener: two service processes run at once in places.
    { ...command.env, REDIS_URL: redisUrl, LOG_LEVEL: "warn", ADMIN_PORT: "0" },
    { ...options, nodeFlags: [...command.nodeFlags, ...(options.nodeFlags ?? [])] },
  );
}

/** The minimal @grpc/grpc-js peer over the same store and handlers. */
export function startPeer(redisUrl: string) {
  return spawnServer("grpc-js peer", ["dist/bench/grpc-js-peer.js"], { REDIS_URL: redisUrl });
}

/** A bare node:http2 server answering every call with `response` (see bare-h2-server.ts). */
export function startBareServer(response: Uint8Array) {
  return spawnServer(
    "bare node:http2",
    ["dist/bench/bare-h2-server.js", Buffer.from(response).toString("hex")],
    {},
  );
}
