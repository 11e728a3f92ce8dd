import { execFileSync } from "node:child_process";
import { assertRedisServerInstalled } from "../../harness/redis-server.js";

/**
 * Runs once before any test file: fails the run at once, with install
 * instructions, when redis-server is missing, and builds dist/ for the tests
 * that run the real entry point as a child process.
 */
export default function setup(): void {
  assertRedisServerInstalled();
  execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });
}
