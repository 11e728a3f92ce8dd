import { performance } from "node:perf_hooks";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionStoreClient, EventType } from "@sessionstore/client";
import { quantile } from "./stats.js";
import { benchSession } from "./workload.js";

/** What {@link measureEventLatency} reports. */
export interface EventLatency {
  readonly watchers: number;
  readonly writesPerSecond: number;
  readonly writes: number;
  /** Events received: one per write per watcher when nothing is lost. */
  readonly received: number;
  /** Write acknowledged to event received, ms (negative: the event came first). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/**
 * Event delivery latency: `watchers` WatchUser streams (one user each) on
 * the service, and Upserts to those users at `rate` a second in an open
 * loop from another connection; for every write, the time from its
 * response (the write acknowledged) to the moment its UPSERTED event
 * reached the watcher, matched by user, session and version. Both ends
 * are in this process, so they read one clock.
 */
export async function measureEventLatency(
  port: number,
  options: { watchers: number; rate: number; durationMs: number },
): Promise<EventLatency> {
  const baseUrl = `http://127.0.0.1:${port}`;
  const watching = createSessionStoreClient({ baseUrl });
  const writing = createSessionStoreClient({ baseUrl });
  const users = Array.from({ length: options.watchers }, (_, i) => `bench-watch-${i}`);
  /** When each write was acknowledged, and when its event arrived, by "user/session/version". */
  const acked = new Map<string, number>();
  const arrived = new Map<string, number>();
  const stop = new AbortController();
  /** Users whose watcher has received an event: its stream is live. */
  const live = new Set<string>();
  const streams = users.map(async (userId) => {
    try {
      for await (const event of watching.watchUser({ userId }, { signal: stop.signal })) {
        live.add(userId);
        if (event.type !== EventType.UPSERTED) continue;
        arrived.set(`${event.userId}/${event.sessionId}/${event.version}`, performance.now());
      }
    } catch (error) {
      if (!stop.signal.aborted) throw error;
    }
  });
  const writes: Promise<void>[] = [];
  const write = (userId: string, sessionId: string) =>
    writing
      .upsert({ session: benchSession(userId, sessionId), ttl: durationFromMs(60_000) })
      .then((res) => {
        acked.set(`${userId}/${sessionId}/${res.session?.version}`, performance.now());
      });
  // A stream watches from the moment the server has it: write to each user
  // until its watcher has seen a write.
  const deadline = performance.now() + 10_000;
  while (live.size < users.length) {
    if (performance.now() > deadline) throw new Error(`only ${live.size} watchers came up`);
    await Promise.all(users.filter((u) => !live.has(u)).map((u) => write(u, "warm")));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  acked.clear();
  arrived.clear();
  const intervalMs = 1000 / options.rate;
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < options.durationMs) {
    const due = Math.floor((performance.now() - start) / intervalMs);
    for (; sent < due; sent++) {
      writes.push(write(users[sent % users.length] as string, `s${sent}`));
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(writes);
  const settleBy = performance.now() + 5000;
  while (arrived.size < acked.size && performance.now() < settleBy) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  stop.abort();
  await Promise.all(streams);
  const latencies = [...acked]
    .filter(([key]) => arrived.has(key))
    .map(([key, at]) => (arrived.get(key) as number) - at)
    .sort((a, b) => a - b);
  return {
    watchers: options.watchers,
    writesPerSecond: options.rate,
    writes: acked.size,
    received: arrived.size,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies.at(-1) ?? Number.NaN,
  };
}
