import { type ExecFileException, execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createTestPki } from "../support/pki.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

// The Go client module (clients/go) built offline against Debian's
// packaged sources, in GOPATH mode (no module proxy here): the module is
// copied under a GOPATH of its own, next to /usr/share/gocode, and its
// scenario command run against the real server over TLS with a token.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODULE = "sessionstore/clients/go";
const DEBIAN_GOPATH = "/usr/share/gocode";
const INSTALL =
  "sudo apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev";
/** The Go toolchain, when installed (.ci/run installs it). */
const GO = spawnSync("go", ["version"]).status === 0;

function runCommand(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) {
  return run(command, args, { cwd, env, timeout: 120_000 }).then(
    (done) => ({ code: 0 as number | string | null, ...done }),
    (error: ExecFileException & { stdout?: string; stderr?: string }) => ({
      code: error.code ?? error.signal ?? null,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );
}

describe("the Go client module", () => {
  // The issue allows this one skip: without Go there is nothing to build.
  it.skipIf(!GO)(
    `builds offline against Debian's sources and runs the client scenario over TLS with a token (needs: ${INSTALL})`,
    {
      timeout: 180_000,
    },
    async () => {
      const temp = mkdtempSync(join(tmpdir(), "sessionstore-go-"));
      const pki = createTestPki();
      let server: ServerProcess | undefined;
      try {
        const source = join(temp, "src", MODULE);
        mkdirSync(join(source, ".."), { recursive: true });
        cpSync(join(ROOT, "clients/go"), source, { recursive: true });
        // GOPATH mode: imports resolve under the two GOPATH entries, nothing
        // is downloaded. The build cache stays Go's default, shared by runs.
        const env = {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? temp,
          GOPATH: `${temp}:${DEBIAN_GOPATH}`,
          GO111MODULE: "off",
          GOFLAGS: "",
          GOPROXY: "off",
        };
        const binary = join(temp, "scenario");
        const built = await runCommand(
          "go",
          ["build", "-o", binary, "./cmd/scenario"],
          source,
          env,
        );
        expect(built.code, `go build failed (${INSTALL}):\n${built.stderr}`).toBe(0);
        const vetted = await runCommand("go", ["vet", "./..."], source, env);
        expect(vetted.code, `go vet:\n${vetted.stderr}`).toBe(0);

        const token = randomBytes(24).toString("base64url");
        const tokens = join(pki.dir, "tokens");
        // DeleteByUser, one of the scenario's steps, needs the admin scope.
        writeFileSync(tokens, `go admin ${token}\n`);
        const tokenFile = join(pki.dir, "token");
        writeFileSync(tokenFile, `${token}\n`);
        const ca = pki.ca("ca");
        const cert = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
        server = runServer({
          PORT: "0",
          HOST: "127.0.0.1",
          TLS_CERT_FILE: cert.certFile,
          TLS_KEY_FILE: cert.keyFile,
          AUTH_TOKENS_FILE: tokens,
        });
        const port = await server.port();
        const scenario = await runCommand(
          binary,
          ["-target", `127.0.0.1:${port}`, "-ca-file", ca.certFile, "-token-file", tokenFile],
          temp,
          { PATH: env.PATH },
        );
        expect(scenario.code, `the scenario failed:\n${scenario.stdout}${scenario.stderr}`).toBe(0);
        expect(scenario.stdout.trimEnd().split("\n")).toEqual([
          "ok insert-only upsert version=1",
          "ok insert-only upsert again reason=SESSION_EXISTS",
          "ok get",
          "ok stale CAS reason=VERSION_MISMATCH",
          "ok touch keeps the version",
          "ok list pages=3 sessions=5",
          "ok list all",
          "ok delete-by-user deleted=4",
          "ok kept",
          "ok get deleted reason=SESSION_NOT_FOUND",
          "ok scenario passed",
        ]);
        expect(scenario.stdout + scenario.stderr).not.toContain(token);
      } finally {
        server?.kill();
        pki.remove();
        rmSync(temp, { recursive: true, force: true });
      }
    },
  );
});
