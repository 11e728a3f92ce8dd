import { Counter, Gauge, type Histogram, type Registry } from "prom-client";

/** Latency buckets in seconds: the calls this service answers take about a millisecond. */
export const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
] as const;

/** gRPC's canonical status names, by code number (the `code` label and log field). */
export const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The name of status code `code`. */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

/** What one method's calls added up to. */
export class MethodCounts {
  /**
   * Calls per latency bucket: bucket i holds those of at most
   * LATENCY_BUCKETS[i] seconds and more than the one before. Slower calls
   * are in none: the +Inf bucket is every call (`calls`).
   */
  readonly buckets: number[] = new Array(LATENCY_BUCKETS.length).fill(0);
  /** Seconds of all calls together. */
  seconds = 0;
  calls = 0;
  /** Finished calls by caller name, then by status code. */
  readonly byCaller = new Map<string, number[]>();

  constructor(readonly method: string) {}

  /** Counts one finished call. */
  finished(seconds: number, code: number, caller: string): void {
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[bucket] as number)) {
      bucket++;
    }
    if (bucket < LATENCY_BUCKETS.length) this.buckets[bucket] = (this.buckets[bucket] ?? 0) + 1;
    this.seconds += seconds;
    this.calls++;
    let codes = this.byCaller.get(caller);
    if (codes === undefined) {
      codes = [];
      this.byCaller.set(caller, codes);
    }
    codes[code] = (codes[code] ?? 0) + 1;
  }
}

const DURATION = "sessionstore_rpc_duration_seconds";

/**
 * The metrics of every RPC: sessionstore_rpcs_total{method, code, caller},
 * sessionstore_rpc_duration_seconds{method} and sessionstore_rpcs_in_flight.
 *
 * A call adds to plain numbers (see MethodCounts), and prom-client reads
 * them when /metrics is scraped. prom-client's own observe() and inc()
 * build and hash a label set on every call, work a call need not do. The
 * counter and the gauge are prom-client's, filled in by their collect();
 * the histogram is a metric of our own, as prom-client's histograms can
 * only be filled one observation at a time. /metrics says the same either
 * way (test/unit/rpc-metrics.test.ts).
 */
export class RpcMetrics {
  /** Calls started and not finished. */
  inFlight = 0;
  private readonly methods = new Map<string, MethodCounts>();

  constructor(registry: Registry) {
    const methods = this.methods;
    const metrics = this;
    new Counter({
      name: "sessionstore_rpcs_total",
      help: "RPCs finished, by method, status code and caller name.",
      labelNames: ["method", "code", "caller"],
      registers: [registry],
      collect() {
        this.reset();
        for (const counts of methods.values()) {
          for (const [caller, codes] of counts.byCaller) {
            codes.forEach((calls, code) => {
              this.inc({ method: counts.method, code: codeName(code), caller }, calls);
            });
          }
        }
      },
    });
    // A registry takes any metric that says what it is and has get() and
    // reset(); the type only lists prom-client's own classes.
    registry.registerMetric(this.durationMetric() as unknown as Histogram);
    new Gauge({
      name: "sessionstore_rpcs_in_flight",
      help: "RPCs started and not yet finished.",
      registers: [registry],
      collect() {
        this.set(metrics.inFlight);
      },
    });
  }

  /** The counts of `method`'s calls, made on its first call. */
  method(method: string): MethodCounts {
    let counts = this.methods.get(method);
    if (counts === undefined) {
      counts = new MethodCounts(method);
      this.methods.set(method, counts);
    }
    return counts;
  }

  /** sessionstore_rpc_duration_seconds, as prom-client's Histogram would say it. */
  private durationMetric() {
    const methods = this.methods;
    const metric = {
      name: DURATION,
      help: "RPC latency, from the request's arrival to the status being sent.",
      type: "histogram",
      aggregator: "sum",
      async get() {
        const values: {
          labels: Record<string, string | number>;
          value: number;
          metricName: string;
        }[] = [];
        for (const counts of methods.values()) {
          const { method } = counts;
          let cumulative = 0;
          LATENCY_BUCKETS.forEach((le, i) => {
            cumulative += counts.buckets[i] as number;
            values.push({
              labels: { le, method },
              value: cumulative,
              metricName: `${DURATION}_bucket`,
            });
          });
          values.push(
            {
              labels: { le: "+Inf", method },
              value: counts.calls,
              metricName: `${DURATION}_bucket`,
            },
            { labels: { method }, value: counts.seconds, metricName: `${DURATION}_sum` },
            { labels: { method }, value: counts.calls, metricName: `${DURATION}_count` },
          );
        }
        return {
          name: metric.name,
          help: metric.help,
          type: metric.type,
          aggregator: metric.aggregator,
          values,
        };
      },
      reset() {
        methods.clear();
      },
    };
    return metric;
  }
}
