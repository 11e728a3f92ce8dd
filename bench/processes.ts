import { type ChildProcess, spawn } from "node:child_process";
import { entryPointCommand } from "../harness/entry-point.js";
import { waitFor } from "../harness/wait-for.js";
import { rawGrpcClient } from "./load.js";
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
  /** A name for logs and reports, instead of the default. */
  readonly name?: string;
  /** Environment variables on top of the defaults. */
  readonly env?: Readonly<Record<string, string>>;
  /** Metadata the readiness call sends: the credentials of a server that asks for them. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Spawns `node <args>` with PORT=0, reads the port it chose from the first
 * JSON line on stdout that has one, and resolves once it answers a gRPC
 * call (NOT_FOUND for an unknown session is an answer).
 */
async function spawnServer(
  name: string,
  args: string[],
  env: Record<string, string>,
  { nodeFlags = [], metadata = {} }: SpawnOptions = {},
): Promise<ServerUnderTest> {
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags, ...args], {
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

/** A bare node:http2 server answering every call with `response` (see bare-h2-server.ts). */
export function startBareServer(response: Uint8Array) {
  return spawnServer(
    "bare node:http2",
    ["dist/bench/bare-h2-server.js", Buffer.from(response).toString("hex")],
    {},
  );
}
