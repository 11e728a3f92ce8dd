import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import type { StoredSession } from "../../src/store/session-store.js";

/**
 * The memory store, except that a Get of the session id "hang" waits until
 * its signal aborts: how a test sees that a cancelled call (or one whose
 * deadline passed) stops the store call it started, and with what reason.
 */
export class HangingStore extends MemorySessionStore {
  readonly aborted: unknown[] = [];

  override get(userId: string, sessionId: string, signal?: AbortSignal) {
    if (sessionId !== "hang") return super.get(userId, sessionId, signal);
    return new Promise<StoredSession | undefined>((_resolve, reject) => {
      signal?.addEventListener("abort", () => {
        this.aborted.push(signal.reason);
        reject(signal.reason);
      });
    });
  }
}
