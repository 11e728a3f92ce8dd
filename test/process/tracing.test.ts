import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { uniqueUserId } from "../support/ids.js";
import { type OtlpReceiver, startOtlpReceiver } from "../support/otlp-receiver.js";
import { createTestPki } from "../support/pki.js";
import { runServer, type ServerProcess } from "../support/server-process.js";
import { createGrpcJsClient } from "../support/test-server.js";

let receiver: OtlpReceiver;
const started: ServerProcess[] = [];

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(() => {
  for (const server of started.splice(0)) server.kill();
});
afterAll(async () => {
  await receiver?.close();
});

/** Runs the entry point with `env`, makes one Get carrying a traceparent, and stops it with SIGTERM. */
async function getThenStop(env: Record<string, string>) {
  const server = runServer({ PORT: "0", ...env });
  started.push(server);
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  const client = createGrpcJsClient(await server.port());
  const metadata = new grpc.Metadata();
  metadata.set("traceparent", `00-${traceId}-${spanId}-01`);
  try {
    await expect(
      client.call("Get", { userId: uniqueUserId(), sessionId: "s" }, { metadata }),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  } finally {
    client.close();
  }
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  return { traceId, spanId, server };
}

describe("tracing, configured by the OTEL_* variables of the real entry point", () => {
  it("exports the call's spans, in the caller's trace, by the time a graceful stop ends", async () => {
    const { traceId, spanId, server } = await getThenStop({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_SERVICE_NAME: "sessionstore-process-test",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0",
    });
    // The batch exporter's interval has not come yet: shutdown flushed them.
    const spans = receiver.spans.filter((span) => span.traceId === traceId);
    const rpc = spans.find((span) => span.kind === 2);
    // Sampled though the ratio is 0: the parent-based sampler follows the caller's flag.
    expect(rpc).toMatchObject({
      name: "sessionstore.v1.SessionStoreService/Get",
      parentSpanId: spanId,
      attributes: { "rpc.system": "grpc", "rpc.grpc.status_code": grpc.status.NOT_FOUND },
      resource: { "service.name": "sessionstore-process-test" },
    });
    expect(spans.find((span) => span.name === "store.get")).toMatchObject({
      parentSpanId: rpc?.spanId,
      attributes: { "db.system": "memory" },
    });
    expect(server.output.stdout).toContain("tracing on");
    expect(server.output.stdout).not.toContain(receiver.endpoint);
  });

  it("exports nothing with OTEL_TRACES_EXPORTER=none, though an endpoint is set", async () => {
    const before = receiver.requests;
    const { server } = await getThenStop({
      OTEL_TRACES_EXPORTER: "none",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    });
    // The process has exited: anything it would have exported, it had sent.
    expect(receiver.requests).toBe(before);
    expect(server.output.stdout).not.toContain("tracing on");
  });

  it("refuses an invalid setting at startup, naming it", async () => {
    const server = runServer({ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "sometimes" });
    started.push(server);
    expect(await server.exited).toBe(64);
    await waitFor("the error", () => server.output.stderr.includes("OTEL_TRACES_SAMPLER"));
  });

  it("refuses malformed exporter headers naming the variable, never the value", async () => {
    const key = randomBytes(12).toString("hex");
    const server = runServer({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_HEADERS: `x-api-key ${key}`,
    });
    started.push(server);
    expect(await server.exited).toBe(64);
    await waitFor("the error", () => server.output.stderr.includes("OTEL_EXPORTER_OTLP_HEADERS"));
    expect(server.output.stderr + server.output.stdout).not.toContain(key);
  });

  it("sends the exporter's headers, gzipped, with OTEL_RESOURCE_ATTRIBUTES on the resource", async () => {
    const key = randomBytes(12).toString("hex");
    const { traceId, server } = await getThenStop({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: `x-api-key=${key}%20v1,x-tenant=eu`,
      OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
      OTEL_EXPORTER_OTLP_TIMEOUT: "2000",
      OTEL_SERVICE_NAME: "sessionstore-attributes",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test%2Deu,service.name=overridden",
    });
    const rpc = receiver.spans.find((span) => span.traceId === traceId && span.kind === 2);
    expect(rpc?.resource).toMatchObject({
      "deployment.environment": "test-eu",
      "service.name": "sessionstore-attributes",
    });
    const exported = receiver.exports.at(-1);
    expect(exported?.headers).toMatchObject({
      "x-api-key": `${key} v1`,
      "x-tenant": "eu",
      "content-encoding": "gzip",
    });
    expect(server.output.stdout + server.output.stderr).not.toContain(key);
  });

  it("exports to an https collector with the CA and client certificate it is given", async () => {
    const pki = createTestPki();
    const ca = pki.ca("otlp");
    const collector = ca.issue("collector", { san: ["IP:127.0.0.1"], usage: "server" });
    const client = ca.issue("sessionstore-exporter", { san: ["DNS:exporter"], usage: "client" });
    const secure = await startOtlpReceiver({
      cert: collector.cert,
      key: collector.key,
      clientCa: ca.cert,
    });
    try {
      const { traceId } = await getThenStop({
        OTEL_EXPORTER_OTLP_ENDPOINT: secure.endpoint,
        OTEL_EXPORTER_OTLP_CERTIFICATE: ca.certFile,
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client.certFile,
        OTEL_EXPORTER_OTLP_CLIENT_KEY: client.keyFile,
      });
      expect(secure.spans.some((span) => span.traceId === traceId)).toBe(true);
      expect(secure.exports.map((exported) => exported.clientCn)).toContain(
        "sessionstore-exporter",
      );
    } finally {
      await secure.close();
      pki.remove();
    }
  });
});
