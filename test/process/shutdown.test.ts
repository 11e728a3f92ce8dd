import { type Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createSessionStoreClient } from "@sessionstore/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import { logLines, runServerWithAdmin, type ServerProcess } from "../support/server-process.js";

let redis: RedisServer;
const started: ServerProcess[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
});

afterEach(() => {
  for (const server of started.splice(0)) server.kill();
});

afterAll(async () => {
  await redis?.stop();
});

async function start(env: Record<string, string> = {}) {
  const { server, port, adminPort } = await runServerWithAdmin({
    PORT: "0",
    HOST: "127.0.0.1",
    REDIS_URL: redis.url,
    ...env,
  });
  started.push(server);
  return { server, baseUrl: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
}

/** Outcome of one RPC, and whether it began before the shutdown signal. */
interface Outcome {
  readonly beganBeforeSignal: boolean;
  readonly code: Code | "ok";
}

describe("graceful shutdown on SIGTERM", () => {
  it("lets every in-flight RPC finish, turns health NOT_SERVING first, and exits 0", async () => {
    const { server, baseUrl } = await start({ SHUTDOWN_TIMEOUT: "10s" });
    const sessions = createSessionStoreClient({ baseUrl, protocol: "grpc" });
    const userId = uniqueUserId();
    await sessions.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    const watch = createClient(Health, createGrpcTransport({ baseUrl }))
      .watch({ service: "" })
      [Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);

    // Load from 16 callers; Redis then holds every command for a while, so
    // calls are certainly in flight when the signal arrives.
    let signalled = false;
    const outcomes: Outcome[] = [];
    let stop = false;
    const caller = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const beganBeforeSignal = !signalled;
        const call =
          i % 2 === 0
            ? sessions.get({ sessionId: "s", userId })
            : sessions.upsert({ session: sessionFixture(userId, `c${n}`), ttl: ttl(60_000) });
        const code = await call.then(
          () => "ok" as const,
          (error: unknown) => ConnectError.from(error).code,
        );
        outcomes.push({ beganBeforeSignal, code });
        if (!beganBeforeSignal) return;
      }
    };
    const callers = Array.from({ length: 16 }, (_, n) => caller(n));
    await waitFor("some calls to complete", () => outcomes.length >= 50);
    const resumed = await redis.pause(600);
    signalled = true;
    server.child.kill("SIGTERM");
    // Health turns NOT_SERVING at once, while the calls are still waiting on Redis.
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect(await server.exited).toBe(0);
    stop = true;
    await Promise.all(callers);
    await resumed();

    const inFlight = outcomes.filter((o) => o.beganBeforeSignal);
    expect(inFlight.length).toBeGreaterThan(50);
    expect(inFlight.filter((o) => o.code !== "ok")).toEqual([]);
    // Each caller made one call after the signal, and all of them ended (the
    // callers returned above; a hanging call would have timed the test out):
    // served if they beat the signal to the server, else refused or cut off
    // with the connection, in whatever way the client reports that.
    const messages = logLines(server.output).map((l) => l.msg);
    expect(messages.indexOf("shutting down")).toBeLessThan(messages.indexOf("stopped"));
  });

  it("cancels what is still running after SHUTDOWN_TIMEOUT and still exits 0", async () => {
    const { server, baseUrl, adminUrl } = await start({
      SHUTDOWN_TIMEOUT: "300ms",
      REDIS_COMMAND_TIMEOUT_MS: "5000",
    });
    const sessions = createSessionStoreClient({ baseUrl, protocol: "grpc" });
    const userId = uniqueUserId();
    await sessions.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    const resumed = await redis.pause(3000);
    let pauseOver = false;
    const waiting = resumed().then(() => {
      pauseOver = true;
    });
    const stuck = sessions.get({ sessionId: "s", userId }).then(
      () => "ok",
      (error: unknown) => ConnectError.from(error).code,
    );
    await waitFor("the call to reach the server", async () => {
      const metrics = await fetch(`${adminUrl}/metrics`).then((r) => r.text());
      return /sessionstore_rpcs_in_flight 1/.test(metrics);
    });
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // It exited at SHUTDOWN_TIMEOUT, not once Redis let the call finish.
    expect(pauseOver).toBe(false);
    expect(await stuck).not.toBe("ok");
    await waiting;
  });
});
