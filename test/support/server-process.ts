import { type ChildProcess, spawn } from "node:child_process";
import { entryPointCommand } from "../../harness/entry-point.js";
import { waitFor } from "../../harness/wait-for.js";

/** The built entry point, as `npm start` runs it (global setup builds it). */
export const MAIN = "dist/src/bin/main.js";

/** A server process started from the real entry point. */
export interface ServerProcess {
  readonly child: ChildProcess;
  /** stdout (the JSON log) and stderr, as written so far. */
  readonly output: { stdout: string; stderr: string };
  /** Resolves with the exit code (or signal) once the process ends. */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** The port it listens on, once it does. */
  port(): Promise<number>;
  /** The admin port it listens on (undefined when ADMIN_PORT is off), once it does. */
  adminPort(): Promise<number | undefined>;
  /**
   * Runs a full garbage collection in the server and resolves, once it is
   * done, with the server's process.memoryUsage() right after it; only for
   * a server started with `collectableGarbage`.
   */
  collectGarbage(): Promise<NodeJS.MemoryUsage>;
  /** Ends the process if it still runs. */
  kill(): void;
}

/** How {@link runServer} starts the entry point. */
export interface RunServerOptions {
  /**
   * Let the test run a full garbage collection in the server
   * (collectGarbage), for memory figures taken at one point of V8's cycle
   * rather than anywhere on the saw-tooth of garbage it lets pile up
   * between major collections, and for what the server retains (its
   * memoryUsage() after the collection). Adds --expose-gc and a SIGUSR2
   * handler (an --import); nothing else changes.
   */
  readonly collectableGarbage?: boolean;
}

/** The line a server started with `collectableGarbage` writes after each collection. */
interface CollectedLine {
  readonly msg: "test: garbage collected";
  readonly collection: number;
  readonly memory: NodeJS.MemoryUsage;
}

/**
 * Preloaded into a server started with `collectableGarbage`: on SIGUSR2, a
 * full garbage collection, then a CollectedLine on stdout.
 */
const COLLECT_ON_SIGUSR2 = [
  "let collection = 0;",
  'process.on("SIGUSR2", () => {',
  "  globalThis.gc();",
  "  collection++;",
  '  const line = { msg: "test: garbage collected", collection, memory: process.memoryUsage() };',
  '  process.stdout.write(JSON.stringify(line) + "\\n");',
  "});",
].join("\n");

/**
 * Runs `node dist/src/bin/main.js` as `npm start` and the Docker image do
 * (with the Node flags and environment of its `#!` line: see
 * entryPointCommand), with exactly `env` (plus PATH, and ADMIN_PORT=off
 * unless given) and `args`, so nothing from the test runner's environment
 * leaks in.
 */
export function runServer(
  env: Record<string, string>,
  args: string[] = [],
  { collectableGarbage = false }: RunServerOptions = {},
): ServerProcess {
  const command = entryPointCommand(MAIN);
  const testFlags = collectableGarbage
    ? ["--expose-gc", `--import=data:text/javascript,${encodeURIComponent(COLLECT_ON_SIGUSR2)}`]
    : [];
  const child = spawn(process.execPath, [...command.nodeFlags, ...testFlags, MAIN, ...args], {
    // No admin listener unless a test asks for one (ADMIN_PORT=0 picks a free port).
    env: { PATH: process.env.PATH ?? "", ADMIN_PORT: "off", ...command.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    output.stdout += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output.stderr += chunk.toString("utf8");
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal as NodeJS.Signals)));
  });
  const listening = () =>
    waitFor(
      "the server to log that it listens",
      () => {
        if (child.exitCode !== null)
          throw new Error(`server exited: ${output.stderr}${output.stdout}`);
        const line = output.stdout.split("\n").find((l) => l.includes("SessionStore listening"));
        return line ? (JSON.parse(line) as { port: number; adminPort?: number }) : undefined;
      },
      { timeoutMs: 10_000 },
    );
  let collections = 0;
  return {
    child,
    output,
    exited,
    port: async () => (await listening()).port,
    adminPort: async () => (await listening()).adminPort,
    collectGarbage: async () => {
      if (!collectableGarbage)
        throw new Error("the server was not started with collectableGarbage");
      const collection = ++collections;
      child.kill("SIGUSR2");
      const line = await waitFor(
        `garbage collection ${collection} in the server`,
        () =>
          logLines(output).find(
            (l): l is Record<string, unknown> & CollectedLine =>
              l.msg === "test: garbage collected" && l.collection === collection,
          ),
        { timeoutMs: 10_000 },
      );
      return line.memory;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/** The JSON log lines a server process wrote. */
export function logLines(output: { stdout: string }): Record<string, unknown>[] {
  return output.stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs the server with its admin listener on a free port (ADMIN_PORT=0). */
export async function runServerWithAdmin(
  env: Record<string, string>,
  options: RunServerOptions = {},
): Promise<{ server: ServerProcess; port: number; adminPort: number }> {
  const server = runServer({ ...env, ADMIN_PORT: "0" }, [], options);
  try {
    const [port, adminPort] = [await server.port(), await server.adminPort()];
    if (adminPort === undefined) throw new Error("the server logged no admin port");
    return { server, port, adminPort };
  } catch (error) {
    server.kill();
    throw error;
  }
}

/** Memory a process holds: V8's heap in use and what lives outside it (Buffers and the like). */
export function retained(memory: NodeJS.MemoryUsage): number {
  return memory.heapUsed + memory.external;
}

/** Bytes in MB, to one decimal. */
export function megabytes(bytes: number): number {
  return Math.round(bytes / 1024 / 102.4) / 10;
}
