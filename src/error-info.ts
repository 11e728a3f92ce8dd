import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";

/**
 * Machine-readable errors (AIP-193): every error the service returns
 * carries one google.rpc.ErrorInfo in its status details, so that programs
 * branch on a stable reason rather than on a message meant for people.
 * Written here once and used by every layer that fails a call (transports,
 * pipeline policies, handlers).
 */

/** The ErrorInfo domain of every error this service returns. */
export const ERROR_DOMAIN = "sessionstore";

/** The reasons this service returns, each with the status code it goes with. */
export const REASONS = {
  INVALID_FIELD: Code.InvalidArgument,
  PAYLOAD_TOO_LARGE: Code.InvalidArgument,
  PAYLOAD_TOO_DEEP: Code.InvalidArgument,
  TTL_OUT_OF_RANGE: Code.InvalidArgument,
  EXPIRES_AT_PASSED: Code.InvalidArgument,
  PROTOCOL_ERROR: Code.InvalidArgument,
  SESSION_NOT_FOUND: Code.NotFound,
  SESSION_EXISTS: Code.AlreadyExists,
  VERSION_MISMATCH: Code.Aborted,
  REQUEST_TOO_LARGE: Code.ResourceExhausted,
  STORE_UNAVAILABLE: Code.Unavailable,
  WRITE_NOT_REPLICATED: Code.Unavailable,
  RATE_LIMITED: Code.ResourceExhausted,
  UNAUTHENTICATED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  REFRESH_TOKEN_REUSED: Code.PermissionDenied,
  REFRESH_STATE_MISSING: Code.FailedPrecondition,
  EVENTS_EXPIRED: Code.OutOfRange,
  EVENTS_DISABLED: Code.FailedPrecondition,
  WATCHER_TOO_SLOW: Code.ResourceExhausted,
  SHUTTING_DOWN: Code.Unavailable,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  CANCELLED: Code.Canceled,
  UNIMPLEMENTED: Code.Unimplemented,
  SERVICE_NOT_FOUND: Code.NotFound,
  INTERNAL: Code.Internal,
} as const satisfies Record<string, Code>;

export type Reason = keyof typeof REASONS;

/**
 * A ConnectError with `reason`'s status code and one ErrorInfo. `metadata`
 * names the field or limit at fault; it must never hold an id, a token or
 * a payload. `headers` are sent with the status (gRPC trailers, Connect
 * response headers), for what clients read outside the details, such as
 * the rate limit's retry delay.
 */
export function statusError(
  reason: Reason,
  message: string,
  metadata: Readonly<Record<string, string>> = {},
  headers?: Headers | Readonly<Record<string, string>>,
): ConnectError {
  return new ConnectError(message, REASONS[reason], headers, [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata }),
    },
  ]);
}

/**
 * The reason of the ErrorInfo `error` carries in this service's domain, or
 * undefined when it carries none: an error raised by a library, which the
 * transports give a reason before it is sent (see call-errors.ts).
 */
export function reasonOf(error: ConnectError): string | undefined {
  return error.findDetails(ErrorInfoSchema).find((info) => info.domain === ERROR_DOMAIN)?.reason;
}
