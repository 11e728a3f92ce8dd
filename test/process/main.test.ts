import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import { createSessionStoreClient } from "@sessionstore/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  logLines,
  runServer,
  runServerWithAdmin,
  type ServerProcess,
} from "../support/server-process.js";
import { createGrpcJsClient } from "../support/test-server.js";

const run = promisify(execFile);
const started: ServerProcess[] = [];
let redis: RedisServer;

function start(env: Record<string, string>, args: string[] = []): ServerProcess {
  const server = runServer(env, args);
  started.push(server);
  return server;
}

beforeAll(async () => {
  redis = await startRedisServer();
});

afterEach(() => {
  for (const server of started.splice(0)) server.kill();
});

afterAll(async () => {
  await redis?.stop();
});

describe("the sessionstore command", () => {
  it("prints every setting with --help and exits 0", async () => {
    const server = start({}, ["--help"]);
    expect(await server.exited).toBe(0);
    for (const name of [
      "PORT",
      "HOST",
      "REDIS_URL",
      "KEY_PREFIX",
      "LOG_LEVEL",
      "MAX_TTL_SECONDS",
    ]) {
      expect(server.output.stdout).toContain(name);
    }
  });

  it("exits 64 naming an invalid setting", async () => {
    const server = start({ PORT: "http" });
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toBe(
      'sessionstore: invalid PORT (--port) "http": expected an integer from 0 to 65535\n',
    );
  });

  it("says at once which Redis it waits for and why, then exits 69, never showing the password", async () => {
    const down = await startRedisServer();
    const port = down.port;
    await down.stop();
    const server = start({
      REDIS_URL: `redis://:s3cret-pass@127.0.0.1:${port}`,
      REDIS_CONNECT_TIMEOUT_MS: "30000",
    });
    // At the default level, long before the connect timeout.
    const waiting = await waitFor("the server to say what it waits for", () =>
      logLines(server.output).find((l) => l.msg === "waiting for Redis"),
    );
    expect(waiting).toMatchObject({
      level: "warn",
      redis: `127.0.0.1:${port}`,
      cause: "ECONNREFUSED",
    });
    server.child.kill("SIGKILL");
    await server.exited;

    const quick = start({
      REDIS_URL: `redis://:s3cret-pass@127.0.0.1:${port}`,
      REDIS_CONNECT_TIMEOUT_MS: "300",
    });
    expect(await quick.exited).toBe(69);
    const fatal = logLines(quick.output).find((l) => l.msg === "cannot reach Redis");
    expect(fatal).toMatchObject({ level: "fatal" });
    expect(JSON.stringify(fatal)).toContain(
      `Redis at 127.0.0.1:${port} was not ready within 300 ms (ECONNREFUSED)`,
    );
    for (const output of [server.output, quick.output]) {
      expect(output.stdout + output.stderr).not.toContain("s3cret-pass");
    }
  });

  it("serves on the embedded store when REDIS_URL is unset, and warns that data is not kept", async () => {
    const server = start({ PORT: "0", HOST: "127.0.0.1", UNRELATED_SETTING: "ignored" });
    const port = await server.port();
    const warning = logLines(server.output).find((l) => String(l.msg).includes("in-memory store"));
    expect(warning).toMatchObject({ level: "warn" });
    expect(String(warning?.msg)).toContain("will not survive a restart");
    const client = createSessionStoreClient({ baseUrl: `http://127.0.0.1:${port}` });
    const userId = uniqueUserId();
    await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    expect((await client.get({ sessionId: "s", userId })).session?.version).toBe(1n);
  });

  it("serves from Redis when REDIS_URL is set", async () => {
    const server = start({
      PORT: "0",
      HOST: "127.0.0.1",
      REDIS_URL: redis.url,
      KEY_PREFIX: "main-test",
    });
    const port = await server.port();
    expect(logLines(server.output).find((l) => l.msg === "connected to Redis")).toBeDefined();
    const client = createSessionStoreClient({
      baseUrl: `http://127.0.0.1:${port}`,
      protocol: "connect",
    });
    const userId = uniqueUserId();
    await client.upsert({ session: sessionFixture(userId, "s"), ttl: ttl(60_000) });
    const admin = redis.client();
    try {
      expect(await admin.hexists(`main-test:{${userId}}:h`, "s")).toBe(1);
    } finally {
      admin.disconnect();
    }
  });

  it("answers buf curl with the schema from proto/, as the README shows", async () => {
    const server = start({ PORT: "0", HOST: "127.0.0.1" });
    const port = await server.port();
    const url = `http://127.0.0.1:${port}/sessionstore.v1.SessionStoreService`;
    const curl = (method: string, body: unknown) =>
      run("npx", [
        "buf",
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--schema",
        "proto",
        "-d",
        JSON.stringify(body),
        `${url}/${method}`,
      ]);
    const upserted = await curl("Upsert", {
      session: { id: "s1", userId: "u1", extraPayload: { theme: "dark" } },
      ttl: "3600s",
    });
    expect(JSON.parse(upserted.stdout)).toMatchObject({
      session: { id: "s1", userId: "u1", extraPayload: { theme: "dark" }, version: "1" },
    });
    const got = await curl("Get", { sessionId: "s1", userId: "u1" });
    expect(JSON.parse(got.stdout).session.version).toBe("1");
    const missing = await curl("Get", { sessionId: "nope", userId: "u1" }).catch(
      (e: { stderr: string }) => e,
    );
    expect((missing as { stderr: string }).stderr).toContain("not_found");
  });

  it("serves /healthz, /readyz and /metrics (with process metrics) on ADMIN_PORT", async () => {
    const { server, adminPort } = await runServerWithAdmin({ PORT: "0", HOST: "127.0.0.1" });
    started.push(server);
    const admin = `http://127.0.0.1:${adminPort}`;
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    for (const name of [
      "process_cpu_user_seconds_total",
      "nodejs_eventloop_lag_seconds",
      "sessionstore_rpcs_in_flight",
      "sessionstore_store_connected 1",
    ]) {
      expect(metrics).toContain(name);
    }
  });

  it("runs without an admin listener when ADMIN_PORT is off", async () => {
    const server = start({ PORT: "0", HOST: "127.0.0.1", ADMIN_PORT: "off" });
    await server.port();
    expect(await server.adminPort()).toBeUndefined();
  });

  it("exits 71 naming the cause when a port is taken", async () => {
    const first = start({ PORT: "0", HOST: "127.0.0.1", ADMIN_PORT: "0" });
    const taken = await first.adminPort();
    const second = start({ PORT: "0", HOST: "127.0.0.1", ADMIN_PORT: String(taken) });
    expect(await second.exited).toBe(71);
    expect(logLines(second.output).find((l) => l.msg === "cannot listen")).toMatchObject({
      err: { code: "EADDRINUSE" },
    });
  });

  it("exits 0 on SIGTERM and SIGINT even while clients hold connections open", async () => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      const server = start({ PORT: "0", HOST: "127.0.0.1", SHUTDOWN_TIMEOUT: "60s" });
      const port = await server.port();
      const grpcClient = createGrpcJsClient(port);
      const connect = createSessionStoreClient({ baseUrl: `http://127.0.0.1:${port}` });
      try {
        await expectCode(connect.get({ sessionId: "s", userId: "u" }), Code.NotFound);
        await grpcClient.call("Get", { sessionId: "s", userId: "u" }).catch(() => undefined);
        // Idle clients end on GOAWAY; the 60 s grace period is never needed.
        server.child.kill(signal);
        expect(await server.exited).toBe(0);
        expect(logLines(server.output).map((l) => l.msg)).toEqual(
          expect.arrayContaining(["shutting down", "stopped"]),
        );
      } finally {
        grpcClient.close();
      }
    }
  });
});
