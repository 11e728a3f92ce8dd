import { Code, ConnectError } from "@connectrpc/connect";
import { invalidTimeout } from "./call-errors.js";

/**
 * The longest delay a Node.js timer can hold (about 24.8 days). A longer one
 * overflows and fires after 1 ms, so a client asking for a 30-day deadline
 * would time out at once; such deadlines are served as no deadline.
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

/** Whether a timeout is served as a deadline (see MAX_TIMER_MS). */
export function enforceable(timeoutMs: number | undefined): timeoutMs is number {
  return timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS;
}

/** A call's deadline, read from its timeout header. */
export interface CallDeadline {
  /** The timeout to enforce; undefined when none was sent, or one too long for a timer. */
  readonly timeoutMs: number | undefined;
  /** When that timeout passes, in Unix milliseconds. */
  readonly at: number | undefined;
  /** The error to answer when the header is malformed. */
  readonly error: ConnectError | undefined;
}

/** The deadline of a call whose timeout header parsed as `parsed` (see parseGrpcTimeout). */
export function callDeadline(parsed: number | undefined | ConnectError): CallDeadline {
  if (parsed instanceof ConnectError) return { timeoutMs: undefined, at: undefined, error: parsed };
  if (!enforceable(parsed)) return { timeoutMs: undefined, at: undefined, error: undefined };
  return { timeoutMs: parsed, at: Date.now() + parsed, error: undefined };
}

/** The status of a call whose deadline passed (connect-node's wording). */
export function deadlineExceeded(): ConnectError {
  return new ConnectError("the operation timed out", Code.DeadlineExceeded);
}
