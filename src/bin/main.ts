#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --heap-growing-percent=150
import type { AddressInfo } from "node:net";
// Runtime tuning lives in the line above, so `npm start`, the Docker image
// and the benchmark all run the server the same way: a 4 MB young-generation
// semi-space and two malloc arenas keep the resident memory under load
// about 25 MB lower for a few µs of CPU per call (see bench/RESULTS.md); an
// old generation allowed to grow to 2.5 times what the last full collection
// kept, rather than V8's own factor of up to 4, took the benchmark's RSS
// peak from 151 to 120 MB (its two runs of 2026-11-30, before and after
// this flag: `git log bench/RESULTS.md`).
import { type Clock, processClock } from "../clock.js";
import { type Config, ConfigError, helpText, loadConfig } from "../config.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { createTelemetry } from "../observability/telemetry.js";
import { createTracing } from "../observability/tracing.js";
import type { Credentials } from "../pipeline/credentials.js";
import { readCredentials, readTlsCredentials, tokensFileExposure } from "../security-files.js";
import { createServer } from "../server.js";
import { MemorySessionStore } from "../store/memory/memory-session-store.js";
import { connectRedisSessionStore } from "../store/redis/connect-store.js";
import type { SessionStore } from "../store/session-store.js";
import { createAdminServer } from "../transport/admin-server.js";
import type { TlsCredentials } from "../transport/listener.js";

/** Exit code for an invalid configuration (as in sysexits' EX_USAGE). */
const EXIT_USAGE = 64;
/** Exit code when a dependency (Redis) cannot be reached at startup. */
const EXIT_UNAVAILABLE = 69;
/** Exit code when a port cannot be bound (in use, not permitted). */
const EXIT_CANNOT_LISTEN = 71;

async function openStore(config: Config, logger: Logger, now: Clock): Promise<SessionStore> {
  const location = redisLocation(config);
  const events = {
    retentionMs: config.eventRetentionMs,
    retentionCount: config.eventRetentionCount,
  };
  if (location === undefined) {
    logger.warn(
      "REDIS_URL is not set: using the embedded in-memory store; sessions will not survive a restart and are not shared between instances",
    );
    return new MemorySessionStore({
      maxSessionsPerUser: config.maxSessionsPerUser,
      sweepIntervalMs: 10_000,
      now,
      events,
    });
  }
  const { store } = await connectRedisSessionStore(
    {
      ...location,
      tls: {
        ...(config.redisTlsCa ? { ca: config.redisTlsCa } : {}),
        ...(config.redisTlsCert ? { cert: config.redisTlsCert } : {}),
        ...(config.redisTlsKey ? { key: config.redisTlsKey } : {}),
      },
      ...(config.redisUsername !== undefined ? { username: config.redisUsername } : {}),
      ...(config.redisPassword !== undefined ? { password: config.redisPassword } : {}),
      commandTimeoutMs: config.redisCommandTimeoutMs,
      connectTimeoutMs: config.redisConnectTimeoutMs,
    },
    {
      keyPrefix: config.keyPrefix,
      maxSessionsPerUser: config.maxSessionsPerUser,
      events,
      waitReplicas: { replicas: config.redisWaitReplicas, timeoutMs: config.redisWaitTimeoutMs },
    },
    logger,
  );
  return store;
}

/**
 * Where Redis is: the sentinels that name the primary (and whether they and
 * the data nodes serve TLS), REDIS_URL, or nowhere (the embedded store).
 */
function redisLocation(config: Config) {
  const { redisSentinels, redisSentinelName, redisSentinelUsername, redisSentinelPassword } =
    config;
  if (redisSentinels === undefined || redisSentinelName === undefined) {
    return config.redisUrl === undefined
      ? undefined
      : { url: config.redisUrl, cluster: config.redisCluster };
  }
  return {
    sentinel: {
      addresses: redisSentinels,
      name: redisSentinelName,
      ...(redisSentinelUsername !== undefined ? { username: redisSentinelUsername } : {}),
      ...(redisSentinelPassword !== undefined ? { password: redisSentinelPassword } : {}),
      tls: config.redisSentinelTls,
      nodesTls: config.redisTls,
    },
  };
}

/** The tokens file and TLS files as they are now, or why they cannot be used. */
function loadSecurityFiles(
  config: Config,
): { credentials: Credentials | undefined; tls: TlsCredentials | undefined } | ConfigError {
  try {
    return { credentials: readCredentials(config), tls: readTlsCredentials(config) };
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

async function main(): Promise<void> {
  let config: Config | "help";
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`sessionstore: ${error.message}\n`);
    process.exit(EXIT_USAGE);
  }
  if (config === "help") {
    process.stdout.write(helpText());
    return;
  }

  const logger = createLogger(config.logLevel);
  const loaded = loadSecurityFiles(config);
  if (loaded instanceof ConfigError) {
    process.stderr.write(`sessionstore: ${loaded.message}\n`);
    process.exit(EXIT_USAGE);
  }
  let { credentials, tls } = loaded;
  const exposure = credentials && tokensFileExposure(config, credentials);
  if (exposure) logger.warn(exposure);
  if (!credentials) {
    logger.warn(
      "SECURITY WARNING: AUTH_TOKENS_FILE is not set, so callers are not authenticated: every client that can reach the port can read, change and delete every user's sessions. Set AUTH_TOKENS_FILE (and TLS_CERT_FILE/TLS_KEY_FILE) before production use; see SECURITY.md",
    );
  }
  if (config.testClockOffsetMs !== 0) {
    logger.warn(
      { clockOffsetMs: config.testClockOffsetMs },
      "TEST SETTING: SESSIONSTORE_TEST_CLOCK_OFFSET_MS offsets this process's clock; the embedded store's expiry follows it (the Redis store uses Redis' clock). Never use it in production",
    );
  }
  let store: SessionStore;
  try {
    store = await openStore(config, logger, processClock(config.testClockOffsetMs));
  } catch (error) {
    logger.fatal({ err: error }, "cannot reach Redis");
    process.exit(EXIT_UNAVAILABLE);
  }

  const telemetry = createTelemetry({
    logger,
    rpcLogLevel: config.rpcLogLevel,
    processMetrics: true,
  });
  const tracing = config.tracing && createTracing(config.tracing);
  if (config.tracing) {
    // The endpoint may carry credentials: only the sampler and the name are logged.
    logger.info(
      {
        sampler: config.tracing.sampler,
        ratio: config.tracing.ratio,
        service: config.tracing.serviceName,
      },
      "tracing on: exporting spans over OTLP/HTTP",
    );
  }
  const server = createServer({
    ...config,
    store,
    logger,
    telemetry,
    tracing: tracing && {
      tracer: tracing.tracer,
      storeSystem: config.redisUrl || config.redisSentinels ? "redis" : "memory",
    },
    ...(tls ? { tls } : {}),
    ...(credentials ? { credentials } : {}),
  });
  const admin =
    config.adminPort === "off"
      ? undefined
      : {
          server: createAdminServer({
            health: server.health,
            telemetry,
            trustsEveryCaller: server.trustsEveryCaller,
            ...(config.adminTls && tls ? { tls } : {}),
            ...(config.metricsAuth ? { metricsCredentials: () => credentials as Credentials } : {}),
          }),
          port: config.adminPort,
        };
  let address: AddressInfo;
  let adminAddress: AddressInfo | undefined;
  try {
    address = await server.listen(config.port, config.host);
    if (admin) {
      adminAddress = await new Promise<AddressInfo>((resolve, reject) => {
        admin.server.once("error", reject);
        admin.server.listen(admin.port, config.host, () =>
          resolve(admin.server.address() as AddressInfo),
        );
      });
    }
  } catch (error) {
    logger.fatal({ err: error }, "cannot listen");
    process.exit(EXIT_CANNOT_LISTEN);
  }
  logger.info(
    {
      address: address.address,
      port: address.port,
      adminPort: adminAddress?.port,
      store: config.redisUrl ? "redis" : config.redisSentinels ? "redis sentinel" : "memory",
    },
    `SessionStore listening (gRPC, gRPC-Web, Connect; HTTP/2 and HTTP/1.1 ${tls ? (tls.clientCa ? "over mutual TLS" : "over TLS") : "cleartext"})`,
  );

  // SIGHUP re-reads the tokens file and the certificates. A file that fails
  // to parse leaves what is in force untouched: a typo must not lock every
  // caller out, nor let one in.
  process.on("SIGHUP", () => {
    const reloaded = loadSecurityFiles(config);
    if (reloaded instanceof ConfigError) {
      logger.error(
        { reason: reloaded.message },
        "SIGHUP: not reloaded, the previous tokens and certificates stay in force",
      );
      return;
    }
    try {
      if (reloaded.tls) {
        server.setTls(reloaded.tls);
        if (config.adminTls) admin?.server.setTls?.(reloaded.tls);
      }
      if (reloaded.credentials) server.setCredentials(reloaded.credentials);
    } catch (error) {
      logger.error(
        { reason: error instanceof Error ? error.message : "unknown" },
        "SIGHUP: not reloaded, the previous tokens and certificates stay in force",
      );
      return;
    }
    credentials = reloaded.credentials;
    tls = reloaded.tls;
    logger.info(
      {
        tokens: credentials?.size.tokens,
        certificates: credentials?.size.certificates,
        tls: !!tls,
      },
      "SIGHUP: reloaded the tokens file and certificates",
    );
  });

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownTimeoutMs }, "shutting down");
    await server.close(config.shutdownTimeoutMs);
    await store.close();
    // The spans of the last calls, before the process goes.
    await tracing?.shutdown().catch((error: unknown) => {
      // The class only: the exporter's message may quote the endpoint's URL.
      logger.warn(
        { reason: error instanceof Error ? error.name : "unknown" },
        "the last spans could not be exported",
      );
    });
    admin?.server.closeAllConnections();
    await new Promise((resolve) => (admin ? admin.server.close(resolve) : resolve(undefined)));
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

await main();
