#!/usr/bin/env node
/**
 * The sessionstore-ctl executable (the package's `bin`): wires the process
 * into runCli. Nothing imports this file.
 */
import { runCli } from "./run.js";

let stop: AbortController | undefined;

/** Aborts on the first SIGINT or SIGTERM, which then ends a watch with exit code 0. */
function untilStopped(): AbortSignal {
  if (!stop) {
    const controller = new AbortController();
    const abort = () => controller.abort();
    process.once("SIGINT", abort);
    process.once("SIGTERM", abort);
    stop = controller;
  }
  return stop.signal;
}

// A reader that went away (`sessionstore-ctl watch u1 | head -3`) ends the run quietly.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  process.exit(0);
});

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  untilStopped,
});
