import { X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { createTestPki, type TestCa, type TestPki } from "../support/pki.js";
import {
  logLines,
  runServer,
  runServerWithAdmin,
  type ServerProcess,
} from "../support/server-process.js";

/**
 * The security settings as an operator meets them: the real entry point,
 * its files, SIGHUP and its admin port. Secrets used here are distinctive,
 * so a scan of every output stream can prove none of them leaked.
 */

const OLD_TOKEN = "old-token-7f3a9c1e5b2d4f6a8c0e";
const NEW_TOKEN = "new-token-0d2f4b6a8c1e3f5a7b9d";
const READ_TOKEN = "read-token-5c7e9a1b3d5f7a9c1e3b";

let dir: string;
let pki: TestPki;
let ca: TestCa;
const running: ServerProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "sessionstore-security-"));
  pki = createTestPki();
  ca = pki.ca("ca");
});

afterAll(() => {
  for (const server of running) server.kill();
  rmSync(dir, { recursive: true, force: true });
  pki?.remove();
});

function start(env: Record<string, string>): ServerProcess {
  const server = runServer({ PORT: "0", HOST: "127.0.0.1", ...env });
  running.push(server);
  return server;
}

async function startWithAdmin(env: Record<string, string>) {
  const started = await runServerWithAdmin({ PORT: "0", HOST: "127.0.0.1", ...env });
  running.push(started.server);
  return started;
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** What an Upsert with `token` over gRPC ends with: "OK" or the code's name. */
async function upsertWith(
  baseUrl: string,
  token: string | undefined,
  ca?: Buffer,
): Promise<string> {
  const pool = clientPool(baseUrl, ca ? { ca } : undefined);
  try {
    await pool
      .sessions({ protocol: "grpc" })
      .upsert(
        { session: sessionFixture(uniqueUserId(), "s"), ttl: ttl(60_000) },
        token ? { headers: { authorization: `Bearer ${token}` } } : {},
      );
    return "OK";
  } catch (error) {
    return Code[ConnectError.from(error).code];
  } finally {
    pool.close();
  }
}

/** Asserts that no secret of this file appears in anything the server wrote. */
function expectNoSecrets(server: ServerProcess): void {
  const all = server.output.stdout + server.output.stderr;
  for (const secret of [OLD_TOKEN, NEW_TOKEN, READ_TOKEN, "BEGIN", "PRIVATE KEY"]) {
    expect(all).not.toContain(secret);
  }
}

describe("without credentials", () => {
  it("starts, warns at every start that every caller is trusted, and /readyz says so", async () => {
    const { server, adminPort } = await startWithAdmin({});
    const warning = logLines(server.output).find((line) =>
      String(line.msg).startsWith("SECURITY WARNING"),
    );
    expect(warning?.level).toBe("warn");
    const readyz = await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).text();
    expect(readyz).toContain("every caller that reaches the port is trusted");
  });
});

describe("the tokens file", () => {
  it("refuses to start when a line is wrong: exit 64, the line and why, never the token", async () => {
    const tokens = file("bad-tokens", `api write ${OLD_TOKEN}\nweb writer ${NEW_TOKEN}\n`);
    const server = start({ AUTH_TOKENS_FILE: tokens });
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toContain(
      `AUTH_TOKENS_FILE "${tokens}" line 2: SCOPE must be one of read, write, admin`,
    );
    expectNoSecrets(server);
    const missing = start({ AUTH_TOKENS_FILE: join(dir, "no-such-file") });
    expect(await missing.exited).toBe(64);
    expect(missing.output.stderr).toContain("cannot read AUTH_TOKENS_FILE");
    expect(missing.output.stderr).toContain("ENOENT");
  });

  it("rotates tokens on SIGHUP without downtime, and keeps them when the new file is bad", async () => {
    const tokens = file("tokens", `api write ${OLD_TOKEN}\n`);
    chmodSync(tokens, 0o644);
    const { server, adminPort, port } = await startWithAdmin({ AUTH_TOKENS_FILE: tokens });
    const baseUrl = `http://127.0.0.1:${port}`;
    expect(
      logLines(server.output).some((line) => String(line.msg).startsWith("SECURITY WARNING")),
    ).toBe(false);
    expect(await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).text()).toBe("ready\n");
    expect(await upsertWith(baseUrl, OLD_TOKEN)).toBe("OK");
    expect(await upsertWith(baseUrl, NEW_TOKEN)).toBe("Unauthenticated");

    // Both valid while clients move over.
    writeFileSync(tokens, `api write ${OLD_TOKEN}\napi write ${NEW_TOKEN}\n`);
    server.child.kill("SIGHUP");
    await waitFor(
      "the new token to work",
      async () => (await upsertWith(baseUrl, NEW_TOKEN)) === "OK",
    );
    expect(await upsertWith(baseUrl, OLD_TOKEN)).toBe("OK");

    // The old one retired.
    writeFileSync(tokens, `api write ${NEW_TOKEN}\n`);
    server.child.kill("SIGHUP");
    await waitFor(
      "the old token to stop working",
      async () => (await upsertWith(baseUrl, OLD_TOKEN)) === "Unauthenticated",
    );

    // A typo keeps what is in force and says where it is.
    writeFileSync(tokens, `api write ${NEW_TOKEN}\n# ok\napi write\n`);
    server.child.kill("SIGHUP");
    const refused = await waitFor("the reload to be refused", () =>
      logLines(server.output).find((line) => String(line.msg).startsWith("SIGHUP: not reloaded")),
    );
    expect(refused.reason).toContain("line 3: expected NAME SCOPE TOKEN [RATE], found 2 fields");
    expect(refused.level).toBe("error");
    expect(await upsertWith(baseUrl, NEW_TOKEN)).toBe("OK");
    expect(await upsertWith(baseUrl, OLD_TOKEN)).toBe("Unauthenticated");
    expectNoSecrets(server);
  });
});

describe("TLS files", () => {
  it("refuses to start with a key that is not the certificate's: exit 64 naming the settings", async () => {
    const one = ca.issue("one", { san: ["IP:127.0.0.1"], usage: "server" });
    const two = ca.issue("two", { san: ["IP:127.0.0.1"], usage: "server" });
    const server = start({ TLS_CERT_FILE: one.certFile, TLS_KEY_FILE: two.keyFile });
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toContain(
      "TLS_CERT_FILE and TLS_KEY_FILE are not a PEM certificate and its private key",
    );
    expectNoSecrets(server);
  });

  it("renews the certificate on SIGHUP: new connections see it, open ones keep working", async () => {
    const first = ca.issue("first", { san: ["IP:127.0.0.1"], usage: "server" });
    const certFile = file("tls.crt", first.cert.toString());
    const keyFile = file("tls.key", first.key.toString());
    const tokens = file("tls-tokens", `api write ${OLD_TOKEN}\n`);
    chmodSync(tokens, 0o600);
    const server = start({
      TLS_CERT_FILE: certFile,
      TLS_KEY_FILE: keyFile,
      AUTH_TOKENS_FILE: tokens,
    });
    const port = await server.port();
    expect(server.output.stdout).not.toContain("readable by other users");
    const baseUrl = `https://127.0.0.1:${port}`;
    const pool = clientPool(baseUrl, { ca: ca.cert });
    try {
      const client = pool.sessions({ protocol: "grpc" });
      const headers = { authorization: `Bearer ${OLD_TOKEN}` };
      await client.upsert(
        { session: sessionFixture(uniqueUserId(), "s"), ttl: ttl(60_000) },
        { headers },
      );
      expect(await fingerprint(port)).toBe(new X509Certificate(first.cert).fingerprint256);

      const renewed = ca.issue("renewed", { san: ["IP:127.0.0.1"], usage: "server" });
      writeFileSync(certFile, renewed.cert);
      writeFileSync(keyFile, renewed.key);
      server.child.kill("SIGHUP");
      const wanted = new X509Certificate(renewed.cert).fingerprint256;
      await waitFor(
        "new connections to see the renewed certificate",
        async () => (await fingerprint(port)) === wanted,
      );
      // The connection opened before the renewal.
      await client.upsert(
        { session: sessionFixture(uniqueUserId(), "s"), ttl: ttl(60_000) },
        { headers },
      );
      expect(await upsertWith(baseUrl, OLD_TOKEN, ca.cert)).toBe("OK");
    } finally {
      pool.close();
    }
    expectNoSecrets(server);
  });
});

describe("the admin port", () => {
  it("serves HTTPS with ADMIN_TLS and /metrics only to admin tokens with METRICS_AUTH", async () => {
    const cert = ca.issue("admin-server", { san: ["IP:127.0.0.1"], usage: "server" });
    const tokens = file("admin-tokens", `ops admin ${NEW_TOKEN}\nviewer read ${READ_TOKEN}\n`);
    const { server, adminPort } = await startWithAdmin({
      TLS_CERT_FILE: cert.certFile,
      TLS_KEY_FILE: cert.keyFile,
      AUTH_TOKENS_FILE: tokens,
      ADMIN_TLS: "true",
      METRICS_AUTH: "true",
    });
    const get = (path: string, token?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.get(
          {
            host: "127.0.0.1",
            port: adminPort,
            path,
            ca: ca.cert,
            headers: token ? { authorization: `Bearer ${token}` } : {},
          },
          (res) => {
            let body = "";
            res.on("data", (chunk: Buffer) => {
              body += chunk.toString("utf8");
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on("error", reject);
      });
    expect((await get("/healthz")).status).toBe(200);
    expect(await get("/readyz")).toEqual({ status: 200, body: "ready\n" });
    expect(await get("/metrics")).toEqual({
      status: 401,
      body: "send 'authorization: Bearer <token>'\n",
    });
    expect((await get("/metrics", "not-a-known-token-at-all")).status).toBe(401);
    expect(await get("/metrics", READ_TOKEN)).toEqual({
      status: 403,
      body: "the caller's scope (read) does not allow /metrics, which needs admin\n",
    });
    const metrics = await get("/metrics", NEW_TOKEN);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(
      /sessionstore_auth_failures_total\{reason="permission_denied"\} 1/,
    );
    await expect(fetch(`http://127.0.0.1:${adminPort}/healthz`)).rejects.toThrow();
    expectNoSecrets(server);
  });
});

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
function fingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { port, host: "127.0.0.1", ca: ca.cert, ALPNProtocols: ["h2"] },
      () => {
        resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? "");
        socket.end();
      },
    );
    socket.once("error", reject);
  });
}
