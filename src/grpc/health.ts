import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { statusError } from "../error-info.js";
import type { HealthMonitor } from "../observability/health-monitor.js";

/** The grpc.health.v1.Health service descriptor, for reflection. */
export { Health as HealthService };

/**
 * The health service name for liveness probes: SERVING while the process
 * answers, whatever the store's state. "" and the served services follow
 * the store (readiness); a liveness probe on them would restart every
 * replica during a Redis outage, a crash loop that outlasts the outage.
 */
export const LIVENESS_SERVICE = "liveness";

/** Serves grpc.health.v1.Health on `router` (see createHealthService). */
export function registerHealth(
  router: ConnectRouter,
  monitor: HealthMonitor,
  services: readonly string[],
): void {
  router.service(Health, createHealthService(monitor, services));
}

/**
 * grpc.health.v1.Health over the monitor, for the overall server ("") and
 * for each service in `services`, and always SERVING for LIVENESS_SERVICE;
 * any other name is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as
 * the gRPC health protocol specifies.
 */
function createHealthService(
  monitor: HealthMonitor,
  services: readonly string[],
): ServiceImpl<typeof Health> {
  const known = new Set(["", ...services, LIVENESS_SERVICE]);
  const status = (service: string) =>
    service === LIVENESS_SERVICE || monitor.isServing
      ? ServingStatus.SERVING
      : ServingStatus.NOT_SERVING;
  return {
    check(req) {
      if (!known.has(req.service)) {
        throw statusError("SERVICE_NOT_FOUND", "unknown service", { field: "service" });
      }
      return { status: status(req.service) };
    },
    list() {
      return {
        statuses: Object.fromEntries([...known].map((name) => [name, { status: status(name) }])),
      };
    },
    async *watch(req, ctx) {
      const updates: ServingStatus[] = [];
      let wake: (() => void) | undefined;
      const notify = () => {
        wake?.();
        wake = undefined;
      };
      const unsubscribe = monitor.subscribe(() => {
        updates.push(status(req.service));
        notify();
      });
      ctx.signal.addEventListener("abort", notify, { once: true });
      try {
        if (!known.has(req.service)) {
          yield { status: ServingStatus.SERVICE_UNKNOWN };
          // Stay open, as the protocol asks, until the client or shutdown ends the call.
          while (!ctx.signal.aborted && !monitor.isShutDown) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
          }
          ctx.signal.throwIfAborted();
          return;
        }
        let last = status(req.service);
        yield { status: last };
        while (!ctx.signal.aborted) {
          const next = updates.shift();
          if (next === undefined) {
            // Shutdown has been reported to the client: end the stream, so the
            // server can close without waiting for watchers.
            if (monitor.isShutDown) return;
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            continue;
          }
          if (next !== last) {
            last = next;
            yield { status: next };
          }
        }
        // Ended by its deadline (MAX_DEADLINE at the latest) or a cancel:
        // say so, rather than end as if the server had finished the stream.
        ctx.signal.throwIfAborted();
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", notify);
      }
    },
  };
}
