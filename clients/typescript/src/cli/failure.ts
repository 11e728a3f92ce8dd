/**
 * What sessionstore-ctl's exit code and error line say about a failed call.
 * The line on stderr is for the person reading it: the gRPC status name,
 * the server's message and its ErrorInfo reason. Neither ever contains the
 * token: the server never echoes credentials, and the client's own token
 * errors say what is wrong without repeating it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { errorInfo } from "../error-info.js";
import { EXIT } from "./exit-codes.js";

/** gRPC's names of the status codes, as grpc-status and grpcurl spell them. */
const STATUS_NAMES: Record<Code, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

/** The exit code for a call that failed with `error`. */
export function exitCodeOf(error: unknown): number {
  if (!(error instanceof ConnectError)) return EXIT.failed;
  switch (error.code) {
    case Code.NotFound:
      return EXIT.notFound;
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return EXIT.denied;
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return EXIT.unavailable;
    default:
      return EXIT.failed;
  }
}

/** A failed call, as sessionstore-ctl reports it. */
export interface CallFailure {
  /** The gRPC status name, such as NOT_FOUND; absent for an error that is not a call's. */
  readonly code?: string;
  readonly message: string;
  /** The ErrorInfo reason, such as SESSION_NOT_FOUND, when the server sent one. */
  readonly reason?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** What went wrong, from whatever a call rejected with. */
export function describeFailure(error: unknown): CallFailure {
  if (!(error instanceof ConnectError)) {
    return { message: error instanceof Error ? error.message : String(error) };
  }
  const info = errorInfo(error);
  return {
    code: STATUS_NAMES[error.code],
    message: error.rawMessage,
    ...(info ? { reason: info.reason, metadata: info.metadata } : {}),
  };
}

/**
 * One line for people: "NOT_FOUND: session not found (reason
 * SESSION_NOT_FOUND)", with the ErrorInfo metadata (field and limit names,
 * never ids or payloads) after the reason.
 */
export function failureLine(failure: CallFailure): string {
  const code = failure.code ? `${failure.code}: ` : "";
  const metadata = Object.entries(failure.metadata ?? {}).map(([key, value]) => `${key}=${value}`);
  const reason = failure.reason ? ` (reason ${[failure.reason, ...metadata].join(" ")})` : "";
  return `${code}${failure.message}${reason}`;
}
