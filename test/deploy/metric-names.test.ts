// The metric names the dashboard's queries and the alert rules use are ones
// a real server exports: read from the /metrics of the entry point run as
// `npm start` runs it (with Node's process metrics), not from a list in
// the test.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { dashboardQueries, readDashboard } from "../support/grafana-dashboard.js";
import { exportedSeriesNames, metricNames } from "../support/promql.js";
import { runServerWithAdmin, type ServerProcess } from "../support/server-process.js";

let server: ServerProcess | undefined;
/** Series name -> metric family, as the live server's /metrics declares them. */
let exported: Map<string, string>;

beforeAll(async () => {
  const started = await runServerWithAdmin({});
  server = started.server;
  const response = await fetch(`http://127.0.0.1:${started.adminPort}/metrics`);
  expect(response.status).toBe(200);
  exported = exportedSeriesNames(await response.text());
});

afterAll(() => {
  server?.kill();
});

/** The queries' metric names the server does not export, with where each is used. */
function unknown(queries: readonly { where: string; expr: string }[]): string[] {
  return queries.flatMap(({ where, expr }) =>
    [...metricNames(expr)].filter((name) => !exported.has(name)).map((name) => `${where}: ${name}`),
  );
}

describe("the metric name reader", () => {
  it("finds selected metrics, not functions, labels, keywords, durations or variables", () => {
    expect([
      ...metricNames(
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{code!="OK", x=~"$job"}[$__rate_interval]))) / on (job) group_left b:c offset 5m > 1e3 and Inf',
      ),
    ]).toEqual(["a_bucket", "b:c"]);
  });

  it("reads histograms as their _bucket, _sum and _count series", () => {
    const names = exportedSeriesNames("# TYPE h histogram\n# TYPE c counter\nc 1\n");
    expect([...names.keys()]).toEqual(["h_bucket", "h_sum", "h_count", "c"]);
  });
});

describe("the metrics the deploy files use", () => {
  it("include the service's and Node's process metrics (the server runs with process metrics)", () => {
    expect(exported.get("sessionstore_rpc_duration_seconds_bucket")).toBe(
      "sessionstore_rpc_duration_seconds",
    );
    expect(exported.has("process_start_time_seconds")).toBe(true);
    expect(exported.has("nodejs_eventloop_lag_p99_seconds")).toBe(true);
  });

  it("are all exported by the server, in the dashboard's queries", () => {
    const queries = dashboardQueries(readDashboard());
    expect(queries.length).toBeGreaterThan(0);
    expect(unknown(queries)).toEqual([]);
  });

  it("are all exported by the server, in the alert rules", () => {
    const rules = parse(readFileSync("deploy/prometheus/alerts.yaml", "utf8")) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const queries = rules.groups
      .flatMap((group) => group.rules)
      .map((rule) => ({ where: `alert ${rule.alert}`, expr: rule.expr }));
    expect(queries.length).toBeGreaterThan(0);
    expect(unknown(queries)).toEqual([]);
  });

  it("cover every sessionstore_ metric the server exports on the dashboard", () => {
    const used = new Set(
      dashboardQueries(readDashboard()).flatMap(({ expr }) =>
        [...metricNames(expr)].map((name) => exported.get(name)),
      ),
    );
    const families = new Set([...exported.values()].filter((f) => f.startsWith("sessionstore_")));
    expect(families.size).toBeGreaterThan(5);
    expect([...families].filter((family) => !used.has(family))).toEqual([]);
  });
});
