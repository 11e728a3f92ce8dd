import { describe, expect, it } from "vitest";
import { ConfigError, helpText, loadConfig } from "../../src/config.js";
import { RATE_SYNTAX, UNLIMITED } from "../../src/pipeline/rate.js";

function load(env: Record<string, string> = {}, argv: string[] = []) {
  const config = loadConfig(env, argv);
  if (config === "help") throw new Error("unexpected help");
  return config;
}

function failure(env: Record<string, string>, argv: string[] = []): string {
  try {
    loadConfig(env, argv);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("has the documented defaults", () => {
    expect(load()).toEqual({
      port: 50051,
      host: "0.0.0.0",
      adminPort: 9090,
      rpcLogLevel: "debug",
      shutdownTimeoutMs: 10_000,
      redisUrl: undefined,
      redisCluster: false,
      keyPrefix: "sessionstore",
      logLevel: "info",
      maxTtlSeconds: 400 * 24 * 3600,
      maxSessionsPerUser: 0,
      maxPayloadBytes: 65536,
      maxRequestBytes: 1024 * 1024,
      rateLimit: UNLIMITED,
      maxDeadlineMs: 60_000,
      maxConcurrentStreams: 1000,
      maxHeaderListSize: 16_384,
      idleTimeoutMs: 300_000,
      maxConnectionsPerPeer: 0,
      redisCommandTimeoutMs: 1000,
      redisConnectTimeoutMs: 10_000,
      grpcFastPath: true,
    });
  });

  it("reads every setting from its environment variable", () => {
    expect(
      load({
        PORT: "7000",
        HOST: "127.0.0.1",
        ADMIN_PORT: "0",
        RPC_LOG_LEVEL: "info",
        SHUTDOWN_TIMEOUT: "1500ms",
        REDIS_URL: "redis://localhost:6380/2",
        REDIS_CLUSTER: "true",
        KEY_PREFIX: "app:sessions",
        LOG_LEVEL: "debug",
        MAX_TTL_SECONDS: "3600",
        MAX_SESSIONS_PER_USER: "5",
        MAX_PAYLOAD_BYTES: "1024",
        MAX_REQUEST_BYTES: "4096",
        RATE_LIMIT: "500/s,burst=1000",
        MAX_DEADLINE: "300ms",
        MAX_CONCURRENT_STREAMS: "100",
        MAX_HEADER_LIST_SIZE: "8192",
        IDLE_TIMEOUT: "30s",
        MAX_CONNECTIONS_PER_PEER: "10",
        REDIS_COMMAND_TIMEOUT_MS: "250",
        REDIS_CONNECT_TIMEOUT_MS: "500",
        GRPC_FAST_PATH: "false",
      }),
    ).toEqual({
      port: 7000,
      host: "127.0.0.1",
      adminPort: 0,
      rpcLogLevel: "info",
      shutdownTimeoutMs: 1500,
      redisUrl: "redis://localhost:6380/2",
      redisCluster: true,
      keyPrefix: "app:sessions",
      logLevel: "debug",
      maxTtlSeconds: 3600,
      maxSessionsPerUser: 5,
      maxPayloadBytes: 1024,
      maxRequestBytes: 4096,
      rateLimit: { perSecond: 500, burst: 1000 },
      maxDeadlineMs: 300,
      maxConcurrentStreams: 100,
      maxHeaderListSize: 8192,
      idleTimeoutMs: 30_000,
      maxConnectionsPerPeer: 10,
      redisCommandTimeoutMs: 250,
      redisConnectTimeoutMs: 500,
      grpcFastPath: false,
    });
  });

  it("takes ADMIN_PORT=0 as any free port and ADMIN_PORT=off as no admin listener", () => {
    expect(load({ ADMIN_PORT: "0" }).adminPort).toBe(0);
    expect(load({ ADMIN_PORT: "off" }).adminPort).toBe("off");
    expect(load({}, ["--admin-port", "off"]).adminPort).toBe("off");
    expect(failure({ ADMIN_PORT: "none" })).toBe(
      'invalid ADMIN_PORT (--admin-port) "none": expected an integer from 0 to 65535, or off',
    );
  });

  it("turns the gRPC fast path off with GRPC_FAST_PATH=false or a bare flag value", () => {
    expect(load({ GRPC_FAST_PATH: "0" }).grpcFastPath).toBe(false);
    expect(load({}, ["--grpc-fast-path", "false"]).grpcFastPath).toBe(false);
    expect(load({ GRPC_FAST_PATH: "false" }, ["--grpc-fast-path"]).grpcFastPath).toBe(true);
    expect(failure({ GRPC_FAST_PATH: "off" })).toContain("invalid GRPC_FAST_PATH");
  });

  it("reads RATE_LIMIT in the rate grammar, with off for unlimited", () => {
    expect(load({ RATE_LIMIT: "20/s" }).rateLimit).toEqual({ perSecond: 20, burst: 20 });
    expect(load({ RATE_LIMIT: "120/m, burst=5" }).rateLimit).toEqual({ perSecond: 2, burst: 5 });
    expect(load({}, ["--rate-limit", "7/h"]).rateLimit).toEqual({ perSecond: 7 / 3600, burst: 7 });
    expect(load({ RATE_LIMIT: "off" }).rateLimit).toBe(UNLIMITED);
    expect(failure({ RATE_LIMIT: "fast" })).toBe(
      `invalid RATE_LIMIT (--rate-limit) "fast": expected ${RATE_SYNTAX}`,
    );
  });

  it("turns IDLE_TIMEOUT off with 0, but never MAX_DEADLINE", () => {
    expect(load({ IDLE_TIMEOUT: "0" }).idleTimeoutMs).toBe(0);
    expect(failure({ MAX_DEADLINE: "0" })).toContain(
      'invalid MAX_DEADLINE (--max-deadline) "0": expected a duration above 0',
    );
  });

  it("reads durations in seconds or milliseconds", () => {
    expect(load({ SHUTDOWN_TIMEOUT: "30" }).shutdownTimeoutMs).toBe(30_000);
    expect(load({ SHUTDOWN_TIMEOUT: "2.5s" }).shutdownTimeoutMs).toBe(2500);
    expect(load({ SHUTDOWN_TIMEOUT: "0" }).shutdownTimeoutMs).toBe(0);
  });

  it("lets a flag, in either form, win over its variable", () => {
    const config = load({ PORT: "7000", LOG_LEVEL: "warn" }, [
      "--port=7001",
      "--log-level",
      "error",
      "--redis-cluster",
    ]);
    expect(config.port).toBe(7001);
    expect(config.logLevel).toBe("error");
    expect(config.redisCluster).toBe(true);
  });

  it("ignores variables it does not define and treats empty ones as unset", () => {
    const config = load({ PORTS: "x", SESSIONSTORE_PORT: "y", REDIS_URL: "", PORT: "" });
    expect(config.port).toBe(50051);
    expect(config.redisUrl).toBeUndefined();
  });

  it("returns a frozen object", () => {
    expect(Object.isFrozen(load())).toBe(true);
  });

  it.each([
    [{ PORT: "abc" }, 'invalid PORT (--port) "abc": expected an integer from 0 to 65535'],
    [{ PORT: "65536" }, "invalid PORT"],
    [{ PORT: "-1" }, "invalid PORT"],
    [{ PORT: "1.5" }, "invalid PORT"],
    [{ LOG_LEVEL: "loud" }, "invalid LOG_LEVEL (--log-level)"],
    [{ KEY_PREFIX: "a{b}" }, "invalid KEY_PREFIX"],
    [{ KEY_PREFIX: "with space" }, "invalid KEY_PREFIX"],
    [{ MAX_TTL_SECONDS: "0" }, "invalid MAX_TTL_SECONDS"],
    [{ MAX_SESSIONS_PER_USER: "-3" }, "invalid MAX_SESSIONS_PER_USER"],
    [{ MAX_PAYLOAD_BYTES: "lots" }, "invalid MAX_PAYLOAD_BYTES"],
    [{ MAX_REQUEST_BYTES: "0" }, "invalid MAX_REQUEST_BYTES"],
    [{ REDIS_CLUSTER: "maybe" }, "invalid REDIS_CLUSTER"],
    [{ REDIS_COMMAND_TIMEOUT_MS: "0" }, "invalid REDIS_COMMAND_TIMEOUT_MS"],
    [{ REDIS_CONNECT_TIMEOUT_MS: "soon" }, "invalid REDIS_CONNECT_TIMEOUT_MS"],
    [{ REDIS_URL: "http://localhost:6379" }, "invalid REDIS_URL (--redis-url)"],
    [{ ADMIN_PORT: "99999" }, "invalid ADMIN_PORT (--admin-port)"],
    [{ RPC_LOG_LEVEL: "chatty" }, "invalid RPC_LOG_LEVEL"],
    [{ SHUTDOWN_TIMEOUT: "10 minutes" }, "invalid SHUTDOWN_TIMEOUT (--shutdown-timeout)"],
    [{ SHUTDOWN_TIMEOUT: "2h" }, "invalid SHUTDOWN_TIMEOUT"],
    [{ RATE_LIMIT: "0/s" }, "invalid RATE_LIMIT (--rate-limit)"],
    [{ RATE_LIMIT: "10/s,burst=0" }, "invalid RATE_LIMIT"],
    [{ RATE_LIMIT: "10/d" }, "invalid RATE_LIMIT"],
    [{ MAX_DEADLINE: "2d" }, "invalid MAX_DEADLINE (--max-deadline)"],
    [{ MAX_DEADLINE: "86401s" }, "invalid MAX_DEADLINE"],
    [{ MAX_CONCURRENT_STREAMS: "0" }, "invalid MAX_CONCURRENT_STREAMS (--max-concurrent-streams)"],
    [{ MAX_HEADER_LIST_SIZE: "100" }, "invalid MAX_HEADER_LIST_SIZE (--max-header-list-size)"],
    [{ MAX_HEADER_LIST_SIZE: "65537" }, "invalid MAX_HEADER_LIST_SIZE"],
    [{ IDLE_TIMEOUT: "forever" }, "invalid IDLE_TIMEOUT (--idle-timeout)"],
    [{ MAX_CONNECTIONS_PER_PEER: "-1" }, "invalid MAX_CONNECTIONS_PER_PEER"],
  ])("rejects %o, naming the setting", (env, message) => {
    expect(failure(env)).toContain(message);
  });

  it("never repeats a REDIS_URL, which may hold a password", () => {
    const message = failure({ REDIS_URL: "redis://:hunter2@host:6379,nonsense" });
    expect(message).toContain("invalid REDIS_URL");
    expect(message).not.toContain("hunter2");
  });

  it("rejects unknown flags and flags without a value", () => {
    expect(failure({}, ["--prot", "1"])).toBe('unknown argument "--prot"; see --help');
    expect(failure({}, ["--port"])).toBe("--port needs a value; see --help");
  });

  it("answers --help and -h", () => {
    expect(loadConfig({}, ["--help"])).toBe("help");
    expect(loadConfig({ PORT: "bad" }, ["-h"])).toBe("help");
  });
});

describe("helpText", () => {
  it("lists every setting with its variable, flag and default", () => {
    const text = helpText();
    for (const [env, flag, fallback] of [
      ["PORT", "--port", "50051"],
      ["HOST", "--host", "0.0.0.0"],
      ["ADMIN_PORT", "--admin-port", "9090"],
      ["RPC_LOG_LEVEL", "--rpc-log-level", "debug"],
      ["SHUTDOWN_TIMEOUT", "--shutdown-timeout", "10s"],
      ["REDIS_URL", "--redis-url", "unset"],
      ["REDIS_CLUSTER", "--redis-cluster", "false"],
      ["KEY_PREFIX", "--key-prefix", "sessionstore"],
      ["LOG_LEVEL", "--log-level", "info"],
      ["MAX_TTL_SECONDS", "--max-ttl-seconds", "34560000 (400 days)"],
      ["MAX_SESSIONS_PER_USER", "--max-sessions-per-user", "0"],
      ["MAX_PAYLOAD_BYTES", "--max-payload-bytes", "65536"],
      ["MAX_REQUEST_BYTES", "--max-request-bytes", "1048576"],
      ["RATE_LIMIT", "--rate-limit", "off"],
      ["MAX_DEADLINE", "--max-deadline", "60s"],
      ["MAX_CONCURRENT_STREAMS", "--max-concurrent-streams", "1000"],
      ["MAX_HEADER_LIST_SIZE", "--max-header-list-size", "16384"],
      ["IDLE_TIMEOUT", "--idle-timeout", "300s"],
      ["MAX_CONNECTIONS_PER_PEER", "--max-connections-per-peer", "0"],
      ["REDIS_COMMAND_TIMEOUT_MS", "--redis-command-timeout-ms", "1000"],
      ["REDIS_CONNECT_TIMEOUT_MS", "--redis-connect-timeout-ms", "10000"],
    ]) {
      expect(text).toMatch(
        new RegExp(
          `${flag} <value>, ${env}\\n.*\\(default: ${fallback?.replace(/[()]/g, "\\$&")}\\)`,
        ),
      );
    }
  });
});
