import { readFileSync } from "node:fs";

/** The dashboard file: import it into Grafana (README, "Deploying"). */
export const DASHBOARD = "deploy/grafana/sessionstore.json";

interface DataSourceRef {
  readonly type?: string;
  readonly uid?: string;
}

/** The parts of a Grafana dashboard's JSON model the tests read. */
export interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly {
    readonly id: number;
    readonly type: string;
    readonly title: string;
    readonly gridPos: { x: number; y: number; w: number; h: number };
    readonly datasource?: DataSourceRef;
    readonly targets?: readonly { expr: string; datasource?: DataSourceRef }[];
  }[];
  readonly templating: {
    readonly list: readonly {
      readonly name: string;
      readonly type: string;
      readonly query: string | { query: string };
      readonly datasource?: DataSourceRef;
    }[];
  };
}

export function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
}

/**
 * Every PromQL query of the dashboard, with where it is: the panels'
 * targets, and the series selectors of its query variables
 * (`label_values(<selector>, <label>)`).
 */
export function dashboardQueries(dashboard: Dashboard): { where: string; expr: string }[] {
  const panels = dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr })),
  );
  const variables = dashboard.templating.list
    .filter((variable) => variable.type === "query")
    .map((variable) => {
      const query = typeof variable.query === "string" ? variable.query : variable.query.query;
      const selector = /^label_values\((.+),\s*\w+\)$/.exec(query)?.[1];
      if (!selector) throw new Error(`variable ${variable.name}: not label_values(...): ${query}`);
      return { where: `variable ${variable.name}`, expr: selector };
    });
  return [...panels, ...variables];
}
