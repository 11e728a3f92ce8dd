// CI's check that the image builds and runs, with no Docker engine: each
// stage's WORKDIR is a temp directory, COPY copies into it (from the build
// context less .dockerignore, or from an earlier stage's directory), RUN runs
// there with the stage's ENV, npm reaching the registry as Docker's would;
// then the last stage's ENTRYPOINT serves, its HEALTHCHECK passes, and
// SIGTERM ends it with exit 0. Run by .ci/run from the repository root.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, posix, relative } from "node:path";
import { onFreePorts } from "../harness/free-port.js";
import { waitFor } from "../harness/wait-for.js";
import { type Command, type CopyStep, dockerignore, parseDockerfile } from "./dockerfile.js";

const REPO = process.cwd();
const stages = parseDockerfile(readFileSync("Dockerfile", "utf8"));
const isIgnored = dockerignore(readFileSync(".dockerignore", "utf8"));
const runtime = stages.at(-1);
if (!runtime?.entrypoint || !runtime.healthcheck) throw new Error("no ENTRYPOINT or HEALTHCHECK");
const { entrypoint, healthcheck } = runtime;
const dirs: string[] = [];
const running = new Set<ChildProcess>();

/** How the container runs an exec- or shell-form command. */
const argvOf = (command: Command) =>
  command.form === "exec" ? command.argv : ["/bin/sh", "-c", command.text];

/** Starts a process; `exit` resolves with its code (or signal) once it has ended. */
function start(argv: string[], cwd: string, env: NodeJS.ProcessEnv, output: "inherit" | "pipe") {
  const [file = "", ...args] = argv;
  // stderr goes to CI's log either way: nothing here reads it.
  const child = spawn(file, args, { cwd, env, stdio: ["ignore", output, "inherit"] });
  running.add(child);
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  const exit = new Promise<number | string>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      running.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
  });
  return { child, exit, stdout: () => stdout };
}

/** Where a path in a stage's filesystem lives in the directory standing for it. */
function inStage(index: number, path: string): string {
  const workdir = stages[index]?.workdir ?? "/";
  const inside = posix.relative(workdir, posix.resolve(workdir, path));
  if (inside.startsWith("..")) throw new Error(`${path} is outside WORKDIR ${workdir}`);
  return join(dirs[index] ?? "", inside);
}

async function copy(step: CopyStep, index: number): Promise<void> {
  const target = inStage(index, step.destination);
  const intoDirectory = step.sources.length > 1 || step.destination.endsWith("/");
  const fromStage = stages.findIndex((s) => s.name === step.from);
  for (const source of step.sources) {
    const from = step.from ? inStage(fromStage, posix.resolve("/", source)) : join(REPO, source);
    if (!step.from && isIgnored(source))
      throw new Error(`COPY ${source}: not in the build context`);
    // A directory's contents go into the destination; a file goes into it
    // when it names a directory, else becomes it.
    const to =
      (await stat(from)).isDirectory() || !intoDirectory ? target : join(target, basename(from));
    await mkdir(join(to, ".."), { recursive: true });
    await cp(from, to, {
      recursive: true,
      filter: (path) => step.from !== undefined || !isIgnored(relative(REPO, path)),
    });
  }
}

/**
 * A RUN step sees the image's environment, not this machine's, except what
 * npm needs to reach the registry from here; each stage gets an npm cache of
 * its own, as a fresh image has.
 */
function runEnv(stage: number, stageEnv: Record<string, string>): NodeJS.ProcessEnv {
  const machine = ["PATH", "HOME", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR"];
  const proxies = Object.keys(process.env).filter((name) => /^(https?|no)_proxy$/i.test(name));
  const env = Object.fromEntries(
    [...machine, ...proxies].flatMap((name) => {
      const value = process.env[name];
      return value === undefined ? [] : [[name, value]];
    }),
  );
  return {
    ...env,
    npm_config_cache: join(dirs[stage] ?? "", "..", `npm-cache-${stage}`),
    ...stageEnv,
  };
}

async function build(root: string): Promise<void> {
  for (const [index, stage] of stages.entries()) {
    dirs.push(join(root, `stage-${index}`));
    await mkdir(dirs[index] ?? "");
    for (const step of stage.steps) {
      if (step.kind === "copy") {
        await copy(step, index);
        continue;
      }
      console.log(`RUN ${step.command}`);
      const code = await start(
        ["/bin/sh", "-c", step.command],
        dirs[index] ?? "",
        runEnv(index, step.env),
        "inherit",
      ).exit;
      if (code !== 0) throw new Error(`RUN ${step.command}: exit ${code}`);
    }
  }
}

/** The image holds the server's production dependencies and nothing else of the workspace's. */
function checkDependencies(dir: string): void {
  const read = (path: string) =>
    JSON.parse(readFileSync(path, "utf8")) as {
      name: string;
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
  const server = read("package.json");
  const client = read("clients/typescript/package.json");
  const needed = Object.keys(server.dependencies ?? {});
  const unwanted = [
    ...Object.keys(server.devDependencies ?? {}),
    ...Object.keys(client.dependencies ?? {}).filter((name) => !needed.includes(name)),
    client.name,
  ];
  const has = (name: string) => existsSync(join(dir, "node_modules", name));
  const missing = needed.filter((name) => !has(name));
  const extra = unwanted.filter(has);
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(
      `image node_modules: missing ${missing.join(", ")}; not wanted ${extra.join(", ")}`,
    );
  }
}

/** Serves from ENTRYPOINT until HEALTHCHECK passes, then SIGTERM must end it with exit 0. */
async function serve(dir: string): Promise<void> {
  // Docker's --timeout, 30s when not given.
  const timeout = healthcheck.options.timeout ?? "30s";
  const [, amount, unit] = /^(\d+)(ms|s|m)$/.exec(timeout) ?? [];
  if (amount === undefined || unit === undefined) throw new Error(`--timeout=${timeout}: not read`);
  const timeoutMs = Number(amount) * { ms: 1, s: 1000, m: 60_000 }[unit as "ms" | "s" | "m"];
  // The HEALTHCHECK finds the server by PORT, so PORT must be a real port
  // (retried if another process takes it first); the admin port may be any.
  await onFreePorts(1, async ([port = 0]) => {
    const env = {
      ...runtime?.env,
      PATH: process.env.PATH,
      PORT: `${port}`,
      ADMIN_PORT: "0",
      HOST: "127.0.0.1",
    };
    const server = start(argvOf(entrypoint), dir, env, "pipe");
    const check = async () => {
      const run = start(argvOf(healthcheck.command), dir, env, "pipe");
      // Docker kills a check that outlasts --timeout and counts it as failed.
      const timer = setTimeout(() => run.child.kill("SIGKILL"), timeoutMs);
      const code = await run.exit.finally(() => clearTimeout(timer));
      return code === 0 && run.stdout();
    };
    try {
      const output = await waitFor(
        "the HEALTHCHECK to pass",
        async () => {
          if (server.child.exitCode !== null)
            throw new Error(`the server exited: ${server.stdout()}`);
          return check();
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      console.log(`HEALTHCHECK: ${output.trim()}`);
    } catch (error) {
      server.child.kill("SIGKILL");
      // Another process took a port first: try again on fresh ones.
      if (server.stdout().includes("EADDRINUSE")) return undefined;
      throw error;
    }
    server.child.kill("SIGTERM");
    const code = await server.exit;
    if (code !== 0) throw new Error(`exit ${code} after SIGTERM: ${server.stdout()}`);
    console.log("SIGTERM: exit 0");
    return true;
  });
}

const root = await mkdtemp(join(tmpdir(), "sessionstore-image-"));
try {
  await build(root);
  const image = dirs.at(-1) ?? "";
  checkDependencies(image);
  await serve(image);
  console.log("the image, emulated: built, served, healthy, stopped cleanly");
} finally {
  for (const child of running) child.kill("SIGKILL");
  await rm(root, { recursive: true, force: true });
}
