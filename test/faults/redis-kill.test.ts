import { afterEach, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { runServerWithAdmin, type ServerProcess } from "../support/server-process.js";
import {
  CHAOS,
  DURABLE,
  expectWithinBounds,
  LOAD,
  runOutage,
  timedFault,
} from "./outage-scenario.js";

// Redis SIGKILLed under load from a real server process and restarted on
// its port 3 s later. With the append-only file fsynced on every write, no
// acknowledged write may be lost, so a NOT_FOUND would be a real failure,
// not an empty restarted Redis.

let redis: RedisServer | undefined;
let service: ServerProcess | undefined;

afterEach(async () => {
  service?.kill();
  service = undefined;
  await redis?.stop();
  redis = undefined;
});

/** Keys a restarted Redis must load before it serves: about a second's load here. */
const LOADED_KEYS = 1_000_000;

/** Whether the service's /readyz says it is SERVING. */
async function ready(adminPort: number): Promise<boolean> {
  return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
}

describe("Redis killed under load", () => {
  it(
    "SIGKILL, restart on the same port after 3 s: only UNAVAILABLE, health follows, nothing lost",
    async () => {
      const server = await startRedisServer(DURABLE);
      redis = server;
      const kill = timedFault(
        () => server.kill(),
        3000,
        () => server.restart(),
      );
      const figures = await runOutage({
        ...LOAD,
        redisEnv: { REDIS_URL: server.url },
        faults: Array.from({ length: LOAD.cycles }, () => kill),
      });
      expectWithinBounds(figures, "kill");
    },
    CHAOS ? 300_000 : 40_000,
  );

  it("a restarted Redis loading its data: the service is back within 500 ms of the load's end", async () => {
    const server = await startRedisServer([...DURABLE, "--enable-debug-command", "yes"]);
    redis = server;
    const admin = server.client();
    try {
      await admin.call("DEBUG", "POPULATE", String(LOADED_KEYS));
      await admin.bgrewriteaof();
      await waitFor(
        "the append-only file rewrite",
        async () =>
          /aof_rewrite_in_progress:0[\s\S]*aof_rewrite_scheduled:0/.test(
            await admin.info("persistence"),
          ),
        { timeoutMs: 30_000, intervalMs: 50 },
      );
    } finally {
      admin.disconnect();
    }
    const started = await runServerWithAdmin({
      PORT: "0",
      HOST: "127.0.0.1",
      REDIS_URL: server.url,
    });
    service = started.server;
    await waitFor("the service ready", () => ready(started.adminPort));
    await server.kill();
    await waitFor("the service not ready", async () => !(await ready(started.adminPort)));
    const restartedAt = performance.now();
    // Resolves once Redis answers PING, that is, once it has loaded its data.
    await server.restart();
    const loadedAt = performance.now();
    await waitFor("the service ready again", () => ready(started.adminPort));
    const backAfterMs = performance.now() - loadedAt;
    const loadMs = loadedAt - restartedAt;
    console.info(`loading: ${JSON.stringify({ keys: LOADED_KEYS, loadMs, backAfterMs })}`);
    // The service really met a Redis that was loading, and then did not
    // wait for ioredis's one-second retry.
    expect(loadMs).toBeGreaterThan(200);
    expect(backAfterMs).toBeLessThanOrEqual(500);
  }, 60_000);
});
