import { Code, ConnectError } from "@connectrpc/connect";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import type { StoreErrorKind } from "../observability/telemetry.js";
import {
  ExpiresAtPassedError,
  NotReplicatedError,
  RefreshStateMissingError,
  RefreshTokenReusedError,
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
  outages: OutageLog = new OutageLog(logger),
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
  if (error instanceof RefreshTokenReusedError) {
    return statusError(
      "REFRESH_TOKEN_REUSED",
      "refresh token was already used - the session is revoked",
    );
  }
  if (error instanceof RefreshStateMissingError) {
    return statusError(
      "REFRESH_STATE_MISSING",
      "session has no refresh token to rotate - Upsert one first",
    );
  }
  if (error instanceof ExpiresAtPassedError) {
    return new ConnectError("session.expires_at must be in the future", Code.InvalidArgument);
  }
  if (error instanceof StoreUnavailableError) {
    onStoreError("unavailable");
    outages.failed(error, method);
    // A write that replicas did not confirm happened on the primary, and
    // may survive: a blind retry could apply it twice.
    const message =
      error instanceof NotReplicatedError
        ? `${error.message} - read the session again, or retry with expected_version set to the version you know`
        : "session storage is unavailable - retry later";
    return new ConnectError(message, Code.Unavailable);
  }
  onStoreError("internal");
  logger.error({ err: error, method }, "unexpected error");
  return new ConnectError("internal error", Code.Internal);
}

/**
 * Logs a store outage without flooding the log: while Redis is away every
 * call fails the same way (thousands a second under load), so the first
 * failure of an interval is logged with its cause, and the rest are counted
 * and summed up in one line when the interval ends. The metrics
 * (sessionstore_store_errors_total) still count every one.
 */
export class OutageLog {
  private windowStart = Number.NEGATIVE_INFINITY;
  private suppressed = 0;
  private flush: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  failed(error: unknown, method: string): void {
    const time = this.now();
    if (time - this.windowStart < this.intervalMs) {
      this.suppressed++;
      this.flush ??= setTimeout(() => this.report(), this.windowStart + this.intervalMs - time);
      this.flush.unref();
      return;
    }
    this.report();
    this.windowStart = time;
    this.logger.warn({ err: error, method }, "session storage unavailable");
  }

  /** Logs how many failures the current interval held back, if any. */
  report(): void {
    clearTimeout(this.flush);
    this.flush = undefined;
    if (this.suppressed === 0) return;
    this.logger.warn(
      { failedCalls: this.suppressed, intervalMs: this.intervalMs },
      "session storage unavailable: more calls failed the same way",
    );
    this.suppressed = 0;
  }
}
