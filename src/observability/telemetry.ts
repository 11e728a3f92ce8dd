import { createHmac, randomBytes } from "node:crypto";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { Logger, LogLevel } from "./logger.js";
import { codeName, RpcMetrics } from "./rpc-metrics.js";

/** Why a store call failed, as the error mapping classifies it. */
export type StoreErrorKind = "unavailable" | "internal";

/**
 * What the server reports about its RPCs: Prometheus metrics and one log
 * line per call. The telemetry policy of the call pipeline reports every
 * call through it, so each is counted once whatever its protocol and
 * transport.
 */
export interface Telemetry {
  /** The metrics registry /metrics serves. */
  readonly registry: Registry;
  /**
   * Records the start of an RPC (`procedure` as "package.Service/Method")
   * and returns the function that records its end with its status code.
   */
  rpcStarted(procedure: string, context: RpcContext): (code: number) => void;
  /** Counts a failure of the session store. */
  storeError(kind: StoreErrorKind): void;
  /** Records whether the store's backend is reachable (1) or not (0). */
  storeConnected(connected: boolean): void;
  /** Counts a call or connection refused by authentication or authorization, by reason. */
  authFailure(reason: string): void;
  /** Counts a call the rate limit rejected: the caller's name, or undefined when anonymous. */
  rateLimited(caller: string | undefined): void;
  /** Counts a connection refused for a limit (its setting's name, e.g. MAX_CONNECTIONS_PER_PEER). */
  connectionRefused(limit: string): void;
}

/** What the RPC log line says about a call besides its procedure. */
export interface RpcContext {
  readonly protocol: string;
  readonly transport: string;
  /** Read only when the line is logged. */
  readonly peer: { readonly address: string | undefined };
  /** The authenticated caller, read when the call ends (authentication comes after telemetry). */
  readonly caller: { readonly name: string } | undefined;
}

/** Options of {@link createTelemetry}. */
export interface TelemetryOptions {
  readonly logger: Logger;
  /** The level of the per-RPC log line. */
  readonly rpcLogLevel: LogLevel;
  /** Also collect Node's process metrics (CPU, memory, event loop, GC). */
  readonly processMetrics: boolean;
}

/** The caller label and log field of calls without credentials. */
export const ANONYMOUS = "anonymous";

/**
 * Creates the metrics and the RPC log. Metric names:
 *
 * - sessionstore_rpcs_total{method, code, caller}: RPCs finished, by status
 *   code and caller NAME ("anonymous" without credentials)
 * - sessionstore_rpc_duration_seconds{method}: RPC latency
 * - sessionstore_rpcs_in_flight: RPCs started and not yet finished
 * - sessionstore_store_errors_total{kind}: store failures (unavailable, internal)
 * - sessionstore_store_connected: 1 while the store's backend answers, else 0
 * - sessionstore_auth_failures_total{reason}: calls (and TLS handshakes)
 *   refused by authentication or authorization
 * - sessionstore_rate_limited_total{caller}: calls the rate limit rejected, by
 *   caller name ("anonymous" without one; never an address, so the label's
 *   values are bounded by the tokens file)
 * - sessionstore_connections_refused_total{limit}: connections refused, by the
 *   setting that refused them
 *
 * The log line names the method, code, duration, protocol, transport, the
 * caller's NAME (never its token) and
 * a pseudonym of the peer: a keyed hash of its address, stable for this process, so calls from
 * one client can be correlated without any IP address reaching the log.
 */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  const { logger, rpcLogLevel } = options;
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const rpcMetrics = new RpcMetrics(registry);
  const storeErrors = new Counter({
    name: "sessionstore_store_errors_total",
    help: "Failures of the session store, by kind (unavailable: backend unreachable; internal: unexpected).",
    labelNames: ["kind"],
    registers: [registry],
  });
  const authFailures = new Counter({
    name: "sessionstore_auth_failures_total",
    help: "Calls and TLS handshakes refused by authentication or authorization, by reason.",
    labelNames: ["reason"],
    registers: [registry],
  });
  const connected = new Gauge({
    name: "sessionstore_store_connected",
    help: "1 while the session store's backend is reachable, else 0.",
    registers: [registry],
  });

  const rateLimited = new Counter({
    name: "sessionstore_rate_limited_total",
    help: "Calls rejected by the rate limit, by caller name (anonymous: no caller identified).",
    labelNames: ["caller"],
    registers: [registry],
  });
  const connectionsRefused = new Counter({
    name: "sessionstore_connections_refused_total",
    help: "Connections refused, by the limit that refused them.",
    labelNames: ["limit"],
    registers: [registry],
  });

  const pseudonymKey = randomBytes(32);
  const pseudonym = (address: string | undefined) =>
    address === undefined
      ? undefined
      : `peer-${createHmac("sha256", pseudonymKey).update(address).digest("hex").slice(0, 12)}`;

  return {
    registry,
    rpcStarted(procedure, context) {
      const started = performance.now();
      const counts = rpcMetrics.method(procedure);
      rpcMetrics.inFlight++;
      return (code) => {
        const seconds = (performance.now() - started) / 1000;
        rpcMetrics.inFlight--;
        const caller = context.caller?.name ?? ANONYMOUS;
        counts.finished(seconds, code, caller);
        if (logger.isLevelEnabled(rpcLogLevel)) {
          logger[rpcLogLevel === "silent" ? "trace" : rpcLogLevel](
            {
              method: procedure,
              code: codeName(code),
              durationMs: Math.round(seconds * 1e6) / 1000,
              protocol: context.protocol,
              transport: context.transport,
              caller,
              peer: pseudonym(context.peer.address),
            },
            "rpc",
          );
        }
      };
    },
    storeError(kind) {
      storeErrors.labels(kind).inc();
    },
    authFailure(reason) {
      authFailures.labels(reason).inc();
    },
    storeConnected(isConnected) {
      connected.set(isConnected ? 1 : 0);
    },
    rateLimited(caller) {
      rateLimited.labels(caller ?? "anonymous").inc();
    },
    connectionRefused(limit) {
      connectionsRefused.labels(limit).inc();
    },
  };
}
