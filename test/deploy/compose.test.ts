// compose.yaml's optional observability profile (no Docker engine runs
// here, so the file is read, not run): Prometheus only under the profile,
// mounting files that exist, scraping the sessionstore service's admin port.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type Config, loadConfig } from "../../src/config.js";

interface ComposeService {
  profiles?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  command?: string[];
}
const compose = parse(readFileSync("compose.yaml", "utf8")) as {
  services: Record<string, ComposeService>;
};
const { prometheus, sessionstore } = compose.services;

describe("compose.yaml's observability profile", () => {
  it("starts Prometheus only with --profile observability; the default stays Redis and the server", () => {
    expect(prometheus?.profiles).toEqual(["observability"]);
    const always = Object.entries(compose.services).filter(([, s]) => !s.profiles);
    expect(always.map(([name]) => name).sort()).toEqual(["redis", "sessionstore"]);
  });

  it("mounts the Prometheus configuration and the alert rules from deploy/prometheus", () => {
    const mounts = (prometheus?.volumes ?? []).map((v) => v.split(":"));
    expect(mounts.length).toBeGreaterThan(0);
    for (const [source = ""] of mounts) expect(existsSync(source), source).toBe(true);
    const config = mounts.find(([source]) => source === "./deploy/prometheus/prometheus.yml");
    expect(prometheus?.command).toContain(`--config.file=${config?.[1]}`);
    // prometheus.yml names its rule files relative to itself: they must sit beside it.
    const { rule_files } = parse(readFileSync("deploy/prometheus/prometheus.yml", "utf8")) as {
      rule_files: string[];
    };
    const targets = mounts.map(([, target]) => target);
    for (const file of rule_files) expect(targets).toContain(`/etc/prometheus/${file}`);
  });

  it("scrapes /metrics on the sessionstore service's admin port", () => {
    const scrape = parse(readFileSync("deploy/prometheus/prometheus.yml", "utf8")) as {
      scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = scrape.scrape_configs.flatMap((job) =>
      job.static_configs.flatMap((c) => c.targets.map((t) => ({ target: t, job }))),
    );
    expect(targets.length).toBe(1);
    const [{ target, job }] = targets as [(typeof targets)[number]];
    expect(job.metrics_path ?? "/metrics").toBe("/metrics");
    const server = loadConfig(sessionstore?.environment ?? {}, []) as Config;
    expect(server.adminPort).not.toBe("off");
    expect(target).toBe(`sessionstore:${server.adminPort}`);
    // The admin port the server listens on is the one it publishes, and
    // Prometheus' own published port does not collide with it.
    expect(sessionstore?.ports).toContain(`${server.adminPort}:${server.adminPort}`);
    const hostPorts = (ports: string[] = []) => ports.map((p) => p.split(":")[0]);
    expect(hostPorts(sessionstore?.ports)).not.toContain(hostPorts(prometheus?.ports)[0]);
  });
});
