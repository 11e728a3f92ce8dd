import { createSessionStoreClient } from "@sessionstore/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { logLines, runServer, type ServerProcess } from "../support/server-process.js";

// The server as deployed, finding its Redis through Sentinel.

let set: RedisSentinelSet;
const started: ServerProcess[] = [];

function start(env: Record<string, string>): ServerProcess {
  const server = runServer(env);
  started.push(server);
  return server;
}

beforeAll(async () => {
  set = await startRedisSentinelSet();
}, 60_000);

afterEach(() => {
  for (const server of started.splice(0)) server.kill();
});

afterAll(async () => {
  await set?.stop();
});

describe("REDIS_SENTINELS", () => {
  it("serves from the primary the sentinels name", async () => {
    const server = start({
      PORT: "0",
      HOST: "127.0.0.1",
      REDIS_SENTINELS: set.addresses,
      REDIS_SENTINEL_NAME: set.name,
      KEY_PREFIX: "sentinel-main",
    });
    const port = await server.port();
    const connected = logLines(server.output).find((l) => l.msg === "connected to Redis");
    expect(connected?.redis).toBe(`the primary of ${set.name} via sentinels ${set.addresses}`);
    expect(
      logLines(server.output).find((l) => String(l.msg).startsWith("SessionStore listening"))
        ?.store,
    ).toBe("redis sentinel");
    const client = createSessionStoreClient({ baseUrl: `http://127.0.0.1:${port}` });
    const userId = uniqueUserId();
    await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    expect((await client.get({ userId, sessionId: "s" })).session?.version).toBe(1n);
    const primary = set.primary.client();
    try {
      expect(await primary.hexists(`sentinel-main:{${userId}}:h`, "s")).toBe(1);
    } finally {
      primary.disconnect();
    }
  });

  it("exits 64 naming the settings when Sentinel is combined with Cluster", async () => {
    const server = start({
      REDIS_SENTINELS: set.addresses,
      REDIS_SENTINEL_NAME: set.name,
      REDIS_CLUSTER: "true",
    });
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toContain(
      "REDIS_SENTINELS and REDIS_CLUSTER=true cannot go together",
    );
  });
});
