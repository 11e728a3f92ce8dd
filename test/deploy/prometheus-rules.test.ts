// The alert rules (deploy/prometheus/alerts.yaml) through promtool: they
// parse, their unit tests (alerts.test.yaml) pass, every alert has a case
// that fires it and one that shows it quiet, and a broken rule makes
// those tests fail. Which metric names they use is checked against a live
// server's /metrics in metric-names.test.ts.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { promtool } from "../support/promtool.js";

const DIR = "deploy/prometheus";
const RULES = `${DIR}/alerts.yaml`;
const RULE_TESTS = `${DIR}/alerts.test.yaml`;

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
}
interface RuleTests {
  rule_files: string[];
  tests: {
    name: string;
    alert_rule_test?: { alertname: string; eval_time: string; exp_alerts: unknown[] }[];
  }[];
}

const rules = parse(readFileSync(RULES, "utf8")) as RuleFile;
const alerts = rules.groups.flatMap((group) => group.rules).filter((rule) => rule.alert);
const ruleTests = parse(readFileSync(RULE_TESTS, "utf8")) as RuleTests;

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the alert rules", () => {
  it("are valid rules (promtool check rules)", async () => {
    const result = await promtool(["check", "rules", RULES]);
    expect(result.output).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(result.code, result.output).toBe(0);
  });

  it("pass their unit tests (promtool test rules)", async () => {
    const result = await promtool(["test", "rules", RULE_TESTS]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain("SUCCESS");
  });

  it("include the five the service needs", () => {
    expect(alerts.map((rule) => rule.alert).sort()).toEqual([
      "SessionStoreAuthFailures",
      "SessionStoreHighErrorRate",
      "SessionStoreHighLatency",
      "SessionStoreRestarting",
      "SessionStoreStoreDisconnected",
    ]);
  });

  it("each have a unit test that fires them and one that shows them quiet", () => {
    expect(ruleTests.rule_files).toEqual(["alerts.yaml"]);
    const cases = ruleTests.tests.flatMap((test) => test.alert_rule_test ?? []);
    for (const { alert } of alerts) {
      const own = cases.filter((c) => c.alertname === alert);
      expect(
        own.some((c) => c.exp_alerts.length > 0),
        `${alert}: a case where it fires`,
      ).toBe(true);
      expect(
        own.some((c) => c.exp_alerts.length === 0),
        `${alert}: a case where it stays quiet`,
      ).toBe(true);
    }
    // No case names an alert that does not exist (it would pass vacuously).
    const names = new Set(alerts.map((rule) => rule.alert));
    for (const c of cases) expect(names, `case for ${c.alertname}`).toContain(c.alertname);
  });

  it("fail their unit tests when a rule is broken, so the tests can fail", async () => {
    const dir = mkdtempSync(join(tmpdir(), "alerts-"));
    scratch.push(dir);
    copyFileSync(RULE_TESTS, join(dir, "alerts.test.yaml"));
    // The store rule now waits 10 minutes: the case that fires it at 5m must fail.
    const broken = readFileSync(RULES, "utf8").replace(
      /(expr: sessionstore_store_connected == 0\n\s+for:) 1m/,
      "$1 10m",
    );
    expect(broken).not.toBe(readFileSync(RULES, "utf8"));
    writeFileSync(join(dir, "alerts.yaml"), broken);
    const result = await promtool(["test", "rules", join(dir, "alerts.test.yaml")]);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain("alertname: SessionStoreStoreDisconnected");
  });

  it("leave out exactly SessionStoreService's streaming methods from the error and latency rules", () => {
    const service = SessionStoreService.typeName;
    const streaming = SessionStoreService.methods
      .filter((method) => method.methodKind !== "unary")
      .map((method) => `${service}/${method.name}`);
    expect(streaming.length, "streaming methods").toBeGreaterThan(0);
    const all = SessionStoreService.methods.map((method) => `${service}/${method.name}`);
    // PromQL's regular expressions are anchored at both ends.
    const regex = (source: string) => new RegExp(`^(?:${source.replaceAll("\\\\", "\\")})$`);
    const scoped = alerts.filter((rule) => rule.expr.includes("method!~"));
    expect(scoped.map((rule) => rule.alert).sort()).toEqual([
      "SessionStoreHighErrorRate",
      "SessionStoreHighLatency",
    ]);
    for (const rule of scoped) {
      const matchers = [...rule.expr.matchAll(/method(=~|!~)"((?:[^"\\]|\\.)*)"/g)];
      expect(matchers.length, rule.alert).toBeGreaterThan(0);
      for (const [, op, source = ""] of matchers) {
        const kept = all.filter((method) => regex(source).test(method) === (op === "=~"));
        const expected = op === "=~" ? all : all.filter((method) => !streaming.includes(method));
        expect(kept, `${rule.alert}: method${op}"${source}"`).toEqual(expected);
      }
      // And no other service's methods (health checks, reflection).
      for (const [, op, source = ""] of matchers) {
        if (op === "=~") expect(regex(source).test("grpc.health.v1.Health/Check")).toBe(false);
      }
    }
  });
});

describe("the Prometheus configuration for compose", () => {
  it("is valid and loads the alert rules (promtool check config)", async () => {
    const result = await promtool(["check", "config", `${DIR}/prometheus.yml`]);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain("SUCCESS: 1 rule files found");
    expect(result.output).toContain(`SUCCESS: ${alerts.length} rules found`);
  });
});
