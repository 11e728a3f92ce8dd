import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { offlineGoEnv } from "../../harness/offline-go.js";
import {
  expectScenarioPassed,
  scenarioArgs,
  startScenarioServer,
} from "../support/client-scenario.js";
import { createTestPki } from "../support/pki.js";
import { runCommand } from "../support/run-command.js";
import type { ServerProcess } from "../support/server-process.js";

// The Go client module (clients/go) built offline against Debian's
// packaged sources, in GOPATH mode (no module proxy here): the module is
// copied under a GOPATH of its own, next to /usr/share/gocode, and its
// scenario command run against the real server over TLS with a token.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODULE = "sessionstore/clients/go";
const INSTALL =
  "sudo apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev";
/** The Go toolchain, when installed (.ci/run installs it). */
const GO = spawnSync("go", ["version"]).status === 0;

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
        // The build cache stays Go's default, shared by runs.
        const env = offlineGoEnv(temp);
        const binary = join(temp, "scenario");
        const built = await runCommand("go", ["build", "-o", binary, "./cmd/scenario"], {
          cwd: source,
          env,
        });
        expect(built.code, `go build failed (${INSTALL}):\n${built.stderr}`).toBe(0);
        const vetted = await runCommand("go", ["vet", "./..."], { cwd: source, env });
        expect(vetted.code, `go vet:\n${vetted.stderr}`).toBe(0);

        const scenarioServer = await startScenarioServer(pki, "go");
        server = scenarioServer.server;
        const scenario = await runCommand(binary, scenarioArgs(scenarioServer), {
          cwd: temp,
          env: { PATH: env.PATH },
        });
        expectScenarioPassed(scenario, scenarioServer.token);
      } finally {
        server?.kill();
        pki.remove();
        rmSync(temp, { recursive: true, force: true });
      }
    },
  );
});
