import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisSentinelSet, startRedisSentinelSet } from "../../harness/redis-sentinel.js";
import type { HarnessClientOptions } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { createTestPki, mutualRedisTls, type TestPki } from "./pki.js";

// The Sentinel fixture with TLS: every data node and sentinel serves TLS
// only and asks its clients for a certificate, replication and the
// sentinels' own links run over TLS, and what the sentinels announce are
// TLS ports, so that a client following them needs nothing else.

let pki: TestPki;
let set: RedisSentinelSet;

beforeAll(async () => {
  pki = createTestPki();
  const ca = pki.ca("sentinel-fixture-ca");
  set = await startRedisSentinelSet({ tls: mutualRedisTls(ca, "sentinel-fixture").tls });
}, 60_000);

afterAll(async () => {
  await set?.stop();
  pki?.remove();
});

/**
 * The error a one-shot client with `options` gets for PING, or undefined
 * if it got PONG.
 */
async function pingFailure(options: HarnessClientOptions): Promise<string | undefined> {
  const client = new Redis({
    ...options,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: 2000,
  });
  let first: Error | undefined;
  client.on("error", (error: Error) => {
    first ??= error;
  });
  try {
    await client.connect();
    expect(await client.ping()).toBe("PONG");
    return undefined;
  } catch (error) {
    const cause = first ?? (error as Error);
    return (cause as { code?: string }).code ?? cause.message;
  } finally {
    client.disconnect();
  }
}

describe("the Sentinel fixture with TLS", () => {
  it("serves TLS only, from every node and sentinel, and only to clients with a certificate", async () => {
    expect(set.tls?.authClients).toBe(true);
    const servers = [set.primary, ...set.replicas];
    const everyone = [...servers, ...set.sentinels].map((process) => process.clientOptions);
    expect(everyone).toHaveLength(5);
    for (const options of everyone) {
      const { ca, cert, key } = options.tls ?? {};
      expect(ca && cert && key, `the harness's TLS files for port ${options.port}`).toBeDefined();
      // With the harness's options it answers: TLS, the CA, the certificate.
      expect(await pingFailure(options)).toBeUndefined();
      // Cleartext on the same port gets no answer.
      expect(await pingFailure({ host: options.host, port: options.port })).toBeDefined();
      // TLS without a client certificate is refused (tls-auth-clients).
      expect(await pingFailure({ ...options, tls: { ca } })).toMatch(
        /^(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)$/,
      );
    }
    for (const server of servers) {
      const admin = server.client();
      try {
        expect(await admin.config("GET", "port")).toEqual(["port", "0"]);
        expect(await admin.config("GET", "tls-port")).toEqual(["tls-port", String(server.port)]);
        expect(await admin.config("GET", "tls-replication")).toEqual(["tls-replication", "yes"]);
      } finally {
        admin.disconnect();
      }
    }
  });

  it("replicates over TLS, and the sentinels name every node and sentinel by its TLS port", async () => {
    const [replicaServer] = set.replicas;
    if (!replicaServer) throw new Error("the set has no replica");
    const replica = replicaServer.client();
    const primary = set.primary.client();
    try {
      // The primary has no cleartext port: a link that is up is a TLS one.
      expect(await replica.info("replication")).toMatch(
        new RegExp(`master_port:${set.primary.port}\\r\\nmaster_link_status:up`),
      );
      await primary.set("fixture:tls", "replicated");
      await waitFor(
        "the write to reach the replica",
        async () => (await replica.get("fixture:tls")) === "replicated",
      );
    } finally {
      replica.disconnect();
      primary.disconnect();
    }
    const sentinelPorts = set.sentinels.map((s) => s.port);
    for (const sentinel of set.sentinels) {
      expect(await sentinel.primaryAddress()).toBe(`127.0.0.1:${set.primary.port}`);
      const client = sentinel.client();
      try {
        const replicas = (await client.call("SENTINEL", "REPLICAS", set.name)) as string[][];
        expect(replicas.map(fields)).toEqual([
          expect.objectContaining({ port: String(replicaServer.port), "master-link-status": "ok" }),
        ]);
        // Sentinels find each other through the primary, and reach each other over TLS.
        const others = await waitFor(
          `sentinel ${sentinel.port} to be linked to the other sentinels`,
          async () => {
            const others = ((await client.call("SENTINEL", "SENTINELS", set.name)) as string[][])
              .map(fields)
              .filter((other) => !other.flags?.includes("disconnected"));
            return others.length === 2 ? others : undefined;
          },
          { timeoutMs: 10_000, intervalMs: 100 },
        );
        expect(others.map((other) => Number(other.port)).sort(byNumber)).toEqual(
          sentinelPorts.filter((port) => port !== sentinel.port).sort(byNumber),
        );
      } finally {
        client.disconnect();
      }
    }
  });

  it("fails over on SENTINEL FAILOVER to the replica, named by its TLS port", async () => {
    const promotedServer = await set.failover();
    expect(promotedServer).toBe(set.replicas[0]);
    for (const sentinel of set.sentinels) {
      await waitFor(
        `sentinel ${sentinel.port} to name the new primary`,
        async () => (await sentinel.primaryAddress()) === `127.0.0.1:${promotedServer.port}`,
        { timeoutMs: 10_000, intervalMs: 100 },
      );
    }
    const promoted = promotedServer.client();
    try {
      await waitFor(
        "the promoted replica to take writes",
        async () => (await promoted.set("fixture:after-failover", "x")) === "OK",
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      expect(await promoted.info("replication")).toMatch(/role:master/);
    } finally {
      promoted.disconnect();
    }
  }, 40_000);
});

/** A SENTINEL reply's flat name/value list as an object. */
function fields(entry: string[]): Record<string, string | undefined> {
  const object: Record<string, string | undefined> = {};
  for (let i = 0; i + 1 < entry.length; i += 2) object[entry[i] as string] = entry[i + 1];
  return object;
}

function byNumber(a: number, b: number): number {
  return a - b;
}
