import type { ConnectionOptions } from "node:tls";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../../observability/logger.js";
import { followPrimarySwitches } from "./primary-switch.js";
import { parseSentinelAddresses, type SentinelAddress } from "./sentinel-addresses.js";
import { probeSentinels, type SentinelConnection } from "./sentinel-probe.js";

/** How to reach Redis: where it is, and how to connect. */
export type RedisClientOptions = (RedisUrls | { readonly sentinel: RedisSentinelOptions }) &
  RedisConnectionOptions;

/** Redis named by URL: one node, or a Cluster's seed nodes. */
interface RedisUrls {
  /**
   * One redis:// or rediss:// URL, or comma-separated seed nodes of a
   * cluster (all of one scheme). rediss:// connects with TLS, verifying the
   * server's certificate against `tls.ca` or else the system CAs.
   */
  readonly url: string;
  readonly cluster: boolean;
  /**
   * Cluster only: subscribe to sharded channels through ioredis's sharded
   * subscribers, one connection per master (the client that watches users'
   * event channels; see RedisEventSubscriptions).
   */
  readonly shardedSubscribers?: boolean;
}

/** How to connect to the data nodes, wherever they are. */
interface RedisConnectionOptions {
  /**
   * PEM files' contents for every TLS connection: to a rediss:// URL, and
   * through Sentinel to the sentinels (`sentinel.tls`) and the data nodes
   * (`sentinel.nodesTls`). Ignored for connections without TLS.
   */
  readonly tls?: {
    /** CA certificates the server's certificate must chain to, instead of the system CAs. */
    readonly ca?: Buffer;
    /** Client certificate and its key, for servers that verify clients (tls-auth-clients). */
    readonly cert?: Buffer;
    readonly key?: Buffer;
  };
  /** ACL user; overrides one in the URL. */
  readonly username?: string;
  /** Password; overrides one in the URL. Never logged. */
  readonly password?: string;
  /** How long a command may wait for its reply before failing. */
  readonly commandTimeoutMs: number;
  /** How long to wait for the first connection before giving up. */
  readonly connectTimeoutMs: number;
}

/** Where the sentinels are, which group to ask them for, and their own credentials. */
export interface RedisSentinelOptions {
  /** host:port of each sentinel, comma-separated (see parseSentinelAddresses). */
  readonly addresses: string;
  /** The master group name the sentinels monitor. */
  readonly name: string;
  readonly username?: string;
  /** The sentinels' password (the data nodes' is `password`). Never logged. */
  readonly password?: string;
  /** The sentinels serve TLS: verify them as `tls` says (REDIS_SENTINEL_TLS). */
  readonly tls?: boolean;
  /**
   * The data nodes the sentinels name serve TLS (REDIS_TLS): what the
   * scheme of a URL says, for nodes that have no URL.
   */
  readonly nodesTls?: boolean;
}

/**
 * Reconnect quickly after a blip, then four times a second: with health
 * probing every 100 ms, health reports SERVING again within a second of
 * Redis coming back (a 500 ms cap left it at 0.9-1.0 s in the fault tests).
 */
function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** (attempt - 1), 250);
}

/** How often a connection asks a Redis that is loading its data whether it is done. */
const LOADING_RETRY_MS = 100;

/**
 * Options that make a Redis outage fail fast instead of queueing RPCs behind
 * it: no resend of commands whose connection dropped (a write may have
 * happened; the caller decides whether to retry), no retry of them on
 * reconnect, and a per-command timeout. With the offline queue disabled as
 * well (set per client kind below), commands fail at once while
 * disconnected.
 */
function failFastOptions(options: RedisClientOptions) {
  return {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: Math.min(options.connectTimeoutMs, 2000),
    connectionName: "sessionstore",
    // A Redis still loading its data (a restart) is asked again every
    // 100 ms, not after its load estimate (a whole second at least), so
    // the service is back within a probe interval of the load's end.
    maxLoadingRetryTime: LOADING_RETRY_MS,
    // CLIENT SETINFO exists from Redis 7.2 only, so the README's ACL rule
    // cannot allow it on 7.0; a user without it would fill ACL LOG with
    // denials on every connect. CLIENT SETNAME still names the connection.
    disableClientInfo: true,
  } satisfies RedisOptions;
}

/**
 * Node's TLS options with only the PEM contents given, so that Node's
 * defaults (the system CAs, host name checks) hold otherwise.
 */
function tlsOptions(options: RedisConnectionOptions): ConnectionOptions {
  return {
    ...(options.tls?.ca ? { ca: options.tls.ca } : {}),
    ...(options.tls?.cert ? { cert: options.tls.cert } : {}),
    ...(options.tls?.key ? { key: options.tls.key } : {}),
  };
}

/**
 * Who to be and how to verify the server, for every connection (every
 * cluster node too): the credentials from the options, else from the
 * (first) URL, and TLS for rediss:// (see tlsOptions).
 */
function securityOptions(options: RedisClientOptions) {
  const first = "url" in options ? new URL(options.url.split(",")[0]?.trim() ?? "") : undefined;
  const fromUrl = (part: string | undefined) => (part ? decodeURIComponent(part) : undefined);
  const username = options.username ?? fromUrl(first?.username);
  const password = options.password ?? fromUrl(first?.password);
  return {
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(first?.protocol === "rediss:" ? { tls: tlsOptions(options) } : {}),
  } satisfies RedisOptions;
}

/**
 * The URL without its credentials: ioredis would let the URL's win over
 * the options (and a user name alone in it would blank the password).
 */
function withoutCredentials(url: string): string {
  const parsed = new URL(url.trim());
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}

/**
 * Where Redis is, for logs: host:port of each URL, never credentials.
 */
function redisTargets(options: RedisClientOptions): string {
  if ("sentinel" in options) {
    return `the primary of ${options.sentinel.name} via sentinels ${options.sentinel.addresses}`;
  }
  return options.url
    .split(",")
    .map((url) => {
      const { hostname, port } = new URL(url.trim());
      return `${hostname}:${port || 6379}`;
    })
    .join(",");
}

/**
 * Connects to Redis (standalone, through Sentinel, or Cluster) and
 * resolves once it is ready. Connection state changes are logged without
 * credentials or data: while the first connection fails, once per
 * distinct cause at warn, naming the address it waits for and why
 * (ECONNREFUSED, a DNS failure, an untrusted TLS certificate), so a wrong
 * REDIS_URL shows at once rather than at the timeout. Refused credentials
 * end the wait at once: retrying them cannot succeed, and the operator
 * should hear so without waiting. Through Sentinel, a round in which no
 * sentinel named the primary is looked into by asking the sentinels
 * directly (probeSentinels), since ioredis keeps only "Connection is
 * closed." of why: the cause then names the sentinel and what failed (an
 * untrusted certificate, a missing client one).
 *
 * @throws Error when Redis refuses the credentials, or is not ready within
 *   connectTimeoutMs, naming the address and the cause (never a password).
 */
export async function connectRedis(
  options: RedisClientOptions,
  logger: Logger,
): Promise<Redis | Cluster> {
  const client =
    "sentinel" in options
      ? createSentinelClient(options)
      : options.cluster
        ? createCluster(options)
        : new Redis(withoutCredentials(options.url), {
            ...failFastOptions(options),
            ...securityOptions(options),
            enableOfflineQueue: false,
            retryStrategy: reconnectDelay,
          });
  const target = redisTargets(options);
  let connected = false;
  let everConnected = false;
  let settled = false;
  let lastCause: string | undefined;
  let refuse: ((cause: string) => void) | undefined;
  /**
   * A look for the cause ioredis lost when no sentinel named the primary:
   * one at a time, at most one a second (rounds fail every 250 ms).
   */
  let probe: Promise<void> | undefined;
  let nextProbeAt = 0;
  client.on("ready", () => {
    connected = true;
    everConnected = true;
    logger.info({ redis: target }, "connected to Redis");
  });
  const report = (err: Error, cause: string) => {
    if (connected) {
      logger.warn({ err, redis: target }, "lost connection to Redis, reconnecting");
    } else if (!everConnected && cause !== lastCause) {
      // Every retry fails the same way while Redis stays away: say it once.
      logger.warn({ redis: target, cause }, "waiting for Redis");
    } else {
      logger.debug({ err }, "Redis connection attempt failed");
    }
    lastCause = cause;
    connected = false;
    if (!everConnected && cause.startsWith(AUTHENTICATION_FAILED)) refuse?.(cause);
  };
  client.on("error", (err: Error) => {
    if (!("sentinel" in options) || everConnected || !SENTINEL_ROUND.test(err.message)) {
      report(err, causeOf(err));
      return;
    }
    if (probe || performance.now() < nextProbeAt) {
      logger.debug({ err }, "Redis connection attempt failed");
      return;
    }
    probe = probeSentinels(
      sentinelAddresses(options.sentinel),
      options.sentinel.name,
      sentinelConnection(options),
      causeOf,
    ).then(
      (found) => {
        probe = undefined;
        nextProbeAt = performance.now() + 1000;
        const cause = found ?? causeOf(err);
        // Once the wait is over, the cause is only for its error message.
        if (settled) lastCause = cause;
        else if (!everConnected) report(err, cause);
      },
      () => {
        probe = undefined;
        nextProbeAt = performance.now() + 1000;
      },
    );
  });
  const outcome = await new Promise<"ready" | "timed out" | { refused: string }>((resolve) => {
    if (client.status === "ready") return resolve("ready");
    const timer = setTimeout(() => settle("timed out"), options.connectTimeoutMs);
    const onReady = () => settle("ready");
    const settle = (result: "ready" | "timed out" | { refused: string }) => {
      clearTimeout(timer);
      client.off("ready", onReady);
      refuse = undefined;
      resolve(result);
    };
    client.once("ready", onReady);
    refuse = (cause) => settle({ refused: cause });
  });
  settled = true;
  if (outcome === "ready") return client;
  client.disconnect();
  // A look into why no sentinel answered may still be under way: its cause says more.
  await probe;
  throw new Error(
    outcome === "timed out"
      ? `Redis at ${target} was not ready within ${options.connectTimeoutMs} ms` +
          (lastCause ? ` (${lastCause})` : "")
      : `Redis at ${target} refused the credentials: ${outcome.refused}`,
  );
}

/**
 * A client of the primary the sentinels name: it asks them again whenever
 * its connection drops, and drops it when they announce a failover to
 * another node (followPrimarySwitches) or when the node it reaches answers
 * READONLY (a demoted primary), so that writes go to the new primary.
 *
 * TLS is chosen separately for the sentinels (`sentinelTLS`, and the
 * connections that watch for failovers) and for the primary
 * (`tls` with `enableTLSForSentinelMode`, without which ioredis would
 * connect to the node in cleartext), as Redis lets them differ; both are
 * verified against the same CA and show the same client certificate.
 * Host names are checked against the address a sentinel names, so the
 * data nodes' certificates must carry what the sentinels announce.
 */
function createSentinelClient(
  options: { readonly sentinel: RedisSentinelOptions } & RedisConnectionOptions,
): Redis {
  const { sentinel } = options;
  const sentinels = sentinelAddresses(sentinel);
  const connection = sentinelConnection(options);
  const { username, password, tls } = connection;
  const client = new Redis({
    sentinels,
    name: sentinel.name,
    role: "master",
    ...(username !== undefined ? { sentinelUsername: username } : {}),
    ...(password !== undefined ? { sentinelPassword: password } : {}),
    ...(tls !== undefined ? { sentinelTLS: tls } : {}),
    sentinelRetryStrategy: reconnectDelay,
    sentinelCommandTimeout: options.commandTimeoutMs,
    // followPrimarySwitches instead: ioredis's detector can end the client.
    failoverDetector: false,
    reconnectOnError: (error) => error.message.startsWith("READONLY"),
    ...failFastOptions(options),
    ...securityOptions(options),
    ...(sentinel.nodesTls ? { tls: tlsOptions(options), enableTLSForSentinelMode: true } : {}),
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
  });
  followPrimarySwitches(client, {
    sentinels,
    group: sentinel.name,
    connection,
    reconnectDelay,
  });
  return client;
}

/** The sentinels to ask, from the addresses the settings' check has already read. */
function sentinelAddresses(sentinel: RedisSentinelOptions): SentinelAddress[] {
  const addresses = parseSentinelAddresses(sentinel.addresses);
  if (!addresses) throw new Error("the sentinels' addresses are not host:port, comma-separated");
  return addresses;
}

/**
 * How every connection to a sentinel is made (the client's, its failover
 * detector's, a probe's): the sentinels' own credentials, TLS when they
 * serve it, and the command timeouts.
 */
function sentinelConnection(
  options: { readonly sentinel: RedisSentinelOptions } & RedisConnectionOptions,
): SentinelConnection {
  const { sentinel } = options;
  return {
    ...(sentinel.username !== undefined ? { username: sentinel.username } : {}),
    ...(sentinel.password !== undefined ? { password: sentinel.password } : {}),
    ...(sentinel.tls ? { tls: tlsOptions(options) } : {}),
    connectTimeout: failFastOptions(options).connectTimeout,
    commandTimeout: options.commandTimeoutMs,
  };
}

/**
 * How many times ioredis sends one Cluster command on after an answer
 * that is not its reply (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a closed
 * connection) before failing it: ioredis's default, named because
 * clusterRetryDelay divides by it.
 */
const MAX_REDIRECTIONS = 16;

/**
 * How long ioredis waits before sending a Cluster command again after
 * TRYAGAIN (its slot is migrating, and the keys a script needs are not all
 * on one node), CLUSTERDOWN or a closed connection: a 32nd of the command
 * timeout (at most ioredis's default of 100 ms), so that all of a
 * command's retries fit in half of its timeout and ioredis gives up
 * ("Too many Cluster redirections", UNAVAILABLE) before the timeout fires.
 * It matters because ioredis (6.0.0) still sends a retry it queued before
 * the timeout, although the caller was told the command failed (the queued
 * retry does not check whether the command was settled; the same family
 * as redis/ioredis#2130): with the default delays, up to 1.6 s of
 * retries against a 1 s timeout, a write failed UNAVAILABLE was applied
 * tens of ms after a stalled migration or a CLUSTERDOWN ended, behind the
 * back of a caller who may already have written again.
 */
function clusterRetryDelay(commandTimeoutMs: number): number {
  return Math.max(1, Math.min(100, Math.floor(commandTimeoutMs / (2 * MAX_REDIRECTIONS))));
}

function createCluster(options: RedisUrls & RedisConnectionOptions): Cluster {
  const urls = options.url.split(",").map((url) => new URL(url.trim()));
  const nodes = urls.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) }));
  // redisOptions apply to every node ioredis connects to, those it learns
  // from CLUSTER SLOTS included: each gets the same credentials and TLS.
  const redisOptions = { ...failFastOptions(options), ...securityOptions(options) };
  const retryDelay = clusterRetryDelay(options.commandTimeoutMs);
  return new Cluster(nodes, {
    redisOptions,
    enableOfflineQueue: false,
    clusterRetryStrategy: reconnectDelay,
    clusterNodeRetryStrategy: reconnectDelay,
    maxRedirections: MAX_REDIRECTIONS,
    retryDelayOnTryAgain: retryDelay,
    retryDelayOnClusterDown: retryDelay,
    retryDelayOnFailover: retryDelay,
    ...(options.shardedSubscribers ? { shardedSubscribers: true } : {}),
  });
}

/**
 * ioredis's error when a whole round of sentinels named no primary; it
 * carries the last sentinel client's reply, not the cause behind it.
 */
const SENTINEL_ROUND = /^All sentinels are unreachable\b/;

/** How causeOf begins the cause of refused credentials. */
const AUTHENTICATION_FAILED = "authentication failed";

/**
 * Node's codes for a server certificate that does not verify: signed by a
 * CA not trusted, expired, or issued for another name.
 */
const UNTRUSTED_CERTIFICATE =
  /^(UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME)/;

/**
 * A connection error's cause, safe to log: its code (ECONNREFUSED) or its
 * message, said plainly for refused credentials and untrusted certificates.
 * Redis' replies name no password (WRONGPASS invalid username-password
 * pair...), and neither do Node's TLS errors.
 */
function causeOf(error: Error): string {
  // A cluster reports the node's error as the cause of its own.
  const nodeError = (error as { lastNodeError?: unknown }).lastNodeError;
  if (nodeError instanceof Error) return causeOf(nodeError);
  const code = (error as { code?: unknown }).code;
  if (SENTINEL_ROUND.test(error.message)) {
    // Without the retry delay, which changes from round to round.
    const last = /Last error: (.*)$/s.exec(error.message)?.[1];
    return `no sentinel named the primary${last ? ` (last error: ${last})` : ""}`;
  }
  if (/^(WRONGPASS|NOAUTH)\b/.test(error.message)) {
    return `${AUTHENTICATION_FAILED} (${error.message})`;
  }
  if (typeof code === "string" && UNTRUSTED_CERTIFICATE.test(code)) {
    return `TLS: the server's certificate is not trusted (${code})`;
  }
  return typeof code === "string" ? code : error.message;
}
