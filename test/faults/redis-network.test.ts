import { afterEach, describe, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import {
  CHAOS,
  DURABLE,
  expectWithinBounds,
  type Fault,
  LOAD,
  runOutage,
  timedFault,
} from "./outage-scenario.js";

// The network between the service and Redis fails under load, through the
// tests' TCP proxy: it stalls (bytes accepted, none forwarded) and then
// delivers them, resets the connection (RST), and cuts it (FIN). The stall
// lasts 2 s in npm test and 5 s under CHAOS=1; the cut runs under CHAOS=1.

let redis: RedisServer | undefined;
let proxy: TcpProxy | undefined;

afterEach(async () => {
  await proxy?.close();
  await redis?.stop();
  proxy = undefined;
  redis = undefined;
});

describe("the network to Redis fails under load", () => {
  it(
    "stalls then flows again, resets, cuts: same bounds as a Redis outage",
    async () => {
      const server = await startRedisServer(DURABLE);
      redis = server;
      const through = await startTcpProxy(server.port);
      proxy = through;
      const stall = timedFault(
        () => through.stall(),
        CHAOS ? 5000 : 2000,
        () => through.resume(),
      );
      // Blips: over as soon as they happen; the client reconnects at once.
      const reset: Fault = async () => {
        const faultAt = Date.now();
        through.reset();
        return { faultAt, restoredAt: faultAt, blip: true };
      };
      const cut: Fault = async () => {
        const faultAt = Date.now();
        through.cut();
        return { faultAt, restoredAt: faultAt, blip: true };
      };
      const cycle = CHAOS ? [stall, reset, cut] : [stall, reset];
      const figures = await runOutage({
        ...LOAD,
        redisEnv: { REDIS_URL: through.url },
        faults: Array.from({ length: LOAD.cycles }, () => cycle).flat(),
      });
      expectWithinBounds(figures, "network");
    },
    CHAOS ? 300_000 : 40_000,
  );
});
