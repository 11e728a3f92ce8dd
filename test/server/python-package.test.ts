import { type ExecFileException, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createTestPki } from "../support/pki.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

// The Python client package (clients/python) as a user installs it: copied
// out of the repository (pip builds in the source tree), installed with pip
// into a fresh virtualenv that sees Debian's grpcio and protobuf, offline,
// then the shared client scenario run with it against the real server over
// TLS with a bearer token.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Debian's Python: the one python3-grpcio, python3-protobuf and python3-venv install into. */
const PYTHON = "/usr/bin/python3";
const INSTALL = "sudo apt-get install python3-venv python3-grpcio python3-protobuf";
/** PATH only: a PYTHONPATH or proxy from the caller's shell must not change what loads or where it connects. */
const ENV = { PATH: process.env.PATH ?? "" };

/** Runs a command; resolves with its exit code and output either way. */
function runCommand(command: string, args: readonly string[]) {
  return run(command, args, { env: ENV, timeout: 60_000 }).then(
    (done) => ({ code: 0 as number | string | null, ...done }),
    (error: ExecFileException & { stdout?: string; stderr?: string }) => ({
      code: error.code ?? error.signal ?? null,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );
}

describe("the Python client package", () => {
  it("installs with pip into a fresh virtualenv and runs the client scenario over TLS with a token", {
    timeout: 120_000,
  }, async () => {
    const temp = mkdtempSync(join(tmpdir(), "sessionstore-python-package-"));
    const pki = createTestPki();
    let server: ServerProcess | undefined;
    try {
      const venv = join(temp, "venv");
      const made = await runCommand(PYTHON, ["-m", "venv", "--system-site-packages", venv]);
      expect(made.code, `${PYTHON} -m venv failed (${INSTALL}):\n${made.stderr}`).toBe(0);
      const source = join(temp, "package");
      cpSync(join(ROOT, "clients/python"), source, { recursive: true });
      const python = join(venv, "bin/python");
      // Offline: the build uses the system's setuptools, the runtime the
      // system's grpcio and protobuf.
      const installed = await runCommand(python, [
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-build-isolation",
        "--quiet",
        source,
      ]);
      expect(installed.code, `pip install failed:\n${installed.stdout}${installed.stderr}`).toBe(0);

      const token = randomBytes(24).toString("base64url");
      const tokens = join(pki.dir, "tokens");
      // DeleteByUser, one of the scenario's steps, needs the admin scope.
      writeFileSync(tokens, `python admin ${token}\n`);
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
      const scenario = await runCommand(python, [
        join(source, "examples/scenario.py"),
        "--target",
        `127.0.0.1:${port}`,
        "--ca-file",
        ca.certFile,
        "--token-file",
        tokenFile,
      ]);
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
  });
});
