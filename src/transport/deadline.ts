import { ConnectError } from "@connectrpc/connect";
import { statusError } from "../error-info.js";
import { invalidTimeout } from "./call-errors.js";

/**
 * The longest delay a Node.js timer can hold (about 24.8 days); a longer one
 * overflows and fires after 1 ms. MAX_DEADLINE, which every call's deadline
 * is capped at, must not exceed it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const GRPC_TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/**
 * Reads a gRPC timeout header ("100m", "5S", at most 8 digits): the timeout
 * in ms, undefined for none, or the error to answer for a malformed one.
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined | ConnectError {
  if (value === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return invalidTimeout("grpc-timeout");
  return Number(match[1]) * (GRPC_TIMEOUT_UNIT_MS[match[2] as string] as number);
}

/** Reads a Connect timeout header (whole ms, at most 10 digits), like parseGrpcTimeout. */
export function parseConnectTimeout(value: string | undefined): number | undefined | ConnectError {
  if (value === undefined) return undefined;
  if (!/^\d{1,10}$/.test(value)) return invalidTimeout("connect-timeout-ms");
  return Number(value);
}

/** A call's deadline, read from its timeout header and capped at MAX_DEADLINE. */
export interface CallDeadline {
  /** The timeout to enforce; undefined only when the header is malformed. */
  readonly timeoutMs: number | undefined;
  /** When that timeout passes, in Unix milliseconds. */
  readonly at: number | undefined;
  /** The error to answer when the header is malformed. */
  readonly error: ConnectError | undefined;
  /** Whether the server's MAX_DEADLINE set it (the caller sent none, or a longer one). */
  readonly capped: boolean;
}

/**
 * The deadline of a call whose timeout header parsed as `parsed` (see
 * parseGrpcTimeout): the caller's, unless it sent none or one longer than
 * `maxDeadlineMs` (MAX_DEADLINE), which is then the deadline. Every call
 * ends by then, so no call holds a connection's stream, a store command or
 * a pipeline slot for longer, whatever its caller asked.
 */
export function callDeadline(
  parsed: number | undefined | ConnectError,
  maxDeadlineMs: number,
): CallDeadline {
  if (parsed instanceof ConnectError) {
    return { timeoutMs: undefined, at: undefined, error: parsed, capped: false };
  }
  const capped = parsed === undefined || parsed > maxDeadlineMs;
  const timeoutMs = capped ? maxDeadlineMs : parsed;
  return { timeoutMs, at: Date.now() + timeoutMs, error: undefined, capped };
}

/**
 * The status of a call whose deadline passed: connect-node's wording, and
 * the setting's name (in the message and the ErrorInfo) when MAX_DEADLINE,
 * not the caller, set the deadline.
 */
export function deadlineExceeded(deadline: CallDeadline): ConnectError {
  return deadline.capped
    ? statusError(
        "DEADLINE_EXCEEDED",
        `the operation timed out: calls may take at most MAX_DEADLINE (${deadline.timeoutMs} ms)`,
        { limit: "MAX_DEADLINE", maxMs: String(deadline.timeoutMs) },
      )
    : statusError("DEADLINE_EXCEEDED", "the operation timed out");
}
