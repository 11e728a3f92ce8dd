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
  /** Ends the process if it still runs. */
  kill(): void;
}

/**
 * Runs `node dist/src/bin/main.js` as `npm start` and the Docker image do
 * (with the Node flags and environment of its `#!` line: see
 * entryPointCommand), with exactly `env` (plus PATH, and ADMIN_PORT=off
 * unless given) and `args`, so nothing from the test runner's environment
 * leaks in.
 */
export function runServer(env: Record<string, string>, args: string[] = []): ServerProcess {
  const command = entryPointCommand(MAIN);
  const child = spawn(process.execPath, [...command.nodeFlags, MAIN, ...args], {
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
  return {
    child,
    output,
    exited,
    port: async () => (await listening()).port,
    adminPort: async () => (await listening()).adminPort,
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
): Promise<{ server: ServerProcess; port: number; adminPort: number }> {
  const server = runServer({ ...env, ADMIN_PORT: "0" });
  try {
    const [port, adminPort] = [await server.port(), await server.adminPort()];
    if (adminPort === undefined) throw new Error("the server logged no admin port");
    return { server, port, adminPort };
  } catch (error) {
    server.kill();
    throw error;
  }
}
