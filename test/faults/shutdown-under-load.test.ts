import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { OK } from "../../src/pipeline/call.js";
import { type ClientPool, clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { outcome } from "../support/outcome.js";
import { runServerWithAdmin, type ServerProcess } from "../support/server-process.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { createGrpcJsClient, type GrpcJsClient } from "../support/test-server.js";
import { CHAOS } from "./outage-scenario.js";

// SIGTERM while many RPCs of every protocol (gRPC, gRPC-Web and Connect over
// HTTP/2 and HTTP/1.1, and grpc-js) are in flight: Redis sits behind the
// proxy, a round trip of 1 s (CHAOS=1: 2 s) away, so every call is still
// running when the signal arrives. None may fail, and the process exits 0
// within the drain timeout (SHUTDOWN_TIMEOUT).

const IN_FLIGHT = CHAOS ? 1000 : 200;
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** Each way: a call waits twice this for Redis, long enough for all of them to be in flight at once. */
const LATENCY_MS = CHAOS ? 1000 : 500;

let redis: RedisServer | undefined;
let proxy: TcpProxy | undefined;
let server: ServerProcess | undefined;
let pool: ClientPool | undefined;
let grpcJs: GrpcJsClient | undefined;

afterEach(async () => {
  grpcJs?.close();
  pool?.close();
  server?.kill();
  await proxy?.close();
  await redis?.stop();
  grpcJs = pool = server = proxy = redis = undefined;
});

async function inFlight(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return Number(/^sessionstore_rpcs_in_flight (\d+)/m.exec(text)?.[1]);
}

describe("shutdown under load", () => {
  it(`SIGTERM with ${IN_FLIGHT} RPCs in flight on mixed protocols: none fails, exit 0 within the drain timeout`, async () => {
    redis = await startRedisServer();
    proxy = await startTcpProxy(redis.port);
    const started = await runServerWithAdmin({
      PORT: "0",
      HOST: "127.0.0.1",
      REDIS_URL: proxy.url,
      SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
      // Above the time a call waits for Redis here, so none fails for it.
      REDIS_COMMAND_TIMEOUT_MS: "5000",
    });
    server = started.server;
    pool = clientPool(`http://127.0.0.1:${started.port}`);
    grpcJs = createGrpcJsClient(started.port);
    const kinds = [
      { protocol: "grpc" },
      { protocol: "grpc-web" },
      { protocol: "connect" },
      { protocol: "connect", httpVersion: "1.1" },
      { protocol: "grpc-web", httpVersion: "1.1" },
    ] as const;
    const clients = kinds.map((kind) => (pool as ClientPool).sessions(kind));
    const userId = uniqueUserId();
    // Connections open before the slow part, so every call reaches the server at once.
    await Promise.all(
      clients.map((c, n) =>
        c.upsert({ session: sessionFixture(userId, `w${n}`), ttl: ttl(600_000) }),
      ),
    );
    await grpcJs.call("Get", { userId, sessionId: "w0" });
    proxy.setLatency(LATENCY_MS);

    const calls = Array.from({ length: IN_FLIGHT }, (_, n) => {
      const sessionId = `s${n}`;
      const write = n % 2 === 0;
      if (n % 6 === 5) {
        const client = grpcJs as GrpcJsClient;
        return outcome(() =>
          write
            ? client.call(
                "Upsert",
                {
                  session: { id: sessionId, userId },
                  ttl: { seconds: 600 },
                },
                { deadlineMs: 30_000 },
              )
            : client.call("Get", { userId, sessionId: "w0" }, { deadlineMs: 30_000 }),
        );
      }
      const client = clients[n % clients.length] as (typeof clients)[number];
      return outcome(() =>
        write
          ? client.upsert(
              { session: sessionFixture(userId, sessionId), ttl: ttl(600_000) },
              { timeoutMs: 30_000 },
            )
          : client.get({ userId, sessionId: "w0" }, { timeoutMs: 30_000 }),
      );
    });
    let peak = 0;
    await waitFor(
      `${IN_FLIGHT} RPCs in flight`,
      async () => {
        const n = await inFlight(started.adminPort);
        peak = Math.max(peak, n);
        // Kept as the timeout's cause: how close the calls came to being in flight together.
        if (n < IN_FLIGHT) throw new Error(`${n} in flight now, at most ${peak} so far`);
        return true;
      },
      { timeoutMs: 10_000 },
    );
    const signalledAt = Date.now();
    server.child.kill("SIGTERM");
    const results = await Promise.all(calls);
    const code = await server.exited;
    const exitMs = Date.now() - signalledAt;
    const failed = results.filter((r) => r.code !== OK);
    console.info(
      `shutdown: ${JSON.stringify({ inFlight: IN_FLIGHT, failed: failed.length, code, exitMs })}`,
    );
    expect(failed.map((r) => `${Code[r.code as Code]}: ${r.message}`).slice(0, 5)).toEqual([]);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    // And well before HTTP/1.1's 5 s keep-alive: the connections of calls in
    // flight at the signal close when they are answered (it once waited).
    expect(exitMs).toBeLessThan(2 * LATENCY_MS + 3000);
  }, 60_000);
});
