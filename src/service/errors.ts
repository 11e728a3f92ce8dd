import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.js";
import type { StoreErrorKind } from "../observability/telemetry.js";
import {
  ExpiresAtPassedError,
  SessionExistsError,
  SessionNotFoundError,
  StoreUnavailableError,
  VersionMismatchError,
} from "../store/errors.js";

/**
 * The one place where failures become status codes. Domain errors keep their
 * meaning; an unreachable store is UNAVAILABLE (never NOT_FOUND: an outage
 * must not log anybody out); anything unexpected is INTERNAL with a generic
 * message, its cause logged here and never sent.
 */
export function toConnectError(
  error: unknown,
  logger: Logger,
  method: string,
  onStoreError: (kind: StoreErrorKind) => void = () => {},
): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof SessionNotFoundError) {
    return new ConnectError("session not found", Code.NotFound);
  }
  if (error instanceof SessionExistsError) {
    return new ConnectError("session already exists", Code.AlreadyExists);
  }
  if (error instanceof VersionMismatchError) {
    return new ConnectError("stored version differs from expected_version", Code.Aborted);
  }
  if (error instanceof ExpiresAtPassedError) {
    return new ConnectError("session.expires_at must be in the future", Code.InvalidArgument);
  }
  if (error instanceof StoreUnavailableError) {
    onStoreError("unavailable");
    logger.warn({ err: error, method }, "session storage unavailable");
    return new ConnectError("session storage is unavailable - retry later", Code.Unavailable);
  }
  onStoreError("internal");
  logger.error({ err: error, method }, "unexpected error");
  return new ConnectError("internal error", Code.Internal);
}
