import { afterAll, beforeAll } from "vitest";

/**
 * A fixture of the enclosing block (the whole file at the top level): a
 * Redis server, a Cluster, a Sentinel set, started before the block's tests
 * and stopped after them, also when they fail. Returns a getter, since the
 * fixture exists only once the hook has run.
 */
export function ownedForBlock<T extends { stop(): Promise<void> }>(
  start: () => Promise<T>,
  startTimeoutMs?: number,
): () => T {
  let fixture: T | undefined;
  beforeAll(async () => {
    fixture = await start();
  }, startTimeoutMs);
  afterAll(async () => {
    await fixture?.stop();
  });
  return () => {
    if (!fixture) throw new Error("the fixture has not started");
    return fixture;
  };
}
