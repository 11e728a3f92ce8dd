import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { TestPki } from "./pki.js";
import type { CommandResult } from "./run-command.js";
import { runServer, type ServerProcess } from "./server-process.js";

// The client scenario every language's client package runs (TypeScript's
// clients/typescript/examples/scenario.ts, Python's examples/scenario.py,
// Go's cmd/scenario): the server it runs against, and what it must print.

/** What a scenario prints when every step passes: step names and reasons, never ids. */
export const SCENARIO_OUTPUT = [
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
];

/** A scenario's server: TLS with a certificate of `pki`'s CA, and a bearer token in a file. */
export interface ScenarioServer {
  readonly server: ServerProcess;
  readonly target: string;
  readonly caFile: string;
  readonly tokenFile: string;
  readonly token: string;
}

/**
 * Starts the real server over TLS with a tokens file of one caller, `name`,
 * whose token the scenario reads from `tokenFile`. Admin scope: DeleteByUser,
 * one of the scenario's steps, needs it.
 */
export async function startScenarioServer(pki: TestPki, name: string): Promise<ScenarioServer> {
  const token = randomBytes(24).toString("base64url");
  const tokens = join(pki.dir, "tokens");
  writeFileSync(tokens, `${name} admin ${token}\n`);
  const tokenFile = join(pki.dir, "token");
  writeFileSync(tokenFile, `${token}\n`);
  const ca = pki.ca("ca");
  const cert = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
  const server = runServer({
    PORT: "0",
    HOST: "127.0.0.1",
    TLS_CERT_FILE: cert.certFile,
    TLS_KEY_FILE: cert.keyFile,
    AUTH_TOKENS_FILE: tokens,
  });
  const target = `127.0.0.1:${await server.port()}`;
  return { server, target, caFile: ca.certFile, tokenFile, token };
}

/**
 * The scenario's command-line arguments for `server`, the same in every
 * language (Go's flag package takes the two-dash form too).
 */
export function scenarioArgs(server: ScenarioServer): string[] {
  return ["--target", server.target, "--ca-file", server.caFile, "--token-file", server.tokenFile];
}

/** Asserts that a scenario run passed every step and never printed the token. */
export function expectScenarioPassed(result: CommandResult, token: string): void {
  expect(result.code, `the scenario failed:\n${result.stdout}${result.stderr}`).toBe(0);
  expect(result.stdout.trimEnd().split("\n")).toEqual(SCENARIO_OUTPUT);
  expect(result.stdout + result.stderr).not.toContain(token);
}
