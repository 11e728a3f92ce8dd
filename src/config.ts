import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { LOG_LEVELS, type LogLevel } from "./observability/logger.js";
import {
  EXPORT_DEFAULTS,
  SAMPLERS,
  type SamplerName,
  type TracingSettings,
} from "./observability/tracing.js";
import type { Rate } from "./pipeline/call.js";
import { formatRate, parseRate, UNLIMITED } from "./pipeline/rate.js";
import { parseSentinelAddresses } from "./store/redis/sentinel-addresses.js";

/** The server's settings, read and validated once at startup. */
export interface Config {
  /** TCP port of the gRPC/gRPC-Web/Connect listener; 0 picks a free one. */
  readonly port: number;
  /** Address to listen on. */
  readonly host: string;
  /** TCP port of the admin HTTP listener (/healthz, /readyz, /metrics); 0 picks a free one; "off" disables it. */
  readonly adminPort: number | "off";
  /** Redis URL(s); undefined selects the embedded in-memory store. */
  readonly redisUrl: string | undefined;
  /** Whether redisUrl lists the seed nodes of a Redis Cluster. */
  readonly redisCluster: boolean;
  /** host:port of the sentinels to ask for the primary (instead of redisUrl), comma-separated. */
  readonly redisSentinels: string | undefined;
  /** The master group name the sentinels know the primary by. */
  readonly redisSentinelName: string | undefined;
  /** ACL user to authenticate to the sentinels as. */
  readonly redisSentinelUsername: string | undefined;
  /** Password for the sentinels. A secret: never logged. */
  readonly redisSentinelPassword: string | undefined;
  /** Whether the sentinels serve TLS (verified as the redisTls* files say). */
  readonly redisSentinelTls: boolean;
  /**
   * Whether the data nodes the sentinels name serve TLS; false with
   * redisUrl, whose scheme says it instead (rediss://).
   */
  readonly redisTls: boolean;
  /** PEM CA certificates that Redis' (and TLS sentinels') certificates must chain to; undefined: the system CAs. */
  readonly redisTlsCa: Buffer | undefined;
  /** PEM client certificate shown to Redis (for tls-auth-clients); set together with redisTlsKey. */
  readonly redisTlsCert: Buffer | undefined;
  /** PEM private key of redisTlsCert. A secret: never logged. */
  readonly redisTlsKey: Buffer | undefined;
  /** Redis ACL user; undefined: the one in redisUrl, if any, else "default". */
  readonly redisUsername: string | undefined;
  /** Redis password, from REDIS_PASSWORD or REDIS_PASSWORD_FILE; undefined: the one in redisUrl, if any. A secret: never logged. */
  readonly redisPassword: string | undefined;
  /** Prefix of every Redis key. */
  readonly keyPrefix: string;
  readonly logLevel: LogLevel;
  /** Level of the one log line written per RPC. */
  readonly rpcLogLevel: LogLevel;
  /** How long shutdown lets in-flight RPCs finish before cancelling them, in ms. */
  readonly shutdownTimeoutMs: number;
  /** Upper bound of Upsert's and Touch's ttl. */
  readonly maxTtlSeconds: number;
  /** Live sessions kept per user; 0 means unlimited. */
  readonly maxSessionsPerUser: number;
  /** How long a user's session events are kept for watchers to resume, in ms. */
  readonly eventRetentionMs: number;
  /** How many session events are kept per user. */
  readonly eventRetentionCount: number;
  /** Events one watch stream may hold for a client that reads slower than they come. */
  readonly watchBufferEvents: number;
  /** Upper bound of the protobuf encoding of a session's extra_payload. */
  readonly maxPayloadBytes: number;
  /** Longest grace a Refresh may ask for, ms. */
  readonly maxRefreshGraceMs: number;
  /** A reused refresh token deletes all of the user's sessions, not only its own. */
  readonly revokeAllOnReuse: boolean;
  /** Upper bound of a request message. */
  readonly maxRequestBytes: number;
  /** The default per-caller rate limit (UNLIMITED when off). */
  readonly rateLimit: Rate;
  /** The deadline of calls that set none or a longer one, in ms. */
  readonly maxDeadlineMs: number;
  /** Streams one HTTP/2 connection may have open at once. */
  readonly maxConcurrentStreams: number;
  /** Largest request header list (HTTP/2) or head (HTTP/1.1), in bytes. */
  readonly maxHeaderListSize: number;
  /** How long a connection with nothing in flight stays open, in ms; 0: forever. */
  readonly idleTimeoutMs: number;
  /** Open connections per client address; 0 means unlimited. */
  readonly maxConnectionsPerPeer: number;
  /** How long one Redis command may take before the RPC fails UNAVAILABLE. */
  readonly redisCommandTimeoutMs: number;
  /** How long startup waits for Redis before giving up. */
  readonly redisConnectTimeoutMs: number;
  /** Replicas that must acknowledge every write (Redis WAIT); 0: writes do not wait. */
  readonly redisWaitReplicas: number;
  /** How long a write waits for them before the RPC fails UNAVAILABLE, in ms. */
  readonly redisWaitTimeoutMs: number;
  /** Serve unary gRPC, gRPC-Web and Connect calls over HTTP/2 on the fast path; false: connect-node serves every call. */
  readonly grpcFastPath: boolean;
  /** The tokens file (callers, scopes, secrets); undefined: every caller is trusted. */
  readonly authTokensFile: string | undefined;
  /** PEM certificate chain of the main port; with tlsKeyFile, the port serves TLS. */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** CA that client certificates must chain to (mutual TLS); needs TLS and a tokens file. */
  readonly tlsClientCaFile: string | undefined;
  /** Who may use server reflection; "authenticated" by default when callers authenticate. */
  readonly reflection: "open" | "authenticated" | "off";
  /** Whether grpc.health.v1 asks for credentials too (probes usually send none). */
  readonly healthAuth: boolean;
  /** Serve the admin port over TLS with the main port's certificate. */
  readonly adminTls: boolean;
  /** Require a bearer token with the admin scope for /metrics. */
  readonly metricsAuth: boolean;
  /** OTEL_SDK_DISABLED: tracing off, whatever else says. */
  readonly otelSdkDisabled: boolean;
  /** OTEL_TRACES_EXPORTER: "otlp" or "none"; undefined: otlp when an endpoint is set, else none. */
  readonly otelTracesExporter: "otlp" | "none" | undefined;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP/HTTP base URL (traces go to its /v1/traces). */
  readonly otelExporterOtlpEndpoint: string | undefined;
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the URL traces are POSTed to, as it is. */
  readonly otelExporterOtlpTracesEndpoint: string | undefined;
  /** OTEL_EXPORTER_OTLP_PROTOCOL (and _TRACES_): only http/json is spoken. */
  readonly otelExporterOtlpProtocol: "http/json" | undefined;
  /** OTEL_EXPORTER_OTLP_HEADERS (or _TRACES_): headers sent with every export, e.g. an API key. */
  readonly otelExporterOtlpHeaders: Readonly<Record<string, string>> | undefined;
  /** OTEL_EXPORTER_OTLP_TIMEOUT (or _TRACES_): how long one export may take, ms. */
  readonly otelExporterOtlpTimeout: number | undefined;
  /** OTEL_EXPORTER_OTLP_COMPRESSION (or _TRACES_): gzip or none. */
  readonly otelExporterOtlpCompression: "gzip" | "none" | undefined;
  /** OTEL_EXPORTER_OTLP_CERTIFICATE (or _TRACES_): PEM CAs an https collector's certificate must chain to. */
  readonly otelExporterOtlpCertificate: Buffer | undefined;
  /** OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE (or _TRACES_): PEM client certificate for an https collector. */
  readonly otelExporterOtlpClientCertificate: Buffer | undefined;
  /** OTEL_EXPORTER_OTLP_CLIENT_KEY (or _TRACES_): the client certificate's PEM private key. */
  readonly otelExporterOtlpClientKey: Buffer | undefined;
  /** OTEL_RESOURCE_ATTRIBUTES: more attributes of the spans' resource (deployment.environment=prod, ...). */
  readonly otelResourceAttributes: Readonly<Record<string, string>> | undefined;
  readonly otelServiceName: string;
  readonly otelTracesSampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG: the ratio of the traceidratio samplers. */
  readonly otelTracesSamplerArg: number | undefined;
  /** Tracing as the OTEL_* settings above make it; undefined when off. */
  readonly tracing: TracingSettings | undefined;
  /** Whether test-only settings may be used (SESSIONSTORE_ALLOW_TEST_SETTINGS). */
  readonly allowTestSettings: boolean;
  /**
   * Test only: ms added to this process's wall clock wherever the server
   * reads it (see src/clock.ts); 0 in production. Lets a test run one
   * replica with a skewed clock to show that expiry follows Redis' clock.
   */
  readonly testClockOffsetMs: number;
}

/** An invalid setting or command line; the message names what is wrong. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

interface Setting<K extends keyof Config> {
  /**
   * The Config field it sets. Settings that share a key are alternatives
   * (REDIS_PASSWORD, REDIS_PASSWORD_FILE): at most one of them may be set.
   */
  readonly key: K;
  readonly env: string;
  readonly description: string;
  /** The default as shown by --help; undefined for "unset". */
  readonly defaultText: string | undefined;
  /** Whether values may hold secrets, so errors never repeat them. */
  readonly secret?: boolean;
  /** Turns a raw value into the setting, or returns what a valid value is. */
  readonly parse: (raw: string | undefined) => Config[K] | Invalid;
}

class Invalid {
  constructor(readonly expected: string) {}
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** KEY_PREFIX when it is not set. */
export const DEFAULT_KEY_PREFIX = "sessionstore";

/** The largest SESSIONSTORE_TEST_CLOCK_OFFSET_MS either way: a year, far more than any skew to test. */
const MAX_TEST_CLOCK_OFFSET_MS = 365 * 24 * 3600 * 1000;

/** A whole number within [min, max], or undefined when not set. */
function optionalInteger(min: number, max: number) {
  const parse = integer(min, max, 0);
  return (raw: string | undefined): number | undefined | Invalid =>
    raw === undefined ? undefined : parse(raw);
}

function integer(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number | Invalid => {
    if (raw === undefined) return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    return value >= min && value <= max
      ? value
      : new Invalid(`an integer from ${min} to ${max === MAX_SAFE ? "2^53-1" : max}`);
  };
}

/** A whole number, possibly negative, within [min, max]. */
function signedInteger(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number | Invalid => {
    if (raw === undefined) return fallback;
    const value = /^-?\d+$/.test(raw) ? Number(raw) : Number.NaN;
    // `|| 0`: "-0" is 0, not the -0 that Object.is tells apart.
    return value >= min && value <= max
      ? value || 0
      : new Invalid(`an integer from ${min} to ${max}`);
  };
}

/** A duration: "10s", "500ms", or a plain number of seconds; returned in ms. */
function duration(fallbackMs: number, maxMs: number) {
  return (raw: string | undefined): number | Invalid => {
    if (raw === undefined) return fallbackMs;
    const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw);
    const ms = match ? Number(match[1]) * (match[2] === "ms" ? 1 : 1000) : Number.NaN;
    return ms >= 0 && ms <= maxMs
      ? Math.round(ms)
      : new Invalid(`a duration such as 10s or 500ms, at most ${maxMs / 1000}s`);
  };
}

/** A duration that must be positive (see duration). */
function positiveDuration(fallbackMs: number, maxMs: number) {
  const parse = duration(fallbackMs, maxMs);
  return (raw: string | undefined): number | Invalid => {
    const ms = parse(raw);
    return ms === 0
      ? new Invalid(`a duration above 0, such as 60s or 500ms, at most ${maxMs / 1000}s`)
      : ms;
  };
}

/** A rate limit in parseRate's grammar. */
function rate(raw: string | undefined): Rate | Invalid {
  if (raw === undefined) return UNLIMITED;
  const parsed = parseRate(raw);
  return typeof parsed === "string" ? new Invalid(parsed) : parsed;
}

function logLevel(fallback: LogLevel) {
  return (raw: string | undefined): LogLevel | Invalid =>
    raw === undefined
      ? fallback
      : (LOG_LEVELS as readonly string[]).includes(raw)
        ? (raw as LogLevel)
        : new Invalid(`one of ${LOG_LEVELS.join(", ")}`);
}

/** The parsers boolean() made: their flags may stand alone, meaning true. */
const booleanParsers = new WeakSet<object>();

function boolean(fallback: boolean) {
  const parse = (raw: string | undefined): boolean | Invalid => {
    if (raw === undefined) return fallback;
    if (raw === "false" || raw === "0") return false;
    if (raw === "true" || raw === "1") return true;
    return new Invalid("true or false");
  };
  booleanParsers.add(parse);
  return parse;
}

/** A port number, or "off". */
function portOrOff(fallback: number) {
  const port = integer(0, 65535, fallback);
  return (raw: string | undefined): number | "off" | Invalid => {
    if (raw === "off") return "off";
    const value = port(raw);
    return value instanceof Invalid ? new Invalid(`${value.expected}, or off`) : value;
  };
}

/** A path to a file; whether it can be read is checked when it is read, at startup. */
function filePath(raw: string | undefined): string | undefined | Invalid {
  return raw === undefined ? undefined : raw.trim() !== "" ? raw : new Invalid("a file path");
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string | undefined): T | undefined | Invalid =>
    raw === undefined
      ? undefined
      : (values as readonly string[]).includes(raw)
        ? (raw as T)
        : new Invalid(`one of ${values.join(", ")}`);
}

/** An http:// or https:// URL (an OTLP/HTTP endpoint). */
function httpUrl(raw: string | undefined): string | undefined | Invalid {
  if (raw === undefined) return undefined;
  return URL.canParse(raw) && /^https?:$/.test(new URL(raw).protocol)
    ? raw
    : new Invalid("an http:// or https:// URL");
}

/** A sampling ratio from 0 to 1. */
function ratio(raw: string | undefined): number | undefined | Invalid {
  if (raw === undefined) return undefined;
  const value = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  return value >= 0 && value <= 1 ? value : new Invalid("a ratio from 0 to 1, such as 0.01");
}

/**
 * A comma-separated list of `key=value` pairs with percent-encoded values,
 * as OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES take them:
 * keys must match `key`, values are decoded and must be non-empty and
 * match `value`. `what` names the keys in the error, which never shows a
 * value (a header may be an API key).
 */
function keyValueList(what: string, key: RegExp, value: RegExp) {
  const invalid = new Invalid(
    `comma-separated ${what}=value pairs with percent-encoded values, such as a=1,b=x%20y`,
  );
  return (raw: string | undefined): Readonly<Record<string, string>> | undefined | Invalid => {
    if (raw === undefined) return undefined;
    const pairs: Record<string, string> = {};
    for (const item of raw.split(",")) {
      if (item.trim() === "") continue;
      const equals = item.indexOf("=");
      if (equals < 0) return invalid;
      const name = item.slice(0, equals).trim();
      let decoded: string;
      try {
        decoded = decodeURIComponent(item.slice(equals + 1).trim());
      } catch {
        return invalid;
      }
      if (!key.test(name) || decoded === "" || !value.test(decoded)) return invalid;
      pairs[name] = decoded;
    }
    return Object.freeze(pairs);
  };
}

/** An HTTP header name (RFC 9110 token) and a value without control characters. */
const otlpHeaders = keyValueList(
  "header",
  /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/,
  /^[\t\x20-\x7e\x80-\xff]*$/,
);

/** Resource attribute keys and values: printable, keys without spaces, "=" or ",". */
const resourceAttributes = keyValueList(
  "key",
  /^[\x21-\x2b\x2d-\x3c\x3e-\x7e]{1,255}$/,
  /^\P{Cc}*$/u,
);

/** Sentinel addresses (see parseSentinelAddresses), with the spaces around entries dropped. */
function sentinelAddresses(raw: string | undefined): string | undefined | Invalid {
  if (raw === undefined) return undefined;
  if (!parseSentinelAddresses(raw)) {
    return new Invalid("host:port of each sentinel, comma-separated");
  }
  return raw
    .split(",")
    .map((entry) => entry.trim())
    .join(",");
}

function redisUrls(raw: string | undefined): string | undefined | Invalid {
  if (raw === undefined || raw === "") return undefined;
  for (const url of raw.split(",")) {
    if (!URL.canParse(url.trim()) || !/^rediss?:$/.test(new URL(url.trim()).protocol)) {
      return new Invalid(
        "redis://[user:password@]host[:port][/db] or rediss://..., comma-separated for a cluster",
      );
    }
  }
  const schemes = new Set(raw.split(",").map((url) => new URL(url.trim()).protocol));
  if (schemes.size > 1) {
    return new Invalid("URLs of one scheme: every node redis://, or every node rediss://");
  }
  return raw;
}

/** Reads a file a setting names; the error says why not (its code), never what it holds. */
function readSettingFile(path: string): Buffer | Invalid {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return new Invalid(`a readable file (${typeof code === "string" ? code : "unreadable"})`);
  }
}

/** A file of PEM certificates (a CA bundle or a certificate chain), read and parsed. */
function pemCertificatesFile(raw: string | undefined): Buffer | undefined | Invalid {
  if (raw === undefined) return undefined;
  const pem = readSettingFile(raw);
  if (pem instanceof Invalid) return pem;
  const blocks = pem
    .toString("latin1")
    .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  try {
    if (!blocks) throw new Error("no certificate");
    for (const block of blocks) new X509Certificate(block);
  } catch {
    return new Invalid("a file of PEM certificates (-----BEGIN CERTIFICATE-----)");
  }
  return pem;
}

/** A file holding an unencrypted PEM private key, read and parsed. */
function pemPrivateKeyFile(raw: string | undefined): Buffer | undefined | Invalid {
  if (raw === undefined) return undefined;
  const pem = readSettingFile(raw);
  if (pem instanceof Invalid) return pem;
  try {
    createPrivateKey(pem);
  } catch {
    // Node's message may quote the file; this one never does.
    return new Invalid("a file holding an unencrypted PEM private key");
  }
  return pem;
}

/**
 * A file holding a password, as orchestrators mount secrets: one trailing
 * line break (which editors and `echo` add) is not part of it.
 */
function passwordFile(raw: string | undefined): string | undefined | Invalid {
  if (raw === undefined) return undefined;
  const content = readSettingFile(raw);
  if (content instanceof Invalid) return content;
  const password = content.toString("utf8").replace(/\r?\n$/, "");
  return password !== "" ? password : new Invalid("a file holding the password (it is empty)");
}

/** Every setting, in --help order. Each is an environment variable and a flag. */
const SETTINGS: readonly Setting<keyof Config>[] = [
  {
    key: "port",
    env: "PORT",
    description: "TCP port for gRPC, gRPC-Web and Connect (0 picks a free port)",
    defaultText: "50051",
    parse: integer(0, 65535, 50051),
  },
  {
    key: "host",
    env: "HOST",
    description: "address to listen on",
    defaultText: "0.0.0.0",
    parse: (raw) =>
      raw === undefined ? "0.0.0.0" : raw !== "" ? raw : new Invalid("a host name or IP address"),
  },
  {
    key: "adminPort",
    env: "ADMIN_PORT",
    description:
      "TCP port for /healthz, /readyz and /metrics over HTTP/1.1 (0 picks a free port; off disables it)",
    defaultText: "9090",
    parse: portOrOff(9090),
  },
  {
    key: "redisUrl",
    env: "REDIS_URL",
    description: "Redis to keep sessions in; unset: the embedded in-memory store (lost on restart)",
    defaultText: undefined,
    secret: true,
    parse: redisUrls,
  },
  {
    key: "redisCluster",
    env: "REDIS_CLUSTER",
    description: "REDIS_URL lists seed nodes of a Redis Cluster (comma-separated)",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "redisSentinels",
    env: "REDIS_SENTINELS",
    description:
      "host:port of Redis Sentinels (comma-separated) to ask for the primary, instead of REDIS_URL (needs REDIS_SENTINEL_NAME)",
    defaultText: undefined,
    parse: sentinelAddresses,
  },
  {
    key: "redisSentinelName",
    env: "REDIS_SENTINEL_NAME",
    description: "the master group name the sentinels know the primary by (needs REDIS_SENTINELS)",
    defaultText: undefined,
    parse: (raw) => raw,
  },
  {
    key: "redisSentinelUsername",
    env: "REDIS_SENTINEL_USERNAME",
    description: "ACL user to authenticate to the sentinels as (needs REDIS_SENTINEL_PASSWORD)",
    defaultText: undefined,
    parse: (raw) => raw,
  },
  {
    key: "redisSentinelPassword",
    env: "REDIS_SENTINEL_PASSWORD",
    description:
      "password for the sentinels (sentinels' requirepass or ACL user; the data nodes' is REDIS_PASSWORD; never logged)",
    defaultText: undefined,
    secret: true,
    parse: (raw) => raw,
  },
  {
    key: "redisSentinelPassword",
    env: "REDIS_SENTINEL_PASSWORD_FILE",
    description: "file holding the password for the sentinels (one trailing newline is ignored)",
    defaultText: undefined,
    parse: passwordFile,
  },
  {
    key: "redisSentinelTls",
    env: "REDIS_SENTINEL_TLS",
    description:
      "the sentinels serve TLS: connect to them over TLS, verified with REDIS_TLS_* (needs REDIS_SENTINELS; REDIS_TLS is the data nodes')",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "redisTls",
    env: "REDIS_TLS",
    description:
      "the data nodes the sentinels name serve TLS: connect to them over TLS, verified with REDIS_TLS_* (needs REDIS_SENTINELS; with REDIS_URL, rediss:// says so)",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "redisTlsCa",
    env: "REDIS_TLS_CA_FILE",
    description:
      "PEM file of the CA certificates that Redis' certificate must chain to (needs a rediss:// REDIS_URL, or REDIS_TLS or REDIS_SENTINEL_TLS; unset: the system CAs)",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "redisTlsCert",
    env: "REDIS_TLS_CERT_FILE",
    description:
      "PEM file of the client certificate shown to Redis (for tls-auth-clients; needs REDIS_TLS_KEY_FILE)",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "redisTlsKey",
    env: "REDIS_TLS_KEY_FILE",
    description: "PEM file of the client certificate's private key (needs REDIS_TLS_CERT_FILE)",
    defaultText: undefined,
    parse: pemPrivateKeyFile,
  },
  {
    key: "redisUsername",
    env: "REDIS_USERNAME",
    description: "Redis ACL user to authenticate as (or give it in REDIS_URL)",
    defaultText: undefined,
    parse: (raw) => raw,
  },
  {
    key: "redisPassword",
    env: "REDIS_PASSWORD",
    description:
      "password of the Redis user (or give it in REDIS_URL or REDIS_PASSWORD_FILE; never logged)",
    defaultText: undefined,
    secret: true,
    parse: (raw) => raw,
  },
  {
    key: "redisPassword",
    env: "REDIS_PASSWORD_FILE",
    description:
      "file holding the password of the Redis user, such as a mounted secret (one trailing newline is ignored)",
    defaultText: undefined,
    parse: passwordFile,
  },
  {
    key: "keyPrefix",
    env: "KEY_PREFIX",
    description: "prefix of every Redis key",
    defaultText: DEFAULT_KEY_PREFIX,
    parse: (raw) =>
      raw === undefined
        ? DEFAULT_KEY_PREFIX
        : /^[\x21-\x7a\x7c\x7e]{1,64}$/.test(raw)
          ? raw
          : new Invalid("1 to 64 printable ASCII characters without spaces, { or }"),
  },
  {
    key: "logLevel",
    env: "LOG_LEVEL",
    description: `log level: ${LOG_LEVELS.join(", ")}`,
    defaultText: "info",
    parse: logLevel("info"),
  },
  {
    key: "rpcLogLevel",
    env: "RPC_LOG_LEVEL",
    description: "level of the one log line per RPC (method, code, duration, peer)",
    defaultText: "debug",
    parse: logLevel("debug"),
  },
  {
    key: "maxTtlSeconds",
    env: "MAX_TTL_SECONDS",
    description: "largest ttl Upsert and Touch accept, in seconds",
    defaultText: "34560000 (400 days)",
    parse: integer(1, 315_576_000_000, 34_560_000),
  },
  {
    key: "maxSessionsPerUser",
    env: "MAX_SESSIONS_PER_USER",
    description: "live sessions kept per user, evicting those expiring soonest (0: unlimited)",
    defaultText: "0",
    parse: integer(0, MAX_SAFE, 0),
  },
  {
    key: "eventRetentionMs",
    env: "EVENT_RETENTION",
    description:
      "how long each user's session events are kept for watchers to resume from (older cursors: OUT_OF_RANGE)",
    defaultText: "86400s (24 h)",
    parse: positiveDuration(86_400_000, 2_592_000_000),
  },
  {
    key: "eventRetentionCount",
    env: "EVENT_RETENTION_COUNT",
    description:
      "how many session events are kept per user, the latest ones; 0 turns events off (nothing recorded, watching FAILED_PRECONDITION)",
    defaultText: "1000",
    parse: integer(0, 1_000_000, 1000),
  },
  {
    key: "maxPayloadBytes",
    env: "MAX_PAYLOAD_BYTES",
    description: "largest protobuf encoding of a session's extra_payload, in bytes",
    defaultText: "65536",
    parse: integer(0, MAX_SAFE, 65536),
  },
  {
    key: "maxRefreshGraceMs",
    env: "MAX_REFRESH_GRACE",
    description:
      "longest grace a Refresh may ask for: how long a rotated refresh token stays accepted (answered ALREADY_ROTATED)",
    defaultText: "60s",
    parse: duration(60_000, 86_400_000),
  },
  {
    key: "revokeAllOnReuse",
    env: "REVOKE_ALL_ON_REUSE",
    description:
      "a reused refresh token deletes all of the user's sessions rather than only the session it belonged to",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "maxRequestBytes",
    env: "MAX_REQUEST_BYTES",
    description: "largest request message, in bytes (larger: RESOURCE_EXHAUSTED)",
    defaultText: "1048576",
    parse: integer(1, 0x7fffffff, 1_048_576),
  },
  // Limits that keep one client from hurting the others.
  {
    key: "rateLimit",
    env: "RATE_LIMIT",
    description:
      "calls per caller (per client address when anonymous): 500/s,burst=1000, 20/s, 100/m or off; over it: RESOURCE_EXHAUSTED",
    defaultText: formatRate(UNLIMITED),
    parse: rate,
  },
  {
    key: "maxDeadlineMs",
    env: "MAX_DEADLINE",
    description:
      "longest a call may run: the deadline of calls that set none or a longer one (streams included)",
    defaultText: "60s",
    parse: positiveDuration(60_000, 86_400_000),
  },
  {
    key: "watchBufferEvents",
    env: "WATCH_BUFFER",
    description:
      "events one WatchUser or WatchSession stream may hold for a client that reads slower than they come; more: RESOURCE_EXHAUSTED",
    defaultText: "1000",
    parse: integer(1, 1_000_000, 1000),
  },
  {
    key: "maxConcurrentStreams",
    env: "MAX_CONCURRENT_STREAMS",
    description:
      "streams (calls) one HTTP/2 connection may have open at once; clients queue the rest",
    defaultText: "1000",
    parse: integer(1, 0x7fffffff, 1000),
  },
  {
    key: "maxHeaderListSize",
    env: "MAX_HEADER_LIST_SIZE",
    description:
      "largest request header list (HTTP/2, as SETTINGS_MAX_HEADER_LIST_SIZE counts it) or head (HTTP/1.1), in bytes",
    defaultText: "16384",
    parse: integer(1024, 65_536, 16_384),
  },
  {
    key: "idleTimeoutMs",
    env: "IDLE_TIMEOUT",
    description:
      "a connection with no call in flight this long is closed gracefully (HTTP/2 GOAWAY); 0: never",
    defaultText: "300s",
    parse: duration(300_000, 86_400_000),
  },
  {
    key: "maxConnectionsPerPeer",
    env: "MAX_CONNECTIONS_PER_PEER",
    description:
      "open connections per client address, more are refused (0: unlimited; keep 0 behind a load balancer)",
    defaultText: "0",
    parse: integer(0, MAX_SAFE, 0),
  },
  {
    key: "shutdownTimeoutMs",
    env: "SHUTDOWN_TIMEOUT",
    description: "on SIGTERM/SIGINT, how long in-flight RPCs may finish before they are cancelled",
    defaultText: "10s",
    parse: duration(10_000, 3_600_000),
  },
  {
    key: "redisCommandTimeoutMs",
    env: "REDIS_COMMAND_TIMEOUT_MS",
    description: "time a Redis command may take before the RPC fails UNAVAILABLE, in ms",
    defaultText: "1000",
    parse: integer(1, 3_600_000, 1000),
  },
  {
    key: "redisConnectTimeoutMs",
    env: "REDIS_CONNECT_TIMEOUT_MS",
    description: "time startup waits for Redis before exiting with an error, in ms",
    defaultText: "10000",
    parse: integer(1, 3_600_000, 10_000),
  },
  {
    key: "redisWaitReplicas",
    env: "REDIS_WAIT_REPLICAS",
    description:
      "replicas that must acknowledge every write (Redis WAIT) before the RPC succeeds; 0: writes do not wait",
    defaultText: "0",
    parse: integer(0, 1000, 0),
  },
  {
    key: "redisWaitTimeoutMs",
    env: "REDIS_WAIT_TIMEOUT_MS",
    description:
      "time a write waits for REDIS_WAIT_REPLICAS replicas before the RPC fails UNAVAILABLE (the write may have been applied), in ms",
    defaultText: "500",
    parse: integer(1, 3_600_000, 500),
  },
  {
    key: "grpcFastPath",
    env: "GRPC_FAST_PATH",
    description:
      "serve unary gRPC, gRPC-Web and Connect calls over HTTP/2 on the fast path (false: connect-node serves every call, for comparison)",
    defaultText: "true",
    parse: boolean(true),
  },
  {
    key: "authTokensFile",
    env: "AUTH_TOKENS_FILE",
    description:
      "callers allowed in, one per line: NAME SCOPE TOKEN [RATE] (SCOPE read, write or admin; TOKEN the secret, sha256:<hex> or cert:<SAN>); re-read on SIGHUP; unset: every caller is trusted",
    defaultText: undefined,
    parse: filePath,
  },
  {
    key: "tlsCertFile",
    env: "TLS_CERT_FILE",
    description:
      "PEM certificate (chain) of the main port; with TLS_KEY_FILE the port serves TLS 1.2+ (h2 and http/1.1 by ALPN); re-read on SIGHUP",
    defaultText: undefined,
    parse: filePath,
  },
  {
    key: "tlsKeyFile",
    env: "TLS_KEY_FILE",
    description: "PEM private key of TLS_CERT_FILE; re-read on SIGHUP",
    defaultText: undefined,
    parse: filePath,
  },
  {
    key: "tlsClientCaFile",
    env: "TLS_CLIENT_CA_FILE",
    description:
      "PEM CA(s) client certificates must chain to: mutual TLS, others are refused in the handshake (needs AUTH_TOKENS_FILE for cert: lines); re-read on SIGHUP",
    defaultText: undefined,
    parse: filePath,
  },
  {
    key: "reflection",
    env: "REFLECTION",
    description: "who may use server reflection: open, authenticated or off",
    defaultText: "authenticated with AUTH_TOKENS_FILE, else open",
    parse: oneOf(["open", "authenticated", "off"] as const) as Setting<"reflection">["parse"],
  },
  {
    key: "healthAuth",
    env: "HEALTH_AUTH",
    description: "ask grpc.health.v1 callers for credentials too (Kubernetes probes send none)",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "adminTls",
    env: "ADMIN_TLS",
    description: "serve the admin port over TLS with TLS_CERT_FILE and TLS_KEY_FILE",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "metricsAuth",
    env: "METRICS_AUTH",
    description:
      "require a bearer token with the admin scope for /metrics (needs AUTH_TOKENS_FILE)",
    defaultText: "false",
    parse: boolean(false),
  },
  // OpenTelemetry tracing: the standard OTEL_* variables (see README, Tracing).
  {
    key: "otelTracesExporter",
    env: "OTEL_TRACES_EXPORTER",
    description:
      "otlp: export a span per RPC (and per store call) over OTLP/HTTP JSON; none: no tracing",
    defaultText: "otlp when an OTLP endpoint is set, else none",
    parse: oneOf(["otlp", "none"] as const) as Setting<"otelTracesExporter">["parse"],
  },
  {
    key: "otelExporterOtlpEndpoint",
    env: "OTEL_EXPORTER_OTLP_ENDPOINT",
    description: "OTLP/HTTP collector base URL; traces go to its /v1/traces",
    defaultText: "http://localhost:4318",
    secret: true,
    parse: httpUrl,
  },
  {
    key: "otelExporterOtlpTracesEndpoint",
    env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    description: "URL spans are POSTed to, as it is (wins over OTEL_EXPORTER_OTLP_ENDPOINT)",
    defaultText: undefined,
    secret: true,
    parse: httpUrl,
  },
  {
    key: "otelExporterOtlpProtocol",
    env: "OTEL_EXPORTER_OTLP_PROTOCOL",
    description: "OTLP transport; only http/json is supported",
    defaultText: "http/json",
    parse: oneOf(["http/json"] as const) as Setting<"otelExporterOtlpProtocol">["parse"],
  },
  {
    key: "otelExporterOtlpProtocol",
    env: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    description: "OTLP transport of traces; only http/json is supported",
    defaultText: "http/json",
    parse: oneOf(["http/json"] as const) as Setting<"otelExporterOtlpProtocol">["parse"],
  },
  {
    key: "otelExporterOtlpHeaders",
    env: "OTEL_EXPORTER_OTLP_HEADERS",
    description:
      "headers sent with every export, key=value pairs with percent-encoded values (e.g. an API key)",
    defaultText: undefined,
    secret: true,
    parse: otlpHeaders,
  },
  {
    key: "otelExporterOtlpHeaders",
    env: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    description: "the same as OTEL_EXPORTER_OTLP_HEADERS, for traces (the only signal exported)",
    defaultText: undefined,
    secret: true,
    parse: otlpHeaders,
  },
  {
    key: "otelExporterOtlpTimeout",
    env: "OTEL_EXPORTER_OTLP_TIMEOUT",
    description: "how long one export may take, in milliseconds",
    defaultText: "10000",
    parse: optionalInteger(1, 600_000),
  },
  {
    key: "otelExporterOtlpTimeout",
    env: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    description: "the same as OTEL_EXPORTER_OTLP_TIMEOUT, for traces",
    defaultText: "10000",
    parse: optionalInteger(1, 600_000),
  },
  {
    key: "otelExporterOtlpCompression",
    env: "OTEL_EXPORTER_OTLP_COMPRESSION",
    description: "compression of the exports: gzip or none",
    defaultText: "none",
    parse: oneOf(["gzip", "none"] as const) as Setting<"otelExporterOtlpCompression">["parse"],
  },
  {
    key: "otelExporterOtlpCompression",
    env: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    description: "the same as OTEL_EXPORTER_OTLP_COMPRESSION, for traces",
    defaultText: "none",
    parse: oneOf(["gzip", "none"] as const) as Setting<"otelExporterOtlpCompression">["parse"],
  },
  {
    key: "otelExporterOtlpCertificate",
    env: "OTEL_EXPORTER_OTLP_CERTIFICATE",
    description:
      "PEM file of the CA certificates an https:// collector's certificate must chain to (unset: the system CAs)",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "otelExporterOtlpCertificate",
    env: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    description: "the same as OTEL_EXPORTER_OTLP_CERTIFICATE, for traces",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "otelExporterOtlpClientCertificate",
    env: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    description:
      "PEM file of the client certificate shown to an https:// collector (needs OTEL_EXPORTER_OTLP_CLIENT_KEY)",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "otelExporterOtlpClientCertificate",
    env: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    description: "the same as OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, for traces",
    defaultText: undefined,
    parse: pemCertificatesFile,
  },
  {
    key: "otelExporterOtlpClientKey",
    env: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    description: "PEM file of the client certificate's private key",
    defaultText: undefined,
    parse: pemPrivateKeyFile,
  },
  {
    key: "otelExporterOtlpClientKey",
    env: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    description: "the same as OTEL_EXPORTER_OTLP_CLIENT_KEY, for traces",
    defaultText: undefined,
    parse: pemPrivateKeyFile,
  },
  {
    key: "otelResourceAttributes",
    env: "OTEL_RESOURCE_ATTRIBUTES",
    description:
      "more attributes of the spans' resource, key=value pairs with percent-encoded values (e.g. deployment.environment=prod); OTEL_SERVICE_NAME wins over a service.name here",
    defaultText: undefined,
    parse: resourceAttributes,
  },
  {
    key: "otelServiceName",
    env: "OTEL_SERVICE_NAME",
    description: "service.name of the exported spans",
    defaultText: "sessionstore",
    parse: (raw) =>
      raw === undefined
        ? "sessionstore"
        : /^[\x21-\x7e]{1,128}$/.test(raw)
          ? raw
          : new Invalid("1 to 128 printable ASCII characters without spaces"),
  },
  {
    key: "otelTracesSampler",
    env: "OTEL_TRACES_SAMPLER",
    description: `which calls are traced: ${SAMPLERS.join(", ")} (parentbased_*: follow the caller's traceparent)`,
    defaultText: "parentbased_always_on",
    parse: (raw) =>
      raw === undefined
        ? "parentbased_always_on"
        : (SAMPLERS as readonly string[]).includes(raw)
          ? (raw as SamplerName)
          : new Invalid(`one of ${SAMPLERS.join(", ")}`),
  },
  {
    key: "otelTracesSamplerArg",
    env: "OTEL_TRACES_SAMPLER_ARG",
    description:
      "the ratio of calls traced by the traceidratio samplers, 0 to 1 (needs OTEL_TRACES_SAMPLER=traceidratio or parentbased_traceidratio)",
    defaultText: "1.0",
    parse: ratio,
  },
  {
    key: "otelSdkDisabled",
    env: "OTEL_SDK_DISABLED",
    description: "true: no tracing, whatever the other OTEL_* settings say",
    defaultText: "false",
    parse: boolean(false),
  },
  // Test-only settings: refused unless SESSIONSTORE_ALLOW_TEST_SETTINGS=true.
  {
    key: "allowTestSettings",
    env: "SESSIONSTORE_ALLOW_TEST_SETTINGS",
    description: "test only: allow the SESSIONSTORE_TEST_* settings; never in production",
    defaultText: "false",
    parse: boolean(false),
  },
  {
    key: "testClockOffsetMs",
    env: "SESSIONSTORE_TEST_CLOCK_OFFSET_MS",
    description:
      "test only: ms (signed) added to this process's clock, to show that expiry follows Redis' clock; needs SESSIONSTORE_ALLOW_TEST_SETTINGS=true",
    defaultText: "0",
    parse: signedInteger(-MAX_TEST_CLOCK_OFFSET_MS, MAX_TEST_CLOCK_OFFSET_MS, 0),
  },
];

function flagName(setting: Setting<keyof Config>): string {
  return `--${setting.env.toLowerCase().replaceAll("_", "-")}`;
}

/**
 * Reads the configuration from environment variables and command-line flags
 * (a flag wins over its variable). Returns "help" when --help was asked for.
 * Environment variables the server does not define are ignored.
 *
 * @throws ConfigError naming the invalid setting or unknown flag.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  argv: readonly string[],
): Config | "help" {
  const flags = parseFlags(argv);
  if (flags === "help") return "help";
  const config: Record<string, unknown> = {};
  /** The settings given, by variable name, and which one set each key. */
  const given = new Set<string>();
  const setBy = new Map<keyof Config, string>();
  for (const setting of SETTINGS) {
    const flag = flagName(setting);
    // An empty variable counts as unset, as in most deployment tools.
    const raw = flags.get(flag) ?? (env[setting.env] || undefined);
    const other = setBy.get(setting.key);
    if (other !== undefined && raw === undefined) continue; // its alternative was set
    if (other !== undefined) {
      throw new ConfigError(`${other} and ${setting.env} are both set; set only one of them`);
    }
    const value = setting.parse(raw);
    if (value instanceof Invalid) {
      const shown = setting.secret || raw === undefined ? "" : ` ${JSON.stringify(raw)}`;
      throw new ConfigError(`invalid ${setting.env} (${flag})${shown}: expected ${value.expected}`);
    }
    config[setting.key] = value;
    if (raw !== undefined) {
      given.add(setting.env);
      setBy.set(setting.key, setting.env);
    }
  }
  checkRedisSecurity(config as unknown as Config, given);
  checkRedisWait(config as unknown as Config, given);
  checkTestSettings(config as unknown as Config, given);
  config.tracing = tracingOf(config as unknown as Config, given);
  return Object.freeze(checkCombinations(config as unknown as Config));
}

/**
 * Tracing as the OTEL_* settings make it, or undefined when it is off. Off
 * unless asked for: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set and
 * OTEL_TRACES_EXPORTER unset (the SDK's default exporter is otlp, so an
 * endpoint alone means "send traces there"); OTEL_TRACES_EXPORTER=none and
 * OTEL_SDK_DISABLED=true turn it off whatever else is set. A sampler
 * setting with tracing off (unless explicitly off), or a ratio for a
 * sampler without one, is refused rather than ignored: it says the
 * operator expects traces.
 */
function tracingOf(config: Config, given: ReadonlySet<string>): TracingSettings | undefined {
  const endpoint = config.otelExporterOtlpTracesEndpoint ?? config.otelExporterOtlpEndpoint;
  const on =
    !config.otelSdkDisabled &&
    (config.otelTracesExporter === "otlp" ||
      (config.otelTracesExporter === undefined && endpoint !== undefined));
  const ratioSampler = config.otelTracesSampler.endsWith("traceidratio");
  if (given.has("OTEL_TRACES_SAMPLER_ARG") && !ratioSampler) {
    throw new ConfigError(
      "OTEL_TRACES_SAMPLER_ARG needs OTEL_TRACES_SAMPLER=traceidratio or parentbased_traceidratio, the samplers that take a ratio",
    );
  }
  const explicitlyOff = config.otelSdkDisabled || config.otelTracesExporter === "none";
  if (!on && !explicitlyOff) {
    // (Not OTEL_SERVICE_NAME: platforms set it for every process they run.)
    const orphan = ["OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"].filter((env) =>
      given.has(env),
    );
    if (orphan.length > 0) {
      throw new ConfigError(
        `${orphan.join(", ")} ${orphan.length > 1 ? "need" : "needs"} tracing on: set OTEL_TRACES_EXPORTER=otlp (and OTEL_EXPORTER_OTLP_ENDPOINT, the collector)`,
      );
    }
  }
  if (!on) return undefined;
  const url =
    config.otelExporterOtlpTracesEndpoint ??
    `${(config.otelExporterOtlpEndpoint ?? "http://localhost:4318").replace(/\/+$/, "")}/v1/traces`;
  const cert = config.otelExporterOtlpClientCertificate;
  const key = config.otelExporterOtlpClientKey;
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(
      "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY (or their _TRACES_ forms) go together: set both or neither",
    );
  }
  const tls = [config.otelExporterOtlpCertificate, cert].some((file) => file !== undefined);
  if (tls && !url.startsWith("https:")) {
    throw new ConfigError(
      "OTEL_EXPORTER_OTLP_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE need an https:// collector endpoint",
    );
  }
  return Object.freeze({
    url,
    serviceName: config.otelServiceName,
    sampler: config.otelTracesSampler,
    ratio: config.otelTracesSamplerArg ?? 1,
    headers: config.otelExporterOtlpHeaders ?? EXPORT_DEFAULTS.headers,
    timeoutMs: config.otelExporterOtlpTimeout ?? EXPORT_DEFAULTS.timeoutMs,
    compression: config.otelExporterOtlpCompression ?? EXPORT_DEFAULTS.compression,
    ca: config.otelExporterOtlpCertificate,
    cert,
    key,
    resourceAttributes: config.otelResourceAttributes ?? EXPORT_DEFAULTS.resourceAttributes,
  });
}

/** The settings that exist only for tests; see checkTestSettings. */
const TEST_SETTINGS = ["SESSIONSTORE_TEST_CLOCK_OFFSET_MS"];

/**
 * Refuses a test-only setting unless SESSIONSTORE_ALLOW_TEST_SETTINGS=true
 * says on purpose that this is a test: an offset clock makes the embedded
 * store expire sessions at the wrong time, so it must never be switched on
 * by a stray variable in a real deployment.
 */
function checkTestSettings(config: Config, given: ReadonlySet<string>): void {
  if (config.allowTestSettings) return;
  const used = TEST_SETTINGS.filter((env) => given.has(env));
  if (used.length > 0) {
    throw new ConfigError(
      `${used.join(", ")} ${used.length > 1 ? "are test-only settings" : "is a test-only setting"}: set SESSIONSTORE_ALLOW_TEST_SETTINGS=true to use ${used.length > 1 ? "them" : "it"}, and never in production`,
    );
  }
}

/** Settings that only make sense together; fills in defaults that depend on others. */
function checkCombinations(config: Config): Config {
  const needs = (setting: string, flag: string, other: string) => {
    throw new ConfigError(`${setting} (${flag}) needs ${other}`);
  };
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither");
  }
  const tls = config.tlsCertFile !== undefined;
  if (config.tlsClientCaFile !== undefined && !tls) {
    needs("TLS_CLIENT_CA_FILE", "--tls-client-ca-file", "TLS_CERT_FILE and TLS_KEY_FILE");
  }
  if (config.tlsClientCaFile !== undefined && config.authTokensFile === undefined) {
    needs(
      "TLS_CLIENT_CA_FILE",
      "--tls-client-ca-file",
      "AUTH_TOKENS_FILE, whose cert: lines say what each certificate may do",
    );
  }
  if (config.adminTls && !tls) needs("ADMIN_TLS", "--admin-tls", "TLS_CERT_FILE and TLS_KEY_FILE");
  const authenticates = config.authTokensFile !== undefined;
  if (config.metricsAuth && !authenticates) {
    needs("METRICS_AUTH", "--metrics-auth", "AUTH_TOKENS_FILE");
  }
  if (config.healthAuth && !authenticates)
    needs("HEALTH_AUTH", "--health-auth", "AUTH_TOKENS_FILE");
  if (config.reflection === "authenticated" && !authenticates) {
    needs("REFLECTION=authenticated", "--reflection", "AUTH_TOKENS_FILE");
  }
  return {
    ...config,
    reflection: config.reflection ?? (authenticates ? "authenticated" : "open"),
  };
}

/**
 * Sentinel discovery: the sentinels and the group's name together, and
 * nothing else that says where Redis is.
 */
function checkRedisSentinels(config: Config, given: ReadonlySet<string>): void {
  const sentinels = given.has("REDIS_SENTINELS");
  if (!sentinels) {
    const orphan = [
      "REDIS_SENTINEL_NAME",
      "REDIS_SENTINEL_USERNAME",
      "REDIS_SENTINEL_PASSWORD",
      "REDIS_SENTINEL_PASSWORD_FILE",
      "REDIS_SENTINEL_TLS",
    ].filter((env) => given.has(env));
    if (orphan.length > 0) {
      throw new ConfigError(
        `${orphan.join(", ")} ${orphan.length > 1 ? "need" : "needs"} REDIS_SENTINELS, the sentinels to ask for the primary`,
      );
    }
    return;
  }
  if (config.redisUrl !== undefined) {
    throw new ConfigError(
      "REDIS_SENTINELS and REDIS_URL both say where Redis is: set REDIS_SENTINELS (with REDIS_SENTINEL_NAME) to find the primary through Sentinel, or REDIS_URL to name it",
    );
  }
  if (config.redisCluster) {
    throw new ConfigError(
      "REDIS_SENTINELS and REDIS_CLUSTER=true cannot go together: Sentinel watches a primary and its replicas, not a Cluster",
    );
  }
  if (!given.has("REDIS_SENTINEL_NAME")) {
    throw new ConfigError(
      "REDIS_SENTINELS needs REDIS_SENTINEL_NAME, the master group name the sentinels monitor",
    );
  }
  if (given.has("REDIS_SENTINEL_USERNAME") && config.redisSentinelPassword === undefined) {
    throw new ConfigError(
      "REDIS_SENTINEL_USERNAME needs a password: set REDIS_SENTINEL_PASSWORD or REDIS_SENTINEL_PASSWORD_FILE",
    );
  }
}

/**
 * Writes that wait for replicas: only against Redis, and with a WAIT
 * timeout below the command timeout, or the command would time out first
 * and the RPC would fail without saying the write may have been applied.
 */
function checkRedisWait(config: Config, given: ReadonlySet<string>): void {
  if (config.redisWaitReplicas === 0) {
    if (given.has("REDIS_WAIT_TIMEOUT_MS")) {
      throw new ConfigError(
        "REDIS_WAIT_TIMEOUT_MS needs REDIS_WAIT_REPLICAS, the replicas a write waits for",
      );
    }
    return;
  }
  if (config.redisUrl === undefined && config.redisSentinels === undefined) {
    throw new ConfigError(
      "REDIS_WAIT_REPLICAS needs Redis (REDIS_URL or REDIS_SENTINELS): the embedded store has no replicas",
    );
  }
  if (config.redisWaitTimeoutMs >= config.redisCommandTimeoutMs) {
    throw new ConfigError(
      `REDIS_WAIT_TIMEOUT_MS (${config.redisWaitTimeoutMs}) must be less than REDIS_COMMAND_TIMEOUT_MS (${config.redisCommandTimeoutMs}), or every WAIT that runs out would fail as a command timeout`,
    );
  }
}

/**
 * Settings that secure the connection to Redis, so they need REDIS_URL (or
 * REDIS_SENTINELS). REDIS_SENTINEL_TLS and REDIS_TLS are checked on their own.
 */
const REDIS_SECURITY = [
  "REDIS_TLS_CA_FILE",
  "REDIS_TLS_CERT_FILE",
  "REDIS_TLS_KEY_FILE",
  "REDIS_USERNAME",
  "REDIS_PASSWORD",
  "REDIS_PASSWORD_FILE",
];

/**
 * Refuses combinations of the Redis connection settings that cannot mean
 * what the operator wants, rather than quietly ignoring one of them. Every
 * message names settings, never values: URLs, passwords and files may hold
 * secrets.
 */
function checkRedisSecurity(config: Config, given: ReadonlySet<string>): void {
  checkRedisSentinels(config, given);
  const security = REDIS_SECURITY.filter((env) => given.has(env));
  const tls = security.filter((env) => env.startsWith("REDIS_TLS_"));
  if (given.has("REDIS_TLS") && config.redisSentinels === undefined) {
    throw new ConfigError(
      "REDIS_TLS needs REDIS_SENTINELS: it says whether the data nodes the sentinels name serve TLS; with REDIS_URL, its scheme says so (rediss://)",
    );
  }
  if (config.redisSentinels !== undefined) {
    if (tls.length > 0 && !config.redisTls && !config.redisSentinelTls) {
      throw new ConfigError(
        `${tls.join(", ")} ${tls.length > 1 ? "need" : "needs"} a TLS connection: set REDIS_TLS=true (the data nodes serve TLS) or REDIS_SENTINEL_TLS=true (the sentinels do), or both`,
      );
    }
    checkRedisTlsFiles(config, given);
    checkRedisCredentials(given, []);
    return;
  }
  if (config.redisUrl === undefined) {
    if (security.length > 0) {
      throw new ConfigError(
        `${security.join(", ")} ${security.length > 1 ? "need" : "needs"} REDIS_URL: the embedded store has no connection to secure`,
      );
    }
    return;
  }
  const urls = config.redisUrl.split(",").map((url) => new URL(url.trim()));
  if (tls.length > 0 && urls[0]?.protocol !== "rediss:") {
    throw new ConfigError(
      `${tls.join(", ")} ${tls.length > 1 ? "need" : "needs"} a rediss:// REDIS_URL (TLS); REDIS_URL uses redis://`,
    );
  }
  checkRedisTlsFiles(config, given);
  checkRedisCredentials(given, urls);
}

/** The client certificate and its key: both or neither, and one the other's. */
function checkRedisTlsFiles(config: Config, given: ReadonlySet<string>): void {
  if (given.has("REDIS_TLS_CERT_FILE") !== given.has("REDIS_TLS_KEY_FILE")) {
    throw new ConfigError(
      given.has("REDIS_TLS_CERT_FILE")
        ? "REDIS_TLS_CERT_FILE needs REDIS_TLS_KEY_FILE, the certificate's private key"
        : "REDIS_TLS_KEY_FILE needs REDIS_TLS_CERT_FILE, the certificate of the key",
    );
  }
  if (config.redisTlsCert && config.redisTlsKey) {
    const cert = new X509Certificate(config.redisTlsCert);
    if (!cert.checkPrivateKey(createPrivateKey(config.redisTlsKey))) {
      throw new ConfigError(
        "REDIS_TLS_KEY_FILE is not the private key of the certificate in REDIS_TLS_CERT_FILE",
      );
    }
  }
}

/**
 * The data nodes' user and password: each given in one place (the URLs or
 * a setting), and a user only with a password.
 */
function checkRedisCredentials(given: ReadonlySet<string>, urls: readonly URL[]): void {
  // One place per credential: with two, which one wins would be a guess.
  const passwordSetting = ["REDIS_PASSWORD", "REDIS_PASSWORD_FILE"].find((env) => given.has(env));
  if (passwordSetting && urls.some((url) => url.password !== "")) {
    throw new ConfigError(
      `a password is given both in REDIS_URL and in ${passwordSetting}; give it in one place`,
    );
  }
  if (given.has("REDIS_USERNAME") && urls.some((url) => url.username !== "")) {
    throw new ConfigError(
      "a user name is given both in REDIS_URL and in REDIS_USERNAME; give it in one place",
    );
  }
  // AUTH takes a user only with a password (any one, for a nopass user).
  const user = given.has("REDIS_USERNAME") || urls.some((url) => url.username !== "");
  if (user && !passwordSetting && !urls.some((url) => url.password !== "")) {
    throw new ConfigError(
      "a Redis user name needs a password: set REDIS_PASSWORD or REDIS_PASSWORD_FILE, or give it in REDIS_URL",
    );
  }
}

function parseFlags(argv: readonly string[]): Map<string, string> | "help" {
  const known = new Map(SETTINGS.map((s) => [flagName(s), s]));
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") return "help";
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const setting = known.get(name);
    if (!setting) throw new ConfigError(`unknown argument ${JSON.stringify(name)}; see --help`);
    let value: string | undefined;
    if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else if (
      booleanParsers.has(setting.parse) &&
      !(argv[i + 1] ?? "").match(/^(true|false|0|1)$/)
    ) {
      value = "true";
    } else {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`${name} needs a value; see --help`);
    }
    flags.set(name, value);
  }
  return flags;
}

/**
 * The container health check's own settings (src/bin/healthcheck.ts reads
 * them beside the server's, from the same environment; the server ignores
 * them). They say how the check proves itself to, and checks, the server's
 * port when it serves TLS, mutual TLS or asks health callers for a token.
 */
export interface HealthcheckConfig {
  /**
   * PEM CA(s) the server's certificate must chain to; undefined: the
   * certificates of TLS_CERT_FILE themselves, so the check trusts exactly
   * the chain the server is configured to present and needs nothing more.
   */
  readonly caFile: string | undefined;
  /** The name the server's certificate must carry; undefined: the host the check connects to. */
  readonly serverName: string | undefined;
  /** PEM client certificate (chain) the check presents under mutual TLS. */
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  /** A file holding the bearer token the check sends (needed with HEALTH_AUTH). */
  readonly tokenFile: string | undefined;
}

/** The health check's settings, in --help order. Environment variables only: the check takes no flags. */
const HEALTHCHECK_SETTINGS: readonly {
  readonly key: keyof HealthcheckConfig;
  readonly env: string;
  readonly description: string;
  readonly parse: (raw: string | undefined) => string | undefined | Invalid;
}[] = [
  {
    key: "caFile",
    env: "HEALTHCHECK_CA_FILE",
    description:
      "PEM CA(s) the server's certificate must chain to (default: trust the certificates of TLS_CERT_FILE as they are)",
    parse: filePath,
  },
  {
    key: "serverName",
    env: "HEALTHCHECK_SERVER_NAME",
    description:
      "name the server's certificate must carry (default: the address checked, 127.0.0.1 when HOST is 0.0.0.0)",
    parse: (raw) =>
      raw === undefined || /^[A-Za-z0-9.:_-]{1,253}$/.test(raw)
        ? raw
        : new Invalid("a DNS name or IP address"),
  },
  {
    key: "certFile",
    env: "HEALTHCHECK_CERT_FILE",
    description:
      "PEM client certificate the check presents; needed with TLS_CLIENT_CA_FILE (with HEALTHCHECK_KEY_FILE) (default: unset)",
    parse: filePath,
  },
  {
    key: "keyFile",
    env: "HEALTHCHECK_KEY_FILE",
    description: "PEM private key of HEALTHCHECK_CERT_FILE (default: unset)",
    parse: filePath,
  },
  {
    key: "tokenFile",
    env: "HEALTHCHECK_TOKEN_FILE",
    description:
      "file holding the bearer token the check sends; needed with HEALTH_AUTH=true unless a client certificate names the caller (default: unset)",
    parse: filePath,
  },
];

/**
 * Reads the health check's settings and checks them against the server's
 * (`server`, from loadConfig over the same environment): the check must be
 * able to talk to the port the server serves, so a setting that cannot
 * apply, or one that is missing for TLS the port requires, is an error
 * naming what to set rather than a handshake failure later.
 *
 * @throws ConfigError naming the setting.
 */
export function loadHealthcheckConfig(
  env: Readonly<Record<string, string | undefined>>,
  server: Config,
): HealthcheckConfig {
  const config: Record<string, unknown> = {};
  for (const setting of HEALTHCHECK_SETTINGS) {
    const raw = env[setting.env] || undefined;
    const value = setting.parse(raw);
    if (value instanceof Invalid) {
      throw new ConfigError(`invalid ${setting.env}: expected ${value.expected}`);
    }
    config[setting.key] = value;
  }
  const checked = config as unknown as HealthcheckConfig;
  const tls = server.tlsCertFile !== undefined;
  for (const [env, value] of [
    ["HEALTHCHECK_CA_FILE", checked.caFile],
    ["HEALTHCHECK_SERVER_NAME", checked.serverName],
  ] as const) {
    if (value !== undefined && !tls) {
      throw new ConfigError(`${env} needs TLS_CERT_FILE: the port serves cleartext`);
    }
  }
  const mutual = server.tlsClientCaFile !== undefined;
  if (checked.certFile !== undefined && !mutual) {
    // The port would not even ask for it; most likely the check's and the
    // server's environments have drifted apart.
    throw new ConfigError(
      "HEALTHCHECK_CERT_FILE needs TLS_CLIENT_CA_FILE: the port asks for no client certificate",
    );
  }
  if ((checked.certFile === undefined) !== (checked.keyFile === undefined)) {
    throw new ConfigError(
      "HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE go together: set both or neither",
    );
  }
  if (mutual && checked.certFile === undefined) {
    throw new ConfigError(
      "the port requires client certificates (TLS_CLIENT_CA_FILE): set HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE to one that chains to it",
    );
  }
  if (server.healthAuth && checked.tokenFile === undefined && !mutual) {
    throw new ConfigError(
      "HEALTH_AUTH=true asks the check for credentials: set HEALTHCHECK_TOKEN_FILE (or, under mutual TLS, a HEALTHCHECK_CERT_FILE that AUTH_TOKENS_FILE names)",
    );
  }
  return Object.freeze(checked);
}

/** The --help text: usage and every setting with its variable, flag and default. */
export function helpText(): string {
  const rows = SETTINGS.map((s) => {
    const shown = s.defaultText === undefined ? "unset" : s.defaultText;
    return `  ${flagName(s)} <value>, ${s.env}\n      ${s.description} (default: ${shown})`;
  });
  return [
    "Usage: sessionstore [--flag value ...]",
    "",
    "SessionStore serves login sessions over gRPC, gRPC-Web and Connect on one port.",
    "Each setting is read from its environment variable or its flag (the flag wins).",
    "",
    "Settings:",
    ...rows,
    "  --help, -h",
    "      print this help and exit",
    "",
    "The container health check (node dist/src/bin/healthcheck.js) reads the settings",
    "above from the environment, and these of its own (the server ignores them):",
    ...HEALTHCHECK_SETTINGS.map((s) => `  ${s.env}\n      ${s.description}`),
    "",
  ].join("\n");
}
