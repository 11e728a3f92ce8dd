import { execFileSync } from "node:child_process";
import { assertRedisServerInstalled } from "../../harness/redis-server.js";

/** Set in the Vitest process once the setup has run. */
const DONE = Symbol.for("sessionstore.test.global-setup");

/**
 * Runs once before any test file: fails the run at once, with install
 * instructions, when redis-server is missing, and builds dist/ for the tests
 * that run the real entry point as a child process. Vitest calls it for the
 * root config and again for each project (vitest.config.ts), all in its own
 * process: only the first call works.
 */
export default function setup(): void {
  const global = globalThis as { [DONE]?: boolean };
  if (global[DONE]) return;
  global[DONE] = true;
  assertRedisServerInstalled();
  execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });
}
