import { type ChildProcess, spawn } from "node:child_process";
import { onFreePorts } from "../../harness/free-port.js";
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
  /** Ends the process if it still runs. */
  kill(): void;
}

/**
 * Runs `node dist/src/bin/main.js` with exactly `env` (plus PATH, and ADMIN_PORT=0
 * unless given) and `args`, so nothing from the test runner's environment
 * leaks in.
 */
export function runServer(env: Record<string, string>, args: string[] = []): ServerProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    // No admin listener unless a test asks for one: its default port would
    // collide between servers started in parallel.
    env: { PATH: process.env.PATH ?? "", ADMIN_PORT: "0", ...env },
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
  return {
    child,
    output,
    exited,
    port: () =>
      waitFor(
        "the server to log that it listens",
        () => {
          if (child.exitCode !== null)
            throw new Error(`server exited: ${output.stderr}${output.stdout}`);
          const line = output.stdout.split("\n").find((l) => l.includes("SessionStore listening"));
          return line ? (JSON.parse(line) as { port: number }).port : undefined;
        },
        { timeoutMs: 10_000 },
      ),
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

/**
 * Runs the server with its admin listener on a free port (it cannot be 0,
 * which disables it), on another one if the port is taken first.
 */
export function runServerWithAdmin(
  env: Record<string, string>,
): Promise<{ server: ServerProcess; port: number; adminPort: number }> {
  return onFreePorts(1, async ([adminPort = 0]) => {
    const server = runServer({ ...env, ADMIN_PORT: String(adminPort) });
    try {
      return { server, port: await server.port(), adminPort };
    } catch (error) {
      server.kill();
      if (server.output.stdout.includes("EADDRINUSE")) return undefined;
      throw error;
    }
  });
}
