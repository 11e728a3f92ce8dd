import { readFileSync } from "node:fs";
import os from "node:os";
import type { Chart } from "./charts.js";
import type { EventLatency } from "./event-latency.js";
import type { HeavyUserFigures, Windows } from "./heavy-user-section.js";
import type { LatencyProbe, LoadResult } from "./load.js";
import { median } from "./stats.js";

/** What --trace-gc-nvp said of a process through one latency probe. */
export interface GcTrace {
  /** Collections (pauses), how many took over 2 ms, the longest. */
  count: number;
  over2ms: number;
  markCompacts: number;
  over2msMarkCompacts: number;
  maxMs: number;
  /** Bytes the process allocated per call of the probe. */
  allocatedPerCall: number;
  /** Bytes per call that survived into V8's old generation. */
  promotedPerCall: number;
}

/** Everything one benchmark run measured. */
export interface Report {
  readonly quick: boolean;
  readonly settings: Record<string, unknown>;
  readonly redisVersion: string;
  readonly durationMs: number;
  /** Per "<method>|<variant>", "protocol|<name>" or "client|<name>": one result per round. */
  readonly results: ReadonlyMap<
    string,
    readonly (LoadResult & {
      cpuMicrosPerCall: number;
      clientCpuMicrosPerCall: number;
      redisCpuMicrosPerCall?: number;
    })[]
  >;
  readonly halfPeak: {
    rate: number;
    peak: number;
    /** Per server ("service", "grpc-js peer", "bare node:http2"): one probe per round. */
    latency: ReadonlyMap<string, readonly LatencyProbe[]>;
    /** The probe on a service process run with --trace-gc-nvp, and what its GCs said. */
    traced: LatencyProbe;
    gc: GcTrace;
    /** The same on a floor process (BARE_WITH_REDIS). */
    tracedFloor: LatencyProbe;
    floorGc: GcTrace;
  };
  /** Write acknowledged to event received, on WatchUser streams. */
  readonly events: EventLatency;
  readonly rss: {
    serviceAtRest: number;
    serviceUnderLoad: number;
    serviceAllProtocols: number;
    peerAtRest: number;
    peerUnderLoad: number;
  };
  readonly listScaling: readonly {
    others: number;
    serviceP50Ms: number;
    serviceP99Ms: number;
    seedMedianMs: number;
    ratio: number;
  }[];
  readonly memory: {
    sessions: number;
    sessionBytes: number;
    rows: readonly { layout: string; bytesPerSession: number }[];
  };
  /** One user with 10^5 sessions (10^4 with --quick) while other users' Gets are measured. */
  readonly heavyUser: HeavyUserFigures;
  /** OTLP export requests the tracing variants sent to the bench's receiver. */
  readonly tracingExports: number;
  /** How the "auth + rate limit" variant was configured. */
  readonly security: {
    /** Callers' lines in its tokens file. */
    tokensFileLines: number;
    /** Its RATE_LIMIT. */
    rateLimit: string;
  };
  /** Whether the Go peer (bench/go-peer) was built and measured, or why not. */
  readonly goPeer: "measured" | { readonly unavailable: string };
}

/** The clients of "Client CPU per call", by role; results are keyed "client|<name>". */
export const CLIENT_CPU_CLIENTS = {
  grpcJs: "@grpc/grpc-js client (generated schemas)",
  sdk: "@sessionstore/client",
  connectEs: "connect-es client (connect-node gRPC transport)",
} as const;

const METHODS = ["Get", "Upsert", "Refresh", "Touch", "ListByUser", "DeleteByUser"];
const AUTH_AND_RATE_LIMIT = "service, auth + rate limit";
const GO_PEER = "Go peer";
/** The clients of section 2, by protocol; results are keyed "protocol|<name>". */
export const PROTOCOL_CLIENTS = {
  grpc: "gRPC (@grpc/grpc-js client)",
  sdk: "gRPC (@sessionstore/client)",
  connect: "Connect binary (connect-es client)",
  connectJson: "Connect JSON (connect-es client)",
  grpcWeb: "gRPC-Web (connect-es client)",
} as const;

/** The hash-max-listpack-value of the tuned-Redis memory rows (docs/scaling.md). */
export const TUNED_LISTPACK_VALUE = 512;

/** The bare server that also runs the service's Redis script of each call: the Node floor. */
export const BARE_WITH_REDIS = "bare node:http2 + the service's script";

const VARIANTS = [
  "service",
  "service, connect-node only",
  AUTH_AND_RATE_LIMIT,
  "grpc-js peer",
  GO_PEER,
  BARE_WITH_REDIS,
  "direct ioredis",
];

interface Summary {
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  cpu: number;
}

/** Redis's own CPU per call of one result key, µs: the median over its rounds. */
function redisCpuOf(report: Report, key: string): number {
  return median((report.results.get(key) ?? []).map((r) => r.redisCpuMicrosPerCall ?? Number.NaN));
}

/** One result key's figures, each the median over its rounds. */
export function summary(report: Report, key: string): Summary {
  const runs = report.results.get(key) ?? [];
  return {
    throughput: median(runs.map((r) => r.throughput)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    cpu: median(runs.map((r) => r.cpuMicrosPerCall)),
  };
}

/**
 * The median over rounds of a/b measured in the same round: variants of one
 * round run back to back, so pairing them cancels the drift of a shared
 * machine between rounds.
 */
function pairedRatio(
  report: Report,
  a: string,
  b: string,
  field: "throughput" | "cpuMicrosPerCall" | "clientCpuMicrosPerCall",
): number {
  const as = report.results.get(a) ?? [];
  const bs = report.results.get(b) ?? [];
  return median(as.map((r, i) => r[field] / (bs[i]?.[field] ?? Number.NaN)));
}

export const int = (n: number) => Math.round(n).toLocaleString("en-US");
const ms = (n: number) => n.toFixed(2);
const times = (n: number) => `${n >= 100 ? int(n) : n.toFixed(2)}×`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const kb = (bytes: number) => (bytes / 1024).toFixed(1);
/** A target's verdict; undefined when it could not be measured on this machine. */
const mark = (pass: boolean | undefined) =>
  pass === undefined ? "➖ not measured" : pass ? "✅ pass" : "❌ miss";

function packageVersion(name: string): string {
  try {
    return JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8")).version;
  } catch {
    return "?";
  }
}

/**
 * The targets of section 2: server CPU per Get over Connect (binary and
 * JSON) and gRPC-Web at most 1.5× that of gRPC, each on the fast path.
 */
function protocolTargets(report: Report): [string, string, string, boolean][] {
  const key = (name: string) => `protocol|${name}`;
  const grpc = summary(report, key(PROTOCOL_CLIENTS.grpc));
  return [PROTOCOL_CLIENTS.connect, PROTOCOL_CLIENTS.connectJson, PROTOCOL_CLIENTS.grpcWeb].map(
    (name) => {
      const ratio = pairedRatio(report, key(name), key(PROTOCOL_CLIENTS.grpc), "cpuMicrosPerCall");
      return [
        `Get server CPU per RPC: ${name.replace(" (connect-es client)", "")} ÷ gRPC (§2)`,
        "≤ 1.5×",
        `${times(ratio)} (${int(summary(report, key(name)).cpu)} vs ${int(grpc.cpu)} µs)`,
        ratio <= 1.5,
      ];
    },
  );
}

/**
 * The targets against the Go peer: the service's CPU per Get and per Upsert
 * at most 1.5× what grpc-go and redigo spend on one core for the same
 * Redis work, with the throughput of both beside it.
 */
function goPeerTargets(report: Report): [string, string, string, boolean | undefined][] {
  return ["Get", "Upsert"].map((method) => {
    const name = `${method} server CPU per RPC: service ÷ Go peer (grpc-go + redigo, GOMAXPROCS=1)`;
    if (report.goPeer !== "measured")
      return [name, "≤ 1.5×", `not measured: ${report.goPeer.unavailable}`, undefined];
    const service = summary(report, `${method}|service`);
    const go = summary(report, `${method}|${GO_PEER}`);
    const cpu = pairedRatio(
      report,
      `${method}|service`,
      `${method}|${GO_PEER}`,
      "cpuMicrosPerCall",
    );
    const throughput = pairedRatio(
      report,
      `${method}|service`,
      `${method}|${GO_PEER}`,
      "throughput",
    );
    return [
      name,
      "≤ 1.5×",
      `${times(cpu)} (${int(service.cpu)} vs ${int(go.cpu)} µs); throughput ${times(throughput)} (${int(service.throughput)} vs ${int(go.throughput)} RPC/s)${floorVsGo(report, method)}`,
      cpu <= 1.5,
    ];
  });
}

/**
 * Where the Node floor stands against Go: the bare node:http2 server running
 * the service's script per call, and nothing else, ÷ the Go peer.
 */
function floorVsGo(report: Report, method: string): string {
  const floor = `${method}|${BARE_WITH_REDIS}`;
  if (!report.results.has(floor)) return "";
  return `; the Node floor (${BARE_WITH_REDIS}) ÷ Go peer: ${times(floorCpuVsGo(report, method))} (${int(summary(report, floor).cpu)} µs)`;
}

/** The Node floor's CPU per call ÷ the Go peer's, for `method`. */
function floorCpuVsGo(report: Report, method: string): number {
  return pairedRatio(
    report,
    `${method}|${BARE_WITH_REDIS}`,
    `${method}|${GO_PEER}`,
    "cpuMicrosPerCall",
  );
}

/**
 * Upsert ÷ Get throughput of the servers other than the service that ran
 * both, for the same scripts: what the ratio is when the server's own
 * work is least. "Go peer: 0.81×, …", or "" when none ran both.
 */
function upsertVsGetElsewhere(report: Report): string {
  const of = (variant: string) =>
    report.results.has(`Upsert|${variant}`) && report.results.has(`Get|${variant}`)
      ? [
          `${variant}: ${times(pairedRatio(report, `Upsert|${variant}`, `Get|${variant}`, "throughput"))}`,
        ]
      : [];
  return [...of(GO_PEER), ...of(BARE_WITH_REDIS)].join(", ");
}

/**
 * The note on the Go peer targets: where the Node floor stands, what the
 * service spends above it, and what was tried; none when Go did not run.
 */
function againstGo(report: Report): string[] {
  if (report.goPeer !== "measured" || !report.results.has(`Upsert|${BARE_WITH_REDIS}`)) return [];
  const cpu = (key: string) => summary(report, key).cpu;
  const floorRatio = (method: string) => floorCpuVsGo(report, method);
  const pastTarget = ["Get", "Upsert"].filter((method) => floorRatio(method) > 1.5);
  const within = ["Get", "Upsert"].filter((method) => floorRatio(method) <= 1.5);
  return [
    `- **Against the Go peer.** grpc-go and redigo on one core spend ${int(cpu(`Get|${GO_PEER}`))} µs per Get and ` +
      `${int(cpu(`Upsert|${GO_PEER}`))} µs per Upsert. The Node floor, node:http2 and ioredis running the same scripts and nothing ` +
      `else, spends ${int(cpu(`Get|${BARE_WITH_REDIS}`))} and ${int(cpu(`Upsert|${BARE_WITH_REDIS}`))} µs ` +
      `(${times(floorRatio("Get"))} and ${times(floorRatio("Upsert"))} Go's)` +
      (pastTarget.length > 0
        ? `: for ${pastTarget.join(" and ")}, the floor alone is past the 1.5× target`
        : "") +
      (within.length > 0
        ? `${pastTarget.length > 0 ? "; for" : ": for"} ${within.join(" and ")}, the floor is within it, and the gap is the service's own work. `
        : ". ") +
      `The service spends ${int(cpu("Get|service") - cpu(`Get|${BARE_WITH_REDIS}`))} µs per Get and ` +
      `${int(cpu("Upsert|service") - cpu(`Upsert|${BARE_WITH_REDIS}`))} µs per Upsert above the floor: decoding and checking the request ` +
      "(an Upsert's carries the whole session; in binary calls its payload is checked on the wire, not decoded), the pipeline's policies, the " +
      "deadline and cancellation plumbing, and the garbage all that leaves (section 2's traced probes). Profiles of the service " +
      "against the floor (`node --cpu-prof` and V8's sampling heap profiler, measured during development) led to this round's " +
      "cuts: new streams handed to the handlers by one setImmediate per event-loop turn rather than one each, RPC metrics " +
      "counted in plain numbers that prom-client reads at scrape time rather than hashed label sets per call, an Upsert's Struct " +
      "payload checked on the wire rather than decoded value by value, one-shot SHA-256 digests, and fewer promises and " +
      "listener wrappers per call. Tried and left out: ioredis's `enableAutoPipelining`, which batches the Redis writes of " +
      "a turn (less server CPU per call, but lower Upsert throughput at 32 calls in flight).",
  ];
}

/** Section 1's sentence on the Go peer: how it is built and run, or why it is missing. */
function goPeerDescription(report: Report): string {
  const what =
    "*Go peer* (Get and Upsert only) is bench/go-peer: grpc-go and the redigo Redis client doing the service's Redis work " +
    "(the same keys, the same Lua scripts by EVALSHA, the stored bytes spliced into the response as the service does, " +
    "a pool of 16 Redis connections), built offline in GOPATH mode against Debian's golang-go, golang-google-grpc-dev, " +
    "golang-google-protobuf-dev and golang-github-gomodule-redigo-dev, and run with GOMAXPROCS=1 so that it works on one core like Node.";
  if (report.goPeer === "measured") return what;
  return `${what} It was not measured in this run: ${report.goPeer.unavailable}.`;
}

/**
 * The report as Markdown: targets first, then links to the charts written
 * with it (none: no section), then every table, then how it was measured.
 */
export function renderReport(report: Report, charts: readonly Chart[] = []): string {
  const get = summary(report, "Get|service");
  const getVsPeer = pairedRatio(report, "Get|service", "Get|grpc-js peer", "throughput");
  const cpuVsPeer = pairedRatio(report, "Get|service", "Get|grpc-js peer", "cpuMicrosPerCall");
  const upsertVsGet = pairedRatio(report, "Upsert|service", "Get|service", "throughput");
  const sameScripts = upsertVsGetElsewhere(report);
  const connectOnly = "service, connect-node only";
  const connectOnlyCpu = pairedRatio(
    report,
    `Get|${connectOnly}`,
    "Get|service",
    "cpuMicrosPerCall",
  );
  const connectOnlyGet = summary(report, `Get|${connectOnly}`);
  const securedCpu = pairedRatio(
    report,
    `Get|${AUTH_AND_RATE_LIMIT}`,
    "Get|service",
    "cpuMicrosPerCall",
  );
  const securedGet = summary(report, `Get|${AUTH_AND_RATE_LIMIT}`);
  const securedUpsertCpu = pairedRatio(
    report,
    `Upsert|${AUTH_AND_RATE_LIMIT}`,
    "Upsert|service",
    "cpuMicrosPerCall",
  );
  const tracingCpu = ["1%", "100%"].map((ratio) => {
    const name = `Get|service, tracing ${ratio}`;
    return {
      ratio,
      cpu: pairedRatio(report, name, "Get|service", "cpuMicrosPerCall"),
      get: summary(report, name),
    };
  });
  const peerGet = summary(report, "Get|grpc-js peer");
  const upsert = summary(report, "Upsert|service");
  const refresh = summary(report, "Refresh|service");
  const refreshVsUpsert = pairedRatio(report, "Refresh|service", "Upsert|service", "throughput");
  const [smallList, largeList] = [report.listScaling[0], report.listScaling.at(-1)];
  const memoryRows = report.memory.rows;
  /** Bytes per session of memory row `i` (bench/run.ts's measureMemory: their order). */
  const bytes = (i: number) => memoryRows[i]?.bytesPerSession ?? Number.NaN;
  const servicePerUser = bytes(0);
  const serviceOnePerUser = bytes(1);
  const seedMemory = memoryRows.at(-1)?.bytesPerSession ?? Number.NaN;
  const flat = (largeList?.serviceP50Ms ?? Number.NaN) / (smallList?.serviceP50Ms ?? Number.NaN);
  const probes = (name: string) => report.halfPeak.latency.get(name) ?? [];
  const p99Of = (name: string) => median(probes(name).map((p) => p.p99Ms));
  const p50Of = (name: string) => median(probes(name).map((p) => p.p50Ms));
  const sizes = report.listScaling.map((r) => r.others.toExponential(0).replace("e+", "×10^"));

  const clientKey = (name: string) => `client|${name}`;
  const sdkClientCpu = pairedRatio(
    report,
    clientKey(CLIENT_CPU_CLIENTS.sdk),
    clientKey(CLIENT_CPU_CLIENTS.grpcJs),
    "clientCpuMicrosPerCall",
  );
  const clientCpuOf = (name: string) =>
    median((report.results.get(clientKey(name)) ?? []).map((r) => r.clientCpuMicrosPerCall));

  const targets: [string, string, string, boolean | undefined][] = [
    [
      "Get throughput: service ÷ @grpc/grpc-js peer",
      "≥ 1.0×",
      `${times(getVsPeer)} (${int(get.throughput)} vs ${int(peerGet.throughput)} RPC/s)`,
      getVsPeer >= 1,
    ],
    [
      "Get server CPU per RPC: service ÷ peer",
      "≤ 1.0×",
      `${times(cpuVsPeer)} (${int(get.cpu)} vs ${int(peerGet.cpu)} µs)`,
      cpuVsPeer <= 1,
    ],
    [
      "Get server CPU per RPC: connect-node only (GRPC_FAST_PATH=false) ÷ service (why the fast path exists)",
      "≥ 1.0×",
      `${times(connectOnlyCpu)} (${int(connectOnlyGet.cpu)} vs ${int(get.cpu)} µs)`,
      connectOnlyCpu >= 1,
    ],
    [
      `Get server CPU per RPC: auth + rate limit (${report.security.tokensFileLines}-line tokens file, RATE_LIMIT=${report.security.rateLimit}) ÷ service (what the per-call security policies cost)`,
      "≤ 1.15×",
      `${times(securedCpu)} (${int(securedGet.cpu)} vs ${int(get.cpu)} µs; Upsert: ${times(securedUpsertCpu)})`,
      securedCpu <= 1.15,
    ],
    ...tracingCpu.map(({ ratio, cpu, get: traced }): [string, string, string, boolean] => [
      `Get server CPU per RPC: tracing on at ${ratio} sampling (OTLP/HTTP to a local receiver) ÷ service (tracing off)`,
      "report",
      `${times(cpu)} (${int(traced.cpu)} vs ${int(get.cpu)} µs)`,
      true,
    ]),
    ...goPeerTargets(report),
    [
      "Client CPU per Get: SDK (@sessionstore/client) ÷ @grpc/grpc-js client, both decoding with the generated schemas (§7)",
      "≤ 1.0×",
      `${times(sdkClientCpu)} (${clientCpuOf(CLIENT_CPU_CLIENTS.sdk).toFixed(1)} vs ${clientCpuOf(CLIENT_CPU_CLIENTS.grpcJs).toFixed(1)} µs)`,
      sdkClientCpu <= 1,
    ],
    ...protocolTargets(report),
    [
      "Upsert throughput ÷ Get throughput (service)",
      "≥ 0.9×",
      `${times(upsertVsGet)} (${int(upsert.throughput)} vs ${int(get.throughput)} RPC/s)${sameScripts && `; with the same scripts, ${sameScripts}`}`,
      upsertVsGet >= 0.9,
    ],
    [
      "Refresh throughput ÷ Upsert throughput (service): an atomic rotation against a plain write",
      "≥ 0.9×",
      `${times(refreshVsUpsert)} (${int(refresh.throughput)} vs ${int(upsert.throughput)} RPC/s)`,
      refreshVsUpsert >= 0.9,
    ],
    [
      `ListByUser with ${sizes.at(-1)} other sessions: SCAN reference ÷ service (p50)`,
      "≥ 1,000×",
      `${times(largeList?.ratio ?? Number.NaN)} (${int(largeList?.seedMedianMs ?? Number.NaN)} ms vs ${ms(largeList?.serviceP50Ms ?? Number.NaN)} ms)`,
      (largeList?.ratio ?? 0) >= 1000,
    ],
    [
      `ListByUser flat from ${sizes[0]} to ${sizes.at(-1)}: p50 ratio`,
      "≤ 1.25×",
      `${times(flat)} (${ms(smallList?.serviceP50Ms ?? Number.NaN)} → ${ms(largeList?.serviceP50Ms ?? Number.NaN)} ms)`,
      flat <= 1.25,
    ],
    [
      "Redis memory per session: service (5 sessions per user) ÷ seed layout",
      "≤ 1.3×",
      `${times(servicePerUser / seedMemory)} (${int(servicePerUser)} vs ${int(seedMemory)} bytes); the user's hash alone: ${times(bytes(6) / seedMemory)} (§4)`,
      servicePerUser <= 1.3 * seedMemory,
    ],
    [
      "Redis memory per session: service (1 session per user) ÷ seed layout",
      "≤ 1.4×",
      `${times(serviceOnePerUser / seedMemory)} (${int(serviceOnePerUser)} vs ${int(seedMemory)} bytes); the user's hash alone: ${times(bytes(7) / seedMemory)} (§4)`,
      serviceOnePerUser <= 1.4 * seedMemory,
    ],
    [
      `p99 Get latency at half of peak (${int(report.halfPeak.rate)} RPC/s, open loop)`,
      "≤ 2 ms",
      `${ms(p99Of("service"))} ms (bare node:http2 server, same load: ${ms(p99Of("bare node:http2"))} ms; see §2)`,
      p99Of("service") <= 2,
    ],
    [
      "p99 Get latency at half of peak: service ÷ bare node:http2 server under the same open-loop load",
      "≤ 1.5×",
      `${times(p99Of("service") / p99Of("bare node:http2"))} (${ms(p99Of("service"))} vs ${ms(p99Of("bare node:http2"))} ms; with the service's Get script per call the bare server shows ${ms(p99Of(BARE_WITH_REDIS))} ms)`,
      p99Of("service") <= 1.5 * p99Of("bare node:http2"),
    ],
    [
      "Server RSS under sustained gRPC load",
      "≤ 150 MB",
      `${mb(report.rss.serviceUnderLoad)} (with Connect and gRPC-Web clients too: ${mb(report.rss.serviceAllProtocols)})`,
      report.rss.serviceUnderLoad <= 150e6,
    ],
  ];

  const lines: string[] = [];
  lines.push("# SessionStore benchmark results", "");
  lines.push(
    `Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC with \`npm run bench${report.quick ? " -- --quick" : ""}\` (${(report.durationMs / 60_000).toFixed(1)} min). ` +
      "Every figure below comes from this one run; variants alternate round by round; each figure is the median of the rounds, and each " +
      "ratio the median of the ratios within a round (variants of a round run back to back). " +
      "The machine is shared and noisy: compare ratios within this file, not absolute numbers across runs.",
    "",
  );
  lines.push("## Targets", "", "| Target | Required | Measured | |", "| --- | --- | --- | --- |");
  for (const [name, required, measured, pass] of targets)
    lines.push(`| ${name} | ${required} | ${measured} | ${mark(pass)} |`);
  if (charts.length > 0) {
    lines.push("", "## Charts");
    for (const chart of charts) lines.push("", `![${chart.title}](${chart.path})`);
  }

  lines.push("", "## Machine and versions", "");
  const cpus = os.cpus();
  lines.push(
    `- ${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}`,
    `- Node ${process.version}, Redis ${report.redisVersion} (private redis-server started by the benchmark, no persistence)`,
    `- @connectrpc/connect-node ${packageVersion("@connectrpc/connect-node")}, @grpc/grpc-js ${packageVersion("@grpc/grpc-js")}, ioredis ${packageVersion("ioredis")}, @bufbuild/protobuf ${packageVersion("@bufbuild/protobuf")}`,
    `- Settings: ${JSON.stringify(report.settings)}`,
  );

  lines.push("", "## 1. Every RPC over gRPC: service, @grpc/grpc-js peer, direct ioredis", "");
  lines.push(
    "Closed loop, one @grpc/grpc-js client (pre-encoded requests, responses not decoded) on one HTTP/2 connection, " +
      `${report.settings.concurrency} calls in flight. *Server CPU* is the server process's own CPU time (all threads, /proc) per RPC; ` +
      "for direct ioredis, the work runs inside the load process and its CPU is that process's. *Redis CPU* is what the one " +
      "redis-server spent per call over the same measurement (INFO cpu, all its threads): the scripts' own cost. " +
      "*connect-node only* is the same service started with GRPC_FAST_PATH=false (Get and Upsert only): the same pipeline and handlers, " +
      "served by connect-node instead of the fast path. " +
      `*auth + rate limit* is the same service started with AUTH_TOKENS_FILE, a tokens file of ${report.security.tokensFileLines} callers ` +
      "(plain tokens and sha256: digests, some with rates of their own; bench/tokens-file.ts), and " +
      `RATE_LIMIT=${report.security.rateLimit} (Get and Upsert only): the load client sends \`authorization: Bearer <token>\` ` +
      "on every call as a write caller without a rate of its own, so every call hashes the token, compares it with every line's digest and " +
      "takes from its caller's token bucket, a bucket so large it never refuses. Every call of every variant must end OK " +
      "(the run stops at the first failed call, naming its status), and before measuring, the run checks that this service refuses a call " +
      "without a token and a second call from a 1/h caller, so it cannot quietly measure an open server. " +
      goPeerDescription(report) +
      ` *${BARE_WITH_REDIS}* (Get and Upsert only) is bench/bare-h2-server.ts answering every call with the service's own response ` +
      "once the service's script for the call (ioredis, default options, by EVALSHA, with the arguments the service passes; an Upsert's " +
      "data is the request's bytes, and before measuring the run checks that one Upsert through it stores a session and its event) " +
      "has come back: node:http2 and the Redis round trip, no codec, pipeline or checks, the floor of a Node server doing the service's work.",
    "",
    "| RPC | Variant | RPC/s | ÷ peer | p50 ms | p99 ms | CPU µs per call | Redis CPU µs per call |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const method of METHODS) {
    for (const variant of VARIANTS) {
      if (!report.results.has(`${method}|${variant}`)) continue;
      const s = summary(report, `${method}|${variant}`);
      const cpu = variant === "direct ioredis" ? `${int(s.cpu)} (in-process)` : int(s.cpu);
      const redisCpu = redisCpuOf(report, `${method}|${variant}`);
      lines.push(
        `| ${method} | ${variant} | ${int(s.throughput)} | ${times(pairedRatio(report, `${method}|${variant}`, `${method}|grpc-js peer`, "throughput"))} | ${ms(s.p50Ms)} | ${ms(s.p99Ms)} | ${cpu} | ${int(redisCpu)} |`,
      );
    }
  }

  lines.push("", "## 2. Get over each protocol of the one port", "");
  lines.push(
    "| Protocol (client) | RPC/s | p50 ms | p99 ms | server CPU µs/RPC |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const key of report.results.keys()) {
    if (!key.startsWith("protocol|")) continue;
    const s = summary(report, key);
    lines.push(
      `| ${key.slice("protocol|".length)} | ${int(s.throughput)} | ${ms(s.p50Ms)} | ${ms(s.p99Ms)} | ${int(s.cpu)} |`,
    );
  }
  const gc = report.halfPeak.gc;
  lines.push(
    "",
    `### Latency at half of the peak (${int(report.halfPeak.rate)} of ${int(report.halfPeak.peak)} gRPC Get RPC/s)`,
    "",
    "Open loop: a separate client process (a minimal gRPC client on node:http2, lighter than @grpc/grpc-js) starts calls on a fixed " +
      "schedule whatever the responses do; latency from each call's send to its trailers. The same load goes to the peer and to a " +
      "bare node:http2 server that answers every call with the same canned response after one event-loop turn (bench/bare-h2-server.ts): " +
      "Node's HTTP/2 stack, its garbage collector and this machine, with nothing of SessionStore; and to the same bare server " +
      "running the service's Get script (ioredis, default options) per call before it answers: the floor with the Redis round trip every Get makes.",
    "",
    "| Server | p50 ms | p99 ms | p99.9 ms | client send lag p99 ms |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const name of ["service", "grpc-js peer", "bare node:http2", BARE_WITH_REDIS]) {
    const lag = median(probes(name).map((p) => p.sendLagP99Ms));
    const p999 = median(probes(name).map((p) => p.p999Ms));
    lines.push(`| ${name} | ${ms(p50Of(name))} | ${ms(p99Of(name))} | ${ms(p999)} | ${ms(lag)} |`);
  }
  const floorGc = report.halfPeak.floorGc;
  lines.push(
    "",
    "The same probe once more on a service process and on a floor process started with `--trace-gc --trace-gc-nvp`, whose " +
      "line per collection gives its pause and the bytes allocated and promoted to V8's old generation since the one before:",
    "",
    "| Process | p99 ms | GC pauses | over 2 ms (mark-compacts) | longest ms | KB allocated per call | bytes promoted per call |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...[
      ["service", report.halfPeak.traced, gc] as const,
      [BARE_WITH_REDIS, report.halfPeak.tracedFloor, floorGc] as const,
    ].map(
      ([name, probe, trace]) =>
        `| ${name} | ${ms(probe.p99Ms)} | ${trace.count} | ${trace.over2ms} (${trace.over2msMarkCompacts} of ${trace.markCompacts}) | ` +
        `${ms(trace.maxMs)} | ${kb(trace.allocatedPerCall)} | ${int(trace.promotedPerCall)} |`,
    ),
  );

  lines.push("", "## 3. ListByUser while Redis holds other users' sessions", "");
  lines.push(
    "One user with 5 sessions; the same number of other sessions in the service's layout (database 0) and in the seed's layout " +
      "(database 1, `SESSION_STORE_.<user>.<session>` with SETEX). Service: 1000 sequential ListByUser RPCs over gRPC. " +
      "Seed reference (bench/seed-reference.ts): SCAN MATCH with the default COUNT over the keyspace, then MGET, as the original did.",
    "",
    "| Other sessions | service p50 ms | service p99 ms | SCAN reference ms | SCAN ÷ service |",
    "| ---: | ---: | ---: | ---: | ---: |",
  );
  for (const row of report.listScaling) {
    lines.push(
      `| ${int(row.others)} | ${row.serviceP50Ms.toFixed(3)} | ${row.serviceP99Ms.toFixed(3)} | ${int(row.seedMedianMs)} | ${times(row.ratio)} |`,
    );
  }

  lines.push("", "## 4. Redis memory per session", "");
  lines.push(
    `used_memory grown by ${int(report.memory.sessions)} sessions (${report.memory.sessionBytes} bytes of protobuf each: ids, timestamps, IP, a small JSON payload), ` +
      "each layout in a fresh redis-server.",
    "",
    "| Layout | bytes per session | ÷ seed |",
    "| --- | ---: | ---: |",
  );
  for (const row of memoryRows)
    lines.push(
      `| ${row.layout} | ${int(row.bytesPerSession)} | ${times(row.bytesPerSession / seedMemory)} |`,
    );

  lines.push("", "## 5. Server memory (RSS)", "");
  lines.push(
    "| Process | at rest (after start) | peak under gRPC load | peak with Connect and gRPC-Web clients |",
    "| --- | ---: | ---: | ---: |",
    `| service | ${mb(report.rss.serviceAtRest)} | ${mb(report.rss.serviceUnderLoad)} | ${mb(report.rss.serviceAllProtocols)} |`,
    `| @grpc/grpc-js peer | ${mb(report.rss.peerAtRest)} | ${mb(report.rss.peerUnderLoad)} | |`,
    "",
    "VmRSS sampled every 100 ms: through section 1 and a sustained closed-loop gRPC Get load at 64 in flight, then through section 2. " +
      "The service runs as `npm start` and the Docker image run it: the entry point's `#!` line sets `MALLOC_ARENA_MAX=2` and " +
      "`--max-semi-space-size=4 --heap-growing-percent=150` (the peer runs with Node's defaults). The peak is the node executable's own pages, the memory " +
      "Node's native side allocates (HTTP/2 sessions, sockets) and V8's heap, whose old generation fills with what the calls in " +
      "flight leave promoted (section 2's traced probes) until a mark-compact frees it: it grows with the rate of calls, so compare " +
      "it with section 1's throughput, not across runs.",
  );

  const ev = report.events;
  lines.push("", "## 6. Live session events", "");
  lines.push(
    `${ev.watchers} WatchUser streams on the service over gRPC (connect-es client), one user each, while Upserts to those users arrive ` +
      `at ${int(ev.writesPerSecond)} a second (open loop) from another connection: for each write, the time from its response ` +
      "(the write acknowledged) to its UPSERTED event reaching the watcher. Negative: the event came first.",
    "",
    "| Writes | Events received | p50 ms | p99 ms | max ms |",
    "| ---: | ---: | ---: | ---: | ---: |",
    `| ${int(ev.writes)} | ${int(ev.received)} | ${ms(ev.p50Ms)} | ${ms(ev.p99Ms)} | ${ms(ev.maxMs)} |`,
  );

  lines.push("", "## 7. Client CPU per call", "");
  lines.push(
    `The same Get, closed loop at ${report.settings.concurrency} in flight on one HTTP/2 connection, from three client stacks in the ` +
      "benchmark's own process against the service: *client CPU* is that process's CPU time (process.cpuUsage(), all threads) per call. " +
      "The @grpc/grpc-js client calls `makeUnaryRequest` with the generated schemas' `toBinary` and `fromBinary` as its serializer " +
      "and deserializer, so it encodes requests and decodes responses as the other two do: the comparison is of the client stacks " +
      "alone. @sessionstore/client is `createSessionStoreClient` (its own gRPC unary transport on node:http2, " +
      "clients/typescript/src/grpc-unary-transport.ts); the connect-es client is `createClient` over connect-node's " +
      "`createGrpcTransport`, what the SDK used before.",
    "",
    "| Client | RPC/s | client CPU µs per call | ÷ @grpc/grpc-js | server CPU µs per call |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const name of Object.values(CLIENT_CPU_CLIENTS)) {
    const s = summary(report, clientKey(name));
    const ratio = pairedRatio(
      report,
      clientKey(name),
      clientKey(CLIENT_CPU_CLIENTS.grpcJs),
      "clientCpuMicrosPerCall",
    );
    lines.push(
      `| ${name} | ${int(s.throughput)} | ${clientCpuOf(name).toFixed(1)} | ${times(ratio)} | ${int(s.cpu)} |`,
    );
  }

  lines.push(...heavyUserSection(report.heavyUser, report.quick));

  lines.push("", "## Notes", "");
  const p99Service = p99Of("service");
  const p99Bare = p99Of("bare node:http2");
  const eachProbe = (name: string) =>
    probes(name)
      .map((p) => ms(p.p99Ms))
      .join(", ");
  lines.push(
    `- **p99 at half of the peak.** A bare node:http2 server with no framework, store or codec shows p99 ${ms(p99Bare)} ms ` +
      `under the same open-loop load, against ${ms(p99Service)} ms for the service (p50 ${ms(p50Of("bare node:http2"))} vs ` +
      `${ms(p50Of("service"))} ms); probe by probe, the service's p99 was ${eachProbe("service")} ms and the bare server's ` +
      `${eachProbe("bare node:http2")} ms, so one run's ratio moves with the machine. The load client itself starts its calls up to ` +
      `${ms(median(probes("service").map((p) => p.sendLagP99Ms)))} ms late at p99: Redis, the server and the client share two vCPUs, ` +
      "and every process waits for a core now and then. What the service adds to the bare server is the Redis round trip and its " +
      `garbage: through the traced probes (section 2), a Get allocated ${kb(gc.allocatedPerCall)} KB in the service and promoted ` +
      `${int(gc.promotedPerCall)} bytes to the old generation, against ${kb(floorGc.allocatedPerCall)} KB and ` +
      `${int(floorGc.promotedPerCall)} bytes in the floor doing the same Redis work; the service paused ${gc.count} times ` +
      `(${gc.over2ms} over 2 ms, ${gc.markCompacts} mark-compacts, the longest ${ms(gc.maxMs)} ms; that probe's p99 ` +
      `${ms(report.halfPeak.traced.p99Ms)} ms), the floor ${floorGc.count} times (${floorGc.over2ms} over 2 ms, ` +
      `${floorGc.markCompacts} mark-compacts, the longest ${ms(floorGc.maxMs)} ms). What is promoted fills the old generation ` +
      "until a mark-compact frees it." +
      (p99Service > 2
        ? " On this machine 2 ms is below what Node's HTTP/2 stack itself delivers under this load; measuring it needs the " +
          "load generator on other cores."
        : ""),
  );
  lines.push(
    "- **Why the gRPC path is fast.** With connect-node's defaults the service spent about 285 µs of CPU per Get against 85 µs for " +
      "the peer (0.46× its throughput, measured during development). CPU profiles (`node --cpu-prof`) put most of it in connect's " +
      "per-call plumbing: async-iterable stream helpers, web `Headers`, an AbortController and a DOMException per request, and the " +
      "garbage they leave. The service now serves unary calls over HTTP/2 in gRPC, gRPC-Web (binary) and Connect (binary and JSON) " +
      "on a small handler written against node:http2 streams (src/transport/unary-fast-path.ts), answering byte for byte as " +
      "connect-node does, and leaves compressed requests, gRPC-Web text, Connect GET, streams and HTTP/1.1 to connect-node on the " +
      "same port; session responses are spliced from the stored protobuf bytes instead of decoded and encoded again. Section 2 " +
      "shows what each protocol costs.",
    ...againstGo(report),
    "- **What auth and the rate limit cost.** Per call, the auth policy reads the `authorization` header, hashes the token " +
      "with SHA-256 and compares the digest with every line's in constant time (no early exit, so the time says nothing about " +
      "which token matched); the rate limit updates one token bucket in a Map. In isolation that is about 1.5 µs per call for a " +
      `10-line file (measured during development), against ${int(get.cpu)} µs of server CPU for a whole Get here, so the target ` +
      "allows 15%: a margin for the round-to-round noise of this machine, while work that does not belong in a per-call policy " +
      "(re-reading the file, a log line per call, hashing every line's token again) would show well above it. The cost grows " +
      "with the number of token lines, by one constant-time compare each.",
    "- **Upsert against Get.** An Upsert's script costs Redis " +
      `${int(redisCpuOf(report, "Upsert|service"))} µs of CPU against ${int(redisCpuOf(report, "Get|service"))} µs for a Get's (§1): ` +
      "it reads the record, prunes expired sessions, writes the record and the by-expiry index, moves the user's keys' expiry and " +
      "appends to the event log, trimming it at EVENT_RETENTION_COUNT (about 16 Redis commands for an update, where a Get's script runs two), " +
      "and the request carries the whole session, which the server decodes to check it. " +
      (sameScripts &&
        `Servers doing the same Redis work with little else of their own: ${sameScripts} (Upsert ÷ Get throughput). `) +
      "The service stores the session's bytes as the client encoded them rather than encoding the decoded message again.",
    "- **Memory per session** depends on how many sessions a user has. A user's sessions live in four keys (a hash of records, " +
      "two sorted sets of their ids, by expiry and by id for paging, and the event log), and each key costs Redis its name, a " +
      "dictionary entry and an expiry entry, spread over the user's sessions: the 1-session rows pay them whole. A record (the " +
      "session and its metadata, about 260 bytes) is over Redis's `hash-max-listpack-value` (64 bytes by default), so every " +
      "user's hash is a full hash table rather than a compact listpack. The event log costs " +
      `${int(bytes(1) - bytes(3))} bytes per session at one session per user and ${int(bytes(0) - bytes(2))} ` +
      `at five (the rows with events off). With \`hash-max-listpack-value ${TUNED_LISTPACK_VALUE}\` in Redis's configuration (docs/scaling.md), ` +
      `the same layouts take ${int(bytes(4))} and ${int(bytes(5))} bytes per session ` +
      `(${times(bytes(4) / seedMemory)} and ${times(bytes(5) / seedMemory)} the seed's). ` +
      "The floor of any layout that keeps a user's sessions in one hash (so that DeleteByUser makes them all unreadable at once) " +
      `is that hash alone: ${int(bytes(6))} and ${int(bytes(7))} bytes per session at five and one per user ` +
      `(${times(bytes(6) / seedMemory)} and ${times(bytes(7) / seedMemory)} the seed's), before any index or event log. ` +
      "The two sorted sets are what keeps every call's Redis work bounded for users with many sessions (pages in O(log n + page), " +
      "pruning and eviction by expiry); the event log is a list because a Redis stream takes about 4 KB from its first entry.",
  );
  return lines.join("\n");
}

const power = (n: number) => `10^${Math.round(Math.log10(n))}`;

/** The heavy-user section: the heavy user's calls, other users' Get beside them, Redis's own times. */
function heavyUserSection(h: HeavyUserFigures, quick: boolean): string[] {
  const scripts = h.redis.during.byCommand.filter((c) => c.script);
  const others = h.redis.during.byCommand.filter((c) => !c.script);
  const windows = [
    ["alone, before", "before"],
    ["during the heavy user's calls", "during"],
    ["alone, after", "after"],
  ] as const;
  const longest = (window: keyof Windows<unknown>) => {
    const entry = h.redis[window].longest;
    return entry ? `${int(entry.micros)} (\`${entry.command}\`)` : "none";
  };
  const lines = [
    "",
    `## 8. Heavy user (${power(h.sessions)} sessions)`,
    "",
    `One user holds ${int(h.sessions)} sessions${quick ? " (--quick; 10^5 in the full run)" : ""}, ` +
      `${int(h.otherUsers)} other users ${h.sessionsPerOtherUser} each (seeded through the store in ${int(h.seedMs)} ms). ` +
      "The service runs as its own process against a private redis-server whose SLOWLOG times every command Redis runs " +
      "(`slowlog-log-slower-than 0` once seeded; a script's entry is the whole script) and holds this section's commands only. " +
      `A separate client process sends another user's Get at ${int(h.getRate)} a second, open loop, in three windows of ${int(h.windowMs)} ms: ` +
      "alone, then while this process calls the heavy user over gRPC one call at a time, then alone again. The heavy user's calls: " +
      `its pages of ${h.pageSize} (the first, the middle and the last by page token, and page after page through the user, ` +
      "starting again after the last), a Get, Upsert (update and insert), Touch and Delete of its sessions, and a page of a light " +
      `user beside them, for ${int(h.busyMs)} ms; then DeleteByUser, which deletes all its sessions but one. Latencies are the ` +
      "client's, from call to response. The machine is shared: the two windows alone show how far it moves the figures by " +
      "itself. SLOWLOG's durations are wall time in Redis's main thread: when the machine is busy they include the odd wait " +
      "for a core, even in a one-line script.",
    "",
    "| Call (on the heavy user unless named) | calls | p50 ms | p99 ms | max ms |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...h.calls.map(
      (c) => `| ${c.name} | ${int(c.calls)} | ${ms(c.p50Ms)} | ${ms(c.p99Ms)} | ${ms(c.maxMs)} |`,
    ),
    "",
    `DeleteByUser, keeping one session (the caller's own), deleted ${int(h.deleteByUser.deleted)} sessions in ${ms(h.deleteByUser.ms)} ms: ` +
      `${h.deleteByUser.scripts} script run${h.deleteByUser.scripts === 1 ? "" : "s"}, ${int(h.deleteByUser.longestMicros)} µs of Redis time ` +
      "(it UNLINKs the user's keys; Redis frees them in a background thread).",
    "",
    `| Another user's Get, ${int(h.getRate)}/s | calls | p50 ms | p99 ms | p99.9 ms | max ms | longest Redis command, µs |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...windows.map(([name, window]) => {
      const p = h.others[window];
      return `| ${name} | ${int(p.calls)} | ${ms(p.p50Ms)} | ${ms(p.p99Ms)} | ${ms(p.p999Ms)} | ${ms(p.maxMs)} | ${longest(window)} |`;
    }),
    "",
    "Redis's time per script during the heavy user's calls (SLOWLOG; the store's scripts by name; `sessionGet` includes the other user's Gets):",
    "",
    "| Script | runs | p50 µs | p99 µs | max µs |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...scripts.map(
      (c) =>
        `| \`${c.command}\` | ${int(c.count)} | ${int(c.p50Micros)} | ${int(c.p99Micros)} | ${int(c.maxMicros)} |`,
    ),
  ];
  const [slowestOther] = others;
  if (slowestOther)
    lines.push(
      "",
      `SLOWLOG also logged ${int(others.reduce((n, c) => n + c.count, 0))} other commands, each within a script's time ` +
        "(this Redis logs the commands a script calls as entries of their own) or the service's own (PING): " +
        `the longest took ${int(slowestOther.maxMicros)} µs (\`${slowestOther.command}\`).`,
    );
  return lines;
}
