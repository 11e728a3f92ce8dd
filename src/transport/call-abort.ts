/**
 * The cancellation of one fast-path call, without an AbortController per
 * call: Node builds every AbortSignal by re-prototyping an EventTarget,
 * which measured about 15% of the fast path's CPU per Get. It has what the
 * store needs to stop waiting (the abort state and abort listeners, as on
 * an AbortSignal) and makes a real AbortSignal only when asked (a policy
 * reading Call.signal).
 */
export class CallAbort {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;
  private controller: AbortController | undefined;

  /** Calls `listener` once, when the call aborts. */
  addEventListener(_type: "abort", listener: () => void): void {
    if (this.listeners) this.listeners.push(listener);
    else this.listeners = [listener];
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const index = this.listeners?.indexOf(listener) ?? -1;
    if (index >= 0) this.listeners?.splice(index, 1);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  /** Aborts the call with `reason`; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) listener();
  }

  /** A standard AbortSignal that aborts with this, made on first use. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }
}
