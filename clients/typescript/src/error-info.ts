/**
 * Reading the machine-readable part of SessionStore's errors, shared by the
 * Node and browser entries (it depends on @connectrpc/connect alone).
 *
 * Every error the server returns carries one google.rpc.ErrorInfo in its
 * status details (AIP-193) with the domain "sessionstore", a stable reason
 * such as SESSION_NOT_FOUND or VERSION_MISMATCH, and metadata naming the
 * field or limit at fault. Programs branch on the reason: status messages
 * are meant for people and may be reworded, and one status code covers
 * several reasons (RESOURCE_EXHAUSTED is a rate limit or a request too
 * large, which call for different handling).
 */
import { ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The ErrorInfo domain of every error SessionStore returns. */
export const SESSIONSTORE_ERROR_DOMAIN = "sessionstore";

/** The machine-readable part of a SessionStore error. */
export interface SessionStoreErrorInfo {
  /** UPPER_SNAKE_CASE, such as SESSION_NOT_FOUND (the server's README lists them all). */
  readonly reason: string;
  /** The field or limit at fault, such as `{ field: "ttl", maxSeconds: "34560000" }`. */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * The ErrorInfo of a SessionStore error: what a call rejected with (any
 * protocol, any entry of this package). Undefined for anything else: an
 * error that is no ConnectError, or one that did not come from SessionStore
 * (a connection refused, a proxy's error page), which carries no ErrorInfo
 * of its domain.
 */
export function errorInfo(error: unknown): SessionStoreErrorInfo | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const info = error
    .findDetails(ErrorInfoSchema)
    .find((detail) => detail.domain === SESSIONSTORE_ERROR_DOMAIN);
  return info ? { reason: info.reason, metadata: { ...info.metadata } } : undefined;
}

/**
 * The reason of a SessionStore error, such as "SESSION_NOT_FOUND", or
 * undefined for an error that did not come from SessionStore (see
 * {@link errorInfo}).
 *
 * @example
 * try {
 *   await sessions.upsert({ session, ttl, expectedVersion: 0n });
 * } catch (err) {
 *   if (errorReason(err) !== "SESSION_EXISTS") throw err;
 * }
 */
export function errorReason(error: unknown): string | undefined {
  return errorInfo(error)?.reason;
}
