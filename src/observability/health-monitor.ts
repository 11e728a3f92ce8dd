/** Options of {@link HealthMonitor}. */
export interface HealthMonitorOptions {
  /** Resolves when the store is usable; rejects (or outlives the signal) when not. */
  readonly probe: (signal: AbortSignal) => Promise<void>;
  /** Time between probes. */
  readonly intervalMs: number;
  /** How long one probe may take before it counts as failed. */
  readonly timeoutMs: number;
}

/**
 * Whether the server can serve: the store answers its probe. It probes on a
 * short interval, so a store outage turns health NOT_SERVING (and recovery
 * SERVING) within interval + timeout, and it turns NOT_SERVING for good as
 * soon as shutdown begins.
 */
export class HealthMonitor {
  private serving = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(serving: boolean) => void>();
  private readonly options: HealthMonitorOptions;

  constructor(options: HealthMonitorOptions) {
    this.options = options;
  }

  /** Runs the first probe, then keeps probing until shutdown(). */
  async start(): Promise<void> {
    await this.probeOnce();
    this.schedule();
  }

  /** Whether the server is SERVING now. */
  get isServing(): boolean {
    return this.serving;
  }

  /** Whether shutdown() was called. */
  get isShutDown(): boolean {
    return this.stopped;
  }

  /** Calls `listener` on every change; returns the function that unsubscribes. */
  subscribe(listener: (serving: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** NOT_SERVING from now on (shutdown has begun); stops probing. */
  shutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.serving = false;
    // Always notify, even if already NOT_SERVING: watchers end on shutdown.
    for (const listener of this.listeners) listener(false);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.probeOnce().then(() => this.schedule());
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private async probeOnce(): Promise<void> {
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    const ok = await new Promise<boolean>((resolve) => {
      signal.addEventListener("abort", () => resolve(false), { once: true });
      this.options.probe(signal).then(
        () => resolve(!signal.aborted),
        () => resolve(false),
      );
    });
    if (!this.stopped) this.set(ok);
  }

  private set(serving: boolean): void {
    if (serving === this.serving) return;
    this.serving = serving;
    for (const listener of this.listeners) listener(serving);
  }
}
