import { type ExecFileException, execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** How a command ended: its exit code (or signal) and what it printed. */
export interface CommandResult {
  readonly code: number | string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to completion (at most 2 minutes); resolves with its exit
 * code and output whether it succeeded or not, so a test can show both.
 */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CommandResult> {
  const { timeoutMs = 120_000, ...rest } = options;
  return run(command, args, { ...rest, timeout: timeoutMs }).then(
    (done) => ({ code: 0, ...done }),
    (error: ExecFileException & { stdout?: string; stderr?: string }) => ({
      code: error.code ?? error.signal ?? null,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );
}
