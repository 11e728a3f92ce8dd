/**
 * The SessionStore benchmark: `npm run bench` (or `npm run bench -- --quick`).
 *
 * Everything runs in one go against one private redis-server: the service
 * (dist/src/bin/main.js), a minimal @grpc/grpc-js peer over the same handlers and
 * store, a Go peer doing the same Redis work for Get and Upsert (when Go is
 * installed), and direct in-process calls, measured side by side with variants
 * alternating round by round so that drift of this shared machine affects
 * all of them alike. Ratios within one run are the figures to compare;
 * absolute numbers vary between runs and machines.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  createSessionStoreClient,
  type SessionStoreProtocol,
  SessionStoreService,
} from "@sessionstore/client";
import { Redis } from "ioredis";
import {
  DeleteByUserRequestSchema,
  type GetRequest,
  GetRequestSchema,
  GetResponseSchema,
  ListByUserRequestSchema,
  RefreshRequestSchema,
  TouchRequestSchema,
  UpsertRequestSchema,
} from "../gen/sessionstore/v1/session_store_pb.js";
import { type RedisServer, startRedisServer } from "../harness/redis-server.js";
import { createLogger } from "../src/observability/logger.js";
import { encodeSession } from "../src/service/session-codec.js";
import {
  createSessionStoreHandlers,
  type SessionStoreHandlers,
} from "../src/service/session-store-service.js";
import { connectRedis } from "../src/store/redis/redis-client.js";
import { userKeys } from "../src/store/redis/redis-keys.js";
import { RedisSessionStore } from "../src/store/redis/redis-session-store.js";
import { refreshTokenDigest } from "../src/store/refresh-state.js";
import { EVENT_RETENTION_DEFAULTS } from "../src/store/session-events.js";
import { renderCharts } from "./charts.js";
import { measureEventLatency } from "./event-latency.js";
import { measureHeavyUser } from "./heavy-user-section.js";
import {
  type Call,
  closedLoop,
  describeFailures,
  type LatencyProbe,
  type LoadResult,
  probeLatency,
  rawGrpcClient,
  statusName,
} from "./load.js";
import { startOtlpSink } from "./otlp-sink.js";
import {
  type ServerUnderTest,
  startBareServer,
  startGoPeer,
  startPeer,
  startService,
} from "./processes.js";
import {
  BARE_WITH_REDIS,
  CLIENT_CPU_CLIENTS,
  type GcTrace,
  PROTOCOL_CLIENTS,
  type Report,
  renderReport,
  TUNED_LISTPACK_VALUE,
} from "./report.js";
import { seedGetAll, seedUpsert } from "./seed-reference.js";
import { median, processCpuMicros, processRssBytes, quantile } from "./stats.js";
import { type BenchTokensFile, writeBenchTokensFile } from "./tokens-file.js";
import {
  benchInput,
  benchSession,
  forEachConcurrently,
  KEY_PREFIX,
  methodPath,
  requests,
  SESSIONS_PER_KEYED_USER,
  TTL_MS,
  usedMemory,
} from "./workload.js";

const quick = process.argv.includes("--quick");
const settings = quick
  ? {
      rounds: 1,
      calls: 2000,
      deleteCalls: 1000,
      warmup: 500,
      concurrency: 32,
      halfPeakMs: 1500,
      sustainedMs: 2000,
      listSizes: [10_000, 50_000],
      seedScans: 2,
      memorySessions: 20_000,
      events: { watchers: 50, rate: 500, durationMs: 2000 },
      heavyUser: { sessions: 10_000, otherUsers: 100, getRate: 300, windowMs: 2000 },
    }
  : {
      rounds: 5,
      calls: 20_000,
      deleteCalls: 5000,
      warmup: 5000,
      concurrency: 32,
      halfPeakMs: 5000,
      sustainedMs: 10_000,
      listSizes: [100_000, 1_000_000],
      seedScans: 3,
      memorySessions: 100_000,
      events: { watchers: 200, rate: 1000, durationMs: 5000 },
      heavyUser: { sessions: 100_000, otherUsers: 500, getRate: 300, windowMs: 10_000 },
    };

const METHODS = ["Get", "Upsert", "Refresh", "Touch", "ListByUser", "DeleteByUser"] as const;
/** Methods whose calls change what the next call of the same kind must send: a workload per measurement. */
type OneOffMethod = "Refresh" | "DeleteByUser";
/**
 * How many times each session is refreshed in a Refresh measurement, one
 * generation of tokens after another: call i refreshes session i mod n
 * from token g to g + 1, where n = calls / this. With n far above the
 * concurrency, a session's previous refresh has always completed when the
 * next one is sent.
 */
const REFRESHES_PER_SESSION = 4;
/** The name of the service variant run with GRPC_FAST_PATH=false. */
const CONNECT_NODE_ONLY = "service, connect-node only";
/** The name of the service variant run with a tokens file and RATE_LIMIT. */
const AUTH_AND_RATE_LIMIT = "service, auth + rate limit";
/**
 * RATE_LIMIT of that variant: far above what one load client reaches here
 * (a few thousand calls a second), so it never refuses a call, while its
 * token bucket is still taken from on every call.
 */
const NEVER_LIMITING_RATE = "1000000/s";
/** The names of the service variants run with tracing on, by their sampling ratio. */
const TRACING_VARIANTS = [
  { name: "service, tracing 1%", ratio: "0.01" },
  { name: "service, tracing 100%", ratio: "1" },
] as const;
type Method = (typeof METHODS)[number];
const SESSIONS_PER_LIST_USER = 5;

const log = (message: string) => process.stderr.write(`${message}\n`);

/** Everything started, stopped at the end even when a step fails. */
const started: { stop(): Promise<void> }[] = [];
function owned<T extends { stop(): Promise<void> }>(process: T): T {
  started.push(process);
  return process;
}
const silent = createLogger("silent");

/** One way of doing the work: over gRPC to a server process, or in-process. */
interface Variant {
  readonly name: string;
  /** The methods it is measured on; all when absent. */
  readonly methods?: readonly Method[];
  /** The server process whose CPU time counts; undefined for in-process work. */
  readonly server: ServerUnderTest | undefined;
  call(method: Method, input: Workload, i: number): Promise<unknown>;
  close(): void;
}

/** The inputs of one method's measurement. */
interface Workload {
  readonly bytes: Buffer[];
  readonly messages: unknown[];
}

function grpcVariant(
  server: ServerUnderTest,
  methods?: readonly Method[],
  metadata?: Readonly<Record<string, string>>,
): Variant {
  const client = rawGrpcClient(server.port, metadata);
  return {
    name: server.name,
    ...(methods ? { methods } : {}),
    server,
    call: (method, input, i) =>
      client.call(methodPath(method), input.bytes[i % input.bytes.length] as Buffer),
    close: () => client.close(),
  };
}

function directVariant(handlers: SessionStoreHandlers): Variant {
  const byMethod: Record<Method, (message: never) => Promise<unknown>> = {
    Get: (m) => handlers.get(m),
    Upsert: (m) => handlers.upsert(m),
    Refresh: (m) => handlers.refresh(m),
    Touch: (m) => handlers.touch(m),
    ListByUser: (m) => handlers.listByUser(m),
    DeleteByUser: (m) => handlers.deleteByUser(m),
  };
  return {
    name: "direct ioredis",
    server: undefined,
    call: (method, input, i) =>
      byMethod[method](input.messages[i % input.messages.length] as never),
    close: () => {},
  };
}

/**
 * A measurement with the CPU the server (or this process) spent per call,
 * and the CPU this process (the load's client) spent per call.
 */
interface Measured extends LoadResult {
  readonly cpuMicrosPerCall: number;
  readonly clientCpuMicrosPerCall: number;
  /** Redis's own CPU per call (section 1 only). */
  readonly redisCpuMicrosPerCall?: number;
}

async function measure(
  variant: Variant,
  call: Call,
  calls: number,
  concurrency = settings.concurrency,
) {
  const pid = variant.server?.pid;
  const cpuBefore = pid ? processCpuMicros(pid) : cpuSelf();
  const clientCpuBefore = cpuSelf();
  const result = await closedLoop(call, { concurrency, calls });
  const cpu = (pid ? processCpuMicros(pid) : cpuSelf()) - cpuBefore;
  const clientCpu = cpuSelf() - clientCpuBefore;
  return {
    ...result,
    cpuMicrosPerCall: cpu / result.calls,
    clientCpuMicrosPerCall: clientCpu / result.calls,
  } satisfies Measured;
}

/** The CPU time Redis has used, µs (INFO cpu: its main thread and the rest, user and system). */
async function redisCpuMicros(redis: RedisServer): Promise<number> {
  const info = await redis.info("cpu");
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1]);
  return (seconds("used_cpu_user") + seconds("used_cpu_sys")) * 1e6;
}

function cpuSelf(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** Peak RSS seen per process while sampling. */
class RssSampler {
  readonly peak = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;
  constructor(pids: number[]) {
    this.timer = setInterval(() => {
      for (const pid of pids) {
        const rss = processRssBytes(pid);
        if (!(rss <= (this.peak.get(pid) ?? 0))) this.peak.set(pid, rss);
      }
    }, 100);
  }
  stop() {
    clearInterval(this.timer);
  }
}

async function main() {
  const started = Date.now();
  const redis = owned(await startRedisServer());
  const service = owned(await startService(redis.url));
  const peer = owned(await startPeer(redis.url));
  // The Go yardstick for Get and Upsert, when this machine can build it.
  const goPeer = await startGoPeer(redis.url);
  if ("unavailable" in goPeer) log(`Go peer not measured: ${goPeer.unavailable}`);
  else owned(goPeer);
  // The same service with the gRPC fast path off: connect-node serves every
  // call, which re-measures why the fast path exists.
  const connectOnly = owned(
    await startService(redis.url, {
      name: CONNECT_NODE_ONLY,
      env: { GRPC_FAST_PATH: "false" },
    }),
  );
  // The same service with the per-call security policies on: the bench
  // caller authenticates with a bearer token against a tokens file of ten
  // callers, and the rate limit runs without ever refusing.
  const tokens = owned(writeBenchTokensFile());
  const bearer = { authorization: `Bearer ${tokens.token}` };
  const secured = owned(
    await startService(redis.url, {
      name: AUTH_AND_RATE_LIMIT,
      env: { AUTH_TOKENS_FILE: tokens.path, RATE_LIMIT: NEVER_LIMITING_RATE },
      metadata: bearer,
    }),
  );
  await checkPoliciesRun(secured, tokens);
  // The same service with OpenTelemetry tracing on, exporting to a receiver
  // in this process that discards; the load sends no traceparent, so the
  // ratio samples every call's root.
  const otlpSink = owned(await startOtlpSink());
  const tracingServices: ServerUnderTest[] = [];
  for (const { name, ratio } of TRACING_VARIANTS) {
    tracingServices.push(
      owned(
        await startService(redis.url, {
          name,
          env: {
            OTEL_TRACES_EXPORTER: "otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT: otlpSink.endpoint,
            OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG: ratio,
          },
        }),
      ),
    );
  }
  const rssAtRest = processRssBytes(service.pid);
  const peerRssAtRest = processRssBytes(peer.pid);
  const bench = new Redis(redis.url, { enableAutoPipelining: true });
  const store = new RedisSessionStore({
    redis: bench,
    keyPrefix: KEY_PREFIX,
    maxSessionsPerUser: 0,
  });
  const inProcess = await connectRedis(
    { url: redis.url, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 5000 },
    silent,
  );
  const handlers = createSessionStoreHandlers({
    store: new RedisSessionStore({
      redis: inProcess,
      keyPrefix: KEY_PREFIX,
      maxSessionsPerUser: 0,
    }),
    maxTtlSeconds: 34_560_000,
    maxPayloadBytes: 65_536,
    logger: silent,
  });
  const variants = [
    grpcVariant(service),
    grpcVariant(connectOnly, ["Get", "Upsert"]),
    grpcVariant(secured, ["Get", "Upsert"], bearer),
    ...tracingServices.map((server) => grpcVariant(server, ["Get"])),
    grpcVariant(peer),
    ...("unavailable" in goPeer ? [] : [grpcVariant(goPeer, ["Get", "Upsert"])]),
    directVariant(handlers),
  ];
  const sampler = new RssSampler([service.pid, peer.pid]);

  const put = (userId: string, sessionId: string) => store.upsert(benchInput(userId, sessionId));

  // Fixed data for the repeatable methods.
  const keyed = (user: string) =>
    Array.from({ length: SESSIONS_PER_KEYED_USER }, (_, i) => [user, `s${i}`] as const);
  await forEachConcurrently([...keyed("bench-get"), ...keyed("bench-touch")], 64, ([u, s]) =>
    put(u, s),
  );
  for (let i = 0; i < SESSIONS_PER_LIST_USER; i++) await put("bench-list", `s${i}`);
  const workloads: Record<Exclude<Method, OneOffMethod>, Workload> = {
    Get: workload(
      keyed("bench-get").map(([u, s]) => requests.get(u, s)),
      GetRequestSchema,
    ),
    Upsert: workload(
      keyed("bench-upsert").map(([u, s]) => requests.upsert(benchSession(u, s))),
      UpsertRequestSchema,
    ),
    Touch: workload(
      keyed("bench-touch").map(([u, s]) => requests.touch(u, s)),
      TouchRequestSchema,
    ),
    ListByUser: workload([requests.listByUser("bench-list")], ListByUserRequestSchema),
  };
  // The floor of a Node server doing the service's Get and Upsert: node:http2
  // and the service's Redis script per call, answering the service's own
  // response bytes (bare-h2-server.ts).
  const getRequest = workloads.Get.bytes[0] as Buffer;
  const answered = rawGrpcClient(service.port);
  const getResponse = await answered.call(methodPath("Get"), getRequest);
  const upsertResponse = await answered.call(
    methodPath("Upsert"),
    requests.upsert(benchSession("bench-floor", "template")),
  );
  answered.close();
  const floor = owned(
    await startBareServer({ get: getResponse, upsert: upsertResponse }, redis.url),
  );
  await checkFloorWrites(floor, bench, workloads.Upsert.bytes[0] as Buffer);
  variants.push(grpcVariant(floor, ["Get", "Upsert"]));

  // Each DeleteByUser call empties a user of its own, prepared beforehand.
  let deleteBatch = 0;
  const deleteWorkload = async (calls: number) => {
    const users = Array.from({ length: calls }, (_, i) => `bench-dbu-${deleteBatch}-${i}`);
    deleteBatch++;
    const sessions = users.flatMap((u) =>
      Array.from({ length: SESSIONS_PER_LIST_USER }, (_, i) => [u, `s${i}`] as const),
    );
    await forEachConcurrently(sessions, 256, ([u, s]) => put(u, s));
    return workload(
      users.map((u) => requests.deleteByUser(u)),
      DeleteByUserRequestSchema,
    );
  };

  // Each Refresh measurement rotates sessions of its own, each through
  // REFRESHES_PER_SESSION generations of tokens.
  let refreshBatch = 0;
  const refreshWorkload = async (calls: number) => {
    const sessions = Math.ceil(calls / REFRESHES_PER_SESSION);
    const user = (i: number) => `bench-refresh-${refreshBatch}-${i % 1000}`;
    refreshBatch++;
    const ids = Array.from({ length: sessions }, (_, i) => [user(i), `s${i}`] as const);
    await forEachConcurrently(ids, 256, ([u, s]) =>
      store.upsert({ ...benchInput(u, s), refreshDigest: refreshTokenDigest("g0") }),
    );
    return workload(
      Array.from({ length: calls }, (_, i) => {
        const [u, s] = ids[i % sessions] as readonly [string, string];
        const generation = Math.floor(i / sessions);
        return requests.refresh(u, s, `g${generation}`, `g${generation + 1}`);
      }),
      RefreshRequestSchema,
    );
  };
  const oneOffWorkload = (method: OneOffMethod, calls: number) =>
    method === "Refresh" ? refreshWorkload(calls) : deleteWorkload(calls);

  log(`warming up (${settings.warmup} calls per method and variant)`);
  for (const variant of variants) {
    const warmups = [
      ...(Object.entries(workloads) as [Method, Workload][]),
      ["Refresh", await refreshWorkload(settings.warmup)] as [Method, Workload],
    ];
    for (const [method, input] of warmups) {
      if (variant.methods && !variant.methods.includes(method)) continue;
      const warmup = await closedLoop((i) => variant.call(method, input, i), {
        concurrency: settings.concurrency,
        calls: settings.warmup,
      });
      // A variant whose calls are refused (a token the server does not
      // know, a rate limit that bites) would measure refusals: stop here.
      if (warmup.errors > 0)
        throw new Error(
          `warm-up of ${method} on ${variant.name}: ${warmup.errors} of ${settings.warmup} calls failed (${describeFailures(warmup.failures)})`,
        );
    }
  }

  const results = new Map<string, Measured[]>();
  const record = (key: string, value: Measured) =>
    results.set(key, [...(results.get(key) ?? []), value]);
  for (let round = 0; round < settings.rounds; round++) {
    for (const [m, method] of METHODS.entries()) {
      const order = rotate(variants, round + m);
      for (const variant of order) {
        if (variant.methods && !variant.methods.includes(method)) continue;
        const calls = method === "DeleteByUser" ? settings.deleteCalls : settings.calls;
        const input =
          method === "DeleteByUser" || method === "Refresh"
            ? await oneOffWorkload(method, calls)
            : workloads[method];
        const redisBefore = await redisCpuMicros(redis);
        const measured = await measure(variant, (i) => variant.call(method, input, i), calls);
        const result = {
          ...measured,
          redisCpuMicrosPerCall: ((await redisCpuMicros(redis)) - redisBefore) / measured.calls,
        };
        if (result.errors > 0)
          throw new Error(
            `${method} on ${variant.name}: ${result.errors} of ${calls} calls failed (${describeFailures(result.failures)})`,
          );
        record(`${method}|${variant.name}`, result);
        log(
          `round ${round + 1}/${settings.rounds} ${method.padEnd(12)} ${variant.name.padEnd(14)} ${Math.round(result.throughput)} RPC/s, p99 ${result.p99Ms.toFixed(2)} ms, ${Math.round(result.cpuMicrosPerCall)} µs CPU/call`,
        );
      }
    }
  }

  // Sustained peak gRPC load, for the RSS under load.
  const serviceVariant = variants[0] as Variant;
  const sustainedStart = Date.now();
  let sustainedCalls = 0;
  while (Date.now() - sustainedStart < settings.sustainedMs) {
    const r = await closedLoop((i) => serviceVariant.call("Get", workloads.Get, i), {
      concurrency: 64,
      calls: 5000,
    });
    sustainedCalls += r.calls;
  }
  sampler.stop();
  const rssUnderLoad = sampler.peak.get(service.pid) ?? Number.NaN;
  const peerRssUnderLoad = sampler.peak.get(peer.pid) ?? Number.NaN;
  log(
    `sustained Get load: ${sustainedCalls} calls in ${Date.now() - sustainedStart} ms; service peak RSS ${(rssUnderLoad / 1e6).toFixed(1)} MB`,
  );

  // The same Get over every protocol and client stack the port serves.
  const protocolSampler = new RssSampler([service.pid]);
  const protocolClients: [string, Call][] = [
    [PROTOCOL_CLIENTS.grpc, (i) => serviceVariant.call("Get", workloads.Get, i)],
    ...(
      [
        [PROTOCOL_CLIENTS.sdk, "grpc", false],
        [PROTOCOL_CLIENTS.connect, "connect", false],
        [PROTOCOL_CLIENTS.connectJson, "connect", true],
        [PROTOCOL_CLIENTS.grpcWeb, "grpc-web", false],
      ] as [string, SessionStoreProtocol, boolean][]
    ).map(([name, protocol, useJson]): [string, Call] => {
      // gRPC goes through the SDK's own unary transport; the others through connect-es's.
      const client = createSessionStoreClient({
        baseUrl: `http://127.0.0.1:${service.port}`,
        protocol,
        useJson,
      });
      const messages = workloads.Get.messages as { userId: string; sessionId: string }[];
      return [name, (i) => client.get(messages[i % messages.length] as never)];
    }),
  ];
  for (const [, call] of protocolClients) {
    await closedLoop(call, { concurrency: settings.concurrency, calls: settings.warmup });
  }
  for (let round = 0; round < settings.rounds; round++) {
    for (const [name, call] of rotate(protocolClients, round)) {
      const result = await measure(serviceVariant, call, settings.calls);
      record(`protocol|${name}`, result);
      log(
        `round ${round + 1}/${settings.rounds} Get over ${name}: ${Math.round(result.throughput)} RPC/s, ${Math.round(result.cpuMicrosPerCall)} µs CPU/call`,
      );
    }
  }
  protocolSampler.stop();
  const rssAllProtocols = protocolSampler.peak.get(service.pid) ?? Number.NaN;

  await measureClientCpu(serviceVariant, workloads.Get.messages as GetRequest[], (name, result) =>
    record(`client|${name}`, result),
  );

  const events = await measureEventLatency(service.port, settings.events);
  log(
    `events: ${events.received} of ${events.writes} writes seen by ${events.watchers} watchers, p50 ${events.p50Ms.toFixed(2)} ms, p99 ${events.p99Ms.toFixed(2)} ms`,
  );
  if (events.received < events.writes) {
    throw new Error(
      `events: ${events.writes - events.received} writes were never seen by their watcher`,
    );
  }

  // Latency at half the peak, open loop, from a separate light client
  // process; the same load on the peer and on a bare node:http2 server.
  const peak = median((results.get("Get|service") ?? []).map((r) => r.throughput));
  const halfRate = Math.round(peak / 2);
  const bare = owned(await startBareServer({ get: getResponse }));
  const latencyTargets: [string, ServerUnderTest][] = [
    ["service", service],
    ["grpc-js peer", peer],
    ["bare node:http2", bare],
    [BARE_WITH_REDIS, floor],
  ];
  /** The open-loop Get probe at half of the peak on one server; any failed call fails the run. */
  const halfPeakProbe = async (server: ServerUnderTest, name: string) => {
    const probe = await probeLatency(
      server.port,
      methodPath("Get"),
      getRequest,
      halfRate,
      settings.halfPeakMs,
    );
    if (probe.errors > 0) throw new Error(`latency probe on ${name}: ${probe.errors} errors`);
    return probe;
  };
  const latency = new Map<string, LatencyProbe[]>();
  for (let round = 0; round < Math.min(settings.rounds, 3); round++) {
    for (const [name, server] of rotate(latencyTargets, round)) {
      const probe = await halfPeakProbe(server, name);
      latency.set(name, [...(latency.get(name) ?? []), probe]);
      log(
        `Get at ${halfRate} RPC/s on ${name}: p50 ${probe.p50Ms.toFixed(2)} ms, p99 ${probe.p99Ms.toFixed(2)} ms (client send lag p99 ${probe.sendLagP99Ms.toFixed(2)} ms)`,
      );
    }
  }
  await bare.stop();
  await floor.stop();

  // The same probe on a service process and on a floor process started
  // with --trace-gc-nvp, to see which pauses the tail is made of and how
  // much garbage each call leaves.
  const tracedProbe = async (server: ServerUnderTest) => {
    const from = server.stdout().length;
    const probe = await halfPeakProbe(server, server.name);
    await server.stop();
    const gc = gcTrace(server.stdout().slice(from), probe.calls);
    log(
      `${server.name}: p99 ${probe.p99Ms.toFixed(2)} ms; ${gc.count} GC pauses, ${gc.over2ms} over 2 ms, longest ${gc.maxMs} ms; ` +
        `${Math.round(gc.allocatedPerCall)} bytes allocated and ${Math.round(gc.promotedPerCall)} promoted per call`,
    );
    return { probe, gc };
  };
  const traceFlags = ["--trace-gc", "--trace-gc-nvp"];
  const traced = await tracedProbe(
    owned(await startService(redis.url, { nodeFlags: traceFlags, name: "traced service" })),
  );
  const tracedFloor = await tracedProbe(
    owned(
      await startBareServer({ get: getResponse }, redis.url, {
        nodeFlags: traceFlags,
        name: `traced ${BARE_WITH_REDIS}`,
      }),
    ),
  );

  for (const variant of variants) variant.close();
  await peer.stop();
  if (!("unavailable" in goPeer)) await goPeer.stop();
  await connectOnly.stop();
  await secured.stop();
  for (const server of tracingServices) await server.stop();
  // Each stop flushed its spans: none exported would mean tracing never ran.
  if (otlpSink.exports === 0) throw new Error("tracing: the services exported no spans");
  log(`tracing: ${otlpSink.exports} OTLP export requests received`);
  await otlpSink.stop();

  const listScaling = await measureListScaling(redis, service, bench);
  await service.stop();
  bench.disconnect();
  inProcess.disconnect();
  const redisVersion = (await versionOf(redis)) ?? "unknown";
  await redis.stop();

  // Its own redis-server and service, once the main ones are no longer measured.
  const heavyUser = await measureHeavyUser({ ...settings.heavyUser, log });
  log(`heavy user: section took ${(heavyUser.durationMs / 1000).toFixed(1)} s`);

  const memory = await measureMemory();

  const report: Report = {
    quick,
    settings,
    redisVersion,
    durationMs: Date.now() - started,
    results,
    halfPeak: {
      rate: halfRate,
      peak,
      latency,
      traced: traced.probe,
      gc: traced.gc,
      tracedFloor: tracedFloor.probe,
      floorGc: tracedFloor.gc,
    },
    rss: {
      serviceAtRest: rssAtRest,
      serviceUnderLoad: rssUnderLoad,
      serviceAllProtocols: rssAllProtocols,
      peerAtRest: peerRssAtRest,
      peerUnderLoad: peerRssUnderLoad,
    },
    listScaling,
    events,
    heavyUser,
    memory,
    security: { tokensFileLines: tokens.lines, rateLimit: NEVER_LIMITING_RATE },
    tracingExports: otlpSink.exports,
    goPeer: "unavailable" in goPeer ? { unavailable: goPeer.unavailable } : "measured",
  };
  // None on a quick run, which writes no files.
  const charts = renderCharts(report);
  const markdown = renderReport(report, charts);
  process.stdout.write(`${markdown}\n`);
  if (!quick) {
    writeFileSync("bench/RESULTS.md", markdown);
    for (const chart of charts) {
      mkdirSync(dirname(`bench/${chart.path}`), { recursive: true });
      writeFileSync(`bench/${chart.path}`, chart.svg);
    }
    log(`wrote bench/RESULTS.md and ${charts.length} charts`);
  }
}

/**
 * Client CPU per call: the same Get from three client stacks in this
 * process against the service, measured as this process's CPU time per
 * call. The @grpc/grpc-js client encodes requests and decodes responses
 * with the generated schemas (toBinary and fromBinary as its serialize and
 * deserialize), so it does the work the others do and the comparison is
 * of the client stacks alone: the SDK (its own gRPC unary transport) and
 * connect-es over connect-node's gRPC transport, what the SDK used before.
 */
async function measureClientCpu(
  service: Variant,
  messages: readonly GetRequest[],
  record: (name: string, result: Measured) => void,
) {
  const port = (service.server as ServerUnderTest).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  const grpcJs = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const serialize = (message: GetRequest) => {
    const bytes = toBinary(GetRequestSchema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const deserialize = (bytes: Buffer) => fromBinary(GetResponseSchema, bytes);
  const sdk = createSessionStoreClient({ baseUrl });
  const connectEs = createClient(SessionStoreService, createGrpcTransport({ baseUrl }));
  const message = (i: number) => messages[i % messages.length] as GetRequest;
  const calls: Record<(typeof CLIENT_CPU_CLIENTS)[keyof typeof CLIENT_CPU_CLIENTS], Call> = {
    [CLIENT_CPU_CLIENTS.grpcJs]: (i) =>
      new Promise((resolve, reject) =>
        grpcJs.makeUnaryRequest(
          methodPath("Get"),
          serialize,
          deserialize,
          message(i),
          (error, response) => (error ? reject(error) : resolve(response)),
        ),
      ),
    [CLIENT_CPU_CLIENTS.sdk]: (i) => sdk.get(message(i)),
    [CLIENT_CPU_CLIENTS.connectEs]: (i) => connectEs.get(message(i)),
  };
  const clients = Object.entries(calls);
  for (const [, call] of clients) {
    await closedLoop(call, { concurrency: settings.concurrency, calls: settings.warmup });
  }
  for (let round = 0; round < settings.rounds; round++) {
    for (const [name, call] of rotate(clients, round)) {
      const result = await measure(service, call, settings.calls);
      if (result.errors > 0)
        throw new Error(
          `Get from ${name}: ${result.errors} calls failed (${describeFailures(result.failures)})`,
        );
      record(name, result);
      log(
        `round ${round + 1}/${settings.rounds} Get from ${name}: ${Math.round(result.throughput)} RPC/s, client ${result.clientCpuMicrosPerCall.toFixed(1)} µs CPU/call`,
      );
    }
  }
  grpcJs.close();
}

/**
 * Checks that the auth + rate limit variant runs what it is named for, so
 * that it cannot quietly measure an open service: a call without a token
 * is refused, and the caller whose own rate is 1/h gets one call through
 * and not a second. (That the bench caller's calls all succeed is checked
 * by every measurement.)
 */
async function checkPoliciesRun(server: ServerUnderTest, tokens: BenchTokensFile) {
  const expectStatus = async (
    what: string,
    metadata: Readonly<Record<string, string>>,
    expected: string,
  ) => {
    const client = rawGrpcClient(server.port, metadata);
    try {
      // An unknown session: NOT_FOUND once the policies let the call in.
      const status = await client
        .call(methodPath("Get"), requests.get("policy-check", "policy-check"))
        .then(() => "OK", statusName);
      if (status !== expected)
        throw new Error(`${server.name}: ${what} ended with ${status}, expected ${expected}`);
    } finally {
      client.close();
    }
  };
  await expectStatus("a call without a token", {}, "UNAUTHENTICATED");
  const limited = { authorization: `Bearer ${tokens.limitedToken}` };
  await expectStatus("the first call of a 1/h caller", limited, "NOT_FOUND");
  await expectStatus("the second call of a 1/h caller", limited, "RESOURCE_EXHAUSTED");
}

/**
 * Checks that the Node floor does the Upsert work it stands for, so that a
 * floor skipping its script cannot pass for a fast one: one Upsert through
 * it stores a session of its user and records the event.
 */
async function checkFloorWrites(floor: ServerUnderTest, redis: Redis, request: Buffer) {
  const keys = userKeys(KEY_PREFIX, "bench-floor");
  const before = await Promise.all([redis.hlen(keys.sessions), redis.llen(keys.events)]);
  const client = rawGrpcClient(floor.port);
  try {
    await client.call(methodPath("Upsert"), request);
  } finally {
    client.close();
  }
  const after = await Promise.all([redis.hlen(keys.sessions), redis.llen(keys.events)]);
  if (!(after[0] > before[0] && after[1] > before[1]))
    throw new Error(`${floor.name}: an Upsert left its user's keys as they were`);
}

/**
 * What --trace-gc-nvp output says of a process over `calls` calls: its GC
 * pauses (how many, how many over 2 ms, the longest; mark-compacts apart)
 * and the bytes allocated and promoted to the old generation per call
 * (each GC line counts those since the previous GC).
 */
function gcTrace(trace: string, calls: number): GcTrace {
  const gcs = [
    ...trace.matchAll(/pause=([\d.]+) .*?gc=(\w+) .*?allocated=(\d+) promoted=(\d+)/g),
  ].map((m) => ({
    ms: Number(m[1]),
    markCompact: m[2] === "mc",
    allocated: Number(m[3]),
    promoted: Number(m[4]),
  }));
  if (gcs.length === 0) throw new Error("--trace-gc-nvp printed no collection with its allocation");
  const over2 = gcs.filter((gc) => gc.ms > 2);
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  return {
    count: gcs.length,
    over2ms: over2.length,
    markCompacts: gcs.filter((gc) => gc.markCompact).length,
    over2msMarkCompacts: over2.filter((gc) => gc.markCompact).length,
    maxMs: Math.max(0, ...gcs.map((gc) => gc.ms)),
    allocatedPerCall: sum(gcs.map((gc) => gc.allocated)) / calls,
    promotedPerCall: sum(gcs.map((gc) => gc.promoted)) / calls,
  };
}

function workload(bytes: Buffer[], schema: Parameters<typeof fromBinary>[0]): Workload {
  return { bytes, messages: bytes.map((b) => fromBinary(schema, b)) };
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

async function versionOf(redis: RedisServer): Promise<string | undefined> {
  const client = redis.client();
  try {
    return /redis_version:(\S+)/.exec(await client.info("server"))?.[1];
  } finally {
    client.disconnect();
  }
}

/** ListByUser for one user while Redis holds many other sessions, against SCAN. */
async function measureListScaling(redis: RedisServer, service: ServerUnderTest, bench: Redis) {
  const seed = new Redis(`${redis.url}/1`, { enableAutoPipelining: true });
  const store = new RedisSessionStore({
    redis: bench,
    keyPrefix: KEY_PREFIX,
    maxSessionsPerUser: 0,
  });
  await bench.flushall();
  const client = rawGrpcClient(service.port);
  const target = "scaling-user";
  const data = encodeSession(benchSession(target, "template"));
  const dataBuffer = Buffer.from(data);
  const putBoth = async (userId: string, sessionId: string) => {
    await store.upsert({
      userId,
      sessionId,
      data,
      ttlMs: TTL_MS,
      expiresAtMs: undefined,
      expectedVersion: undefined,
    });
    await seedUpsert(seed, userId, sessionId, dataBuffer, TTL_MS / 1000);
  };
  for (let i = 0; i < SESSIONS_PER_LIST_USER; i++) await putBoth(target, `s${i}`);
  const listRequest = requests.listByUser(target);
  const rows: {
    others: number;
    serviceP50Ms: number;
    serviceP99Ms: number;
    seedMedianMs: number;
    ratio: number;
  }[] = [];
  let others = 0;
  for (const size of settings.listSizes) {
    const todo = Array.from({ length: size - others }, (_, i) => others + i);
    const t0 = Date.now();
    await forEachConcurrently(todo, 512, (n) => putBoth(`other-${Math.floor(n / 5)}`, `s${n % 5}`));
    others = size;
    log(`list scaling: ${size} other sessions in each layout (filled in ${Date.now() - t0} ms)`);
    const latencies: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = performance.now();
      await client.call(methodPath("ListByUser"), listRequest);
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    const seedTimes: number[] = [];
    for (let i = 0; i < settings.seedScans; i++) {
      const t = performance.now();
      const found = await seedGetAll(seed, target);
      seedTimes.push(performance.now() - t);
      if (found.length !== SESSIONS_PER_LIST_USER)
        throw new Error(`seed reference found ${found.length} sessions`);
    }
    const row = {
      others: size,
      serviceP50Ms: quantile(latencies, 0.5),
      serviceP99Ms: quantile(latencies, 0.99),
      seedMedianMs: median(seedTimes),
      ratio: median(seedTimes) / quantile(latencies, 0.5),
    };
    rows.push(row);
    log(
      `list scaling at ${size}: service p50 ${row.serviceP50Ms.toFixed(3)} ms, SCAN reference ${row.seedMedianMs.toFixed(0)} ms (${Math.round(row.ratio)}x)`,
    );
  }
  client.close();
  seed.disconnect();
  await bench.flushall();
  return rows;
}

/** Redis memory per session: the service's layout against one key per session. */
async function measureMemory() {
  const count = settings.memorySessions;
  // The redis-server arguments of a layout; none: Redis's defaults.
  const listpackHashes = ["--hash-max-listpack-value", String(TUNED_LISTPACK_VALUE)];
  const layouts: [string, (redis: Redis, n: number) => Promise<unknown>, (readonly string[])?][] = [
    [
      `service, ${SESSIONS_PER_LIST_USER} sessions per user`,
      (redis, n) =>
        storeFor(redis).upsert(
          benchInput(`user-${Math.floor(n / SESSIONS_PER_LIST_USER)}`, `session-${n}`),
        ),
    ],
    [
      "service, 1 session per user",
      (redis, n) => storeFor(redis).upsert(benchInput(`user-${n}`, `session-${n}`)),
    ],
    // The same two without the event log (EVENT_RETENTION_COUNT=0): its share.
    [
      `service, ${SESSIONS_PER_LIST_USER} sessions per user, events off`,
      (redis, n) =>
        storeFor(redis, false).upsert(
          benchInput(`user-${Math.floor(n / SESSIONS_PER_LIST_USER)}`, `session-${n}`),
        ),
    ],
    [
      "service, 1 session per user, events off",
      (redis, n) => storeFor(redis, false).upsert(benchInput(`user-${n}`, `session-${n}`)),
    ],
    // The same two on a Redis whose hashes of records up to 512 bytes stay
    // listpacks (docs/scaling.md): records of about 260 bytes are over the
    // default 64, so every user's hash is otherwise a full hash table.
    [
      `service, ${SESSIONS_PER_LIST_USER} sessions per user, hash-max-listpack-value ${TUNED_LISTPACK_VALUE}`,
      (redis, n) =>
        storeFor(redis).upsert(
          benchInput(`user-${Math.floor(n / SESSIONS_PER_LIST_USER)}`, `session-${n}`),
        ),
      listpackHashes,
    ],
    [
      `service, 1 session per user, hash-max-listpack-value ${TUNED_LISTPACK_VALUE}`,
      (redis, n) => storeFor(redis).upsert(benchInput(`user-${n}`, `session-${n}`)),
      listpackHashes,
    ],
    // The floor of any layout with a hash per user (what lets DeleteByUser
    // make all of a user's sessions unreadable at once): the service's
    // hashes alone, its indexes and event log removed after each write.
    [
      `the user's hash alone, ${SESSIONS_PER_LIST_USER} sessions per user`,
      (redis, n) => hashAlone(redis, `user-${Math.floor(n / SESSIONS_PER_LIST_USER)}`, n),
    ],
    ["the user's hash alone, 1 session per user", (redis, n) => hashAlone(redis, `user-${n}`, n)],
    [
      "seed (one key per session)",
      (redis, n) => {
        const input = benchInput(`user-${Math.floor(n / SESSIONS_PER_LIST_USER)}`, `session-${n}`);
        return seedUpsert(
          redis,
          input.userId,
          input.sessionId,
          Buffer.from(input.data),
          TTL_MS / 1000,
        );
      },
    ],
  ];
  const rows: { layout: string; bytesPerSession: number }[] = [];
  for (const [layout, insert, redisArgs = []] of layouts) {
    const server = owned(await startRedisServer([...redisArgs]));
    const redis = new Redis(server.url, { enableAutoPipelining: true });
    try {
      const before = await usedMemory(redis);
      await forEachConcurrently(
        Array.from({ length: count }, (_, i) => i),
        512,
        (n) => insert(redis, n),
      );
      const after = await usedMemory(redis);
      rows.push({ layout, bytesPerSession: (after - before) / count });
      log(`memory: ${layout}: ${((after - before) / count).toFixed(0)} bytes per session`);
    } finally {
      redis.disconnect();
      await server.stop();
    }
  }
  return {
    sessions: count,
    sessionBytes: benchInput("user-0", "session-0").data.byteLength,
    rows,
  };
}

/** Stores session `n` of `userId` as the service does, then deletes all the user's keys but the hash. */
async function hashAlone(redis: Redis, userId: string, n: number) {
  await storeFor(redis).upsert(benchInput(userId, `session-${n}`));
  const keys = userKeys(KEY_PREFIX, userId);
  await redis.del(keys.byExpiry, keys.byId, keys.events);
}

const stores = new WeakMap<Redis, RedisSessionStore>();
/** The store on `redis`, with the default event log or (`events` false) none. */
function storeFor(redis: Redis, events = true): RedisSessionStore {
  let store = stores.get(redis);
  if (!store) {
    store = new RedisSessionStore({
      redis,
      keyPrefix: KEY_PREFIX,
      maxSessionsPerUser: 0,
      ...(events ? {} : { events: { ...EVENT_RETENTION_DEFAULTS, retentionCount: 0 } }),
    });
    stores.set(redis, store);
  }
  return store;
}

try {
  await main();
} finally {
  for (const process of started.reverse()) await process.stop();
}
