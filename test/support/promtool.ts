import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What promtool printed and how it ended. */
export interface PromtoolResult {
  readonly code: number;
  readonly output: string;
}

/**
 * Runs Prometheus' promtool and returns its exit code and output (stdout
 * then stderr). A missing promtool is an error naming the package to
 * install, never a skipped test: the deploy tests are part of the suite,
 * and .ci/run installs the package.
 */
export async function promtool(args: readonly string[]): Promise<PromtoolResult> {
  try {
    const { stdout, stderr } = await run("promtool", [...args], { timeout: 30_000 });
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (error) {
    const failure = error as { code?: unknown; stdout?: string; stderr?: string };
    if (failure.code === "ENOENT") {
      throw new Error(
        "promtool is not installed: install Debian's prometheus package, which ships it (sudo apt-get install prometheus; .ci/run does this), or Prometheus' release for your platform",
      );
    }
    if (typeof failure.code !== "number") throw error;
    return { code: failure.code, output: `${failure.stdout ?? ""}${failure.stderr ?? ""}` };
  }
}
