import { statusError } from "../error-info.js";
import type { Call, CallPolicy, Rate } from "./call.js";
import { formatRate, isUnlimited, refill, type Tokens } from "./rate.js";

/** Options of {@link rateLimitPolicy}. */
export interface RateLimitOptions {
  /** RATE_LIMIT: the limit of anonymous calls and of callers without their own. */
  readonly rate: Rate;
  /** Told of every rejected call: the caller's name, or undefined for an anonymous call. */
  readonly onLimited?: (caller: string | undefined) => void;
  /**
   * The most buckets kept at once (default 100,000, a few MB). Buckets that
   * have refilled are dropped anyway; this bounds memory when very many
   * peers are all mid-burst at once.
   */
  readonly maxBuckets?: number;
  /** The clock in ms (tests drive it by hand). */
  readonly now?: () => number;
}

/** The rate limit policy, with how many buckets it holds (for tests and debugging). */
export interface RateLimitPolicy extends CallPolicy {
  readonly buckets: number;
}

/** How often, at most, buckets that have refilled are dropped. */
const SWEEP_INTERVAL_MS = 1000;

/** The header of gRPC's retry design (A6) that tells a client when to retry, in ms. */
export const RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms";

/** One key's tokens. */
interface Bucket extends Tokens {
  /** When it is full again and carries no state (dropped then). */
  fullAt: number;
}

/**
 * A token bucket per caller: calls of an identified caller (`call.caller`,
 * set by the auth policy, which therefore runs before this one) share the
 * caller's bucket, at the caller's own rate or else the default; anonymous
 * calls share one bucket per peer address, at the default rate. A call
 * finding its bucket empty is rejected with RESOURCE_EXHAUSTED before its
 * handler runs (so it changes nothing), with a message naming the limit
 * and when to retry, and the retry delay as the `grpc-retry-pushback-ms`
 * trailer (and `retry-after`, in seconds, for HTTP clients). Its ErrorInfo
 * (RATE_LIMITED) names the limit: `limit` is RATE_LIMIT, or AUTH_TOKENS_FILE
 * for a caller's own rate, with the rate itself and the wait in ms.
 *
 * Memory stays bounded: a bucket that has refilled is the same as no
 * bucket, so those are dropped (checked at most once a second), and past
 * `maxBuckets` the least recently used ones go first. The message never
 * names the caller or the address.
 */
export function rateLimitPolicy(options: RateLimitOptions): RateLimitPolicy {
  const { rate: defaultRate, onLimited } = options;
  const maxBuckets = options.maxBuckets ?? 100_000;
  const now = options.now ?? Date.now;
  const buckets = new Map<string, Bucket>();
  let lastSweep = now();

  const sweep = (time: number) => {
    lastSweep = time;
    for (const [key, bucket] of buckets) if (bucket.fullAt <= time) buckets.delete(key);
  };

  /** Takes a token from `key`'s bucket; returns 0, or the ms until one is there. */
  const take = (key: string, rate: Rate): number => {
    const time = now();
    if (time - lastSweep >= SWEEP_INTERVAL_MS) sweep(time);
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      if (buckets.size >= maxBuckets) {
        sweep(time);
        // Still full: the least recently used bucket goes (Map order is use order).
        for (const oldest of buckets.keys()) {
          if (buckets.size < maxBuckets) break;
          buckets.delete(oldest);
        }
      }
      bucket = { tokens: rate.burst, at: time, fullAt: time };
    } else {
      // Moved to the end: the Map's order is the order of last use.
      buckets.delete(key);
      refill(bucket, rate, time);
    }
    buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.fullAt = time + ((rate.burst - bucket.tokens) * 1000) / rate.perSecond;
      return 0;
    }
    // (Less a rounding error, so 0.998 tokens at 2/s waits 1 ms, not 2.)
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * 1000) / rate.perSecond - 1e-6));
  };

  return {
    name: "rate-limit",
    get buckets() {
      return buckets.size;
    },
    begin(call: Call) {
      const caller = call.caller;
      const rate = caller?.rate ?? defaultRate;
      if (isUnlimited(rate)) return undefined;
      // "c:" and "p:" keep a caller named like an address apart from it.
      const key = caller ? `c:${caller.name}` : `p:${call.peer.address ?? ""}`;
      const waitMs = take(key, rate);
      if (waitMs === 0) return undefined;
      onLimited?.(caller?.name);
      const limit = caller?.rate ? "this caller's own limit" : "RATE_LIMIT";
      throw statusError(
        "RATE_LIMITED",
        `rate limit exceeded (${limit} ${formatRate(rate)}); retry after ${waitMs} ms`,
        {
          limit: caller?.rate ? "AUTH_TOKENS_FILE" : "RATE_LIMIT",
          rate: formatRate(rate),
          retryAfterMs: String(waitMs),
        },
        {
          [RETRY_PUSHBACK_HEADER]: String(waitMs),
          "retry-after": String(Math.ceil(waitMs / 1000)),
        },
      );
    },
  };
}
