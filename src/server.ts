import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Tracer } from "@opentelemetry/api";
import { HealthService, registerHealth } from "./grpc/health.js";
import {
  registerReflection,
  ServerReflectionV1,
  ServerReflectionV1Alpha,
} from "./grpc/reflection.js";
import { HealthMonitor } from "./observability/health-monitor.js";
import type { Logger } from "./observability/logger.js";
import { createTelemetry, type Telemetry } from "./observability/telemetry.js";
import { type Access, type AuthPolicy, authPolicy } from "./pipeline/auth-policy.js";
import type { CallFeature, CallPolicy, Rate, Transport } from "./pipeline/call.js";
import type { Credentials } from "./pipeline/credentials.js";
import { createPipeline } from "./pipeline/pipeline.js";
import { UNLIMITED } from "./pipeline/rate.js";
import { rateLimitPolicy } from "./pipeline/rate-limit-policy.js";
import { telemetryPolicy } from "./pipeline/telemetry-policy.js";
import { tracingPolicy } from "./pipeline/tracing-policy.js";
import {
  createSessionStoreHandlers,
  explainUndecodable,
  METHOD_SCOPES,
  registerSessionStoreService,
  sessionStoreService,
} from "./service/session-store-service.js";
import { decodeUpsertRequest } from "./service/upsert-request.js";
import { createWatchHandlers, DEFAULT_WATCH_BUFFER_EVENTS } from "./service/watch.js";
import type { SessionStore } from "./store/session-store.js";
import { type StoreSystem, tracedStore } from "./store/traced-store.js";
import {
  CONNECT_NODE_TRANSPORT,
  createConnectNodeTransport,
} from "./transport/connect-node-transport.js";
import {
  type ConnectionLimits,
  createPortListener,
  type TlsCredentials,
} from "./transport/listener.js";
import {
  createUnaryFastPath,
  FAST_PATH_TRANSPORT,
  type UnaryHandler,
} from "./transport/unary-fast-path.js";

/** Everything the server is built from. */
export interface ServerOptions {
  readonly store: SessionStore;
  readonly logger: Logger;
  readonly maxTtlSeconds: number;
  readonly maxPayloadBytes: number;
  /** Longest grace a Refresh may ask for, ms (default 60 s). */
  readonly maxRefreshGraceMs?: number;
  /** A reused refresh token deletes all of the user's sessions (default false: only its own). */
  readonly revokeAllOnReuse?: boolean;
  /** Requests over this size fail RESOURCE_EXHAUSTED before they are decoded. */
  readonly maxRequestBytes: number;
  /** Serve plain gRPC unary calls on the fast path (default true); off, connect-node serves everything. */
  readonly grpcFastPath?: boolean;
  /** Metrics and RPC logs; by default a private registry, RPC lines at debug. */
  readonly telemetry?: Telemetry;
  /** Health; by default probing the store every 100 ms. */
  readonly health?: HealthMonitor;
  /**
   * Call policies after telemetry and before the rate limit, in order.
   * Authentication goes here: it sets `call.caller`, which the rate limit
   * reads, so the rate limit runs last.
   */
  readonly policies?: readonly CallPolicy[];
  /** How long an HTTP/1.1 client may take to send a request's headers (default 10 s). */
  readonly http1HeadersTimeoutMs?: number;
  /** Serve the port over TLS; with a client CA, mutual TLS. Absent: cleartext. */
  readonly tls?: TlsCredentials;
  /** The callers allowed in (the tokens file); absent, every caller is trusted. */
  readonly credentials?: Credentials;
  /** Who may use reflection (default: authenticated with credentials, else open). */
  readonly reflection?: "open" | "authenticated" | "off";
  /** Whether health asks for credentials too (default false: probes send none). */
  readonly healthAuth?: boolean;
  /** RATE_LIMIT: the default per-caller rate (default UNLIMITED; callers' own rates still apply). */
  readonly rateLimit?: Rate;
  /** MAX_DEADLINE: the deadline of calls that set none or a longer one (default 60 s). */
  readonly maxDeadlineMs?: number;
  /** MAX_CONCURRENT_STREAMS per HTTP/2 connection (default 1000). */
  readonly maxConcurrentStreams?: number;
  /** MAX_HEADER_LIST_SIZE in bytes (default 16384). */
  readonly maxHeaderListSize?: number;
  /** IDLE_TIMEOUT: connections with nothing in flight this long are closed (default 5 min; 0 never). */
  readonly idleTimeoutMs?: number;
  /** MAX_CONNECTIONS_PER_PEER (default 0: unlimited). */
  readonly maxConnectionsPerPeer?: number;
  /** WATCH_BUFFER: events a watch stream holds for a slow client before it is ended (default 1000). */
  readonly watchBufferEvents?: number;
  /**
   * OpenTelemetry: the tracer of a span per call (the tracing policy, first
   * in the pipeline) and of the store's spans, and which store it is (their
   * db.system). Absent, tracing is off: no policy, no wrapper, no cost.
   */
  readonly tracing?: { readonly tracer: Tracer; readonly storeSystem: StoreSystem } | undefined;
}

/** The defaults of the limits, as config.ts documents them. */
export const LIMIT_DEFAULTS = {
  maxDeadlineMs: 60_000,
  maxConcurrentStreams: 1000,
  maxHeaderListSize: 16_384,
  idleTimeoutMs: 300_000,
  maxConnectionsPerPeer: 0,
} as const;

/**
 * How often health probes the store, and how long one probe may take. Health
 * must follow Redis within a second both ways: going, a probe times out
 * (500 ms) at most one interval after the outage began; coming back, the
 * client reconnects within its 500 ms backoff and the next probe passes at
 * most one interval later. At 250 ms the fault tests measured up to 970 ms
 * on a busy machine; at 100 ms (ten PINGs a second) the margin is ample.
 */
const HEALTH_PROBE = { intervalMs: 100, timeoutMs: 500 };

/** A running (or ready to run) SessionStore server. */
export interface SessionStoreServer {
  readonly health: HealthMonitor;
  readonly telemetry: Telemetry;
  /** Client connections open right now. */
  readonly connections: number;
  /** WatchUser and WatchSession streams past their catch-up, right now. */
  readonly watchStreams: number;
  /** True when no credentials are configured: every caller that reaches the port is trusted. */
  readonly trustsEveryCaller: boolean;
  /** Replaces the callers allowed in (tokens file reloaded); only with credentials at start. */
  setCredentials(credentials: Credentials): void;
  /** Replaces the port's certificate, key and client CA; open connections keep theirs. */
  setTls(tls: TlsCredentials): void;
  /** Starts health probing and listening; resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Shuts down gracefully: health NOT_SERVING, watch streams ended
   * UNAVAILABLE (SHUTTING_DOWN: they would otherwise hold the port open
   * until MAX_DEADLINE), then the port closes (see PortListener.close);
   * after `graceMs` what is still running is cancelled.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Assembles the server from its layers: the SessionStoreService handlers
 * over the store, grpc.health.v1 and reflection, the call pipeline
 * (tracing when on, telemetry, then `policies`, then the rate limit), and the two
 * transports that run it on one cleartext port: the gRPC unary fast path
 * and connect-node for everything else. It does not own the store: closing
 * the server leaves the store open.
 */
export function createServer(options: ServerOptions): SessionStoreServer {
  const { logger, tracing } = options;
  // Health probes use the store itself: they are no calls, and would start a trace each.
  const store = tracing
    ? tracedStore(options.store, tracing.tracer, tracing.storeSystem)
    : options.store;
  const telemetry =
    options.telemetry ?? createTelemetry({ logger, rpcLogLevel: "debug", processMetrics: false });
  const health =
    options.health ??
    new HealthMonitor({ probe: (signal) => options.store.ping(signal), ...HEALTH_PROBE });
  health.subscribe((serving) => {
    if (!health.isShutDown) telemetry.storeConnected(serving);
  });
  const handlers = createSessionStoreHandlers({
    ...options,
    store,
    onStoreError: (kind) => telemetry.storeError(kind),
  });
  const watches = createWatchHandlers({
    store,
    logger,
    watchBufferEvents: options.watchBufferEvents ?? DEFAULT_WATCH_BUFFER_EVENTS,
    onStoreError: (kind) => telemetry.storeError(kind),
  });
  const fastPathOn = options.grpcFastPath ?? true;
  // Both transports read the client certificate of the connection; there
  // is one only when the port verifies client certificates (mTLS).
  const mutualTls = options.tls?.clientCa !== undefined;
  const provides = new Set<CallFeature>(mutualTls ? ["peer-certificate"] : []);
  const reflection = options.reflection ?? (options.credentials ? "authenticated" : "open");
  const auth: AuthPolicy | undefined = options.credentials
    ? authPolicy({
        credentials: options.credentials,
        accessOf: accessTable(reflection, options.healthAuth ?? false),
        clientCertificates: mutualTls,
        onFailure: (reason) => telemetry.authFailure(reason),
      })
    : undefined;
  const transports: Transport[] = [{ name: CONNECT_NODE_TRANSPORT, provides }];
  if (fastPathOn) transports.push({ name: FAST_PATH_TRANSPORT, provides });
  // Always in place, even with no default limit: callers may have their own rates.
  const rateLimit = rateLimitPolicy({
    rate: options.rateLimit ?? UNLIMITED,
    onLimited: (caller) => telemetry.rateLimited(caller),
  });
  const pipeline = createPipeline({
    policies: [
      // First: its span covers the whole call, rejected calls included.
      ...(tracing ? [tracingPolicy(tracing.tracer)] : []),
      telemetryPolicy(telemetry),
      ...(auth ? [auth] : []),
      ...(options.policies ?? []),
      rateLimit,
    ],
    transports,
    logger,
  });
  const maxDeadlineMs = options.maxDeadlineMs ?? LIMIT_DEFAULTS.maxDeadlineMs;
  const limits: ConnectionLimits = {
    maxConcurrentStreams: options.maxConcurrentStreams ?? LIMIT_DEFAULTS.maxConcurrentStreams,
    maxHeaderListSize: options.maxHeaderListSize ?? LIMIT_DEFAULTS.maxHeaderListSize,
    idleTimeoutMs: options.idleTimeoutMs ?? LIMIT_DEFAULTS.idleTimeoutMs,
    maxConnectionsPerPeer: options.maxConnectionsPerPeer ?? LIMIT_DEFAULTS.maxConnectionsPerPeer,
  };
  const routes = (router: ConnectRouter) => {
    registerSessionStoreService(router, handlers, watches);
    registerHealth(router, health, [sessionStoreService.typeName]);
    if (reflection !== "off") registerReflection(router, [sessionStoreService, HealthService]);
  };
  const port = createPortListener({
    handler: createConnectNodeTransport({
      routes,
      pipeline,
      maxRequestBytes: options.maxRequestBytes,
      maxDeadlineMs,
      logger,
      explainUndecodable,
    }),
    fastPath: fastPathOn
      ? createUnaryFastPath({
          service: sessionStoreService,
          handlers: handlers as unknown as Record<string, UnaryHandler>,
          pipeline,
          maxRequestBytes: options.maxRequestBytes,
          maxDeadlineMs,
          logger,
          explainUndecodable,
          binaryDecoders: { upsert: decodeUpsertRequest },
        })
      : undefined,
    http1HeadersTimeoutMs: options.http1HeadersTimeoutMs ?? 10_000,
    ...(options.tls ? { tls: options.tls } : {}),
    onTlsError: (error) => {
      telemetry.authFailure("tls_handshake");
      // The code says why (no certificate, unknown CA, a cleartext client)
      // without any of the certificate's contents.
      logger.debug({ code: (error as { code?: unknown }).code }, "TLS handshake failed");
    },
    limits,
    logger,
    onRefused: (limit) => telemetry.connectionRefused(limit),
  });

  return {
    health,
    telemetry,
    get connections() {
      return port.connections;
    },
    get watchStreams() {
      return watches.streams;
    },
    trustsEveryCaller: auth === undefined,
    setCredentials(credentials) {
      if (!auth) throw new Error("the server was started without credentials");
      auth.update(credentials);
    },
    setTls(tls) {
      port.setTls(tls);
    },
    async listen(portNumber, host) {
      await health.start();
      telemetry.storeConnected(health.isServing);
      return port.listen(portNumber, host);
    },
    async close(graceMs = 10_000) {
      health.shutdown();
      watches.shutdown();
      await port.close(graceMs);
    },
  };
}

/**
 * What each procedure needs: health is open (probes send no token) unless
 * `healthAuth`; reflection follows its setting; SessionStoreService methods
 * need the scope METHOD_SCOPES gives them; everything else needs admin.
 */
function accessTable(
  reflection: "open" | "authenticated" | "off",
  healthAuth: boolean,
): (procedure: string) => Access {
  const table = new Map<string, Access>();
  for (const method of HealthService.methods) {
    table.set(`${HealthService.typeName}/${method.name}`, healthAuth ? "authenticated" : "open");
  }
  for (const service of [ServerReflectionV1, ServerReflectionV1Alpha]) {
    for (const method of service.methods) {
      table.set(
        `${service.typeName}/${method.name}`,
        reflection === "open" ? "open" : "authenticated",
      );
    }
  }
  for (const method of sessionStoreService.methods) {
    const scope = METHOD_SCOPES[method.localName as keyof typeof METHOD_SCOPES];
    table.set(`${sessionStoreService.typeName}/${method.name}`, scope ?? "admin");
  }
  return (procedure) => table.get(procedure) ?? "admin";
}
