// The Grafana dashboard (deploy/grafana/sessionstore.json): its panels and
// variables are well formed and every query parses as PromQL (promtool
// checks them as recording rules). Whether the metrics they name exist is
// checked against a live server in metric-names.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { dashboardQueries, readDashboard } from "../support/grafana-dashboard.js";
import { promtool } from "../support/promtool.js";

const dashboard = readDashboard();
const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the Grafana dashboard", () => {
  it("has a stable uid, panels with unique ids on a 24-column grid, and no overlap", () => {
    expect(dashboard.uid).toBe("sessionstore");
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const { gridPos: g, title } of dashboard.panels) {
      expect(g.x + g.w, `${title}: within 24 columns`).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps another panel at ${x},${y}`).toBe(
            false,
          );
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it("queries the data source the viewer picks, in every panel and variable", () => {
    const variables = dashboard.templating.list;
    expect(variables.find((v) => v.name === "datasource")).toMatchObject({
      type: "datasource",
      query: "prometheus",
    });
    const graphs = dashboard.panels.filter((panel) => panel.type !== "row");
    expect(graphs.length).toBeGreaterThan(0);
    for (const panel of graphs) {
      expect(panel.targets?.length, `${panel.title}: queries`).toBeGreaterThan(0);
      expect(panel.datasource?.uid, panel.title).toBe("$datasource");
      for (const target of panel.targets ?? []) expect(target.datasource?.uid).toBe("$datasource");
    }
    for (const variable of variables.filter((v) => v.type === "query")) {
      expect(variable.datasource?.uid, variable.name).toBe("$datasource");
    }
  });

  it("has panels for calls, errors by code, latency percentiles, in-flight calls, the store, auth failures and the rate limit", () => {
    const titles = dashboard.panels.map((panel) => panel.title);
    for (const title of [
      "Calls by method",
      "Calls by code, OK excepted",
      "Latency percentiles",
      "Calls in flight",
      "Store connected",
      "Authentication failures by reason",
      "Rate limited by caller",
    ]) {
      expect(titles).toContain(title);
    }
  });

  it("has queries that all parse as PromQL (promtool check rules)", async () => {
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(10);
    // Grafana's interval variables are durations only it knows; $job and
    // $instance stand inside strings, where PromQL reads them as text.
    const rules = {
      groups: [
        {
          name: "dashboard",
          rules: queries.map(({ expr }, i) => ({
            record: `dashboard:query_${i}`,
            expr: expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m"),
          })),
        },
      ],
    };
    const dir = mkdtempSync(join(tmpdir(), "dashboard-"));
    scratch.push(dir);
    writeFileSync(join(dir, "queries.yaml"), stringify(rules));
    const result = await promtool(["check", "rules", join(dir, "queries.yaml")]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain(`SUCCESS: ${queries.length} rules found`);
  });
});
