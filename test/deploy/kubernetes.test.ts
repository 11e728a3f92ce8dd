// The Kubernetes manifests (deploy/kubernetes/) against the server they
// deploy: every variable they set is a setting the server defines, the
// ports and probes are the server's, the grace period outlasts shutdown,
// the pod runs locked down, the Secrets hold what the pod mounts, and a
// real server started with the Deployment's environment and the Secrets'
// files (on a Redis with the README's ACL user) answers the probes.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { type Config, helpText, loadConfig } from "../../src/config.js";
import { LIVENESS_SERVICE } from "../../src/grpc/health.js";
import { readCredentials } from "../../src/security-files.js";
import { readmeAclRule } from "../support/readme-acl.js";
import { logLines, runServer, type ServerProcess } from "../support/server-process.js";

const DIR = "deploy/kubernetes";

// The manifests' shapes, as far as the tests read them.
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  grpc?: { port: number; service?: string };
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  image: string;
  ports: { name: string; containerPort: number }[];
  env: EnvVar[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  securityContext: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    capabilities?: { drop?: string[] };
  };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Deployment {
  kind: "Deployment";
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds: number;
        securityContext: { runAsNonRoot?: boolean; runAsUser?: number };
        containers: Container[];
        volumes: {
          name: string;
          secret?: { secretName: string; items?: { key: string; path: string }[] };
        }[];
      };
    };
  };
}
interface Secret {
  kind: "Secret";
  metadata: { name: string };
  stringData?: Record<string, string>;
  data?: Record<string, string>;
}
interface Service {
  kind: "Service";
  spec: {
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: number | string }[];
  };
}
interface PodDisruptionBudget {
  kind: "PodDisruptionBudget";
  spec: { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: object } };
}
type Manifest = Deployment | Secret | Service | PodDisruptionBudget;

const kustomization = parseAllDocuments(
  readFileSync(`${DIR}/kustomization.yaml`, "utf8"),
)[0]?.toJS() as {
  resources: string[];
};
const manifests = kustomization.resources.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), "utf8")).map((doc) => doc.toJS() as Manifest),
);
const only = <K extends Manifest["kind"]>(kind: K) =>
  manifests.filter((m): m is Extract<Manifest, { kind: K }> => m.kind === kind);
function single<T>(items: readonly T[], what: string): T {
  const [item] = items;
  if (item === undefined || items.length !== 1) throw new Error(`${DIR}: expected one ${what}`);
  return item;
}
const deployment = single(only("Deployment"), "Deployment");
const pod = deployment.spec.template.spec;
const container = single(pod.containers, "container in the Deployment");
const secrets = new Map(
  only("Secret").map((s) => [s.metadata.name, { ...s.data, ...s.stringData }] as const),
);

/** The plain values the container's environment sets. */
const env: Record<string, string> = Object.fromEntries(
  container.env.flatMap((v) => (v.value === undefined ? [] : [[v.name, v.value]])),
);

/** Every variable the server or its health check reads, from its own --help. */
const definedSettings = new Set(
  [...helpText().matchAll(/^ {2}(?:--[a-z0-9-]+ <value>, )?([A-Z][A-Z0-9_]+)$/gm)].map(
    ([, name]) => name,
  ),
);

/**
 * The Secrets' files as the pod sees them, written under a scratch
 * directory: each mounted volume's items at mountPath/path.
 */
function writeMountedSecrets(root: string): void {
  for (const mount of container.volumeMounts) {
    const volume = pod.volumes.find((v) => v.name === mount.name);
    const secret = volume?.secret && secrets.get(volume.secret.secretName);
    if (!volume?.secret || !secret) throw new Error(`volume ${mount.name}: no Secret`);
    const items = volume.secret.items ?? Object.keys(secret).map((key) => ({ key, path: key }));
    for (const { key, path } of items) {
      const file = join(root, mount.mountPath, path);
      mkdirSync(dirname(file), { recursive: true });
      const content = secret[key];
      if (content === undefined)
        throw new Error(`Secret ${volume.secret.secretName}: no key ${key}`);
      writeFileSync(file, content, { mode: 0o440 });
    }
  }
}

/** The container's environment with its file paths moved under `root`. */
function environmentUnder(root: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([name, value]) => [
      name,
      container.volumeMounts.some((m) => value.startsWith(`${m.mountPath}/`))
        ? join(root, value)
        : value,
    ]),
  );
}

const scratch = mkdtempSync(join(tmpdir(), "kubernetes-"));
/**
 * The server's configuration from the Deployment's environment and the
 * Secrets' files, read once the tests run, so that a manifest the server
 * refuses fails them with the server's message.
 */
let config: Config;
beforeAll(() => {
  writeMountedSecrets(scratch);
  config = loadConfig(environmentUnder(scratch), []) as Config;
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("the Kubernetes manifests", () => {
  it("are all listed in kustomization.yaml", () => {
    const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(new Set(manifests.map((m) => m.kind))).toEqual(
      new Set(["Deployment", "Secret", "Service", "PodDisruptionBudget"]),
    );
  });

  it("set only variables the server defines, and a configuration it accepts", () => {
    expect(definedSettings).toContain("REDIS_URL");
    expect(definedSettings).toContain("HEALTHCHECK_TOKEN_FILE");
    const unknown = container.env.map((v) => v.name).filter((name) => !definedSettings.has(name));
    expect(unknown).toEqual([]);
    expect(config).not.toBe("help");
    // Replicas share sessions only through Redis.
    expect(deployment.spec.replicas).toBeGreaterThan(1);
    expect(config.redisUrl ?? config.redisSentinels, "a shared store").toBeDefined();
    expect(config.authTokensFile, "callers authenticated").toBeDefined();
  });

  it("name the server's ports, and probe them as the server answers", () => {
    const port = (name: string) => container.ports.find((p) => p.name === name)?.containerPort;
    expect(port("grpc")).toBe(config.port);
    expect(port("admin")).toBe(config.adminPort);
    expect(container.readinessProbe.grpc?.port).toBe(config.port);
    // The health service answers for "" and the service; anything else is NOT_FOUND.
    expect(["", SessionStoreService.typeName]).toContain(
      container.readinessProbe.grpc?.service ?? "",
    );
    // Kubernetes' gRPC probes send no token.
    expect(config.healthAuth).toBe(false);
    // Liveness asks for the name that stays SERVING while Redis is away.
    expect(container.livenessProbe.grpc).toEqual({ port: config.port, service: LIVENESS_SERVICE });
    const annotations = deployment.spec.template.metadata.annotations;
    expect(annotations["prometheus.io/port"]).toBe(String(config.adminPort));
    expect(annotations["prometheus.io/path"]).toBe("/metrics");
  });

  it("give the pod a grace period longer than the preStop pause and SHUTDOWN_TIMEOUT", () => {
    const command = container.lifecycle?.preStop?.exec?.command ?? [];
    const pauseSeconds = command[0] === "sleep" ? Number(command[1]) : 0;
    expect(Number.isFinite(pauseSeconds)).toBe(true);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      pauseSeconds * 1000 + config.shutdownTimeoutMs,
    );
  });

  it("run as a user other than root, on a read-only root filesystem, with no capabilities", () => {
    const context = { ...pod.securityContext, ...container.securityContext };
    expect(context.runAsNonRoot).toBe(true);
    expect(context.runAsUser).not.toBe(0);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.capabilities?.drop).toEqual(["ALL"]);
    for (const mount of container.volumeMounts) expect(mount.readOnly, mount.name).toBe(true);
  });

  it("reference only Secret keys that exist, and hold placeholders in them", () => {
    const references = [
      ...pod.volumes.flatMap((v) =>
        v.secret
          ? (v.secret.items ?? []).map((item) => [v.secret?.secretName, item.key] as const)
          : [],
      ),
      ...container.env.flatMap((v) =>
        v.valueFrom?.secretKeyRef
          ? [[v.valueFrom.secretKeyRef.name, v.valueFrom.secretKeyRef.key] as const]
          : [],
      ),
    ];
    expect(references.length).toBeGreaterThanOrEqual(2);
    for (const [name, key] of references) {
      expect(secrets.get(name ?? ""), `Secret ${name}`).toBeDefined();
      expect(Object.keys(secrets.get(name ?? "") ?? {}), `Secret ${name}`).toContain(key);
    }
    for (const [name, data] of secrets) {
      for (const [key, value] of Object.entries(data)) {
        expect(value, `Secret ${name}, key ${key}: a placeholder`).toMatch(/PLACEHOLDER/);
      }
    }
    // The tokens file parses, and its made-up digests are no token's.
    const credentials = readCredentials(config);
    expect(credentials?.size.tokens).toBeGreaterThan(0);
    expect(credentials?.plainTokens).toBe(0);
  });

  it("select the Deployment's pods from the Service and the PodDisruptionBudget", () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(labels).toMatchObject(deployment.spec.selector.matchLabels);
    const [service] = only("Service");
    expect(labels).toMatchObject(service?.spec.selector ?? { missing: true });
    for (const port of service?.spec.ports ?? []) {
      expect(container.ports.map((p) => p.name)).toContain(port.targetPort);
    }
    const [budget] = only("PodDisruptionBudget");
    expect(labels).toMatchObject(budget?.spec.selector.matchLabels ?? { missing: true });
    expect(budget?.spec.maxUnavailable).toBeLessThan(deployment.spec.replicas);
  });

  it("request more memory than the benchmark's peak resident memory, with room above it", () => {
    // bench/RESULTS.md, section 5 (server RSS): the service's row, the largest figure.
    const results = readFileSync("bench/RESULTS.md", "utf8");
    const section = results.slice(results.indexOf("## 5. Server memory"));
    const row = /^\| service \|(.+)\|$/m.exec(section)?.[1];
    const peakMiB = Math.max(...[...(row ?? "").matchAll(/([\d.]+) MB/g)].map((m) => Number(m[1])));
    expect(peakMiB).toBeGreaterThan(100);
    const mebibytes = (quantity = "") => {
      const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
      if (!match) throw new Error(`a quantity in Mi or Gi: ${quantity}`);
      return Number(match[1]) * (match[2] === "Gi" ? 1024 : 1);
    };
    expect(mebibytes(container.resources.requests.memory)).toBeGreaterThan(peakMiB);
    expect(mebibytes(container.resources.limits.memory)).toBeGreaterThanOrEqual(1.5 * peakMiB);
    expect(container.resources.requests.cpu).toBeDefined();
  });

  it("deploy the image of this version", () => {
    const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(container.image).toMatch(
      new RegExp(`(^|/)sessionstore:${version.replaceAll(".", "\\.")}$`),
    );
  });
});

describe("a server started with the Deployment's environment and the Secrets' files", () => {
  let redis: RedisServer;
  let server: ServerProcess;
  let port: number;

  beforeAll(async () => {
    // Redis as the README tells operators to set it up: the ACL user the
    // Deployment names, with the password the Secret holds.
    const acl = readmeAclRule();
    expect(env.REDIS_USERNAME).toBe(acl.user);
    const password = secrets.get("sessionstore-redis")?.password ?? "";
    redis = await startRedisServer([], { users: [{ name: acl.user, password, rules: acl.rules }] });
    // Ports of its own (PORT and ADMIN_PORT were compared above); the
    // manifest's Redis host is the cluster's, replaced by this test's.
    const url = new URL(env.REDIS_URL ?? "");
    url.host = new URL(redis.url).host;
    server = runServer({
      ...environmentUnder(scratch),
      REDIS_URL: url.toString(),
      PORT: "0",
      ADMIN_PORT: "0",
    });
    port = await server.port();
  });

  afterAll(async () => {
    server?.kill();
    await redis?.stop();
  });

  it("keeps sessions in Redis, as the manifest's Redis user", () => {
    const listening = logLines(server.output).find((line) => line.port === port);
    expect(listening?.store).toBe("redis");
  });

  const healthCheck = (probe: Probe) =>
    createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` })).check({
      service: probe.grpc?.service ?? "",
    });

  it("answers the readiness and liveness probes SERVING", async () => {
    expect((await healthCheck(container.readinessProbe)).status).toBe(ServingStatus.SERVING);
    expect((await healthCheck(container.livenessProbe)).status).toBe(ServingStatus.SERVING);
  });

  it("refuses calls without a token: the tokens file is in force", async () => {
    const sessions = createClient(
      SessionStoreService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
    );
    const error = await sessions.get({ sessionId: "s1", userId: "u1" }).catch((e: unknown) => e);
    expect(ConnectError.from(error).code).toBe(Code.Unauthenticated);
  });

  // Last: it stops Redis.
  it("fails readiness while Redis is away, and passes liveness, so no pod restarts", async () => {
    await redis.stop();
    await waitFor("readiness NOT_SERVING", async () =>
      (await healthCheck(container.readinessProbe)).status === ServingStatus.NOT_SERVING
        ? true
        : undefined,
    );
    expect((await healthCheck(container.livenessProbe)).status).toBe(ServingStatus.SERVING);
  });
});
