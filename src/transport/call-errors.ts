import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.js";

/**
 * The statuses both transports answer for problems with the request itself,
 * worded once so a call fails the same way on every path.
 */

/** The request message is over the configured limit. */
export function requestTooLarge(maxRequestBytes: number): ConnectError {
  return new ConnectError(
    `request message is larger than MAX_REQUEST_BYTES (${maxRequestBytes} bytes)`,
    Code.ResourceExhausted,
  );
}

/**
 * The request body could not be read as the method's input message,
 * naming the field at fault when it is known. The decoder's own message is
 * not passed on: it can quote the request.
 */
export function undecodableRequest(typeName: string, field?: string): ConnectError {
  return new ConnectError(
    `request is not a valid ${typeName}${field ? `: cannot decode field ${field}` : ""}`,
    Code.InvalidArgument,
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
  return new ConnectError(`protocol error: invalid ${header}`, Code.InvalidArgument);
}

/**
 * The last line of defence of every transport: a ConnectError is sent as it
 * is; anything else is a bug, logged here with its cause and answered with a
 * generic INTERNAL that reveals nothing.
 */
export function toStatusError(error: unknown, logger: Logger, procedure: string): ConnectError {
  if (error instanceof ConnectError) return error;
  logger.error({ err: error, method: procedure }, "unexpected error");
  return new ConnectError("internal error", Code.Internal);
}
