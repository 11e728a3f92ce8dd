/**
 * Durations on the command line (`--ttl 1h`, `--timeout 500ms`): what an
 * operator types, in the units of Go's and systemd's durations, so nobody
 * has to count seconds.
 */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PART = /(\d+)(ms|s|m|h|d)/g;
const WHOLE = /^(?:\d+(?:ms|s|m|h|d))+$/;

/**
 * Milliseconds of a duration such as "500ms", "90s", "15m", "1h30m" or
 * "7d" (whole numbers, one or more unit parts), or undefined when `text`
 * is not one or is not positive.
 */
export function parseDurationMs(text: string): number | undefined {
  if (!WHOLE.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART)) {
    total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return total > 0 && Number.isSafeInteger(total) ? total : undefined;
}

/** A google.protobuf.Duration's fields for `ms` milliseconds. */
export function durationOfMs(ms: number): { seconds: bigint; nanos: number } {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}
