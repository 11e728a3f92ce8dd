import { afterEach, describe, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
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

afterEach(async () => {
  await redis?.stop();
  redis = undefined;
});

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
        redisUrl: server.url,
        faults: Array.from({ length: LOAD.cycles }, () => kill),
      });
      expectWithinBounds(figures, "kill");
    },
    CHAOS ? 300_000 : 40_000,
  );
});
