import http from "node:http";
import https from "node:https";
import type { HealthMonitor } from "../observability/health-monitor.js";
import type { Telemetry } from "../observability/telemetry.js";
import {
  bearerToken,
  type Credentials,
  MALFORMED_HEADER,
  scopeAllows,
} from "../pipeline/credentials.js";
import type { TlsCredentials } from "./listener.js";

/** Options of {@link createAdminServer}. */
export interface AdminServerOptions {
  readonly health: HealthMonitor;
  readonly telemetry: Telemetry;
  /** Serve HTTPS with the main port's certificate and key (no client certificates asked). */
  readonly tls?: TlsCredentials;
  /** When set, /metrics needs `authorization: Bearer <token>` of a caller with the admin scope. */
  readonly metricsCredentials?: () => Credentials;
  /** Said in /readyz's body: no caller authentication is configured. */
  readonly trustsEveryCaller: boolean;
}

/** The admin listener, whose certificate can be replaced like the main port's. */
export type AdminServer = http.Server & {
  /** Replaces the certificate and key; only on a TLS admin port. */
  setTls?(tls: TlsCredentials): void;
};

const TRUSTS_EVERYONE =
  "warning: no caller authentication is configured (AUTH_TOKENS_FILE unset): every caller that reaches the port is trusted\n";

/**
 * The admin listener: HTTP/1.1 (or HTTPS with ADMIN_TLS) on its own port,
 * for what probes and scrapers expect to GET.
 *
 * - /healthz: 200 while the process runs (liveness)
 * - /readyz: 200 while health is SERVING, else 503 (the same truth as the
 *   gRPC health Check, for readiness probes and load balancers); the body
 *   warns when every caller is trusted
 * - /metrics: Prometheus text format, behind an admin token with METRICS_AUTH
 */
export function createAdminServer(options: AdminServerOptions): AdminServer {
  const { health, telemetry } = options;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://admin").pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const ready = health.isServing;
      res
        .writeHead(ready ? 200 : 503, { "content-type": "text/plain" })
        .end(
          (ready ? "ready\n" : "not ready\n") + (options.trustsEveryCaller ? TRUSTS_EVERYONE : ""),
        );
    } else if (path === "/metrics") {
      const refusal = options.metricsCredentials
        ? metricsRefusal(req.headers.authorization, options.metricsCredentials())
        : undefined;
      if (refusal) {
        telemetry.authFailure(refusal.reason);
        res
          .writeHead(refusal.status, {
            "content-type": "text/plain",
            ...(refusal.status === 401 ? { "www-authenticate": "Bearer" } : {}),
          })
          .end(`${refusal.message}\n`);
        return;
      }
      telemetry.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": telemetry.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  };
  if (!options.tls) return http.createServer(handler);
  const server: AdminServer = https.createServer(
    { cert: options.tls.cert, key: options.tls.key, minVersion: "TLSv1.2" },
    handler,
  );
  server.setTls = (tls) => {
    (server as https.Server).setSecureContext({ cert: tls.cert, key: tls.key });
  };
  return server;
}

/** Why /metrics is refused to this authorization header, if it is. */
function metricsRefusal(
  header: string | undefined,
  credentials: Credentials,
): { status: number; reason: string; message: string } | undefined {
  if (header === undefined) {
    return {
      status: 401,
      reason: "missing_credentials",
      message: "send 'authorization: Bearer <token>'",
    };
  }
  const token = bearerToken(header);
  if (token === "malformed") {
    return { status: 401, reason: "malformed_header", message: MALFORMED_HEADER };
  }
  const grant = credentials.byToken(token);
  if (!grant) return { status: 401, reason: "unknown_token", message: "unknown bearer token" };
  if (!scopeAllows(grant.scope, "admin")) {
    return {
      status: 403,
      reason: "permission_denied",
      message: `the caller's scope (${grant.scope}) does not allow /metrics, which needs admin`,
    };
  }
  return undefined;
}
