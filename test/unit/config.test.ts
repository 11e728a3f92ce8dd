import { describe, expect, it } from "vitest";
import { ConfigError, helpText, loadConfig, loadHealthcheckConfig } from "../../src/config.js";

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
      redisCommandTimeoutMs: 1000,
      redisConnectTimeoutMs: 10_000,
      grpcFastPath: true,
      authTokensFile: undefined,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
      tlsClientCaFile: undefined,
      reflection: "open",
      healthAuth: false,
      adminTls: false,
      metricsAuth: false,
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
        REDIS_COMMAND_TIMEOUT_MS: "250",
        REDIS_CONNECT_TIMEOUT_MS: "500",
        GRPC_FAST_PATH: "false",
        AUTH_TOKENS_FILE: "/run/secrets/tokens",
        TLS_CERT_FILE: "/tls/tls.crt",
        TLS_KEY_FILE: "/tls/tls.key",
        TLS_CLIENT_CA_FILE: "/tls/ca.crt",
        REFLECTION: "off",
        HEALTH_AUTH: "true",
        ADMIN_TLS: "true",
        METRICS_AUTH: "true",
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
      redisCommandTimeoutMs: 250,
      redisConnectTimeoutMs: 500,
      grpcFastPath: false,
      authTokensFile: "/run/secrets/tokens",
      tlsCertFile: "/tls/tls.crt",
      tlsKeyFile: "/tls/tls.key",
      tlsClientCaFile: "/tls/ca.crt",
      reflection: "off",
      healthAuth: true,
      adminTls: true,
      metricsAuth: true,
    });
  });

  it("asks reflection callers for credentials by default once there are any", () => {
    expect(load({ AUTH_TOKENS_FILE: "t" }).reflection).toBe("authenticated");
    expect(load({ AUTH_TOKENS_FILE: "t", REFLECTION: "open" }).reflection).toBe("open");
    expect(load().reflection).toBe("open");
  });

  it.each([
    [{ TLS_CERT_FILE: "c" }, "TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither"],
    [{ TLS_KEY_FILE: "k" }, "TLS_CERT_FILE and TLS_KEY_FILE go together"],
    [
      { TLS_CLIENT_CA_FILE: "ca", AUTH_TOKENS_FILE: "t" },
      "TLS_CLIENT_CA_FILE (--tls-client-ca-file) needs TLS_CERT_FILE and TLS_KEY_FILE",
    ],
    [
      { TLS_CLIENT_CA_FILE: "ca", TLS_CERT_FILE: "c", TLS_KEY_FILE: "k" },
      "TLS_CLIENT_CA_FILE (--tls-client-ca-file) needs AUTH_TOKENS_FILE",
    ],
    [{ ADMIN_TLS: "true" }, "ADMIN_TLS (--admin-tls) needs TLS_CERT_FILE and TLS_KEY_FILE"],
    [{ METRICS_AUTH: "true" }, "METRICS_AUTH (--metrics-auth) needs AUTH_TOKENS_FILE"],
    [{ HEALTH_AUTH: "true" }, "HEALTH_AUTH (--health-auth) needs AUTH_TOKENS_FILE"],
    [
      { REFLECTION: "authenticated" },
      "REFLECTION=authenticated (--reflection) needs AUTH_TOKENS_FILE",
    ],
    [
      { REFLECTION: "closed" },
      'invalid REFLECTION (--reflection) "closed": expected one of open, authenticated, off',
    ],
  ])("refuses security settings that do not fit together: %o", (env, message) => {
    expect(failure(env)).toContain(message);
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

describe("loadHealthcheckConfig", () => {
  const TLS = { TLS_CERT_FILE: "/tls/crt", TLS_KEY_FILE: "/tls/key" };
  const MTLS = { ...TLS, TLS_CLIENT_CA_FILE: "/tls/ca", AUTH_TOKENS_FILE: "/tokens" };
  const healthcheck = (env: Record<string, string>) => loadHealthcheckConfig(env, load(env));
  const refusal = (env: Record<string, string>) => {
    try {
      healthcheck(env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error("expected a ConfigError");
  };

  it("needs nothing of its own for cleartext or TLS, and reads each variable", () => {
    const none = {
      caFile: undefined,
      serverName: undefined,
      certFile: undefined,
      keyFile: undefined,
      tokenFile: undefined,
    };
    expect(healthcheck({})).toEqual(none);
    expect(healthcheck(TLS)).toEqual(none);
    expect(
      healthcheck({
        ...MTLS,
        HEALTHCHECK_CA_FILE: "/hc/ca",
        HEALTHCHECK_SERVER_NAME: "sessions.internal",
        HEALTHCHECK_CERT_FILE: "/hc/crt",
        HEALTHCHECK_KEY_FILE: "/hc/key",
        HEALTHCHECK_TOKEN_FILE: "/hc/token",
      }),
    ).toEqual({
      caFile: "/hc/ca",
      serverName: "sessions.internal",
      certFile: "/hc/crt",
      keyFile: "/hc/key",
      tokenFile: "/hc/token",
    });
  });

  it("refuses settings the port cannot use, and names what a port requires", () => {
    expect(refusal({ HEALTHCHECK_SERVER_NAME: "a" })).toBe(
      "HEALTHCHECK_SERVER_NAME needs TLS_CERT_FILE: the port serves cleartext",
    );
    expect(refusal({ ...TLS, HEALTHCHECK_CERT_FILE: "/c", HEALTHCHECK_KEY_FILE: "/k" })).toBe(
      "HEALTHCHECK_CERT_FILE needs TLS_CLIENT_CA_FILE: the port asks for no client certificate",
    );
    expect(refusal({ ...MTLS, HEALTHCHECK_CERT_FILE: "/c" })).toBe(
      "HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE go together: set both or neither",
    );
    expect(refusal(MTLS)).toMatch(/^the port requires client certificates \(TLS_CLIENT_CA_FILE\)/);
    expect(refusal({ ...TLS, AUTH_TOKENS_FILE: "/t", HEALTH_AUTH: "true" })).toMatch(
      /^HEALTH_AUTH=true asks the check for credentials: set HEALTHCHECK_TOKEN_FILE/,
    );
    expect(refusal({ HEALTHCHECK_SERVER_NAME: "a b" })).toBe(
      "invalid HEALTHCHECK_SERVER_NAME: expected a DNS name or IP address",
    );
  });

  it("is listed in --help, apart from the server's flags", () => {
    const text = helpText();
    expect(text).toContain("HEALTHCHECK_CA_FILE");
    expect(text).not.toContain("--healthcheck");
    expect(() => loadConfig({}, ["--healthcheck-ca-file", "/x"])).toThrow(ConfigError);
  });
});
