import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, helpText, loadConfig, loadHealthcheckConfig } from "../../src/config.js";
import { RATE_SYNTAX, UNLIMITED } from "../../src/pipeline/rate.js";
import { createTestPki, type TestPki } from "../support/pki.js";

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
      redisSentinels: undefined,
      redisSentinelName: undefined,
      redisSentinelUsername: undefined,
      redisSentinelPassword: undefined,
      redisSentinelTls: false,
      redisTls: false,
      redisTlsCa: undefined,
      redisTlsCert: undefined,
      redisTlsKey: undefined,
      redisUsername: undefined,
      redisPassword: undefined,
      keyPrefix: "sessionstore",
      logLevel: "info",
      maxTtlSeconds: 400 * 24 * 3600,
      maxSessionsPerUser: 0,
      eventRetentionMs: 86_400_000,
      eventRetentionCount: 1000,
      watchBufferEvents: 1000,
      maxPayloadBytes: 65536,
      maxRefreshGraceMs: 60_000,
      revokeAllOnReuse: false,
      maxRequestBytes: 1024 * 1024,
      rateLimit: UNLIMITED,
      maxDeadlineMs: 60_000,
      maxConcurrentStreams: 1000,
      maxHeaderListSize: 16_384,
      idleTimeoutMs: 300_000,
      maxConnectionsPerPeer: 0,
      redisCommandTimeoutMs: 1000,
      redisConnectTimeoutMs: 10_000,
      redisWaitReplicas: 0,
      redisWaitTimeoutMs: 500,
      grpcFastPath: true,
      authTokensFile: undefined,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
      tlsClientCaFile: undefined,
      reflection: "open",
      healthAuth: false,
      adminTls: false,
      metricsAuth: false,
      otelSdkDisabled: false,
      otelTracesExporter: undefined,
      otelExporterOtlpEndpoint: undefined,
      otelExporterOtlpTracesEndpoint: undefined,
      otelExporterOtlpProtocol: undefined,
      otelExporterOtlpHeaders: undefined,
      otelExporterOtlpTimeout: undefined,
      otelExporterOtlpCompression: undefined,
      otelExporterOtlpCertificate: undefined,
      otelExporterOtlpClientCertificate: undefined,
      otelExporterOtlpClientKey: undefined,
      otelResourceAttributes: undefined,
      otelServiceName: "sessionstore",
      otelTracesSampler: "parentbased_always_on",
      otelTracesSamplerArg: undefined,
      tracing: undefined,
      allowTestSettings: false,
      testClockOffsetMs: 0,
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
        EVENT_RETENTION: "3600s",
        EVENT_RETENTION_COUNT: "50",
        WATCH_BUFFER: "20",
        MAX_PAYLOAD_BYTES: "1024",
        MAX_REFRESH_GRACE: "30s",
        REVOKE_ALL_ON_REUSE: "true",
        MAX_REQUEST_BYTES: "4096",
        RATE_LIMIT: "500/s,burst=1000",
        MAX_DEADLINE: "300ms",
        MAX_CONCURRENT_STREAMS: "100",
        MAX_HEADER_LIST_SIZE: "8192",
        IDLE_TIMEOUT: "30s",
        MAX_CONNECTIONS_PER_PEER: "10",
        REDIS_COMMAND_TIMEOUT_MS: "250",
        REDIS_CONNECT_TIMEOUT_MS: "500",
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "200",
        GRPC_FAST_PATH: "false",
        AUTH_TOKENS_FILE: "/run/secrets/tokens",
        TLS_CERT_FILE: "/tls/tls.crt",
        TLS_KEY_FILE: "/tls/tls.key",
        TLS_CLIENT_CA_FILE: "/tls/ca.crt",
        REFLECTION: "off",
        HEALTH_AUTH: "true",
        ADMIN_TLS: "true",
        METRICS_AUTH: "true",
        SESSIONSTORE_ALLOW_TEST_SETTINGS: "true",
        SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "-300000",
        OTEL_SDK_DISABLED: "false",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_HEADERS: "api-key=k%3D1",
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "5000",
        OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod",
        OTEL_SERVICE_NAME: "sessions-eu",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.01",
      }),
    ).toEqual({
      otelSdkDisabled: false,
      otelTracesExporter: "otlp",
      otelExporterOtlpEndpoint: "http://collector:4318/",
      otelExporterOtlpProtocol: "http/json",
      otelExporterOtlpHeaders: { "api-key": "k=1" },
      otelExporterOtlpTimeout: 5000,
      otelExporterOtlpCompression: "gzip",
      otelResourceAttributes: { "deployment.environment": "prod" },
      otelServiceName: "sessions-eu",
      otelTracesSampler: "parentbased_traceidratio",
      otelTracesSamplerArg: 0.01,
      tracing: {
        url: "http://collector:4318/v1/traces",
        serviceName: "sessions-eu",
        sampler: "parentbased_traceidratio",
        ratio: 0.01,
        headers: { "api-key": "k=1" },
        timeoutMs: 5000,
        compression: "gzip",
        ca: undefined,
        cert: undefined,
        key: undefined,
        resourceAttributes: { "deployment.environment": "prod" },
      },
      port: 7000,
      host: "127.0.0.1",
      adminPort: 0,
      rpcLogLevel: "info",
      shutdownTimeoutMs: 1500,
      redisUrl: "redis://localhost:6380/2",
      redisCluster: true,
      redisSentinelTls: false,
      redisTls: false,
      keyPrefix: "app:sessions",
      logLevel: "debug",
      maxTtlSeconds: 3600,
      maxSessionsPerUser: 5,
      eventRetentionMs: 3_600_000,
      eventRetentionCount: 50,
      watchBufferEvents: 20,
      maxPayloadBytes: 1024,
      maxRefreshGraceMs: 30_000,
      revokeAllOnReuse: true,
      maxRequestBytes: 4096,
      rateLimit: { perSecond: 500, burst: 1000 },
      maxDeadlineMs: 300,
      maxConcurrentStreams: 100,
      maxHeaderListSize: 8192,
      idleTimeoutMs: 30_000,
      maxConnectionsPerPeer: 10,
      redisCommandTimeoutMs: 250,
      redisConnectTimeoutMs: 500,
      redisWaitReplicas: 1,
      redisWaitTimeoutMs: 200,
      grpcFastPath: false,
      authTokensFile: "/run/secrets/tokens",
      tlsCertFile: "/tls/tls.crt",
      tlsKeyFile: "/tls/tls.key",
      tlsClientCaFile: "/tls/ca.crt",
      reflection: "off",
      healthAuth: true,
      adminTls: true,
      metricsAuth: true,
      allowTestSettings: true,
      testClockOffsetMs: -300_000,
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

  it("reads RATE_LIMIT in the rate grammar, with off for unlimited", () => {
    expect(load({ RATE_LIMIT: "20/s" }).rateLimit).toEqual({ perSecond: 20, burst: 20 });
    expect(load({ RATE_LIMIT: "120/m, burst=5" }).rateLimit).toEqual({ perSecond: 2, burst: 5 });
    expect(load({}, ["--rate-limit", "7/h"]).rateLimit).toEqual({ perSecond: 7 / 3600, burst: 7 });
    expect(load({ RATE_LIMIT: "off" }).rateLimit).toBe(UNLIMITED);
    expect(failure({ RATE_LIMIT: "fast" })).toBe(
      `invalid RATE_LIMIT (--rate-limit) "fast": expected ${RATE_SYNTAX}`,
    );
  });

  it("turns session events off with EVENT_RETENTION_COUNT=0", () => {
    expect(load({ EVENT_RETENTION_COUNT: "0" }).eventRetentionCount).toBe(0);
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
    [{ EVENT_RETENTION: "0" }, "invalid EVENT_RETENTION (--event-retention)"],
    [{ EVENT_RETENTION: "2592001s" }, "invalid EVENT_RETENTION"],
    [{ EVENT_RETENTION_COUNT: "-1" }, "invalid EVENT_RETENTION_COUNT"],
    [{ EVENT_RETENTION_COUNT: "1000001" }, "invalid EVENT_RETENTION_COUNT"],
    [{ WATCH_BUFFER: "0" }, "invalid WATCH_BUFFER (--watch-buffer)"],
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

describe("the test-only clock offset", () => {
  const allow = { SESSIONSTORE_ALLOW_TEST_SETTINGS: "true" };

  it("is refused, naming the setting and the flag that allows it, unless tests are allowed", () => {
    const refusal =
      "SESSIONSTORE_TEST_CLOCK_OFFSET_MS is a test-only setting: set SESSIONSTORE_ALLOW_TEST_SETTINGS=true to use it, and never in production";
    expect(failure({ SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "300000" })).toBe(refusal);
    // Any value given counts, even one that changes nothing, and as a flag too.
    expect(failure({ SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "0" })).toBe(refusal);
    expect(failure({}, ["--sessionstore-test-clock-offset-ms", "-5"])).toBe(refusal);
    expect(
      failure({
        SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "300000",
        SESSIONSTORE_ALLOW_TEST_SETTINGS: "false",
      }),
    ).toBe(refusal);
  });

  it("is read as signed milliseconds once tests are allowed", () => {
    expect(load({ ...allow, SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "300000" }).testClockOffsetMs).toBe(
      300_000,
    );
    expect(load({ ...allow, SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "-300000" }).testClockOffsetMs).toBe(
      -300_000,
    );
    expect(load({ ...allow, SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "-0" }).testClockOffsetMs).toBe(0);
    expect(
      load({}, ["--sessionstore-allow-test-settings", "--sessionstore-test-clock-offset-ms", "-42"])
        .testClockOffsetMs,
    ).toBe(-42);
    // Allowing test settings changes nothing by itself.
    expect(load(allow).testClockOffsetMs).toBe(0);
  });

  it.each(["5m", "1.5", "+300000", " 1", "31536000001", "-31536000001"])(
    "rejects %o as an offset, naming the setting",
    (raw) => {
      const message = failure({ ...allow, SESSIONSTORE_TEST_CLOCK_OFFSET_MS: raw });
      expect(message).toContain(
        "SESSIONSTORE_TEST_CLOCK_OFFSET_MS (--sessionstore-test-clock-offset-ms)",
      );
      expect(message).toContain("expected an integer from -31536000000 to 31536000000");
    },
  );

  it("is listed by --help as test only, with its default", () => {
    expect(helpText()).toMatch(
      /--sessionstore-test-clock-offset-ms <value>, SESSIONSTORE_TEST_CLOCK_OFFSET_MS\n\s+test only: .*\(default: 0\)/,
    );
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
      ["EVENT_RETENTION", "--event-retention", "86400s (24 h)"],
      ["EVENT_RETENTION_COUNT", "--event-retention-count", "1000"],
      ["WATCH_BUFFER", "--watch-buffer", "1000"],
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
      ["REDIS_SENTINEL_TLS", "--redis-sentinel-tls", "false"],
      ["REDIS_TLS", "--redis-tls", "false"],
      ["REDIS_TLS_CA_FILE", "--redis-tls-ca-file", "unset"],
      ["REDIS_TLS_CERT_FILE", "--redis-tls-cert-file", "unset"],
      ["REDIS_TLS_KEY_FILE", "--redis-tls-key-file", "unset"],
      ["REDIS_USERNAME", "--redis-username", "unset"],
      ["REDIS_PASSWORD", "--redis-password", "unset"],
      ["REDIS_PASSWORD_FILE", "--redis-password-file", "unset"],
    ]) {
      expect(text).toMatch(
        new RegExp(
          `${flag} <value>, ${env}\\n.*\\(default: ${fallback?.replace(/[()]/g, "\\$&")}\\)`,
        ),
      );
    }
  });
});

describe("the Redis connection security settings", () => {
  // A distinctive secret: no message may ever contain it.
  const secret = "s3cret-9f1c2e";
  let pki: TestPki;
  let files: {
    ca: string;
    cert: string;
    key: string;
    otherKey: string;
    password: string;
    emptyPassword: string;
    notPem: string;
  };

  beforeAll(() => {
    pki = createTestPki();
    const ca = pki.ca("config-ca");
    const client = ca.issue("config-client", { san: ["DNS:sessionstore"], usage: "client" });
    const other = ca.issue("config-other", { san: ["DNS:other"], usage: "client" });
    const write = (name: string, content: string) => {
      const path = join(pki.dir, name);
      writeFileSync(path, content);
      return path;
    };
    files = {
      ca: ca.certFile,
      cert: client.certFile,
      key: client.keyFile,
      otherKey: other.keyFile,
      password: write("password", `${secret}\n`),
      emptyPassword: write("empty-password", "\n"),
      notPem: write("not-pem", `${secret}\n`),
    };
  });

  afterAll(() => {
    pki?.remove();
  });

  const tlsUrl = "rediss://redis.internal:6380";

  it("reads the TLS files and credentials, keeping the PEM text as it is", () => {
    const config = load({
      REDIS_URL: tlsUrl,
      REDIS_TLS_CA_FILE: files.ca,
      REDIS_TLS_CERT_FILE: files.cert,
      REDIS_TLS_KEY_FILE: files.key,
      REDIS_USERNAME: "sessionstore",
      REDIS_PASSWORD: secret,
    });
    expect(config.redisTlsCa?.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(config.redisTlsCert?.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(config.redisTlsKey?.toString()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(config.redisUsername).toBe("sessionstore");
    expect(config.redisPassword).toBe(secret);
  });

  it("takes each of them as a flag too", () => {
    const config = load({}, [
      "--redis-url",
      tlsUrl,
      "--redis-tls-ca-file",
      files.ca,
      "--redis-username=svc",
      "--redis-password-file",
      files.password,
    ]);
    expect(config.redisTlsCa).toBeInstanceOf(Buffer);
    expect(config.redisUsername).toBe("svc");
    expect(config.redisPassword).toBe(secret);
  });

  it("reads REDIS_PASSWORD_FILE without its trailing newline", () => {
    expect(load({ REDIS_URL: tlsUrl, REDIS_PASSWORD_FILE: files.password }).redisPassword).toBe(
      secret,
    );
  });

  it("allows a user in the URL with the password in a setting, and TLS without a CA file", () => {
    const config = load({
      REDIS_URL: "rediss://svc@redis.internal:6380",
      REDIS_PASSWORD_FILE: files.password,
    });
    expect(config.redisPassword).toBe(secret);
    expect(config.redisTlsCa).toBeUndefined();
  });

  it.each([
    [
      "TLS files with a redis:// URL",
      { REDIS_URL: "redis://redis.internal:6379", REDIS_TLS_CA_FILE: "ca" },
      "REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL (TLS); REDIS_URL uses redis://",
    ],
    [
      "a certificate without its key",
      { REDIS_URL: tlsUrl, REDIS_TLS_CERT_FILE: "cert" },
      "REDIS_TLS_CERT_FILE needs REDIS_TLS_KEY_FILE, the certificate's private key",
    ],
    [
      "a key without its certificate",
      { REDIS_URL: tlsUrl, REDIS_TLS_KEY_FILE: "key" },
      "REDIS_TLS_KEY_FILE needs REDIS_TLS_CERT_FILE, the certificate of the key",
    ],
    [
      "a key that is not the certificate's",
      { REDIS_URL: tlsUrl, REDIS_TLS_CERT_FILE: "cert", REDIS_TLS_KEY_FILE: "otherKey" },
      "REDIS_TLS_KEY_FILE is not the private key of the certificate in REDIS_TLS_CERT_FILE",
    ],
    [
      "both REDIS_PASSWORD and REDIS_PASSWORD_FILE",
      { REDIS_URL: tlsUrl, REDIS_PASSWORD: secret, REDIS_PASSWORD_FILE: "password" },
      "REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set; set only one of them",
    ],
    [
      "a password in the URL and in REDIS_PASSWORD",
      { REDIS_URL: `rediss://:${secret}@redis.internal:6380`, REDIS_PASSWORD: secret },
      "a password is given both in REDIS_URL and in REDIS_PASSWORD; give it in one place",
    ],
    [
      "a password in a cluster node's URL and in REDIS_PASSWORD_FILE",
      {
        REDIS_URL: `rediss://a:6380,rediss://u:${secret}@b:6380`,
        REDIS_PASSWORD_FILE: "password",
      },
      "a password is given both in REDIS_URL and in REDIS_PASSWORD_FILE; give it in one place",
    ],
    [
      "a user in the URL and in REDIS_USERNAME",
      { REDIS_URL: `rediss://svc:${secret}@redis.internal:6380`, REDIS_USERNAME: "svc" },
      "a user name is given both in REDIS_URL and in REDIS_USERNAME; give it in one place",
    ],
    [
      "a user without a password",
      { REDIS_URL: tlsUrl, REDIS_USERNAME: "svc" },
      "a Redis user name needs a password: set REDIS_PASSWORD or REDIS_PASSWORD_FILE, or give it in REDIS_URL",
    ],
    [
      "a user in the URL without a password",
      { REDIS_URL: "rediss://svc@redis.internal:6380" },
      "a Redis user name needs a password: set REDIS_PASSWORD or REDIS_PASSWORD_FILE, or give it in REDIS_URL",
    ],
    [
      "security settings without REDIS_URL",
      { REDIS_USERNAME: "svc", REDIS_PASSWORD: secret },
      "REDIS_USERNAME, REDIS_PASSWORD need REDIS_URL: the embedded store has no connection to secure",
    ],
    [
      "a TLS file without REDIS_URL",
      { REDIS_TLS_CA_FILE: "ca" },
      "REDIS_TLS_CA_FILE needs REDIS_URL: the embedded store has no connection to secure",
    ],
    [
      "cluster nodes of both schemes",
      { REDIS_URL: "rediss://a:6380,redis://b:6379", REDIS_CLUSTER: "true" },
      "invalid REDIS_URL (--redis-url): expected URLs of one scheme: every node redis://, or every node rediss://",
    ],
  ] as const)("refuses %s, naming the settings and no secret", (_, env, message) => {
    // Names of files in the table stand for the files made above.
    const resolved = Object.fromEntries(
      Object.entries(env).map(([name, value]) => [
        name,
        name.endsWith("_FILE") ? files[value as keyof typeof files] : value,
      ]),
    );
    const text = failure(resolved);
    expect(text).toBe(message);
    expect(text).not.toContain(secret);
  });

  it.each([
    ["REDIS_TLS_CA_FILE", "notPem", "a file of PEM certificates (-----BEGIN CERTIFICATE-----)"],
    ["REDIS_TLS_CA_FILE", "missing", "a readable file (ENOENT)"],
    ["REDIS_TLS_CERT_FILE", "key", "a file of PEM certificates (-----BEGIN CERTIFICATE-----)"],
    ["REDIS_TLS_KEY_FILE", "notPem", "a file holding an unencrypted PEM private key"],
    ["REDIS_PASSWORD_FILE", "emptyPassword", "a file holding the password (it is empty)"],
    ["REDIS_PASSWORD_FILE", "missing", "a readable file (ENOENT)"],
  ] as const)(
    "refuses %s naming %s, with its path and never what it holds",
    (setting, file, expected) => {
      const path = file === "missing" ? join(pki.dir, "missing") : files[file];
      const env: Record<string, string> = { REDIS_URL: tlsUrl, [setting]: path };
      // The other half of the pair, so that only the file at fault is wrong.
      if (setting === "REDIS_TLS_CERT_FILE") env.REDIS_TLS_KEY_FILE = files.key;
      if (setting === "REDIS_TLS_KEY_FILE") env.REDIS_TLS_CERT_FILE = files.cert;
      const flag = `--${setting.toLowerCase().replaceAll("_", "-")}`;
      const text = failure(env);
      expect(text).toBe(
        `invalid ${setting} (${flag}) ${JSON.stringify(path)}: expected ${expected}`,
      );
      expect(text).not.toContain(secret);
    },
  );

  it("refuses a path that cannot be read as a file, with the error's code", () => {
    // A directory: unreadable as a file whoever runs the tests (root reads any file).
    expect(failure({ REDIS_URL: tlsUrl, REDIS_PASSWORD_FILE: pki.dir })).toBe(
      `invalid REDIS_PASSWORD_FILE (--redis-password-file) ${JSON.stringify(pki.dir)}: expected a readable file (EISDIR)`,
    );
  });

  it("never repeats REDIS_PASSWORD, and lists it in --help without a value", () => {
    expect(helpText()).toContain("--redis-password <value>, REDIS_PASSWORD");
    expect(helpText()).not.toContain(secret);
  });
});

describe("the Redis Sentinel settings", () => {
  const secret = "s3ntinel-7d2a";
  const SENTINELS = {
    REDIS_SENTINELS: "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
    REDIS_SENTINEL_NAME: "sessions",
  };
  let pki: TestPki;
  let files: { ca: string; cert: string; key: string; otherKey: string };

  beforeAll(() => {
    pki = createTestPki();
    const ca = pki.ca("sentinel-config-ca");
    const client = ca.issue("sentinel-config-client", {
      san: ["DNS:sessionstore"],
      usage: "client",
    });
    const other = ca.issue("sentinel-config-other", { san: ["DNS:other"], usage: "client" });
    files = {
      ca: ca.certFile,
      cert: client.certFile,
      key: client.keyFile,
      otherKey: other.keyFile,
    };
  });

  afterAll(() => {
    pki?.remove();
  });

  it("reads the sentinels, the group name and both sets of credentials", () => {
    const config = load({
      ...SENTINELS,
      REDIS_SENTINEL_USERNAME: "watcher",
      REDIS_SENTINEL_PASSWORD: secret,
      REDIS_USERNAME: "sessionstore",
      REDIS_PASSWORD: "data-node-password",
    });
    expect(config).toMatchObject({
      redisUrl: undefined,
      redisSentinels: "10.0.0.1:26379,sentinel-b:26380,[::1]:26381",
      redisSentinelName: "sessions",
      redisSentinelUsername: "watcher",
      redisSentinelPassword: secret,
      redisUsername: "sessionstore",
      redisPassword: "data-node-password",
    });
  });

  it("refuses what is not host:port, naming the setting", () => {
    for (const bad of [
      "sentinel-a",
      "sentinel-a:0",
      "sentinel-a:70000",
      "a:1,,b:2",
      "redis://a:1",
    ]) {
      expect(failure({ ...SENTINELS, REDIS_SENTINELS: bad })).toMatch(
        /^invalid REDIS_SENTINELS \(--redis-sentinels\).*expected host:port of each sentinel/,
      );
    }
  });

  it("refuses the combinations that cannot mean what the operator wants", () => {
    expect(failure({ REDIS_SENTINELS: SENTINELS.REDIS_SENTINELS })).toMatch(
      /^REDIS_SENTINELS needs REDIS_SENTINEL_NAME/,
    );
    expect(failure({ REDIS_SENTINEL_NAME: "sessions" })).toMatch(
      /^REDIS_SENTINEL_NAME needs REDIS_SENTINELS/,
    );
    expect(failure({ REDIS_SENTINEL_PASSWORD: secret, REDIS_URL: "redis://r:6379" })).toMatch(
      /^REDIS_SENTINEL_PASSWORD needs REDIS_SENTINELS/,
    );
    expect(failure({ ...SENTINELS, REDIS_URL: "redis://r:6379" })).toMatch(
      /^REDIS_SENTINELS and REDIS_URL both say where Redis is/,
    );
    expect(failure({ ...SENTINELS, REDIS_CLUSTER: "true" })).toMatch(
      /^REDIS_SENTINELS and REDIS_CLUSTER=true cannot go together/,
    );
    expect(failure({ ...SENTINELS, REDIS_SENTINEL_USERNAME: "watcher" })).toMatch(
      /^REDIS_SENTINEL_USERNAME needs a password/,
    );
    expect(failure({ ...SENTINELS, REDIS_USERNAME: "sessionstore" })).toMatch(
      /^a Redis user name needs a password/,
    );
  });

  it("reads TLS to the sentinels and to the data nodes, each on its own, with the TLS files", () => {
    const tlsFiles = {
      REDIS_TLS_CA_FILE: files.ca,
      REDIS_TLS_CERT_FILE: files.cert,
      REDIS_TLS_KEY_FILE: files.key,
    };
    const both = load({
      ...SENTINELS,
      REDIS_SENTINEL_TLS: "true",
      REDIS_TLS: "true",
      ...tlsFiles,
    });
    expect(both).toMatchObject({ redisSentinelTls: true, redisTls: true });
    expect(both.redisTlsCa?.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(both.redisTlsCert?.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(both.redisTlsKey?.toString()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // Either alone: Redis lets the sentinels and the data nodes differ.
    expect(load({ ...SENTINELS, REDIS_SENTINEL_TLS: "true", ...tlsFiles })).toMatchObject({
      redisSentinelTls: true,
      redisTls: false,
    });
    expect(load({ ...SENTINELS, REDIS_TLS: "1", REDIS_TLS_CA_FILE: files.ca })).toMatchObject({
      redisSentinelTls: false,
      redisTls: true,
    });
    // Without a CA file: the system CAs.
    expect(load({ ...SENTINELS, REDIS_TLS: "true" }).redisTlsCa).toBeUndefined();
    // As flags, which may stand alone.
    expect(
      load({}, [
        "--redis-sentinels",
        SENTINELS.REDIS_SENTINELS,
        "--redis-sentinel-name=sessions",
        "--redis-sentinel-tls",
        "--redis-tls",
        "--redis-tls-ca-file",
        files.ca,
      ]),
    ).toMatchObject({ redisSentinelTls: true, redisTls: true });
  });

  it.each([
    [
      "REDIS_SENTINEL_TLS without REDIS_SENTINELS",
      { REDIS_SENTINEL_TLS: "true" },
      "REDIS_SENTINEL_TLS needs REDIS_SENTINELS, the sentinels to ask for the primary",
    ],
    [
      "REDIS_SENTINEL_TLS with REDIS_URL",
      { REDIS_URL: "rediss://r:6380", REDIS_SENTINEL_TLS: "true" },
      "REDIS_SENTINEL_TLS needs REDIS_SENTINELS, the sentinels to ask for the primary",
    ],
    [
      "REDIS_TLS without REDIS_SENTINELS",
      { REDIS_TLS: "true" },
      "REDIS_TLS needs REDIS_SENTINELS: it says whether the data nodes the sentinels name serve TLS; with REDIS_URL, its scheme says so (rediss://)",
    ],
    [
      "REDIS_TLS with a redis:// REDIS_URL, where the scheme decides",
      { REDIS_URL: "redis://r:6379", REDIS_TLS: "true" },
      "REDIS_TLS needs REDIS_SENTINELS: it says whether the data nodes the sentinels name serve TLS; with REDIS_URL, its scheme says so (rediss://)",
    ],
    [
      "REDIS_TLS=false with a rediss:// REDIS_URL, where the scheme decides",
      { REDIS_URL: "rediss://r:6380", REDIS_TLS: "false" },
      "REDIS_TLS needs REDIS_SENTINELS: it says whether the data nodes the sentinels name serve TLS; with REDIS_URL, its scheme says so (rediss://)",
    ],
    [
      "TLS files with sentinels and no TLS connection",
      { ...SENTINELS, REDIS_TLS_CA_FILE: "ca" },
      "REDIS_TLS_CA_FILE needs a TLS connection: set REDIS_TLS=true (the data nodes serve TLS) or REDIS_SENTINEL_TLS=true (the sentinels do), or both",
    ],
    [
      "TLS files with sentinels and TLS switched off for both",
      {
        ...SENTINELS,
        REDIS_TLS: "false",
        REDIS_SENTINEL_TLS: "false",
        REDIS_TLS_CERT_FILE: "cert",
        REDIS_TLS_KEY_FILE: "key",
      },
      "REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE need a TLS connection: set REDIS_TLS=true (the data nodes serve TLS) or REDIS_SENTINEL_TLS=true (the sentinels do), or both",
    ],
    [
      "a client certificate without its key, through Sentinel",
      { ...SENTINELS, REDIS_SENTINEL_TLS: "true", REDIS_TLS_CERT_FILE: "cert" },
      "REDIS_TLS_CERT_FILE needs REDIS_TLS_KEY_FILE, the certificate's private key",
    ],
    [
      "a key without its certificate, through Sentinel",
      { ...SENTINELS, REDIS_TLS: "true", REDIS_TLS_KEY_FILE: "key" },
      "REDIS_TLS_KEY_FILE needs REDIS_TLS_CERT_FILE, the certificate of the key",
    ],
    [
      "a key that is not the certificate's, through Sentinel",
      {
        ...SENTINELS,
        REDIS_TLS: "true",
        REDIS_TLS_CERT_FILE: "cert",
        REDIS_TLS_KEY_FILE: "otherKey",
      },
      "REDIS_TLS_KEY_FILE is not the private key of the certificate in REDIS_TLS_CERT_FILE",
    ],
    [
      "REDIS_SENTINEL_TLS that is not a boolean",
      { ...SENTINELS, REDIS_SENTINEL_TLS: "yes" },
      'invalid REDIS_SENTINEL_TLS (--redis-sentinel-tls) "yes": expected true or false',
    ],
    [
      "REDIS_TLS that is not a boolean",
      { ...SENTINELS, REDIS_TLS: "on" },
      'invalid REDIS_TLS (--redis-tls) "on": expected true or false',
    ],
  ] as const)("refuses %s, naming the settings", (_, env, message) => {
    // Names of files in the table stand for the files made above.
    const resolved = Object.fromEntries(
      Object.entries(env).map(([name, value]) =>
        name.startsWith("REDIS_TLS_") ? [name, files[value as keyof typeof files]] : [name, value],
      ),
    );
    expect(failure(resolved)).toBe(message);
  });

  it("reads REDIS_SENTINEL_PASSWORD_FILE without its trailing newline, and takes one of the two", () => {
    const passwordFile = join(pki.dir, "sentinel-password");
    writeFileSync(passwordFile, `${secret}\n`);
    expect(load({ ...SENTINELS, REDIS_SENTINEL_PASSWORD_FILE: passwordFile })).toMatchObject({
      redisSentinelPassword: secret,
    });
    const both = failure({
      ...SENTINELS,
      REDIS_SENTINEL_PASSWORD: secret,
      REDIS_SENTINEL_PASSWORD_FILE: passwordFile,
    });
    expect(both).toBe(
      "REDIS_SENTINEL_PASSWORD and REDIS_SENTINEL_PASSWORD_FILE are both set; set only one of them",
    );
    expect(helpText()).toContain("--redis-sentinel-password <value>, REDIS_SENTINEL_PASSWORD");
  });
});

describe("the settings of writes that wait for replicas", () => {
  it("are off by default, and read with REDIS_URL or REDIS_SENTINELS", () => {
    expect(load({ REDIS_URL: "redis://r:6379" })).toMatchObject({
      redisWaitReplicas: 0,
      redisWaitTimeoutMs: 500,
    });
    expect(
      load({ REDIS_URL: "redis://r:6379", REDIS_WAIT_REPLICAS: "2", REDIS_WAIT_TIMEOUT_MS: "250" }),
    ).toMatchObject({ redisWaitReplicas: 2, redisWaitTimeoutMs: 250 });
    expect(
      load({
        REDIS_SENTINELS: "s:26379",
        REDIS_SENTINEL_NAME: "sessions",
        REDIS_WAIT_REPLICAS: "1",
      }),
    ).toMatchObject({ redisWaitReplicas: 1 });
    expect(
      load({
        REDIS_URL: "redis://a:1,redis://b:2",
        REDIS_CLUSTER: "true",
        REDIS_WAIT_REPLICAS: "1",
      }),
    ).toMatchObject({ redisWaitReplicas: 1 });
  });

  it("refuse what is not a count or a time, naming the setting", () => {
    for (const bad of ["-1", "one", "1.5", "1001"]) {
      expect(failure({ REDIS_URL: "redis://r:6379", REDIS_WAIT_REPLICAS: bad })).toMatch(
        /^invalid REDIS_WAIT_REPLICAS \(--redis-wait-replicas\)/,
      );
    }
    for (const bad of ["0", "soon", "-5"]) {
      expect(
        failure({
          REDIS_URL: "redis://r:6379",
          REDIS_WAIT_REPLICAS: "1",
          REDIS_WAIT_TIMEOUT_MS: bad,
        }),
      ).toMatch(/^invalid REDIS_WAIT_TIMEOUT_MS \(--redis-wait-timeout-ms\)/);
    }
  });

  it("refuse the combinations that cannot work", () => {
    expect(failure({ REDIS_WAIT_REPLICAS: "1" })).toMatch(
      /^REDIS_WAIT_REPLICAS needs Redis \(REDIS_URL or REDIS_SENTINELS\)/,
    );
    expect(failure({ REDIS_URL: "redis://r:6379", REDIS_WAIT_TIMEOUT_MS: "100" })).toMatch(
      /^REDIS_WAIT_TIMEOUT_MS needs REDIS_WAIT_REPLICAS/,
    );
    expect(
      failure({
        REDIS_URL: "redis://r:6379",
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "1000",
      }),
    ).toBe(
      "REDIS_WAIT_TIMEOUT_MS (1000) must be less than REDIS_COMMAND_TIMEOUT_MS (1000), or every WAIT that runs out would fail as a command timeout",
    );
    expect(
      load({
        REDIS_URL: "redis://r:6379",
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT_MS: "1000",
        REDIS_COMMAND_TIMEOUT_MS: "1500",
      }),
    ).toMatchObject({ redisWaitTimeoutMs: 1000, redisCommandTimeoutMs: 1500 });
  });
});

describe("the OTEL_* settings", () => {
  const endpoint = "http://collector:4318";

  it("leave tracing off unless an exporter or an endpoint asks for it", () => {
    expect(load().tracing).toBeUndefined();
    expect(load({ OTEL_SERVICE_NAME: "sessions" }).tracing).toBeUndefined();
    expect(
      load({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }).tracing,
    ).toBeUndefined();
    expect(
      load({
        OTEL_SDK_DISABLED: "true",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_TRACES_SAMPLER: "always_on",
      }).tracing,
    ).toBeUndefined();
  });

  it("turn tracing on with OTEL_TRACES_EXPORTER=otlp or an endpoint, with the standard defaults", () => {
    expect(load({ OTEL_TRACES_EXPORTER: "otlp" }).tracing).toEqual({
      url: "http://localhost:4318/v1/traces",
      serviceName: "sessionstore",
      sampler: "parentbased_always_on",
      ratio: 1,
      headers: {},
      timeoutMs: 10_000,
      compression: "none",
      ca: undefined,
      cert: undefined,
      key: undefined,
      resourceAttributes: {},
    });
    expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }).tracing?.url).toBe(
      `${endpoint}/v1/traces`,
    );
    // The traces endpoint is used as it is, and wins.
    expect(
      load({
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces.example:443/otlp",
      }).tracing?.url,
    ).toBe("https://traces.example:443/otlp");
    expect(
      load({
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_TRACES_SAMPLER: "traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0",
      }).tracing,
    ).toMatchObject({ sampler: "traceidratio", ratio: 0 });
  });

  it("refuse what cannot be meant, never repeating an endpoint", () => {
    expect(failure({ OTEL_TRACES_EXPORTER: "jaeger" })).toMatch(/OTEL_TRACES_EXPORTER.*otlp, none/);
    expect(failure({ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "xray" })).toMatch(
      /OTEL_TRACES_SAMPLER.*always_on/,
    );
    expect(
      failure({
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_TRACES_SAMPLER: "traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "1.5",
      }),
    ).toMatch(/OTEL_TRACES_SAMPLER_ARG.*ratio from 0 to 1/);
    expect(failure({ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER_ARG: "0.5" })).toMatch(
      /OTEL_TRACES_SAMPLER_ARG needs OTEL_TRACES_SAMPLER=traceidratio/,
    );
    expect(failure({ OTEL_TRACES_SAMPLER: "always_on" })).toMatch(
      /OTEL_TRACES_SAMPLER needs tracing on: set OTEL_TRACES_EXPORTER=otlp/,
    );
    expect(failure({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toMatch(/http\/json/);
    const secretUrl = "ftp://user:hunter2@collector";
    const message = failure({ OTEL_EXPORTER_OTLP_ENDPOINT: secretUrl });
    expect(message).toMatch(/OTEL_EXPORTER_OTLP_ENDPOINT.*http:\/\/ or https:\/\/ URL/);
    expect(message).not.toContain("hunter2");
  });

  it("read the exporter's headers as percent-encoded pairs, refusing others without showing them", () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint };
    expect(
      load({ ...on, OTEL_EXPORTER_OTLP_HEADERS: " authorization=Bearer%20hunter2 , x-b=2," })
        .tracing?.headers,
    ).toEqual({ authorization: "Bearer hunter2", "x-b": "2" });
    for (const bad of [
      "authorization Bearer hunter2",
      "=hunter2",
      "x-a=",
      "bad key=hunter2",
      "x-a=%E0%A4%Ahunter2",
      "x-a=hunter2%0A",
    ]) {
      const refused = failure({ ...on, OTEL_EXPORTER_OTLP_TRACES_HEADERS: bad });
      expect(refused).toMatch(/OTEL_EXPORTER_OTLP_TRACES_HEADERS.*header=value pairs/);
      expect(refused).not.toContain("hunter2");
    }
    // One signal here: the general and the traces form are alternatives.
    expect(
      failure({
        ...on,
        OTEL_EXPORTER_OTLP_HEADERS: "a=1",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: "a=2",
      }),
    ).toMatch(/OTEL_EXPORTER_OTLP_HEADERS.*OTEL_EXPORTER_OTLP_TRACES_HEADERS/);
  });

  it("refuse a bad export timeout, compression or resource attribute", () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint };
    expect(failure({ ...on, OTEL_EXPORTER_OTLP_TIMEOUT: "10s" })).toMatch(
      /OTEL_EXPORTER_OTLP_TIMEOUT.*"10s".*integer from 1 to 600000/,
    );
    expect(failure({ ...on, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "0" })).toMatch(
      /OTEL_EXPORTER_OTLP_TRACES_TIMEOUT/,
    );
    expect(failure({ ...on, OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" })).toMatch(
      /OTEL_EXPORTER_OTLP_COMPRESSION.*gzip, none/,
    );
    expect(failure({ ...on, OTEL_RESOURCE_ATTRIBUTES: "region" })).toMatch(
      /OTEL_RESOURCE_ATTRIBUTES.*key=value pairs/,
    );
    expect(
      load({ ...on, OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name=a%2Cb,team=id" }).tracing
        ?.resourceAttributes,
    ).toEqual({ "k8s.pod.name": "a,b", team: "id" });
  });

  it("read the collector's CA and the client certificate, for an https endpoint only", () => {
    const pki = createTestPki();
    try {
      const ca = pki.ca("collector-ca");
      const client = ca.issue("exporter", { san: ["DNS:exporter"], usage: "client" });
      const https = { OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector:4318" };
      const tracing = load({
        ...https,
        OTEL_EXPORTER_OTLP_CERTIFICATE: ca.certFile,
        OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: client.certFile,
        OTEL_EXPORTER_OTLP_CLIENT_KEY: client.keyFile,
      }).tracing;
      expect(tracing?.ca?.equals(ca.cert)).toBe(true);
      expect(tracing?.cert?.equals(client.cert)).toBe(true);
      expect(tracing?.key?.equals(client.key)).toBe(true);
      expect(failure({ ...https, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client.certFile })).toMatch(
        /OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY.*go together/,
      );
      expect(
        failure({
          OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
          OTEL_EXPORTER_OTLP_CERTIFICATE: ca.certFile,
        }),
      ).toMatch(/need an https:\/\/ collector endpoint/);
      expect(failure({ ...https, OTEL_EXPORTER_OTLP_CERTIFICATE: client.keyFile })).toMatch(
        /OTEL_EXPORTER_OTLP_CERTIFICATE.*PEM certificates/,
      );
      expect(
        failure({ ...https, OTEL_EXPORTER_OTLP_CERTIFICATE: join(pki.dir, "missing.crt") }),
      ).toMatch(/OTEL_EXPORTER_OTLP_CERTIFICATE/);
    } finally {
      pki.remove();
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
