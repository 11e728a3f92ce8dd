/**
 * Open-loop latency probe, run as its own process so that the benchmark's
 * other clients and their garbage do not delay it: a minimal gRPC client on
 * node:http2 (lighter than @grpc/grpc-js) sending one pre-encoded unary call
 * at a fixed rate, whatever the responses do, and printing latency
 * percentiles as one JSON line.
 *
 * Usage: node latency-client.js <port> <path> <hex request message> <rate> <duration ms>
 */
import http2 from "node:http2";
import net from "node:net";
import { quantile } from "./stats.js";

/**
 * The percentiles of the distribution the probe reports: one or two per
 * "nine", enough to draw it from the median to the tail (p99.99 is the
 * few slowest calls of a probe).
 */
const PERCENTILES = [50, 75, 90, 95, 99, 99.9, 99.99];

const [port, path, hex, rateText, durationText] = process.argv.slice(2);
const rate = Number(rateText);
const durationMs = Number(durationText);
const message = Buffer.from(hex ?? "", "hex");
const frame = Buffer.alloc(5 + message.length);
frame.writeUInt32BE(message.length, 1);
message.copy(frame, 5);

const session = http2.connect(`http://127.0.0.1:${port}`, {
  createConnection: () => net.connect({ port: Number(port), host: "127.0.0.1", noDelay: true }),
});

function call(): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("data", () => {});
    stream.on("trailers", (trailers) =>
      trailers["grpc-status"] === "0"
        ? resolve()
        : reject(new Error(`grpc-status ${trailers["grpc-status"]}`)),
    );
    stream.on("error", reject);
    stream.end(frame);
  });
}

// Warm up (JIT, connection) before measuring.
for (let i = 0; i < 2000; i++) await call();

const latencies: number[] = [];
const lags: number[] = [];
let errors = 0;
const total = Math.floor((rate * durationMs) / 1000);
const interval = 1000 / rate;
const started = performance.now();
const pending: Promise<void>[] = [];
let i = 0;
while (i < total) {
  while (i < total && started + i * interval <= performance.now()) {
    const sent = performance.now();
    lags.push(sent - (started + i * interval));
    pending.push(
      call().then(
        () => {
          latencies.push(performance.now() - sent);
        },
        () => {
          errors++;
        },
      ),
    );
    i++;
  }
  // Sleep until the next call is due rather than spin: a busy loop would
  // take a core from the server under test.
  await new Promise((resolve) =>
    setTimeout(resolve, Math.max(0, Math.floor(started + i * interval - performance.now()))),
  );
}
await Promise.all(pending);
const elapsedMs = performance.now() - started;
session.close();
latencies.sort((a, b) => a - b);
lags.sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    calls: latencies.length,
    errors,
    throughput: (latencies.length * 1000) / elapsedMs,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    p999Ms: quantile(latencies, 0.999),
    maxMs: latencies.at(-1) ?? Number.NaN,
    sendLagP99Ms: quantile(lags, 0.99),
    percentiles: PERCENTILES.map((percentile) => ({
      percentile,
      ms: quantile(latencies, percentile / 100),
    })),
  })}\n`,
);
