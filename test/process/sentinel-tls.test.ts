import { randomBytes } from "node:crypto";
import { createSessionStoreClient } from "@sessionstore/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { createTestPki, type TestCa, type TestPki } from "../support/pki.js";
import { logLines, runServer, type ServerProcess } from "../support/server-process.js";

// The server as deployed, finding its Redis through Sentinel over TLS:
// sentinels and data nodes TLS-only with a private CA (no client
// certificates here; test/store/redis-sentinel-tls.test.ts has those).

let pki: TestPki;
let ca: TestCa;
let set: RedisSentinelSet;
const started: ServerProcess[] = [];

function start(env: Record<string, string>): ServerProcess {
  const server = runServer(env);
  started.push(server);
  return server;
}

/** The settings that reach the set: both TLS switches and the CA. */
function sentinelTlsEnv(): Record<string, string> {
  return {
    REDIS_SENTINELS: set.addresses,
    REDIS_SENTINEL_NAME: set.name,
    REDIS_SENTINEL_TLS: "true",
    REDIS_TLS: "true",
    REDIS_TLS_CA_FILE: ca.certFile,
  };
}

beforeAll(async () => {
  pki = createTestPki();
  ca = pki.ca("process-sentinel-ca");
  const server = ca.issue("process-sentinel-server", { san: ["IP:127.0.0.1"], usage: "server" });
  set = await startRedisSentinelSet({
    tls: { certFile: server.certFile, keyFile: server.keyFile, caFile: ca.certFile },
  });
}, 60_000);

afterEach(() => {
  for (const server of started.splice(0)) server.kill();
});

afterAll(async () => {
  await set?.stop();
  pki?.remove();
});

describe("REDIS_SENTINELS with REDIS_SENTINEL_TLS and REDIS_TLS", () => {
  it("serves from the primary the sentinels name, all over TLS", async () => {
    const server = start({
      PORT: "0",
      HOST: "127.0.0.1",
      KEY_PREFIX: "sentinel-tls-main",
      ...sentinelTlsEnv(),
    });
    const port = await server.port();
    const lines = logLines(server.output);
    expect(lines.find((l) => l.msg === "connected to Redis")?.redis).toBe(
      `the primary of ${set.name} via sentinels ${set.addresses}`,
    );
    expect(lines.filter((l) => l.msg === "waiting for Redis")).toEqual([]);
    const client = createSessionStoreClient({ baseUrl: `http://127.0.0.1:${port}` });
    const userId = uniqueUserId();
    await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    expect((await client.get({ userId, sessionId: "s" })).session?.version).toBe(1n);
    // On the primary, whose only port is its TLS one.
    const primary = set.primary.client();
    try {
      expect(await primary.hexists(`sentinel-tls-main:{${userId}}:h`, "s")).toBe(1);
    } finally {
      primary.disconnect();
    }
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  });

  it("exits 69 naming the sentinel and the TLS cause when the CA is not theirs, never a password", async () => {
    const password = `pw-${randomBytes(16).toString("hex")}`;
    const rogue = pki.ca("process-sentinel-rogue-ca");
    const server = start({
      ...sentinelTlsEnv(),
      REDIS_TLS_CA_FILE: rogue.certFile,
      REDIS_SENTINEL_PASSWORD: password,
      REDIS_PASSWORD: password,
      REDIS_CONNECT_TIMEOUT_MS: "1500",
      LOG_LEVEL: "trace",
    });
    expect(await server.exited).toBe(69);
    const fatal = logLines(server.output).find((l) => l.msg === "cannot reach Redis");
    expect(JSON.stringify(fatal)).toMatch(
      /was not ready within 1500 ms \(sentinel 127\.0\.0\.1:\d+: TLS: the server's certificate is not trusted \([A-Z_]+\)\)/,
    );
    expect(server.output.stdout + server.output.stderr).not.toContain(password);
  });

  it("exits 64 naming the settings when the TLS files have no TLS connection to secure", async () => {
    const { REDIS_TLS: _, REDIS_SENTINEL_TLS: __, ...env } = sentinelTlsEnv();
    const server = start(env);
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toBe(
      "sessionstore: REDIS_TLS_CA_FILE needs a TLS connection: set REDIS_TLS=true (the data nodes serve TLS) or REDIS_SENTINEL_TLS=true (the sentinels do), or both\n",
    );
  });
});
