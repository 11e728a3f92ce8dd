/**
 * One run of sessionstore-ctl, from its arguments to its exit code, with
 * everything of the process (environment, output, signals) passed in by
 * main.ts, so nothing here reaches for globals. Help and usage errors are
 * answered from the command tables alone; the clients load only for a
 * command that calls the server, so those answer at once.
 */
import { parseCommandLine, UsageError } from "./command-line.js";
import type { Environment } from "./connection.js";
import { EXIT } from "./exit-codes.js";
import { commandHelp, mainHelp, usageMessage } from "./help.js";

/** What a run may touch of its process. */
export interface CliProcess {
  readonly env: Environment;
  /** Writes text to stdout. */
  readonly stdout: (text: string) => void;
  /** Writes text to stderr. */
  readonly stderr: (text: string) => void;
  /** A signal that aborts on SIGINT or SIGTERM (handlers installed when first asked). */
  readonly untilStopped: () => AbortSignal;
}

/** Runs the command line `argv` (without node and the script) and resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliProcess): Promise<number> {
  let line: ReturnType<typeof parseCommandLine>;
  try {
    line = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`${usageMessage(error)}\n`);
    return EXIT.usage;
  }
  if (line.kind === "help") {
    io.stdout(`${line.command ? commandHelp(line.command) : mainHelp()}\n`);
    return EXIT.ok;
  }
  const { runCommand } = await import("./run-command.js");
  return runCommand(line, io);
}
