import { LOG_LEVELS, type LogLevel } from "./observability/logger.js";
import type { Rate } from "./pipeline/call.js";
import { formatRate, parseRate, UNLIMITED } from "./pipeline/rate.js";

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
  /** Upper bound of the protobuf encoding of a session's extra_payload. */
  readonly maxPayloadBytes: number;
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
  /** Serve plain gRPC unary calls on the fast path; false: connect-node serves every call. */
  readonly grpcFastPath: boolean;
}

/** An invalid setting or command line; the message names what is wrong. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

interface Setting<K extends keyof Config> {
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

function integer(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number | Invalid => {
    if (raw === undefined) return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    return value >= min && value <= max
      ? value
      : new Invalid(`an integer from ${min} to ${max === MAX_SAFE ? "2^53-1" : max}`);
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

function redisUrls(raw: string | undefined): string | undefined | Invalid {
  if (raw === undefined || raw === "") return undefined;
  for (const url of raw.split(",")) {
    if (!URL.canParse(url.trim()) || !/^rediss?:$/.test(new URL(url.trim()).protocol)) {
      return new Invalid(
        "redis://[user:password@]host[:port][/db] or rediss://..., comma-separated for a cluster",
      );
    }
  }
  return raw;
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
    key: "keyPrefix",
    env: "KEY_PREFIX",
    description: "prefix of every Redis key",
    defaultText: "sessionstore",
    parse: (raw) =>
      raw === undefined
        ? "sessionstore"
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
    key: "maxPayloadBytes",
    env: "MAX_PAYLOAD_BYTES",
    description: "largest protobuf encoding of a session's extra_payload, in bytes",
    defaultText: "65536",
    parse: integer(0, MAX_SAFE, 65536),
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
    key: "grpcFastPath",
    env: "GRPC_FAST_PATH",
    description:
      "serve plain gRPC unary calls on the fast path (false: connect-node serves every call, for comparison)",
    defaultText: "true",
    parse: boolean(true),
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
  for (const setting of SETTINGS) {
    const flag = flagName(setting);
    // An empty variable counts as unset, as in most deployment tools.
    const raw = flags.get(flag) ?? (env[setting.env] || undefined);
    const value = setting.parse(raw);
    if (value instanceof Invalid) {
      const shown = setting.secret || raw === undefined ? "" : ` ${JSON.stringify(raw)}`;
      throw new ConfigError(`invalid ${setting.env} (${flag})${shown}: expected ${value.expected}`);
    }
    config[setting.key] = value;
  }
  return Object.freeze(config) as unknown as Config;
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
  ].join("\n");
}
