import type { Telemetry } from "../observability/telemetry.js";
import type { CallPolicy } from "./call.js";

/**
 * Metrics and the per-RPC log line as a call policy. It goes first in the
 * pipeline, so it sees every call, rejected ones included, and times the
 * whole of it.
 */
export function telemetryPolicy(telemetry: Telemetry): CallPolicy {
  return {
    name: "telemetry",
    begin: (call) => telemetry.rpcStarted(call.procedure, call),
  };
}
