import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createSessionStoreClient } from "@sessionstore/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  createTestPki,
  type Issued,
  mutualRedisTls,
  type TestCa,
  type TestPki,
} from "../support/pki.js";
import { readmeAclRule } from "../support/readme-acl.js";
import {
  logLines,
  runServer,
  runServerWithAdmin,
  type ServerProcess,
} from "../support/server-process.js";

/** Distinctive and random: found in output only if it leaked. */
const password = `pw-${randomBytes(16).toString("hex")}`;
const wrongPassword = `wrong-${randomBytes(16).toString("hex")}`;

const acl = readmeAclRule();
const started: ServerProcess[] = [];
/** Everything the server processes of this file wrote, and what /metrics answered. */
const outputs: string[] = [];
let pki: TestPki;
let ca: TestCa;
let client: Issued;
let passwordFile: string;
let redis: RedisServer;

function start(env: Record<string, string>, args: string[] = []): ServerProcess {
  const server = runServer(env, args);
  started.push(server);
  return server;
}

/** The settings that reach the TLS, ACL-only Redis as the README's user. */
function secureRedisEnv(): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    REDIS_TLS_CA_FILE: ca.certFile,
    REDIS_TLS_CERT_FILE: client.certFile,
    REDIS_TLS_KEY_FILE: client.keyFile,
    REDIS_USERNAME: acl.user,
    REDIS_PASSWORD_FILE: passwordFile,
  };
}

beforeAll(async () => {
  pki = createTestPki();
  ca = pki.ca("redis-ca");
  const files = mutualRedisTls(ca, "redis");
  client = files.client;
  passwordFile = join(pki.dir, "redis-password");
  // As an orchestrator's secret often is: with a trailing newline.
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  redis = await startRedisServer([], {
    tls: files.tls,
    users: [{ name: acl.user, password, rules: acl.rules }],
  });
});

afterEach(() => {
  for (const server of started.splice(0)) {
    server.kill();
    outputs.push(server.output.stdout, server.output.stderr);
  }
});

afterAll(async () => {
  await redis?.stop();
  pki?.remove();
});

describe("the server against Redis over TLS, as the README's ACL user", () => {
  it("serves calls, with its password read from REDIS_PASSWORD_FILE", async () => {
    const { server, port, adminPort } = await runServerWithAdmin({
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "trace",
      RPC_LOG_LEVEL: "info",
      ...secureRedisEnv(),
    });
    started.push(server);
    expect(logLines(server.output).find((l) => l.msg === "connected to Redis")).toMatchObject({
      redis: `127.0.0.1:${redis.port}`,
    });
    const sessions = createSessionStoreClient({ baseUrl: `http://127.0.0.1:${port}` });
    const userId = uniqueUserId();
    await sessions.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    expect((await sessions.get({ sessionId: "s", userId })).session?.version).toBe(1n);
    const admin = redis.client();
    try {
      // Stored under the prefix the user may use, and nothing denied it.
      expect(await admin.hexists(`sessionstore:{${userId}}:h`, "s")).toBe(1);
      expect(await admin.call("ACL", "LOG")).toEqual([]);
    } finally {
      admin.disconnect();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toContain("sessionstore_store_connected 1");
    outputs.push(metrics);
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  });

  it("exits 69 at once on a wrong password, saying authentication failed", async () => {
    const { REDIS_PASSWORD_FILE: _, ...env } = secureRedisEnv();
    const server = start({
      ...env,
      REDIS_PASSWORD: wrongPassword,
      LOG_LEVEL: "trace",
      // Long: only the refusal itself can end the start this soon.
      REDIS_CONNECT_TIMEOUT_MS: "60000",
    });
    expect(await server.exited).toBe(69);
    const fatal = logLines(server.output).find((l) => l.msg === "cannot reach Redis");
    expect(fatal).toMatchObject({ level: "fatal" });
    expect(JSON.stringify(fatal)).toContain(
      `Redis at 127.0.0.1:${redis.port} refused the credentials: authentication failed (WRONGPASS`,
    );
  });

  it("exits 64 naming both places when REDIS_URL and REDIS_PASSWORD both hold a password", async () => {
    const { REDIS_PASSWORD_FILE: _, ...env } = secureRedisEnv();
    const server = start({
      ...env,
      REDIS_URL: `rediss://:${encodeURIComponent(password)}@127.0.0.1:${redis.port}`,
      REDIS_PASSWORD: password,
      REDIS_USERNAME: acl.user,
    });
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toBe(
      "sessionstore: a password is given both in REDIS_URL and in REDIS_PASSWORD; give it in one place\n",
    );
  });

  it("lists the settings in --help, with no value of them", async () => {
    const server = start({ ...secureRedisEnv(), REDIS_PASSWORD_FILE: "" }, [
      "--help",
      "--redis-password",
      password,
    ]);
    expect(await server.exited).toBe(0);
    for (const name of [
      "REDIS_TLS_CA_FILE",
      "REDIS_TLS_CERT_FILE",
      "REDIS_TLS_KEY_FILE",
      "REDIS_USERNAME",
      "REDIS_PASSWORD",
      "REDIS_PASSWORD_FILE",
    ]) {
      expect(server.output.stdout).toContain(`, ${name}\n`);
    }
  });

  it("never wrote either password, or the key, in any of the runs above", () => {
    // The runs above ran in order; their output was collected after each.
    expect(outputs.length).toBeGreaterThanOrEqual(9);
    const all = outputs.join("\n");
    expect(all).toContain("connected to Redis");
    expect(all).toContain("WRONGPASS");
    for (const secret of [
      password,
      encodeURIComponent(password),
      wrongPassword,
      client.key.toString().split("\n")[1] ?? "missing key line",
    ]) {
      expect(all).not.toContain(secret);
    }
  });
});
