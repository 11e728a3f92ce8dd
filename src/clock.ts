/**
 * The process's notion of "now", in Unix milliseconds. Everything in the
 * server that reads the wall clock in a way a client could notice (the
 * embedded store's expiry, its expiry times in responses, its check of
 * expires_at, its sweep) takes one of these instead of calling Date.now,
 * so a test can skew one replica's clock and show what follows from it.
 * The Redis store reads no clock of the process: its scripts read Redis'
 * TIME, the one clock every replica shares.
 */
export type Clock = () => number;

/**
 * The wall clock shifted by `offsetMs` (SESSIONSTORE_TEST_CLOCK_OFFSET_MS,
 * which only tests may set); with no offset, Date.now itself, so production
 * pays nothing for the indirection.
 */
export function processClock(offsetMs = 0): Clock {
  return offsetMs === 0 ? Date.now : () => Date.now() + offsetMs;
}
