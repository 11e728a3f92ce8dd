import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { LATENCY_BUCKETS, RpcMetrics } from "../../src/observability/rpc-metrics.js";

const GET = "sessionstore.v1.SessionStoreService/Get";
const UPSERT = "sessionstore.v1.SessionStoreService/Upsert";

/** The sample lines of /metrics whose name starts with `prefix`, as a map from series to value. */
async function series(registry: Registry, prefix: string): Promise<Map<string, string>> {
  const text = await registry.metrics();
  return new Map(
    text
      .split("\n")
      .filter((line) => line.startsWith(prefix))
      .map((line) => {
        const at = line.lastIndexOf(" ");
        return [line.slice(0, at), line.slice(at + 1)];
      }),
  );
}

describe("RpcMetrics", () => {
  it("puts a call in the first bucket whose bound it does not exceed, and exports cumulative buckets, sum and count", async () => {
    const registry = new Registry();
    const metrics = new RpcMetrics(registry);
    const get = metrics.method(GET);
    // On a bound, just past it, past the last bound.
    get.finished(0.001, 0, "anonymous");
    get.finished(0.0011, 0, "anonymous");
    get.finished(3, 0, "anonymous");
    const got = await series(registry, "sessionstore_rpc_duration_seconds");
    const bucket = (le: string) =>
      got.get(`sessionstore_rpc_duration_seconds_bucket{le="${le}",method="${GET}"}`);
    expect(bucket("0.0005")).toBe("0");
    expect(bucket("0.001")).toBe("1");
    expect(bucket("0.0025")).toBe("2");
    expect(bucket("2.5")).toBe("2");
    expect(bucket("+Inf")).toBe("3");
    expect(Number(got.get(`sessionstore_rpc_duration_seconds_sum{method="${GET}"}`))).toBeCloseTo(
      3.0021,
      9,
    );
    expect(got.get(`sessionstore_rpc_duration_seconds_count{method="${GET}"}`)).toBe("3");
    // Every bound of the histogram, then +Inf, sum and count.
    expect(got.size).toBe(LATENCY_BUCKETS.length + 3);
  });

  it("counts finished calls by method, status name and caller, and the calls in flight", async () => {
    const registry = new Registry();
    const metrics = new RpcMetrics(registry);
    metrics.method(GET).finished(0.001, 5, "billing");
    metrics.method(GET).finished(0.001, 5, "billing");
    metrics.method(GET).finished(0.001, 0, "anonymous");
    metrics.method(UPSERT).finished(0.001, 16, "billing");
    // A code past the ones gRPC names is counted under its number.
    metrics.method(UPSERT).finished(0.001, 42, "billing");
    metrics.inFlight = 2;
    const got = await series(registry, "sessionstore_rpcs_");
    expect(Object.fromEntries(got)).toEqual({
      [`sessionstore_rpcs_total{method="${GET}",code="NOT_FOUND",caller="billing"}`]: "2",
      [`sessionstore_rpcs_total{method="${GET}",code="OK",caller="anonymous"}`]: "1",
      [`sessionstore_rpcs_total{method="${UPSERT}",code="UNAUTHENTICATED",caller="billing"}`]: "1",
      [`sessionstore_rpcs_total{method="${UPSERT}",code="42",caller="billing"}`]: "1",
      sessionstore_rpcs_in_flight: "2",
    });
    // Scraping again says the same: totals are not added twice.
    expect(await series(registry, "sessionstore_rpcs_")).toEqual(got);
  });

  it("starts over when the registry's metrics are reset", async () => {
    const registry = new Registry();
    const metrics = new RpcMetrics(registry);
    metrics.method(GET).finished(0.001, 0, "anonymous");
    registry.resetMetrics();
    expect((await series(registry, "sessionstore_rpc")).size).toBe(1);
    expect(await series(registry, "sessionstore_rpc")).toEqual(
      new Map([["sessionstore_rpcs_in_flight", "0"]]),
    );
  });
});
