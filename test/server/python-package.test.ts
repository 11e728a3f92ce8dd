import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  expectScenarioPassed,
  scenarioArgs,
  startScenarioServer,
} from "../support/client-scenario.js";
import { createTestPki } from "../support/pki.js";
import { runCommand } from "../support/run-command.js";
import type { ServerProcess } from "../support/server-process.js";

// The Python client package (clients/python) as a user installs it: copied
// out of the repository (pip builds in the source tree), installed with pip
// into a fresh virtualenv that sees Debian's grpcio and protobuf, offline,
// then the shared client scenario run with it against the real server over
// TLS with a bearer token.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Debian's Python: the one python3-grpcio, python3-protobuf and python3-venv install into. */
const PYTHON = "/usr/bin/python3";
const INSTALL = "sudo apt-get install python3-venv python3-grpcio python3-protobuf";
/** PATH only: a PYTHONPATH or proxy from the caller's shell must not change what loads or where it connects. */
const ENV = { PATH: process.env.PATH ?? "" };

describe("the Python client package", () => {
  it("installs with pip into a fresh virtualenv and runs the client scenario over TLS with a token", {
    timeout: 120_000,
  }, async () => {
    const temp = mkdtempSync(join(tmpdir(), "sessionstore-python-package-"));
    const pki = createTestPki();
    let server: ServerProcess | undefined;
    try {
      const venv = join(temp, "venv");
      const made = await runCommand(PYTHON, ["-m", "venv", "--system-site-packages", venv], {
        env: ENV,
      });
      expect(made.code, `${PYTHON} -m venv failed (${INSTALL}):\n${made.stderr}`).toBe(0);
      const source = join(temp, "package");
      cpSync(join(ROOT, "clients/python"), source, { recursive: true });
      const python = join(venv, "bin/python");
      // Offline: the build uses the system's setuptools, the runtime the
      // system's grpcio and protobuf.
      const installed = await runCommand(
        python,
        ["-m", "pip", "install", "--no-index", "--no-build-isolation", "--quiet", source],
        { env: ENV },
      );
      expect(installed.code, `pip install failed:\n${installed.stdout}${installed.stderr}`).toBe(0);

      const scenarioServer = await startScenarioServer(pki, "python");
      server = scenarioServer.server;
      const scenario = await runCommand(
        python,
        [join(source, "examples/scenario.py"), ...scenarioArgs(scenarioServer)],
        { env: ENV },
      );
      expectScenarioPassed(scenario, scenarioServer.token);
    } finally {
      server?.kill();
      pki.remove();
      rmSync(temp, { recursive: true, force: true });
    }
  });
});
