import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { createTestPki, type Issued, type TestCa, type TestPki } from "../support/pki.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

/**
 * dist/src/bin/healthcheck.js (the image's HEALTHCHECK) against real server
 * processes that serve cleartext, TLS and mutual TLS, some asking health
 * callers for credentials. The check gets the server's environment plus its
 * own HEALTHCHECK_* settings, as in the container.
 */

const run = promisify(execFile);
const HEALTHCHECK = "dist/src/bin/healthcheck.js";

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the check once with exactly `env` (plus PATH). */
function check(env: Record<string, string>): Promise<Result> {
  return run(process.execPath, [HEALTHCHECK], {
    env: { PATH: process.env.PATH ?? "", ...env },
    timeout: 10_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({
      code: error.code ?? -1,
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }),
  );
}

/** Checks until it passes, as Docker does (health follows the store's first probe). */
function passes(env: Record<string, string>): Promise<Result> {
  return waitFor(
    "the health check to pass",
    async () => {
      const result = await check(env);
      return result.code === 0 && result;
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
}

/** A server process and the environment the check shares with it (PORT made real). */
interface Served {
  readonly server: ServerProcess;
  readonly env: Record<string, string>;
}

async function serve(env: Record<string, string>): Promise<Served> {
  const server = runServer({ PORT: "0", HOST: "127.0.0.1", ...env });
  started.push(server);
  return { server, env: { HOST: "127.0.0.1", ...env, PORT: String(await server.port()) } };
}

const started: ServerProcess[] = [];
const token = randomBytes(24).toString("base64url");
const PROBE_SAN = "spiffe://test/healthcheck";
let pki: TestPki;
let ca: TestCa;
let rogueCa: TestCa;
let serverCert: Issued;
let probeCert: Issued;

beforeAll(() => {
  pki = createTestPki();
  ca = pki.ca("ca");
  rogueCa = pki.ca("rogue");
  serverCert = ca.issue("server", { san: ["DNS:localhost", "IP:127.0.0.1"], usage: "server" });
  probeCert = ca.issue("probe", { san: [`URI:${PROBE_SAN}`], usage: "client" });
});

afterAll(async () => {
  for (const server of started) server.kill();
  await Promise.all(started.map((server) => server.exited));
  pki?.remove();
});

/** Writes a file into the test's temporary directory and returns its path. */
function file(name: string, content: string): string {
  const path = join(pki.dir, name);
  writeFileSync(path, content);
  return path;
}

describe("against a cleartext port", () => {
  it("passes, and refuses TLS settings that cannot apply", async () => {
    const { env } = await serve({});
    expect((await passes(env)).stdout).toBe("SERVING\n");
    const misplaced = await check({ ...env, HEALTHCHECK_CA_FILE: ca.certFile });
    expect(misplaced).toMatchObject({
      code: 1,
      stderr: "healthcheck: HEALTHCHECK_CA_FILE needs TLS_CERT_FILE: the port serves cleartext\n",
    });
  });

  it("sends HEALTHCHECK_TOKEN_FILE's token when HEALTH_AUTH asks for one", async () => {
    const tokens = file("cleartext-tokens", `probe read ${token}\n`);
    const { env } = await serve({ AUTH_TOKENS_FILE: tokens, HEALTH_AUTH: "true" });
    // As `echo token > file` writes it: with a newline, which is no part of the token.
    const withToken = { ...env, HEALTHCHECK_TOKEN_FILE: file("probe-token", `${token}\n`) };
    expect((await passes(withToken)).stdout).toBe("SERVING\n");

    const without = await check(env);
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/^healthcheck: HEALTH_AUTH=true asks the check for credentials/);

    const wrongToken = randomBytes(24).toString("base64url");
    const wrong = await check({
      ...env,
      HEALTHCHECK_TOKEN_FILE: file("wrong-token", wrongToken),
    });
    expect(wrong).toMatchObject({
      code: 1,
      stdout: "no answer: [unauthenticated] unknown bearer token\n",
    });

    const notAToken = await check({
      ...env,
      HEALTHCHECK_TOKEN_FILE: file("two-tokens", `${token} ${token}\n`),
    });
    expect(notAToken.code).toBe(1);
    expect(notAToken.stderr).toMatch(/does not hold one bearer token/);
    for (const result of [without, wrong, notAToken]) {
      expect(result.stdout + result.stderr).not.toContain(token);
      expect(result.stdout + result.stderr).not.toContain(wrongToken);
    }
  });
});

describe("against a TLS port", () => {
  let served: Served;
  beforeAll(async () => {
    served = await serve({ TLS_CERT_FILE: serverCert.certFile, TLS_KEY_FILE: serverCert.keyFile });
  });

  it("passes with no setting of its own, trusting the server's TLS_CERT_FILE", async () => {
    // The file holds the leaf alone: it passes only because the check
    // verifies against exactly that certificate.
    expect((await passes(served.env)).stdout).toBe("SERVING\n");
  });

  it("verifies against HEALTHCHECK_CA_FILE: the issuing CA passes, another CA fails", async () => {
    expect((await passes({ ...served.env, HEALTHCHECK_CA_FILE: ca.certFile })).code).toBe(0);
    const rogue = await check({ ...served.env, HEALTHCHECK_CA_FILE: rogueCa.certFile });
    expect(rogue).toMatchObject({
      code: 1,
      stdout: "no answer: [internal] unable to get local issuer certificate\n",
    });
  });

  it("checks the name in the server's certificate against HEALTHCHECK_SERVER_NAME", async () => {
    expect((await passes({ ...served.env, HEALTHCHECK_SERVER_NAME: "localhost" })).code).toBe(0);
    const other = await check({ ...served.env, HEALTHCHECK_SERVER_NAME: "sessions.example.com" });
    expect(other).toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/^no answer: .*Hostname\/IP does not match/),
    });
  });

  it("fails when it speaks cleartext to the TLS port", async () => {
    await passes(served.env);
    const { TLS_CERT_FILE: _, TLS_KEY_FILE: __, ...cleartext } = served.env;
    expect((await check(cleartext)).code).toBe(1);
  });
});

describe("against a mutual TLS port that asks health callers for credentials", () => {
  let served: Served;
  const probe = () => ({
    HEALTHCHECK_CERT_FILE: probeCert.certFile,
    HEALTHCHECK_KEY_FILE: probeCert.keyFile,
  });
  beforeAll(async () => {
    served = await serve({
      TLS_CERT_FILE: serverCert.certFile,
      TLS_KEY_FILE: serverCert.keyFile,
      TLS_CLIENT_CA_FILE: ca.certFile,
      AUTH_TOKENS_FILE: file("mtls-tokens", `probe read cert:${PROBE_SAN}\n`),
      HEALTH_AUTH: "true",
    });
  });

  it("passes with a client certificate that the tokens file names, and no token", async () => {
    expect((await passes({ ...served.env, ...probe() })).stdout).toBe("SERVING\n");
  });

  it("says what to set when no client certificate is given", async () => {
    expect(await check(served.env)).toMatchObject({
      code: 1,
      stderr:
        "healthcheck: the port requires client certificates (TLS_CLIENT_CA_FILE): set HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE to one that chains to it\n",
    });
  });

  it("fails with a certificate of another CA, or one the tokens file does not name", async () => {
    await passes({ ...served.env, ...probe() });
    const rogue = rogueCa.issue("rogue-probe", { san: [`URI:${PROBE_SAN}`], usage: "client" });
    const refused = await check({
      ...served.env,
      HEALTHCHECK_CERT_FILE: rogue.certFile,
      HEALTHCHECK_KEY_FILE: rogue.keyFile,
    });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^no answer: /);
    const stranger = ca.issue("stranger", { san: ["URI:spiffe://test/stranger"], usage: "client" });
    const unknown = await check({
      ...served.env,
      HEALTHCHECK_CERT_FILE: stranger.certFile,
      HEALTHCHECK_KEY_FILE: stranger.keyFile,
    });
    expect(unknown).toMatchObject({
      code: 1,
      stdout:
        "no answer: [unauthenticated] the client certificate names no known caller, and no bearer token was sent\n",
    });
  });
});
