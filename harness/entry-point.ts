import { readFileSync } from "node:fs";

/**
 * How users run a built entry point: the environment and Node flags of its
 * `#!/usr/bin/env -S VAR=value node --flag` line, which `npm start` and the
 * Docker image execute. Whatever spawns `node <file>` itself (the process
 * tests, the benchmarks) adds these, so the process runs with the runtime
 * tuning it has in production.
 */
export function entryPointCommand(file: string): {
  env: Record<string, string>;
  nodeFlags: string[];
} {
  const shebang = readFileSync(file, "utf8").split("\n", 1)[0] ?? "";
  const words = shebang.replace(/^#!\/usr\/bin\/env -S /, "").split(/\s+/);
  const node = words.indexOf("node");
  const env = Object.fromEntries(
    words.slice(0, node).map((w) => w.split("=", 2) as [string, string]),
  );
  return { env, nodeFlags: words.slice(node + 1) };
}
