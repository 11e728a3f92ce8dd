import type { StoreSignal } from "./session-store.js";

/**
 * Settles like `operation`, unless `signal` aborts first, in which case it
 * rejects at once with the signal's reason (for an RPC, the deadline or
 * cancellation error). A Redis command already sent cannot be recalled, so
 * its outcome is then ignored; one not yet started is never sent, because
 * `operation` is only called while the signal is still live.
 */
export function abortable<T>(
  signal: StoreSignal | undefined,
  operation: () => Promise<T>,
): Promise<T> {
  if (!signal) return operation();
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    operation().then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
