import { ConnectError } from "@connectrpc/connect";
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
 * message, its cause logged here and never sent. Each carries its ErrorInfo
 * reason (see error-info.ts); the metadata names the request field whose
 * condition failed, never a value.
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
    return statusError("SESSION_NOT_FOUND", "session not found");
  }
  if (error instanceof SessionExistsError) {
    return statusError("SESSION_EXISTS", "session already exists", { field: "expected_version" });
  }
  if (error instanceof VersionMismatchError) {
    return statusError("VERSION_MISMATCH", "stored version differs from expected_version", {
      field: "expected_version",
    });
  }
  if (error instanceof RefreshTokenReusedError) {
    return statusError(
      "REFRESH_TOKEN_REUSED",
      "refresh token was already used - the session is revoked",
      { field: "presented_refresh_token_id" },
    );
  }
  if (error instanceof RefreshStateMissingError) {
    return statusError(
      "REFRESH_STATE_MISSING",
      "session has no refresh token to rotate - Upsert one first",
    );
  }
  if (error instanceof ExpiresAtPassedError) {
    return statusError("EXPIRES_AT_PASSED", "session.expires_at must be in the future", {
      field: "session.expires_at",
    });
  }
  if (error instanceof NotReplicatedError) {
    onStoreError("unavailable");
    outages.failed(error, method);
    // A write that replicas did not confirm happened on the primary, and
    // may survive: a blind retry could apply it twice, so it has a reason
    // of its own, apart from STORE_UNAVAILABLE's safe retry.
    return statusError(
      "WRITE_NOT_REPLICATED",
      `${error.message} - read the session again, or retry with expected_version set to the version you know`,
      {
        limit: "REDIS_WAIT_REPLICAS",
        acknowledged: String(error.acknowledged),
        required: String(error.required),
      },
    );
  }
  if (error instanceof StoreUnavailableError) {
    onStoreError("unavailable");
    outages.failed(error, method);
    return statusError("STORE_UNAVAILABLE", "session storage is unavailable - retry later");
  }
  onStoreError("internal");
  logger.error({ err: error, method }, "unexpected error");
  return statusError("INTERNAL", "internal error");
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
