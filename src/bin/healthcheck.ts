#!/usr/bin/env node
import type { SecureClientSessionOptions } from "node:http2";
import { isIP } from "node:net";
// The container's health check (Dockerfile HEALTHCHECK): asks the server's
// own grpc.health.v1.Health service, on the port the same environment gives
// the server, whether it is SERVING. Exit 0 when it is, 1 when it is not or
// does not answer in time; no extra binary (such as grpc_health_probe) needed.
//
// When the port serves TLS the check speaks TLS too, and verifies the server
// like any client would (chain and name), never with verification off: the
// check may send a token, which must reach only the server. Its trust anchor
// defaults to the server's own TLS_CERT_FILE, so TLS needs no extra setting;
// mutual TLS needs a client certificate and HEALTH_AUTH a token (the
// HEALTHCHECK_* settings of src/config.ts).
import type { PeerCertificate } from "node:tls";
import { checkServerIdentity } from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import {
  type Config,
  ConfigError,
  type HealthcheckConfig,
  loadConfig,
  loadHealthcheckConfig,
} from "../config.js";
import { type HealthcheckCredentials, readHealthcheckCredentials } from "../security-files.js";

const TIMEOUT_MS = 2000;

/** The server's and the check's settings and files, or why they cannot be used. */
function load():
  | { config: Config; check: HealthcheckConfig; credentials: HealthcheckCredentials }
  | undefined {
  try {
    const config = loadConfig(process.env, []);
    if (config === "help") return undefined;
    const check = loadHealthcheckConfig(process.env, config);
    return { config, check, credentials: readHealthcheckCredentials(config, check) };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`healthcheck: ${error.message}\n`);
    return undefined;
  }
}

/** node:http2's TLS options: the trust anchors, the name to expect, the client certificate. */
function tlsOptions(
  tls: NonNullable<HealthcheckCredentials["tls"]>,
  serverName: string | undefined,
): SecureClientSessionOptions {
  return {
    ca: tls.ca,
    // TLS_CERT_FILE (the default anchor) usually holds the leaf and its
    // intermediates, no self-signed root: trust what it holds as it is.
    allowPartialTrustChain: true,
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    ...(serverName === undefined
      ? {}
      : {
          // SNI takes names only (RFC 6066); the check below takes either.
          ...(isIP(serverName) === 0 ? { servername: serverName } : {}),
          checkServerIdentity: (_host: string, cert: PeerCertificate) =>
            checkServerIdentity(serverName, cert),
        }),
  };
}

async function run(): Promise<number> {
  const loaded = load();
  if (!loaded) return 1;
  const { config, check, credentials } = loaded;
  // A server bound to every interface answers on loopback.
  const host = ["0.0.0.0", "::", ""].includes(config.host) ? "127.0.0.1" : config.host;
  const scheme = credentials.tls ? "https" : "http";
  const baseUrl = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${config.port}`;
  const transport = createGrpcTransport({
    baseUrl,
    ...(credentials.tls ? { nodeOptions: tlsOptions(credentials.tls, check.serverName) } : {}),
  });
  const health = createClient(Health, transport);
  const headers = credentials.token ? { authorization: `Bearer ${credentials.token}` } : {};
  try {
    const { status } = await health.check({ service: "" }, { timeoutMs: TIMEOUT_MS, headers });
    process.stdout.write(`${ServingStatus[status]}\n`);
    return status === ServingStatus.SERVING ? 0 : 1;
  } catch (error) {
    // The server's and OpenSSL's messages name what failed (an unknown
    // token, an unverifiable certificate), never the token itself.
    process.stdout.write(
      `no answer: ${error instanceof Error ? error.message : "unknown error"}\n`,
    );
    return 1;
  }
}

process.exitCode = await run();
