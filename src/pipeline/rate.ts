import type { Rate } from "./call.js";

/**
 * The rate of a caller that is not limited ("off"). A Rate rather than
 * undefined, so a per-caller override can lift the limit for one trusted
 * caller while the default stays on (Caller.rate undefined means "the
 * default", not "unlimited").
 */
export const UNLIMITED: Rate = Object.freeze({ perSecond: Number.POSITIVE_INFINITY, burst: 0 });

/** A token bucket's tokens, as of `at` (ms). */
export interface Tokens {
  tokens: number;
  at: number;
}

/** Adds to `bucket` what `rate` has refilled from `bucket.at` to `time`, up to its burst. */
export function refill(bucket: Tokens, rate: Rate, time: number): void {
  const elapsed = Math.max(0, time - bucket.at);
  bucket.tokens = Math.min(rate.burst, bucket.tokens + (elapsed * rate.perSecond) / 1000);
  bucket.at = time;
}

/** Whether `rate` limits nothing. */
export function isUnlimited(rate: Rate): boolean {
  return rate.perSecond === Number.POSITIVE_INFINITY;
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 };

/** The largest count a rate or burst may give: beyond it, "off" says it better. */
const MAX_COUNT = 1_000_000_000;

/** What parseRate accepts, for error messages. */
export const RATE_SYNTAX =
  "a rate such as 500/s,burst=1000, 20/s or 100/m (a whole number of calls per s, m or h; " +
  "burst, the calls allowed at once, defaults to that number), or off";

/**
 * Parses a rate limit: `<n>/<unit>[,burst=<b>]` with unit s, m or h, or
 * `off` (UNLIMITED). `20/s` allows 20 calls at once and 20 a second on
 * average; `500/s,burst=1000` allows 1000 at once, refilled at 500 a
 * second; `100/m` allows 100 at once, refilled at 100 a minute. Spaces
 * around the comma are allowed. Returns a description of what is expected
 * when `text` is not a rate.
 *
 * A pure function: the RATE_LIMIT setting and the tokens file's per-caller
 * overrides share one grammar and one error text.
 */
export function parseRate(text: string): Rate | string {
  const trimmed = text.trim();
  if (trimmed === "off") return UNLIMITED;
  const match = /^(\d{1,10})\/([smh])(?:\s*,\s*burst\s*=\s*(\d{1,10}))?$/.exec(trimmed);
  if (!match) return RATE_SYNTAX;
  const count = Number(match[1]);
  const burst = match[3] === undefined ? count : Number(match[3]);
  if (count < 1 || count > MAX_COUNT || burst < 1 || burst > MAX_COUNT) {
    return `${RATE_SYNTAX}; the rate and burst must be from 1 to ${MAX_COUNT}`;
  }
  return Object.freeze({
    perSecond: count / (UNIT_SECONDS[match[2] as string] as number),
    burst,
  });
}

/**
 * A rate as parseRate reads it ("500/s, burst 1000"), in the largest unit
 * that shows it as a whole number: for the messages of rejected calls and
 * for --help.
 */
export function formatRate(rate: Rate): string {
  if (isUnlimited(rate)) return "off";
  for (const [unit, seconds] of Object.entries(UNIT_SECONDS)) {
    const count = rate.perSecond * seconds;
    if (Math.abs(count - Math.round(count)) < 1e-9)
      return `${Math.round(count)}/${unit}, burst ${rate.burst}`;
  }
  return `${rate.perSecond}/s, burst ${rate.burst}`;
}
