/**
 * One run of sessionstore-ctl, from its arguments to its exit code, with
 * everything of the process (environment, output, signals) passed in by
 * main.ts, so nothing here reaches for globals.
 */

import { parseCommandLine, UsageError } from "./command-line.js";
import { COMMAND_RUNNERS } from "./commands.js";
import { connect, type Environment } from "./connection.js";
import { describeFailure, EXIT, exitCodeOf, failureLine } from "./exit-codes.js";
import { commandHelp, mainHelp } from "./help.js";

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
  const print = (line: string) => io.stdout(`${line}\n`);
  const warn = (line: string) => io.stderr(`${line}\n`);
  let json = false;
  try {
    const line = parseCommandLine(argv);
    if (line.kind === "help") {
      print(line.command ? commandHelp(line.command) : mainHelp());
      return EXIT.ok;
    }
    json = line.values.json === true;
    if (line.values.token !== undefined) {
      warn("warning: a token on the command line is visible in ps; prefer --token-file");
    }
    const connection = connect(line.values, io.env);
    return await COMMAND_RUNNERS[line.command.name]({
      connection,
      args: line.args,
      values: line.values,
      json,
      print,
      warn,
      untilStopped: io.untilStopped,
    });
  } catch (error) {
    if (error instanceof UsageError) {
      const help = error.command
        ? `sessionstore-ctl ${error.command} --help`
        : "sessionstore-ctl --help";
      warn(`sessionstore-ctl: ${error.message}\nSee ${help}.`);
      return EXIT.usage;
    }
    const failure = describeFailure(error);
    warn(json ? JSON.stringify({ error: failure }) : `sessionstore-ctl: ${failureLine(failure)}`);
    return exitCodeOf(error);
  }
}
