/**
 * A parsed command run against the server: the connection made from the
 * options and environment, the command's calls, and what a failure prints
 * and exits with.
 */
import type { CommandLine } from "./command-line.js";
import { UsageError } from "./command-line.js";
import { COMMAND_RUNNERS } from "./commands.js";
import { connect } from "./connection.js";
import { EXIT } from "./exit-codes.js";
import { describeFailure, exitCodeOf, failureLine } from "./failure.js";
import { usageMessage } from "./help.js";
import type { CliProcess } from "./run.js";

/** Runs `line` (a command, not a help request) and resolves with the exit code. */
export async function runCommand(
  line: Extract<CommandLine, { kind: "run" }>,
  io: CliProcess,
): Promise<number> {
  const print = (text: string) => io.stdout(`${text}\n`);
  const warn = (text: string) => io.stderr(`${text}\n`);
  const json = line.values.json === true;
  try {
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
      warn(usageMessage(error));
      return EXIT.usage;
    }
    const failure = describeFailure(error);
    warn(json ? JSON.stringify({ error: failure }) : `sessionstore-ctl: ${failureLine(failure)}`);
    return exitCodeOf(error);
  }
}
