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
}

function summarize(latencies: number[], errors: number, elapsedMs: number): LoadResult {
  latencies.sort((a, b) => a - b);
  return {
    calls: latencies.length,
    errors,
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
  let errors = 0;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < calls) {
      const i = next++;
      const t0 = performance.now();
      try {
        await call(i);
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summarize(latencies, errors, performance.now() - started);
}

/**
 * A @grpc/grpc-js client that sends pre-encoded request bytes and does not
 * decode responses: a real gRPC client whose own CPU cost is as small as
 * possible, so the load process disturbs the server under test little.
 */
export function rawGrpcClient(port: number) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const identity = (bytes: Buffer) => bytes;
  return {
    call(path: string, request: Buffer): Promise<Buffer> {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, identity, identity, request, (error, response) =>
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
  readonly sendLagP99Ms: number;
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
