import { execFile } from "node:child_process";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { quantile } from "./stats.js";

/** One measurement: how many calls completed, how long it took, latencies. */
export interface LoadResult {
  readonly calls: number;
  readonly errors: number;
  readonly elapsedMs: number;
  /** Calls per second. */
  readonly throughput: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /**
   * The failed calls by gRPC status name (UNAUTHENTICATED, RESOURCE_EXHAUSTED,
   * ...), "no status" for errors that carry none: what a refused call says.
   */
  readonly failures: Readonly<Record<string, number>>;
}

function summarize(
  latencies: number[],
  failures: Record<string, number>,
  elapsedMs: number,
): LoadResult {
  latencies.sort((a, b) => a - b);
  return {
    calls: latencies.length,
    errors: Object.values(failures).reduce((sum, n) => sum + n, 0),
    failures,
    elapsedMs,
    throughput: (latencies.length * 1000) / elapsedMs,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

/** A call of the workload; `i` numbers the calls so each can pick its input. */
export type Call = (i: number) => Promise<unknown>;

/**
 * Closed loop: `concurrency` callers, each starting its next call when the
 * previous one returns, until `calls` calls have been started. Measures the
 * peak throughput of the system under test.
 */
export async function closedLoop(
  call: Call,
  { concurrency, calls }: { concurrency: number; calls: number },
) {
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < calls) {
      const i = next++;
      const t0 = performance.now();
      try {
        await call(i);
        latencies.push(performance.now() - t0);
      } catch (error) {
        const status = statusName(error);
        failures[status] = (failures[status] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summarize(latencies, failures, performance.now() - started);
}

/** The gRPC status name of a failed call's error, or "no status". */
export function statusName(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return (typeof code === "number" && grpc.status[code]) || "no status";
}

/** "UNAUTHENTICATED × 20000, INTERNAL × 3": failures as an error message says them. */
export function describeFailures(failures: Readonly<Record<string, number>>): string {
  return Object.entries(failures)
    .map(([status, count]) => `${status} × ${count}`)
    .join(", ");
}

/**
 * A @grpc/grpc-js client that sends pre-encoded request bytes and does not
 * decode responses: a real gRPC client whose own CPU cost is as small as
 * possible, so the load process disturbs the server under test little.
 * `metadata` (e.g. an authorization header) goes with every call; grpc-js
 * copies it per call, so one Metadata built here serves them all.
 */
export function rawGrpcClient(port: number, metadata: Readonly<Record<string, string>> = {}) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const identity = (bytes: Buffer) => bytes;
  const sent = new grpc.Metadata();
  for (const [key, value] of Object.entries(metadata)) sent.set(key, value);
  return {
    call(path: string, request: Buffer): Promise<Buffer> {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, identity, identity, request, sent, (error, response) =>
          error || !response ? reject(error) : resolve(response),
        );
      });
    },
    close: () => client.close(),
  };
}

/** What latency-client.ts reports. */
export interface LatencyProbe {
  readonly calls: number;
  readonly errors: number;
  readonly throughput: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly sendLagP99Ms: number;
  /** Latency at each of latency-client.ts's percentiles, lowest first: the whole distribution, for the chart. */
  readonly percentiles: readonly { readonly percentile: number; readonly ms: number }[];
}

/** Runs the open-loop latency probe (latency-client.ts) in its own process. */
export async function probeLatency(
  port: number,
  path: string,
  request: Uint8Array,
  rate: number,
  durationMs: number,
): Promise<LatencyProbe> {
  const { stdout } = await promisify(execFile)(process.execPath, [
    "dist/bench/latency-client.js",
    String(port),
    path,
    Buffer.from(request).toString("hex"),
    String(rate),
    String(durationMs),
  ]);
  return JSON.parse(stdout) as LatencyProbe;
}
