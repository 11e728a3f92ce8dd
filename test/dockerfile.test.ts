// No Docker engine is available where the tests run, so this file checks the
// Dockerfile by reading it and then running its steps on this machine: one
// directory per stage stands for the stage's WORKDIR, COPY copies into it, RUN
// runs there, and the last stage's ENTRYPOINT and HEALTHCHECK run as the
// container would run them.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { onFreePorts } from "../harness/free-port.js";
import { waitFor } from "../harness/wait-for.js";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));

/** The current Node LTS line; move on when the next even release enters LTS. */
const NODE_LTS_MAJOR = 24;

/** npm ci of every dev dependency can take a minute or more on a cold cache. */
const BUILD_TIMEOUT_MS = 300_000;

/** Docker's HEALTHCHECK --timeout when the Dockerfile gives none. */
const DOCKER_DEFAULT_HEALTHCHECK_TIMEOUT = "30s";

// ---------------------------------------------------------------------------
// The parser: only the instructions and forms the emulation below reproduces.
// Anything else fails loudly, so this file is extended together with the
// Dockerfile instead of silently ignoring a new step.

/** An ENTRYPOINT/CMD: exec form (a JSON array) or shell form (run by /bin/sh -c). */
type Command = { form: "exec"; argv: string[] } | { form: "shell"; text: string };

interface CopyStep {
  kind: "copy";
  sources: string[];
  destination: string;
  /** The stage named by --from, or undefined for the build context. */
  from: string | undefined;
}

interface RunStep {
  kind: "run";
  command: string;
  /** The stage's ENV as it stands at this RUN (a later ENV does not apply). */
  env: Record<string, string>;
}

interface Stage {
  image: string;
  name: string | undefined;
  env: Record<string, string>;
  workdir: string | undefined;
  /** COPY and RUN in file order, since later steps depend on earlier ones. */
  steps: (CopyStep | RunStep)[];
  user: string | undefined;
  expose: string[];
  healthcheck: { options: Record<string, string>; command: Command } | undefined;
  entrypoint: Command | undefined;
}

interface Dockerfile {
  stages: Stage[];
  /** The last stage: the image that is shipped. */
  runtime: Stage;
}

const HEALTHCHECK_OPTIONS = new Set([
  "interval",
  "timeout",
  "start-period",
  "start-interval",
  "retries",
]);

/** Instructions with their line numbers, continuation lines joined. */
function logicalLines(text: string): { line: number; text: string }[] {
  const lines: { line: number; text: string }[] = [];
  let pending: { line: number; text: string } | undefined;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const trimmed = raw.trim();
    // Docker drops comment and blank lines even inside a continued instruction;
    // the `# syntax=` parser directive is such a comment line too.
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const continued = /\\\s*$/.test(raw);
    const part = continued ? raw.replace(/\\\s*$/, "") : raw;
    pending = pending
      ? { line: pending.line, text: pending.text + part }
      : { line: index + 1, text: part };
    if (!continued) {
      lines.push(pending);
      pending = undefined;
    }
  }
  if (pending) throw new Error(`Dockerfile line ${pending.line}: ends in a line continuation`);
  return lines;
}

/** Docker takes the exec form only when the text is a JSON array of strings. */
function execArgv(text: string): string[] | undefined {
  if (!text.startsWith("[")) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string")
      ? value
      : undefined;
  } catch {
    return undefined;
  }
}

function parseCommand(text: string): Command {
  const argv = execArgv(text);
  return argv ? { form: "exec", argv } : { form: "shell", text };
}

function parseDockerfile(text: string): Dockerfile {
  const stages: Stage[] = [];
  for (const { line, text: instruction } of logicalLines(text)) {
    const fail = (why: string): never => {
      throw new Error(
        `Dockerfile line ${line}: ${why} (not emulated by test/dockerfile.test.ts; extend it)`,
      );
    };
    const [, word = "", rest = ""] = /^(\S+)\s*(.*)$/s.exec(instruction.trim()) ?? [];
    const keyword = word.toUpperCase();
    const args = rest.trim();
    const words = args === "" ? [] : args.split(/\s+/);

    if (keyword === "FROM") {
      const [image, as, name, ...extra] = words;
      if (image === undefined || image.startsWith("--") || extra.length > 0) fail(`FROM ${args}`);
      if (as !== undefined && (as.toUpperCase() !== "AS" || name === undefined))
        fail(`FROM ${args}`);
      stages.push({
        image: image ?? "",
        // Stage names are case-insensitive.
        name: name?.toLowerCase(),
        env: {},
        workdir: undefined,
        steps: [],
        user: undefined,
        expose: [],
        healthcheck: undefined,
        entrypoint: undefined,
      });
      continue;
    }
    const stage = stages.at(-1) ?? fail(`${keyword} before the first FROM`);
    // The emulation maps a stage's WORKDIR to one directory, so files must
    // only ever be placed relative to it.
    const requireWorkdir = () => stage.workdir ?? fail(`${keyword} before WORKDIR`);

    switch (keyword) {
      case "ENV":
        for (const pair of words) {
          // No quoting or $variable expansion: the emulation would not match Docker's.
          const [, name, value] = /^([A-Za-z_][A-Za-z0-9_]*)=([^"'$\\]*)$/.exec(pair) ?? [];
          if (name === undefined || value === undefined) return fail(`ENV ${pair}`);
          stage.env[name] = value;
        }
        break;
      case "WORKDIR":
        if (words.length !== 1 || !args.startsWith("/") || args.includes("$"))
          fail(`WORKDIR ${args}`);
        if (stage.workdir !== undefined && stage.workdir !== args) fail("a second WORKDIR");
        stage.workdir = args;
        break;
      case "COPY": {
        const flags = words.filter((w) => w.startsWith("--"));
        const paths = words.filter((w) => !w.startsWith("--"));
        let from: string | undefined;
        for (const flag of flags) {
          const [, stageName] = /^--from=(.+)$/.exec(flag) ?? [];
          if (stageName === undefined) return fail(`COPY ${flag}`);
          from = stageName.toLowerCase();
          if (!stages.slice(0, -1).some((s) => s.name === from)) fail(`COPY from ${stageName}`);
        }
        const destination = paths.pop();
        if (destination === undefined || paths.length === 0 || args.startsWith("[")) {
          return fail(`COPY ${args}`);
        }
        if ([...paths, destination].some((p) => /[*?[$]/.test(p))) fail(`COPY ${args}`);
        requireWorkdir();
        stage.steps.push({ kind: "copy", sources: paths, destination, from });
        break;
      }
      case "RUN":
        if (args.startsWith("[") || args.startsWith("--")) fail(`RUN ${args}`);
        requireWorkdir();
        stage.steps.push({ kind: "run", command: args, env: { ...stage.env } });
        break;
      case "USER":
        if (words.length !== 1) fail(`USER ${args}`);
        stage.user = args;
        break;
      case "EXPOSE":
        for (const port of words) {
          if (!/^\d+(\/(tcp|udp))?$/.test(port)) fail(`EXPOSE ${port}`);
          stage.expose.push(port);
        }
        break;
      case "HEALTHCHECK": {
        const [, optionText = "", command] = /^((?:--\S+\s+)*)CMD\s+(.+)$/is.exec(args) ?? [];
        if (command === undefined) return fail(`HEALTHCHECK ${args}`);
        const options: Record<string, string> = {};
        for (const option of optionText.split(/\s+/).filter(Boolean)) {
          const [, name, value] = /^--([a-z-]+)=(\S+)$/.exec(option) ?? [];
          if (name === undefined || value === undefined || !HEALTHCHECK_OPTIONS.has(name)) {
            return fail(`HEALTHCHECK ${option}`);
          }
          options[name] = value;
        }
        stage.healthcheck = { options, command: parseCommand(command) };
        break;
      }
      case "ENTRYPOINT":
        stage.entrypoint = parseCommand(args);
        break;
      default:
        fail(`unknown instruction ${keyword}`);
    }
  }
  const runtime = stages.at(-1);
  if (!runtime) throw new Error("Dockerfile: no FROM");
  return { stages, runtime };
}

/** Turns a Docker duration (`3s`, `1m30s`, `500ms`) into milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  const rest = text.replace(/(\d+(?:\.\d+)?)(ms|s|m|h)/g, (_, amount: string, unit: string) => {
    total += Number(amount) * (units[unit] ?? Number.NaN);
    return "";
  });
  if (text === "" || rest !== "" || Number.isNaN(total)) throw new Error(`duration ${text}`);
  return total;
}

/**
 * .dockerignore as Docker reads it: patterns relative to the context root
 * (`node_modules` matches only the top-level one, unlike .gitignore), `*` and
 * `?` within one path segment, `**` across segments, `!` re-includes, the last
 * matching line wins, and a matching directory excludes all it contains.
 */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negated = l.startsWith("!");
      const pattern = posix.normalize((negated ? l.slice(1) : l).trim().replace(/^\/+/, ""));
      return { negated, regex: globToRegExp(pattern) };
    });
  return (path) => {
    const parts = posix.normalize(path).split("/");
    const selfAndParents = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const { negated, regex } of rules) {
      if (selfAndParents.some((p) => regex.test(p))) excluded = !negated;
    }
    return excluded;
  };
}

function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    if (glob.startsWith("**/", i)) {
      source += "(?:.*/)?";
      i += 2;
    } else if (glob.startsWith("**", i)) {
      source += ".*";
      i += 1;
    } else if (glob[i] === "*") {
      source += "[^/]*";
    } else if (glob[i] === "?") {
      source += "[^/]";
    } else if (glob[i] === "[" || glob[i] === "\\") {
      throw new Error(`.dockerignore ${glob}: character classes and escapes are not emulated`);
    } else {
      source += (glob[i] ?? "").replace(/[.+^${}()|\]]/g, "\\$&");
    }
  }
  return new RegExp(`^${source}$`);
}

const dockerfile = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));
const isIgnored = dockerignore(readFileSync(join(REPO, ".dockerignore"), "utf8"));
const { runtime } = dockerfile;

describe("the Dockerfile parser", () => {
  it("joins continued lines, skips comments and tells exec from shell form", () => {
    const { stages } = parseDockerfile(
      [
        "# syntax=docker/dockerfile:1",
        "FROM node:24-slim AS Build",
        "WORKDIR /app",
        "HEALTHCHECK --retries=3 \\",
        "  # Docker drops this comment line",
        "  CMD node check.js",
        'ENTRYPOINT ["a.js", "--flag"]',
        "FROM node:24-slim",
        "ENTRYPOINT a.js --flag",
      ].join("\n"),
    );
    expect(stages.map((s) => s.name)).toEqual(["build", undefined]);
    expect(stages[0]?.healthcheck).toEqual({
      options: { retries: "3" },
      command: { form: "shell", text: "node check.js" },
    });
    expect(stages[0]?.entrypoint).toEqual({ form: "exec", argv: ["a.js", "--flag"] });
    expect(stages[1]?.entrypoint).toEqual({ form: "shell", text: "a.js --flag" });
  });

  it("rejects instructions and forms the emulation does not reproduce", () => {
    for (const text of [
      "FROM node:24-slim\nARG VERSION=1",
      "FROM node:24-slim\nWORKDIR /app\nCOPY --chown=node src ./src",
      "FROM node:24-slim\nWORKDIR /app\nRUN --mount=type=cache,target=/root/.npm npm ci",
      "FROM node:24-slim\nCOPY src ./src",
      "FROM node:24-slim\nWORKDIR /app\nCOPY --from=nowhere /app/dist ./dist",
      "FROM node:24-slim\nENV PATH=$PATH:/app",
      "WORKDIR /app",
    ]) {
      expect(() => parseDockerfile(text), text).toThrow(/^Dockerfile line \d+: /);
    }
  });

  it("reads .dockerignore patterns as Docker does", () => {
    const ignored = dockerignore("node_modules\n*.log\n**/*.map\n!keep.log\ntmp?\n");
    expect(ignored("node_modules")).toBe(true);
    expect(ignored("node_modules/pino/package.json")).toBe(true);
    expect(ignored("src/node_modules")).toBe(false);
    expect(ignored("debug.log")).toBe(true);
    expect(ignored("src/debug.log")).toBe(false);
    expect(ignored("keep.log")).toBe(false);
    expect(ignored("main.js.map")).toBe(true);
    expect(ignored("dist/src/bin/main.js.map")).toBe(true);
    expect(ignored("src/main.ts")).toBe(false);
    expect(ignored("tmp1/state")).toBe(true);
    expect(ignored("tmp")).toBe(false);
  });
});

describe("the Dockerfile", () => {
  it("has two stages: build, then the runtime image", () => {
    expect(dockerfile.stages, "number of FROM stages").toHaveLength(2);
  });

  it(`builds every stage on node:${NODE_LTS_MAJOR}-slim (the current Node LTS)`, () => {
    for (const stage of dockerfile.stages) {
      const [, major] = /^node:(\d+)-slim$/.exec(stage.image) ?? [];
      expect(major, `FROM ${stage.image}: expected node:<major>-slim`).toBeDefined();
      expect(Number(major), `FROM ${stage.image}: Node major`).toBe(NODE_LTS_MAJOR);
    }
  });

  it("installs only production dependencies in the runtime image, with npm ci", () => {
    const installs = runtime.steps
      .flatMap((step) => (step.kind === "run" ? step.command.split(/&&|\|\||;/) : []))
      .map((command) => command.trim())
      .filter((command) => /^npm (ci|install|i)\b/.test(command));
    expect(installs, "npm installs in the runtime stage").not.toEqual([]);
    for (const command of installs) {
      expect(command, "a runtime-stage npm install").toMatch(/^npm ci\b.*\s--omit=dev(\s|$)/);
    }
  });

  it("runs the runtime image as a user other than root", () => {
    expect(runtime.user, "USER of the runtime stage").toBeDefined();
    const [user] = (runtime.user ?? "").split(":");
    expect(["root", "0"], `USER ${runtime.user}`).not.toContain(user);
  });

  it("exposes the gRPC port 50051 and the admin port 9090", () => {
    const ports = runtime.expose.map((port) => port.replace(/\/tcp$/, ""));
    expect(ports, "EXPOSE").toEqual(expect.arrayContaining(["50051", "9090"]));
  });

  it("starts the server in exec form, so SIGTERM reaches Node rather than a shell", () => {
    expect(runtime.entrypoint, "ENTRYPOINT").toMatchObject({ form: "exec" });
  });

  it("checks health with `node dist/src/bin/healthcheck.js` in exec form, nothing downloaded", () => {
    expect(runtime.healthcheck?.command, "HEALTHCHECK CMD").toEqual({
      form: "exec",
      argv: ["node", "dist/src/bin/healthcheck.js"],
    });
  });

  it("copies only files that exist in the repo and that .dockerignore lets through", () => {
    const sources = dockerfile.stages.flatMap((stage) =>
      stage.steps.flatMap((step) => (step.kind === "copy" && !step.from ? step.sources : [])),
    );
    expect(sources, "COPY sources from the build context").not.toEqual([]);
    for (const source of sources) {
      expect(existsSync(join(REPO, source)), `COPY ${source}: exists in the repo`).toBe(true);
      expect(isIgnored(source), `COPY ${source}: excluded by .dockerignore`).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------
// The emulated build and run.

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Started {
  child: ChildProcess;
  output: { stdout: string; stderr: string };
  /** Set once the process has ended and its output is complete. */
  exit: Exit | undefined;
  ended: Promise<Exit>;
}

/**
 * This machine's settings npm needs: HOME for ~/.npmrc, TMPDIR, and the
 * proxies and CA certificates that reach the registry from here.
 */
const NPM_MACHINE_SETTINGS = new Set([
  "HOME",
  "TMPDIR",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
]);

/**
 * The environment of a RUN step: PATH, the stage's ENV, and npm's settings
 * (HOME for ~/.npmrc, npm_config_* variables, proxies and CA certificates),
 * but nothing else of the test runner's (such as vitest's NODE_ENV=test), as
 * a RUN in Docker sees only the image's environment. npm gets a cache of its
 * own per stage: as in a fresh image, and because the runtime stage's
 * `npm cache clean --force` must not empty this machine's shared cache.
 */
function runEnvironment(stageEnv: Record<string, string>, npmCache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "" };
  for (const [name, value] of Object.entries(process.env)) {
    const npmSetting = /^npm_config_/i.test(name) && !/^npm_config_cache$/i.test(name);
    if (value !== undefined && (npmSetting || NPM_MACHINE_SETTINGS.has(name))) env[name] = value;
  }
  return { ...env, npm_config_cache: npmCache, ...stageEnv };
}

/** Maps a path in a stage's filesystem to the directory that stands for its WORKDIR. */
function inStage(dir: string, stage: Stage, containerPath: string): string {
  const workdir = stage.workdir ?? "/";
  const inside = posix.relative(workdir, posix.resolve(workdir, containerPath));
  if (inside.startsWith("..")) {
    throw new Error(`${containerPath} is outside WORKDIR ${workdir}; not emulated`);
  }
  return join(dir, inside);
}

describe("the image, built and run from the Dockerfile's steps outside Docker", () => {
  const running = new Set<ChildProcess>();
  let root: string | undefined;
  const stageDirs: string[] = [];

  /**
   * Starts a process in its own process group, so cleanup can end it along
   * with whatever it started (npm, tsc).
   */
  function start(argv: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Started {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error("empty command");
    const child = spawn(file, args, {
      cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    running.add(child);
    const started: Started = {
      child,
      output: { stdout: "", stderr: "" },
      exit: undefined,
      ended: new Promise<Exit>((resolveExit, reject) => {
        child.once("error", reject);
        child.once("close", (code, signal) => {
          running.delete(child);
          started.exit = { code, signal };
          resolveExit(started.exit);
        });
      }),
    };
    // The result is awaited where it matters; this keeps a spawn error that
    // nobody awaits any more from becoming an unhandled rejection.
    started.ended.catch(() => undefined);
    child.stdout?.on("data", (chunk: Buffer) => {
      started.output.stdout += chunk.toString("utf8");
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      started.output.stderr += chunk.toString("utf8");
    });
    return started;
  }

  /** How the container runs an exec- or shell-form command. */
  const argvOf = (command: Command) =>
    command.form === "exec" ? command.argv : ["/bin/sh", "-c", command.text];

  async function copy(step: CopyStep, stage: Stage, dir: string): Promise<void> {
    const target = inStage(dir, stage, step.destination);
    const intoDirectory = step.sources.length > 1 || step.destination.endsWith("/");
    for (const source of step.sources) {
      let from: string;
      let filter: (path: string) => boolean = () => true;
      if (step.from === undefined) {
        const inContext = posix.normalize(source).replace(/^\/+/, "");
        if (inContext.startsWith("..") || isIgnored(inContext)) {
          throw new Error(`COPY ${source}: not in the build context`);
        }
        from = join(REPO, inContext);
        filter = (path) => !isIgnored(relative(REPO, path));
      } else {
        const index = dockerfile.stages.findIndex((s) => s.name === step.from);
        const fromStage = dockerfile.stages[index];
        const fromDir = stageDirs[index];
        if (!fromStage || !fromDir) throw new Error(`COPY --from=${step.from}: no such stage`);
        from = inStage(fromDir, fromStage, posix.resolve("/", source));
      }
      // A directory's contents go into the destination; a file goes into it
      // when it names a directory, else becomes it.
      const directory = (await stat(from)).isDirectory();
      const to = directory || !intoDirectory ? target : join(target, basename(from));
      await cp(from, to, { recursive: true, filter });
    }
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "sessionstore-dockerfile-"));
    for (const [index, stage] of dockerfile.stages.entries()) {
      const dir = join(root, `stage-${index}-${stage.name ?? "runtime"}`);
      const npmCache = join(root, `npm-cache-${index}`);
      await mkdir(dir);
      stageDirs.push(dir);
      for (const step of stage.steps) {
        if (step.kind === "copy") {
          await copy(step, stage, dir);
          continue;
        }
        const run = start(["/bin/sh", "-c", step.command], dir, runEnvironment(step.env, npmCache));
        const { code, signal } = await run.ended;
        if (code !== 0) {
          const output = (run.output.stdout + run.output.stderr).slice(-4000);
          throw new Error(`RUN ${step.command}: exit ${code ?? signal}\n${output}`);
        }
      }
    }
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    for (const child of running) {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // The group has already gone.
      }
    }
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** The runtime stage's directory, once beforeAll has built it. */
  function runtimeDir(): string {
    const dir = stageDirs[dockerfile.stages.length - 1];
    if (!dir) throw new Error("the runtime stage was not built");
    return dir;
  }

  /** Every package directory under node_modules, as package-lock.json names them. */
  async function installedPackages(dir: string, under = "node_modules"): Promise<string[]> {
    if (!existsSync(join(dir, under))) return [];
    const found: string[] = [];
    for (const entry of await readdir(join(dir, under))) {
      if (entry.startsWith(".")) continue;
      const names = entry.startsWith("@")
        ? (await readdir(join(dir, under, entry))).map((scoped) => `${entry}/${scoped}`)
        : [entry];
      for (const name of names) {
        found.push(
          `${under}/${name}`,
          ...(await installedPackages(dir, `${under}/${name}/node_modules`)),
        );
      }
    }
    return found;
  }

  it("holds every production dependency and none that only development needs", async () => {
    const dir = runtimeDir();
    const lock = JSON.parse(await readFile(join(dir, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    const locked = Object.entries(lock.packages).filter(([path]) => path !== "");
    const devOnly = locked.filter(([, meta]) => meta.dev === true).map(([path]) => path);
    const production = locked
      .filter(([, meta]) => meta.dev !== true && meta.optional !== true)
      .map(([path]) => path);
    const installed = new Set(await installedPackages(dir));

    expect(devOnly, "the lockfile marks dev-only packages").toContain("node_modules/typescript");
    expect(
      devOnly.filter((path) => installed.has(path)),
      "dev-only packages in the image",
    ).toEqual([]);
    expect(
      production.filter((path) => !installed.has(path)),
      "production packages missing from the image",
    ).toEqual([]);
    expect(existsSync(join(dir, "node_modules/typescript")), "typescript").toBe(false);
    expect(existsSync(join(dir, "node_modules/vitest")), "vitest").toBe(false);
    expect(existsSync(join(dir, "node_modules/@connectrpc/connect-node")), "connect-node").toBe(
      true,
    );
  });

  it("serves from its ENTRYPOINT, passes its HEALTHCHECK and /healthz, and exits 0 on SIGTERM", async () => {
    const dir = runtimeDir();
    const { entrypoint, healthcheck } = runtime;
    if (!entrypoint || !healthcheck)
      throw new Error("the runtime stage lacks ENTRYPOINT or HEALTHCHECK");
    const checkTimeoutMs = durationMs(
      healthcheck.options.timeout ?? DOCKER_DEFAULT_HEALTHCHECK_TIMEOUT,
    );
    /** The container's environment for a run on the given ports. */
    const envFor = (port: number, adminPort: number) => ({
      // What the container gives the server: its ENV and PATH; the ports and
      // a loopback host keep this run to itself, and no REDIS_URL means the
      // embedded store.
      ...runtime.env,
      PATH: process.env.PATH ?? "",
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      HOST: "127.0.0.1",
    });
    // Docker kills a check that outlasts --timeout and counts it as failed.
    const check = async (env: Record<string, string>): Promise<{ exit: Exit; stdout: string }> => {
      const run = start(argvOf(healthcheck.command), dir, env);
      const timer = setTimeout(() => run.child.kill("SIGKILL"), checkTimeoutMs);
      try {
        return { exit: await run.ended, stdout: run.output.stdout };
      } finally {
        clearTimeout(timer);
      }
    };

    // The ports are chosen free; should another process take one first,
    // the server exits with EADDRINUSE and starts again on fresh ports.
    const { env, adminPort, server, passed } = await onFreePorts(
      2,
      async ([port = 0, adminPort = 0]) => {
        const env = envFor(port, adminPort);
        // Setting ENTRYPOINT drops the base image's CMD, so no arguments follow.
        const server = start(argvOf(entrypoint), dir, env);
        const serverEnded = server.ended.then((exit) => {
          throw new Error(
            `the server exited (${exit.code ?? exit.signal}): ${server.output.stderr}${server.output.stdout}`,
          );
        });
        try {
          const passed = await Promise.race([
            waitFor(
              "the HEALTHCHECK to pass",
              async () => {
                const result = await check(env);
                return result.exit.code === 0 && result;
              },
              { timeoutMs: 15_000, intervalMs: 100 },
            ),
            serverEnded,
          ]);
          return { env, adminPort, server, passed };
        } catch (error) {
          if (server.output.stdout.includes("EADDRINUSE")) return undefined;
          throw error;
        }
      },
    );
    expect(passed.stdout.trim(), "HEALTHCHECK output").toBe("SERVING");

    const healthz = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
    expect(healthz.status, "GET /healthz").toBe(200);
    await healthz.body?.cancel();

    // The #! line's `env -S` replaces itself with node, so the process the
    // container signals is Node itself, started with the line's flags.
    const commandLine = execFileSync("ps", ["-o", "args=", "-p", String(server.child.pid)], {
      encoding: "utf8",
    }).trim();
    const shebang =
      (await readFile(join(dir, "dist/src/bin/main.js"), "utf8")).split("\n", 1)[0] ?? "";
    expect(commandLine, "the entry point process").toMatch(/^node\s(.*\s)?dist\/src\/main\.js$/);
    for (const flag of shebang.match(/--\S+/g) ?? []) {
      expect(commandLine, `the #! line's ${flag}`).toContain(flag);
    }

    server.child.kill("SIGTERM");
    const exit = await waitFor("the server to exit after SIGTERM", () => server.exit, {
      timeoutMs: 5000,
    });
    expect(exit, `exit after SIGTERM; output: ${server.output.stdout}`).toEqual({
      code: 0,
      signal: null,
    });
    const after = await check(env);
    expect(after.exit.code, `HEALTHCHECK once stopped: ${after.stdout}`).not.toBe(0);
  }, 60_000);
});
