import {
  type Attributes,
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { CallHeaders, CallPolicy, CallScope, Protocol, StatusCode } from "./call.js";

/**
 * The status codes that are the server's failure, which mark a server span
 * as an error (OpenTelemetry's gRPC conventions): UNKNOWN,
 * DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. The
 * others (NOT_FOUND, UNAUTHENTICATED, ...) answer the caller's mistake.
 */
const SERVER_ERRORS: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15]);

/** Connect's error codes, by gRPC code number, for rpc.connect_rpc.error_code. */
const CONNECT_CODES = [
  "ok",
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
];

/** rpc.system by protocol: gRPC-Web is gRPC's semantics over another framing. */
const RPC_SYSTEM: Readonly<Record<Protocol, string>> = {
  grpc: "grpc",
  "grpc-web": "grpc",
  connect: "connect_rpc",
};

const headerGetter: TextMapGetter<CallHeaders> = {
  get: (headers, key) => headers.get(key),
  // The W3C propagator only asks for its own two headers by name.
  keys: () => [],
};

/**
 * OpenTelemetry tracing as a call policy: a SERVER span per call named
 * "package.Service/Method", continuing the caller's trace when the call
 * carries W3C `traceparent` (and `tracestate`) metadata, whatever its
 * protocol or transport. It goes first in the pipeline, so calls the other
 * policies reject have spans too, and its CallScope runs the handler with
 * the span as the active context, so the store's spans are its children.
 *
 * Attributes: rpc.system ("grpc" for gRPC and gRPC-Web, "connect_rpc" for
 * Connect), rpc.service, rpc.method, and at the end rpc.grpc.status_code
 * (the numeric code, on every protocol, Connect's codes being gRPC's) with
 * rpc.connect_rpc.error_code on failed Connect calls. Never a header value,
 * an id, a token, the peer's address or a payload: spans leave the
 * process for a collector that may keep them for long. Failures that are
 * the server's (see SERVER_ERRORS) set the span's status to ERROR,
 * described by the code's name only.
 */
export function tracingPolicy(tracer: Tracer): CallPolicy {
  const propagator = new W3CTraceContextPropagator();
  // A span's attributes by protocol and procedure, made once: the SDK
  // copies them into each span it records.
  const cache: Record<Protocol, Map<string, Attributes>> = {
    grpc: new Map(),
    "grpc-web": new Map(),
    connect: new Map(),
  };
  const attributesOf = (protocol: Protocol, procedure: string): Attributes => {
    const known = cache[protocol].get(procedure);
    if (known) return known;
    const slash = procedure.lastIndexOf("/");
    const attributes = Object.freeze({
      "rpc.system": RPC_SYSTEM[protocol],
      "rpc.service": procedure.slice(0, slash),
      "rpc.method": procedure.slice(slash + 1),
    });
    cache[protocol].set(procedure, attributes);
    return attributes;
  };
  return {
    name: "tracing",
    begin(call): CallScope {
      const parent = propagator.extract(ROOT_CONTEXT, call.headers, headerGetter);
      const system = RPC_SYSTEM[call.protocol];
      const span = tracer.startSpan(
        call.procedure,
        { kind: SpanKind.SERVER, attributes: attributesOf(call.protocol, call.procedure) },
        parent,
      );
      // A span not sampled is not made the active context: nothing would
      // record under it (see tracedStore), and entering one costs.
      const active = span.isRecording() ? trace.setSpan(parent, span) : undefined;
      return {
        run: (handler) => (active ? context.with(active, handler) : handler()),
        end(code: StatusCode) {
          span.setAttribute("rpc.grpc.status_code", code);
          if (system === "connect_rpc" && code !== 0) {
            span.setAttribute("rpc.connect_rpc.error_code", CONNECT_CODES[code] ?? "unknown");
          }
          if (SERVER_ERRORS.has(code)) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: CONNECT_CODES[code] ?? "" });
          }
          span.end();
        },
      };
    },
  };
}
