// The Dockerfile's policy, read by .ci/dockerfile.ts (no Docker engine runs
// here), and its HEALTHCHECK command run against a live server. CI builds and
// runs the image's steps outside Docker in its own step
// (.ci/emulate-dockerfile.ts), as that needs the registry and npm test
// must not.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { dockerignore, parseDockerfile } from "../../.ci/dockerfile.js";
import { waitFor } from "../../harness/wait-for.js";
import { runServer } from "../support/server-process.js";

const run = promisify(execFile);

/** The current Node LTS line; move on when the next even release enters LTS. */
const NODE_LTS_MAJOR = 24;

const stages = parseDockerfile(readFileSync("Dockerfile", "utf8"));
const isIgnored = dockerignore(readFileSync(".dockerignore", "utf8"));
const runtime = stages.at(-1);
if (!runtime) throw new Error("Dockerfile: no FROM");

/** The single commands of a stage's RUN steps (split at &&, || and ;). */
const commandsOf = (stage: (typeof stages)[number]) =>
  stage.steps.flatMap((step) =>
    step.kind === "run" ? step.command.split(/&&|\|\||;/).map((c) => c.trim()) : [],
  );

describe("the Dockerfile reader", () => {
  it("joins continued lines, tells exec from shell form, and refuses what it does not know", () => {
    const [first] = parseDockerfile(
      'FROM node:24-slim AS Build\nWORKDIR /app\nHEALTHCHECK --retries=3 \\\n  # dropped\n  CMD node check.js\nENTRYPOINT ["a.js", "--flag"]',
    );
    expect(first).toMatchObject({
      name: "build",
      healthcheck: { options: { retries: "3" }, command: { form: "shell", text: "node check.js" } },
      entrypoint: { form: "exec", argv: ["a.js", "--flag"] },
    });
    for (const text of [
      "FROM node:24-slim\nARG VERSION=1",
      "FROM node:24-slim\nWORKDIR /app\nCOPY --chown=node src ./src",
      "FROM node:24-slim\nWORKDIR /app\nRUN --mount=type=cache,target=/root/.npm npm ci",
      "FROM node:24-slim\nCOPY src ./src",
      "FROM node:24-slim\nENV PATH=$PATH:/app",
    ]) {
      expect(() => parseDockerfile(text), text).toThrow(/not understood/);
    }
  });
});

describe("the Dockerfile", () => {
  it(`has a build stage and a runtime stage, all on node:${NODE_LTS_MAJOR}-slim (the Node LTS)`, () => {
    expect(stages.length, "FROM stages").toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.image).toBe(`node:${NODE_LTS_MAJOR}-slim`);
  });

  it("installs only the server's production dependencies in the runtime image, with npm ci", () => {
    const installs = commandsOf(runtime).filter((c) => /^npm (ci|install|i)\b/.test(c));
    expect(installs, "npm installs in the runtime stage").not.toEqual([]);
    for (const command of installs) {
      expect(command).toMatch(/^npm ci\b.*\s--omit=dev(\s|$)/);
      // Not the client package's dependencies, which npm would add for the workspace.
      expect(command).toMatch(/\s--workspaces=false(\s|$)/);
    }
  });

  it("gives every npm ci the package.json of each workspace the lockfile names", () => {
    const lock = JSON.parse(readFileSync("package-lock.json", "utf8")) as {
      packages: Record<string, unknown>;
    };
    const workspaces = Object.keys(lock.packages).filter(
      (path) => path !== "" && !path.includes("node_modules/"),
    );
    expect(workspaces).toContain("clients/typescript");
    for (const stage of stages) {
      const ci = stage.steps.findIndex((s) => s.kind === "run" && /\bnpm ci\b/.test(s.command));
      if (ci < 0) continue;
      const copied = stage.steps
        .slice(0, ci)
        .flatMap((s) => (s.kind === "copy" && !s.from ? s.sources : []));
      for (const workspace of workspaces) expect(copied).toContain(`${workspace}/package.json`);
    }
  });

  it("runs as a user other than root, exposes 50051 and 9090, and starts in exec form", () => {
    expect(["root", "0", undefined]).not.toContain(runtime.user?.split(":")[0]);
    expect(runtime.expose.map((p) => p.replace(/\/tcp$/, ""))).toEqual(
      expect.arrayContaining(["50051", "9090"]),
    );
    // Exec form, so SIGTERM reaches Node rather than a shell.
    expect(runtime.entrypoint?.form).toBe("exec");
  });

  it("checks health with `node dist/src/bin/healthcheck.js` in exec form", () => {
    expect(runtime.healthcheck?.command).toEqual({
      form: "exec",
      argv: ["node", "dist/src/bin/healthcheck.js"],
    });
  });

  it("copies only files that exist and that .dockerignore lets through, which keeps out builds and installs", () => {
    for (const path of ["node_modules", "dist", ".git", "clients/typescript/node_modules"]) {
      expect(isIgnored(path), `${path} in the build context`).toBe(true);
    }
    const sources = stages.flatMap((stage) =>
      stage.steps.flatMap((step) => (step.kind === "copy" && !step.from ? step.sources : [])),
    );
    for (const source of sources) {
      expect(existsSync(source), `COPY ${source}: exists`).toBe(true);
      expect(isIgnored(source), `COPY ${source}: excluded by .dockerignore`).toBe(false);
    }
  });
});

describe("the HEALTHCHECK command", () => {
  const check = (env: Record<string, string>) => {
    const [file = "", ...args] =
      runtime.healthcheck?.command.form === "exec" ? runtime.healthcheck.command.argv : [];
    // The container gives the check the server's environment: PORT and HOST.
    return run(file, args, { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 10_000 }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code?: number; stdout?: string }) => ({ code: error.code, stdout: error.stdout }),
    );
  };

  it("prints SERVING and exits 0 while the server runs, and exits 1 once it has stopped", async () => {
    const env = { PORT: "0", HOST: "127.0.0.1" };
    const server = runServer(env);
    try {
      const port = String(await server.port());
      // As Docker does, check again until it passes (health follows the store's first probe).
      const passed = await waitFor(
        "the HEALTHCHECK to pass",
        async () => {
          const result = await check({ ...env, PORT: port });
          return result.code === 0 && result;
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      expect(passed.stdout).toBe("SERVING\n");
      server.child.kill("SIGTERM");
      expect(await server.exited, "server exit after SIGTERM").toBe(0);
      const stopped = await check({ ...env, PORT: port });
      expect(stopped.code, stopped.stdout).toBe(1);
      expect(stopped.stdout).toMatch(/^no answer: /);
    } finally {
      server.kill();
    }
  });
});
