import http from "node:http";
import type { HealthMonitor } from "../observability/health-monitor.js";
import type { Telemetry } from "../observability/telemetry.js";

/**
 * The admin listener: plain HTTP/1.1 on its own port, for what probes and
 * scrapers expect to GET.
 *
 * - /healthz: 200 while the process runs (liveness)
 * - /readyz: 200 while health is SERVING, else 503 (the same truth as the
 *   gRPC health Check, for readiness probes and load balancers)
 * - /metrics: Prometheus text format
 */
export function createAdminServer(health: HealthMonitor, telemetry: Telemetry): http.Server {
  return http.createServer((req, res) => {
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
        .end(ready ? "ready\n" : "not ready\n");
    } else if (path === "/metrics") {
      telemetry.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": telemetry.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
}
