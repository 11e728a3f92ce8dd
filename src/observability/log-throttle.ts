/**
 * Counts events that would flood the log if each were logged (connections
 * refused, connections cut off) and says when to log them: at most once
 * per interval, with how many there were since the last line.
 */
export class LogThrottle {
  private unlogged = 0;
  private loggedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one event; returns how many to log now, or undefined to stay quiet. */
  count(): number | undefined {
    this.unlogged++;
    const time = this.now();
    if (time - this.loggedAt < this.intervalMs) return undefined;
    this.loggedAt = time;
    const count = this.unlogged;
    this.unlogged = 0;
    return count;
  }
}
