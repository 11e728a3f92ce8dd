import { describe, expect, it } from "vitest";
import { type Chart, renderCharts } from "../../bench/charts.js";
import type { LatencyProbe } from "../../bench/load.js";
import { type Report, renderReport } from "../../bench/report.js";

/** A variant name with every character XML must escape. */
const AWKWARD = `x <y> & "z" 'w'`;

interface Figures {
  readonly throughput: number;
  readonly cpu: number;
}

/** A report of the given results (one round each unless given more) and latency percentiles. */
function syntheticReport({
  quick = false,
  results,
  latency = {},
}: {
  quick?: boolean;
  results: Readonly<Record<string, Figures | readonly Figures[]>>;
  latency?: Readonly<Record<string, Readonly<Record<number, number>>>>;
}): Report {
  const probe = (percentiles: Readonly<Record<number, number>>): LatencyProbe => ({
    calls: 10_000,
    errors: 0,
    throughput: 2000,
    p50Ms: percentiles[50] ?? 1,
    p99Ms: percentiles[99] ?? 2,
    p999Ms: percentiles[99.9] ?? 3,
    sendLagP99Ms: 0.1,
    maxMs: percentiles[99.99] ?? 4,
    percentiles: Object.entries(percentiles)
      .map(([p, ms]) => ({ percentile: Number(p), ms }))
      .sort((a, b) => a.percentile - b.percentile),
  });
  const gcTrace = {
    count: 10,
    over2ms: 1,
    markCompacts: 2,
    over2msMarkCompacts: 0,
    maxMs: 2.5,
    allocatedPerCall: 20_000,
    promotedPerCall: 500,
  };
  return {
    quick,
    settings: { rounds: 1, concurrency: 32 },
    redisVersion: "7.0.0",
    durationMs: 60_000,
    results: new Map(
      Object.entries(results).map(([key, figures]) => [
        key,
        [figures].flat().map((f) => ({
          calls: 1000,
          errors: 0,
          failures: {},
          elapsedMs: 1000,
          throughput: f.throughput,
          p50Ms: 1,
          p99Ms: 2,
          cpuMicrosPerCall: f.cpu,
          clientCpuMicrosPerCall: 0,
        })),
      ]),
    ),
    halfPeak: {
      rate: 4000,
      peak: 8000,
      latency: new Map(Object.entries(latency).map(([name, p]) => [name, [probe(p)]])),
      traced: probe({ 50: 1, 99: 2 }),
      gc: gcTrace,
      tracedFloor: probe({ 50: 1, 99: 1.5 }),
      floorGc: gcTrace,
    },
    events: {
      watchers: 10,
      writesPerSecond: 100,
      writes: 500,
      received: 500,
      p50Ms: 0.5,
      p99Ms: 1,
      maxMs: 2,
    },
    rss: {
      serviceAtRest: 50e6,
      serviceUnderLoad: 100e6,
      serviceAllProtocols: 110e6,
      peerAtRest: 40e6,
      peerUnderLoad: 90e6,
    },
    listScaling: [
      { others: 1000, serviceP50Ms: 0.5, serviceP99Ms: 1, seedMedianMs: 50, ratio: 100 },
    ],
    memory: { sessions: 1000, sessionBytes: 200, rows: [{ layout: "seed", bytesPerSession: 400 }] },
    tracingExports: 1,
    security: { tokensFileLines: 10, rateLimit: "1000000/s" },
    heavyUser: {
      sessions: 1000,
      otherUsers: 10,
      sessionsPerOtherUser: 5,
      pageSize: 100,
      seedMs: 100,
      getRate: 300,
      windowMs: 1000,
      busyMs: 900,
      calls: [],
      deleteByUser: { ms: 5, deleted: 999, scripts: 1, longestMicros: 100 },
      others: { before: probe({}), during: probe({}), after: probe({}) },
      redis: {
        before: { entries: 0, longest: undefined, byCommand: [] },
        during: { entries: 0, longest: undefined, byCommand: [] },
        after: { entries: 0, longest: undefined, byCommand: [] },
      },
      durationMs: 2000,
    },
    goPeer: "measured",
  };
}

/** A parsed XML element. */
interface XmlElement {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly children: XmlElement[];
  /** Its own character data, unescaped (not its children's). */
  text: string;
}

const ENTITIES: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};
const unescapeXml = (s: string) => s.replace(/&(\w+);/g, (_, name: string) => ENTITIES[name] ?? "");
/** Character data or an attribute value: no "<", and "&" only as one of XML's five entities. */
const CHARACTER_DATA = /^(?:[^<&]|&(?:amp|lt|gt|quot|apos);)*$/;
const TAG = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>/y;
const ATTRIBUTE = /([\w:-]+)="([^"]*)"/g;

/**
 * A strict parser for the XML the charts write (no prolog, comments or
 * CDATA): throws on an unbalanced or unclosed tag, a second root, an
 * attribute given twice or unquoted, or a bare "<" or "&".
 */
function parseXml(xml: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let at = 0;
  while (at < xml.length) {
    const next = xml.indexOf("<", at);
    const text = xml.slice(at, next === -1 ? xml.length : next);
    if (!CHARACTER_DATA.test(text)) throw new Error(`bad character data at ${at}: ${text}`);
    const parent = stack.at(-1);
    if (parent) parent.text += unescapeXml(text);
    else if (text.trim() !== "") throw new Error(`text outside the root element at ${at}`);
    if (next === -1) break;
    TAG.lastIndex = next;
    const tag = TAG.exec(xml);
    if (!tag) throw new Error(`malformed tag at ${next}: ${xml.slice(next, next + 40)}`);
    const [whole, closing, name = "", attributeText = "", selfClosing] = tag;
    if (closing) {
      if (stack.pop()?.name !== name) throw new Error(`unbalanced </${name}> at ${next}`);
    } else {
      if (!parent && root) throw new Error(`a second root element <${name}>`);
      const attributes: Record<string, string> = {};
      for (const [, key = "", value = ""] of attributeText.matchAll(ATTRIBUTE)) {
        if (key in attributes) throw new Error(`attribute ${key} twice on <${name}>`);
        if (!CHARACTER_DATA.test(value)) throw new Error(`bad attribute ${key} on <${name}>`);
        attributes[key] = unescapeXml(value);
      }
      const element: XmlElement = { name, attributes, children: [], text: "" };
      if (parent) parent.children.push(element);
      else root = element;
      if (!selfClosing) stack.push(element);
    }
    at = next + whole.length;
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.at(-1)?.name}>`);
  if (!root) throw new Error("no root element");
  return root;
}

function descendants(element: XmlElement): XmlElement[] {
  return element.children.flatMap((child) => [child, ...descendants(child)]);
}

const byClass = (svg: XmlElement, name: string) =>
  descendants(svg).filter((e) => e.attributes.class === name);
/** The text of a bar's or point's <title>: "<group>, <series>: <value>". */
const tooltip = (e: XmlElement) => e.children.find((c) => c.name === "title")?.text ?? "";
const texts = (svg: XmlElement) =>
  descendants(svg)
    .filter((e) => e.name === "text")
    .map((e) => e.text);
const width = (bar: XmlElement) => Number(bar.attributes.width);

function chart(charts: readonly Chart[], path: string): XmlElement {
  const found = charts.find((c) => c.path === path);
  if (!found) throw new Error(`no chart ${path} among ${charts.map((c) => c.path).join(", ")}`);
  return parseXml(found.svg);
}

/** The bar whose tooltip starts with "<group>, <series>:". */
function bar(svg: XmlElement, group: string, series: string): XmlElement {
  const found = byClass(svg, "bar").find((b) => tooltip(b).startsWith(`${group}, ${series}:`));
  if (!found) throw new Error(`no bar for ${group}, ${series}`);
  return found;
}

const FULL = syntheticReport({
  results: {
    "Get|direct ioredis": { throughput: 40_000, cpu: 10 },
    "Get|grpc-js peer": { throughput: 5000, cpu: 80 },
    "Get|service": [
      { throughput: 9000, cpu: 30 },
      { throughput: 10_000, cpu: 40 },
      { throughput: 11_000, cpu: 99 },
    ],
    "Get|service, tracing 1%": { throughput: 9000, cpu: 44 },
    "Upsert|service": { throughput: 8000, cpu: 50 },
    "Upsert|grpc-js peer": { throughput: 4000, cpu: 100 },
    "Upsert|direct ioredis": { throughput: 20_000, cpu: 20 },
    "protocol|gRPC (@grpc/grpc-js client)": { throughput: 9000, cpu: 50 },
    "protocol|gRPC-Web (connect-es client)": { throughput: 2000, cpu: 300 },
    // Section 7's client stacks: no chart draws them as an RPC of section 1.
    "client|@sessionstore/client": { throughput: 3000, cpu: 45 },
  },
  latency: {
    service: { 50: 1, 90: 2, 99: 10, 99.9: 20, 99.99: 100 },
    "grpc-js peer": { 50: 1.5, 90: 3, 99: 12, 99.9: 30, 99.99: 60 },
    "bare node:http2": { 50: 0.5, 90: 1, 99: 5, 99.9: 8, 99.99: 9 },
  },
});

describe("renderCharts", () => {
  it("draws four well-formed SVGs, each with a title, a white background, a size, a viewBox and a legend", () => {
    const charts = renderCharts(FULL);
    expect(charts.map((c) => c.path)).toEqual([
      "charts/throughput.svg",
      "charts/cpu-per-call.svg",
      "charts/protocol-cpu.svg",
      "charts/latency-half-peak.svg",
    ]);
    for (const { svg, title } of charts) {
      const root = parseXml(svg);
      expect(root.name).toBe("svg");
      const { width, height, viewBox, xmlns } = root.attributes;
      expect(xmlns).toBe("http://www.w3.org/2000/svg");
      expect(viewBox).toBe(`0 0 ${width} ${height}`);
      expect(Number(width)).toBeGreaterThan(0);
      expect(Number(height)).toBeGreaterThan(0);
      expect(root.children[0]).toMatchObject({ name: "title", text: title });
      // The first thing drawn covers the whole image in white.
      expect(root.children[1]?.attributes).toMatchObject({ width, height, fill: "#ffffff" });
      expect(root.attributes["font-family"]).toMatch(/system-ui/);
      expect(texts(root)).toContain(title);
    }
  });

  it("draws one bar per measured RPC and variant, as long as its median, in a legend of the variants measured", () => {
    const svg = chart(renderCharts(FULL), "charts/throughput.svg");
    expect(byClass(svg, "bar")).toHaveLength(7);
    // Only Get was measured with tracing on.
    expect(byClass(svg, "bar").filter((b) => tooltip(b).includes("tracing"))).toHaveLength(1);
    const service = width(bar(svg, "Get", "service"));
    // The median of 9,000, 10,000 and 11,000: twice the peer's 5,000, a quarter of 40,000.
    expect(service).toBeCloseTo(2 * width(bar(svg, "Get", "grpc-js peer")), 0);
    expect(width(bar(svg, "Get", "direct ioredis"))).toBeCloseTo(4 * service, 0);
    expect(width(bar(svg, "Upsert", "service"))).toBeCloseTo(0.8 * service, 0);
    expect(texts(svg)).toEqual(expect.arrayContaining(["10,000", "5,000", "40,000"]));
    expect(texts(svg)).toEqual(
      expect.arrayContaining(["service", "service, tracing 1%", "grpc-js peer", "direct ioredis"]),
    );
    expect(texts(svg).some((t) => /RPC\/s/.test(t))).toBe(true);
  });

  it("draws nothing for a variant the report does not hold, and places one it does by preference", () => {
    const without = renderCharts(FULL).map((c) => c.svg);
    for (const svg of without) expect(svg).not.toContain("Go peer");

    const withGo = syntheticReport({
      results: {
        "Get|direct ioredis": { throughput: 40_000, cpu: 10 },
        "Get|Go peer (grpc-go)": { throughput: 12_000, cpu: 25 },
        "Get|grpc-js peer": { throughput: 5000, cpu: 80 },
        "Get|service": { throughput: 10_000, cpu: 40 },
      },
    });
    const svg = chart(renderCharts(withGo), "charts/throughput.svg");
    const order = byClass(svg, "bar").map((b) => tooltip(b).split(":")[0]);
    expect(order).toEqual([
      "Get, service",
      "Get, grpc-js peer",
      "Get, Go peer (grpc-go)",
      "Get, direct ioredis",
    ]);
    const colours = byClass(svg, "bar").map((b) => b.attributes.fill);
    expect(new Set(colours).size).toBe(4);
    expect(width(bar(svg, "Get", "Go peer (grpc-go)"))).toBeCloseTo(
      1.2 * width(bar(svg, "Get", "service")),
      0,
    );
  });

  it("labels direct ioredis's CPU as in-process, and draws CPU per call to scale", () => {
    const svg = chart(renderCharts(FULL), "charts/cpu-per-call.svg");
    expect(byClass(svg, "bar")).toHaveLength(7);
    expect(texts(svg)).toContain("direct ioredis (in-process CPU)");
    expect(texts(svg)).toContain("10 µs (in-process)");
    expect(texts(svg)).toContain("40 µs");
    expect(width(bar(svg, "Get", "grpc-js peer"))).toBeCloseTo(
      2 * width(bar(svg, "Get", "service")),
      0,
    );
    expect(texts(svg).some((t) => t.includes("(µs)"))).toBe(true);
  });

  it("draws server CPU per protocol as one bar per protocol", () => {
    const svg = chart(renderCharts(FULL), "charts/protocol-cpu.svg");
    const bars = byClass(svg, "bar");
    expect(bars.map((b) => tooltip(b).split(",")[0])).toEqual([
      "gRPC (@grpc/grpc-js client)",
      "gRPC-Web (connect-es client)",
    ]);
    expect(width(bars[1] as XmlElement)).toBeCloseTo(6 * width(bars[0] as XmlElement), 0);
    expect(texts(svg)).toEqual(expect.arrayContaining(["50 µs", "300 µs"]));
  });

  it("draws latency as one line per server, percentiles spaced by their nines, milliseconds on a log scale", () => {
    const svg = chart(renderCharts(FULL), "charts/latency-half-peak.svg");
    const lines = byClass(svg, "line");
    expect(lines).toHaveLength(3);
    expect(texts(svg)).toEqual(
      expect.arrayContaining(["service", "grpc-js peer", "bare node:http2", "p50", "p99.99"]),
    );
    type Point = [x: number, y: number];
    const service = (lines[0]?.attributes.points ?? "")
      .split(" ")
      .map((p) => p.split(",").map(Number) as Point);
    expect(service).toHaveLength(5);
    const [p50, p90, p99, p999, p9999] = service as [Point, Point, Point, Point, Point];
    // p90, p99, p99.9 and p99.99 equally far apart; p50 nearer p90 than that.
    expect(p99[0] - p90[0]).toBeCloseTo(p999[0] - p99[0], 0);
    expect(p9999[0] - p999[0]).toBeCloseTo(p999[0] - p99[0], 0);
    expect(p90[0] - p50[0]).toBeLessThan(p99[0] - p90[0]);
    // 1, 10 and 100 ms: equal steps up the log scale (SVG's y grows downwards).
    expect(p50[1] - p99[1]).toBeCloseTo(p99[1] - p9999[1], 0);
    expect(p99[1]).toBeLessThan(p50[1]);
  });

  it("escapes every piece of text", () => {
    const report = syntheticReport({
      results: {
        [`Get|${AWKWARD}`]: { throughput: 1000, cpu: 10 },
        "Get|service": { throughput: 2000, cpu: 20 },
        [`protocol|${AWKWARD}`]: { throughput: 1000, cpu: 10 },
      },
      latency: { [AWKWARD]: { 50: 1, 99: 2 } },
    });
    const charts = renderCharts(report);
    expect(charts).toHaveLength(4);
    for (const { svg } of charts) {
      expect(svg).toContain("x &lt;y&gt; &amp; &quot;z&quot; &apos;w&apos;");
      expect(svg).not.toContain(AWKWARD);
      const root = parseXml(svg);
      expect([...texts(root), ...descendants(root).map(tooltip)].join("\n")).toContain(AWKWARD);
    }
  });

  it("draws none for a quick run, which writes no files", () => {
    expect(renderCharts({ ...FULL, quick: true })).toEqual([]);
  });
});

describe("renderReport", () => {
  it("links each chart of a full run, relative to RESULTS.md, near the top", () => {
    const charts = renderCharts(FULL);
    const markdown = renderReport(FULL, charts);
    for (const chart of charts) expect(markdown).toContain(`![${chart.title}](${chart.path})\n`);
    const section = markdown.indexOf("## Charts");
    expect(section).toBeGreaterThan(markdown.indexOf("## Targets"));
    expect(section).toBeLessThan(markdown.indexOf("## 1."));
  });

  it("links none for a quick run", () => {
    const quick = { ...FULL, quick: true };
    const markdown = renderReport(quick, renderCharts(quick));
    expect(markdown).not.toContain("## Charts");
    expect(markdown).not.toContain(".svg");
  });
});
