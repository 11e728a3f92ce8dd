import { MemorySessionStore } from "../../src/store/memory/memory-session-store.js";
import type { StoreSignal, UpsertInput } from "../../src/store/session-store.js";

/**
 * The memory store, counting the calls that changed something: an upsert
 * or touch that succeeded, a delete that deleted, a deleteByUser that
 * deleted any. How a test checks that a rejected request wrote nothing.
 */
export class CountingStore extends MemorySessionStore {
  writes = 0;

  override async upsert(input: UpsertInput, signal?: StoreSignal) {
    const stored = await super.upsert(input, signal);
    this.writes++;
    return stored;
  }

  override async touch(userId: string, sessionId: string, ttlMs: number, signal?: StoreSignal) {
    const stored = await super.touch(userId, sessionId, ttlMs, signal);
    this.writes++;
    return stored;
  }

  override async delete(
    userId: string,
    sessionId: string,
    expectedVersion: bigint | undefined,
    signal?: StoreSignal,
  ) {
    const deleted = await super.delete(userId, sessionId, expectedVersion, signal);
    if (deleted) this.writes++;
    return deleted;
  }

  override async deleteByUser(
    userId: string,
    exceptSessionIds: readonly string[],
    signal?: StoreSignal,
  ) {
    const deleted = await super.deleteByUser(userId, exceptSessionIds, signal);
    if (deleted > 0) this.writes++;
    return deleted;
  }
}
