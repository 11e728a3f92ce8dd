#!/usr/bin/env node
// The container's health check (Dockerfile HEALTHCHECK): asks the server's
// own grpc.health.v1.Health service, on the port the same environment gives
// the server, whether it is SERVING. Exit 0 when it is, 1 when it is not or
// does not answer in time; no extra binary (such as grpc_health_probe) needed.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { ConfigError, loadConfig } from "../config.js";

const TIMEOUT_MS = 2000;

async function check(): Promise<number> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env, []);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`healthcheck: ${error.message}\n`);
    return 1;
  }
  if (config === "help") return 1;
  // A server bound to every interface answers on loopback.
  const host = ["0.0.0.0", "::", ""].includes(config.host) ? "127.0.0.1" : config.host;
  const baseUrl = `http://${host.includes(":") ? `[${host}]` : host}:${config.port}`;
  const health = createClient(Health, createGrpcTransport({ baseUrl }));
  try {
    const { status } = await health.check({ service: "" }, { timeoutMs: TIMEOUT_MS });
    process.stdout.write(`${ServingStatus[status]}\n`);
    return status === ServingStatus.SERVING ? 0 : 1;
  } catch (error) {
    process.stdout.write(
      `no answer: ${error instanceof Error ? error.message : "unknown error"}\n`,
    );
    return 1;
  }
}

process.exitCode = await check();
