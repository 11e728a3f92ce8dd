import { Code, ConnectError } from "@connectrpc/connect";
import { type Reason, reasonOf, statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";

/**
 * The statuses both transports answer for problems with the request itself,
 * worded once so a call fails the same way on every path, each with its
 * ErrorInfo (see error-info.ts).
 */

/** The request message is over the configured limit. */
export function requestTooLarge(maxRequestBytes: number): ConnectError {
  return statusError(
    "REQUEST_TOO_LARGE",
    `request message is larger than MAX_REQUEST_BYTES (${maxRequestBytes} bytes)`,
    { limit: "MAX_REQUEST_BYTES", maxBytes: String(maxRequestBytes) },
  );
}

/**
 * The request body could not be read as the method's input message,
 * naming the field at fault when it is known, else the message type. The
 * decoder's own message is not passed on: it can quote the request.
 */
export function undecodableRequest(typeName: string, field?: string): ConnectError {
  return statusError(
    "INVALID_FIELD",
    `request is not a valid ${typeName}${field ? `: cannot decode field ${field}` : ""}`,
    field ? { field } : { messageType: typeName },
  );
}

/**
 * A more precise answer than undecodableRequest for a body that did not
 * decode, from the layer that knows the messages (the service), given the
 * input's type name and the decoder's own message (which is never sent on:
 * it can quote the request). Undefined: answer undecodableRequest.
 */
export type ExplainUndecodable = (
  typeName: string,
  decoderMessage: string,
) => ConnectError | undefined;

/** An invalid timeout header ("grpc-timeout" or "connect-timeout-ms"). */
export function invalidTimeout(header: string): ConnectError {
  return statusError("PROTOCOL_ERROR", `protocol error: invalid ${header}`, { header });
}

/**
 * The reason given to an error raised without one (by connect-node or
 * another library), by its code: connect-node raises INVALID_ARGUMENT for
 * a request that breaks the protocol (an envelope cut short, a missing
 * Connect version header) and RESOURCE_EXHAUSTED for a message over
 * MAX_REQUEST_BYTES; the other codes here need no more context than the
 * code itself. An error of any other code without a reason is a bug,
 * answered as one (see toStatusError).
 */
const REASON_OF_CODE: Readonly<Partial<Record<Code, Reason>>> = {
  [Code.InvalidArgument]: "PROTOCOL_ERROR",
  [Code.ResourceExhausted]: "REQUEST_TOO_LARGE",
  [Code.Canceled]: "CANCELLED",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.Internal]: "INTERNAL",
};

/**
 * The last line of defence of every transport: a ConnectError with an
 * ErrorInfo of this service is sent as it is; one without gets the reason
 * of its code, keeping its message, headers and other details; anything
 * else is a bug, logged here with its cause and answered with a generic
 * INTERNAL that reveals nothing. So every error a client receives carries
 * an ErrorInfo.
 */
export function toStatusError(error: unknown, logger: Logger, procedure: string): ConnectError {
  if (error instanceof ConnectError) {
    if (reasonOf(error) !== undefined) return error;
    const reason = REASON_OF_CODE[error.code];
    if (reason !== undefined) {
      const withReason = statusError(reason, error.rawMessage, {}, error.metadata);
      withReason.details.push(...error.details);
      return withReason;
    }
  }
  logger.error({ err: error, method: procedure }, "unexpected error");
  return statusError("INTERNAL", "internal error");
}

/** The field a protobuf JSON decoder's message names, if it names one. */
export function fieldOfJsonError(decoderMessage: string): string | undefined {
  return /^cannot decode field ([\w.]+) from JSON/.exec(decoderMessage)?.[1];
}
