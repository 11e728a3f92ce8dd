/**
 * The benchmark's figures as SVG charts, drawn by hand: a few rectangles,
 * lines and labels need no charting library and no browser. Pure
 * functions from a Report to files' names and contents; bench/run.ts
 * writes them next to RESULTS.md, which links them.
 *
 * Every chart has a white background of its own (GitHub's dark mode shows
 * an image's transparent parts dark), explicit width and height besides
 * its viewBox, and the system font; every piece of text is XML-escaped,
 * since variant names carry "&", "<" and quotes.
 */
import { int, type Report, summary } from "./report.js";
import { median } from "./stats.js";

/** One chart: where it goes, its title (the link's alt text) and its SVG. */
export interface Chart {
  /** Relative to RESULTS.md's directory, as RESULTS.md links it: "charts/<name>.svg". */
  readonly path: string;
  readonly title: string;
  readonly svg: string;
}

/**
 * The charts of a full run: throughput and CPU per call per RPC and
 * variant, server CPU per protocol, and the latency distribution at half
 * of the peak. A quick run's figures are too rough to publish and it
 * writes no files, so it gets none. Each chart shows what the report
 * holds: a variant or server it did not measure draws nothing.
 */
export function renderCharts(report: Report): Chart[] {
  if (report.quick) return [];
  const charts: Chart[] = [];
  const perVariant = variantResults(report);
  if (perVariant.length > 0) {
    const variants = ordered(unique(perVariant.map((r) => r.variant)));
    const rounds = Math.max(...perVariant.map((r) => r.rounds));
    const direct = variants.some((v) => v.name === DIRECT);
    const groups = (value: (r: VariantResult) => number, text: (r: VariantResult) => string) =>
      unique(perVariant.map((r) => r.method)).map((method) => ({
        label: method,
        bars: variants.flatMap((series) => {
          const r = perVariant.find((x) => x.method === method && x.variant === series.name);
          return r ? [{ series, value: value(r), text: text(r) }] : [];
        }),
      }));
    charts.push({
      path: "charts/throughput.svg",
      title: "Throughput per RPC and variant",
      svg: barChart({
        title: "Throughput per RPC and variant",
        subtitle: `Closed loop over gRPC${direct ? " (direct ioredis: in-process calls)" : ""}; ${medianOf(rounds)}. Higher is better.`,
        axisLabel: "Calls per second (RPC/s)",
        legend: variants,
        groups: groups(
          (r) => r.throughput,
          (r) => int(r.throughput),
        ),
      }),
    });
    charts.push({
      path: "charts/cpu-per-call.svg",
      title: "CPU per call per RPC and variant",
      svg: barChart({
        title: "CPU per call per RPC and variant",
        subtitle: `CPU time of the server process (all threads) per call${direct ? "; direct ioredis: the load process's own" : ""}; ${medianOf(rounds)}. Lower is better.`,
        axisLabel: "CPU time per call (µs)",
        legend: variants.map((series) =>
          series.name === DIRECT ? { ...series, label: `${DIRECT} (in-process CPU)` } : series,
        ),
        groups: groups(
          (r) => r.cpu,
          (r) => `${int(r.cpu)} µs${r.variant === DIRECT ? " (in-process)" : ""}`,
        ),
      }),
    });
  }
  const protocols = protocolResults(report);
  if (protocols.length > 0) {
    const series = { name: "service", label: "service, server CPU per Get", colour: COLOURS[0] };
    const rounds = Math.max(...protocols.map((r) => r.rounds));
    charts.push({
      path: "charts/protocol-cpu.svg",
      title: "Server CPU per Get, by protocol",
      svg: barChart({
        title: "Server CPU per Get, by protocol",
        subtitle: `The same Get over each protocol and client the one port serves; ${medianOf(rounds)}. Lower is better.`,
        axisLabel: "Server CPU time per call (µs)",
        legend: [series],
        groups: protocols.map((r) => ({
          label: r.protocol,
          bars: [{ series, value: r.cpu, text: `${int(r.cpu)} µs` }],
        })),
      }),
    });
  }
  const latency = latencyLines(report);
  if (latency.length > 0) {
    const rounds = Math.max(...latency.map((l) => l.rounds));
    const { rate, peak } = report.halfPeak;
    charts.push({
      path: "charts/latency-half-peak.svg",
      title: "Get latency at half of the peak",
      svg: percentileChart({
        title: "Get latency at half of the peak",
        subtitle: `Open loop at ${int(rate)} of ${int(peak)} Get RPC/s from a separate client process; each point the ${medianOf(rounds)}. Lower is better.`,
        lines: latency,
      }),
    });
  }
  return charts;
}

const DIRECT = "direct ioredis";

const medianOf = (rounds: number) => `median of ${rounds} ${rounds === 1 ? "round" : "rounds"}`;

/** Okabe and Ito's colour-blind safe palette, darkened where it is too pale on white. */
const COLOURS = [
  "#0072B2",
  "#E69F00",
  "#009E73",
  "#D55E00",
  "#56B4E9",
  "#CC79A7",
  "#9A8700",
  "#555555",
  "#8C564B",
  "#17BECF",
] as const;

/**
 * The order and colour a variant or server is drawn in, when present:
 * the service and its variants, then the peers, then the references.
 * Names not listed follow in the order the report measured them.
 */
const PREFERENCE: readonly { matches(name: string): boolean; colour: string }[] = [
  { matches: (n) => n === "service", colour: "#0072B2" },
  { matches: (n) => n === "service, connect-node only", colour: "#56B4E9" },
  { matches: (n) => n === "service, auth + rate limit", colour: "#009E73" },
  { matches: (n) => n === "service, tracing 1%", colour: "#9A8700" },
  { matches: (n) => n === "service, tracing 100%", colour: "#CC79A7" },
  { matches: (n) => n === "grpc-js peer", colour: "#E69F00" },
  { matches: (n) => n.startsWith("Go peer"), colour: "#D55E00" },
  { matches: (n) => n === DIRECT, colour: "#555555" },
  { matches: (n) => n === "bare node:http2", colour: "#555555" },
  { matches: (n) => n.startsWith("bare node:http2 +"), colour: "#999999" },
];

interface Series {
  readonly name: string;
  /** The legend's text; the name when absent. */
  readonly label?: string;
  readonly colour: string;
}

/**
 * Names in preference order, each with a colour none of the others has:
 * its preferred one, or for a name not listed (or a second "Go peer ..."),
 * the palette's first colour left over.
 */
function ordered(names: readonly string[]): Series[] {
  const rank = (name: string) => {
    const i = PREFERENCE.findIndex((p) => p.matches(name));
    return i === -1 ? PREFERENCE.length : i;
  };
  const sorted = [...names].sort((a, b) => rank(a) - rank(b));
  const preferred = new Map<string, string>();
  for (const name of sorted) {
    const colour = PREFERENCE[rank(name)]?.colour;
    if (colour && ![...preferred.values()].includes(colour)) preferred.set(name, colour);
  }
  const spare = COLOURS.filter((c) => ![...preferred.values()].includes(c));
  let next = 0;
  return sorted.map((name) => ({
    name,
    colour: preferred.get(name) ?? (spare[next++ % spare.length] as string),
  }));
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}

interface VariantResult {
  readonly method: string;
  readonly variant: string;
  readonly rounds: number;
  readonly throughput: number;
  readonly cpu: number;
}

/** Keys of results outside section 1: per protocol (section 2) and per client stack (section 7). */
const OTHER_SECTIONS = /^(protocol|client)\|/;

/** Section 1's results ("<method>|<variant>"), in the order the run measured them. */
function variantResults(report: Report): VariantResult[] {
  return [...report.results]
    .filter(([key]) => !OTHER_SECTIONS.test(key))
    .map(([key, runs]) => {
      const split = key.indexOf("|");
      const { throughput, cpu } = summary(report, key);
      return {
        method: key.slice(0, split),
        variant: key.slice(split + 1),
        rounds: runs.length,
        throughput,
        cpu,
      };
    });
}

/** Section 2's results ("protocol|<name>"): server CPU per Get. */
function protocolResults(report: Report) {
  return [...report.results]
    .filter(([key]) => key.startsWith("protocol|"))
    .map(([key, runs]) => ({
      protocol: key.slice("protocol|".length),
      rounds: runs.length,
      cpu: summary(report, key).cpu,
    }));
}

interface LatencyLine {
  readonly series: Series;
  readonly rounds: number;
  /** Lowest percentile first; each latency the median over the rounds. */
  readonly points: readonly { readonly percentile: number; readonly ms: number }[];
}

function latencyLines(report: Report): LatencyLine[] {
  const servers = [...report.halfPeak.latency].filter(([, probes]) => probes.length > 0);
  const series = ordered(servers.map(([name]) => name));
  return series.map((s) => {
    const probes = report.halfPeak.latency.get(s.name) ?? [];
    const percentiles = unique(probes.flatMap((p) => p.percentiles.map((x) => x.percentile)));
    return {
      series: s,
      rounds: probes.length,
      points: percentiles
        .sort((a, b) => a - b)
        .map((percentile) => ({
          percentile,
          ms: median(
            probes
              .flatMap((p) => p.percentiles.filter((x) => x.percentile === percentile))
              .map((x) => x.ms),
          ),
        })),
    };
  });
}

// Drawing.

const WIDTH = 960;
const MARGIN = 20;
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const INK = "#1f2328";
const MUTED = "#59636e";
const GRID = "#d1d9e0";

/** Text made safe for XML character data and attribute values alike. */
function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

type Attributes = Readonly<Record<string, string | number>>;

/** An element; attribute values are escaped, children must be markup already. */
function element(name: string, attributes: Attributes, ...children: string[]): string {
  const attrs = Object.entries(attributes)
    .map(([k, v]) => ` ${k}="${escapeXml(typeof v === "number" ? String(round(v)) : v)}"`)
    .join("");
  return children.length === 0
    ? `<${name}${attrs}/>`
    : `<${name}${attrs}>${children.join("")}</${name}>`;
}

/** A text element whose content is escaped. */
function label(x: number, y: number, content: string, attributes: Attributes = {}): string {
  return element("text", { x, y, fill: INK, ...attributes }, escapeXml(content));
}

const round = (n: number) => Math.round(n * 10) / 10;

/** A rough width of text in the system font: enough to lay labels out without measuring. */
const textWidth = (text: string, size: number) => text.length * size * 0.58;

/** The document around a chart's body, with its title, subtitle and background. */
function svgDocument(height: number, title: string, subtitle: string, ...body: string[]): string {
  return `${element(
    "svg",
    {
      xmlns: "http://www.w3.org/2000/svg",
      width: WIDTH,
      height,
      viewBox: `0 0 ${WIDTH} ${height}`,
      "font-family": FONT,
      role: "img",
    },
    element("title", {}, escapeXml(title)),
    element("rect", { x: 0, y: 0, width: WIDTH, height, fill: "#ffffff" }),
    label(MARGIN, 32, title, { "font-size": 18, "font-weight": 600 }),
    label(MARGIN, 54, subtitle, { "font-size": 12, fill: MUTED }),
    ...body,
  )}\n`;
}

/**
 * The legend, wrapped into rows across the chart's width from `top`, with
 * a square swatch (bars) or a short line (lines) per series.
 */
function legend(series: readonly Series[], top: number, swatch: "square" | "line") {
  const parts: string[] = [];
  let x = MARGIN;
  let y = top;
  for (const s of series) {
    const text = s.label ?? s.name;
    const width = 18 + textWidth(text, 12) + 20;
    if (x > MARGIN && x + width > WIDTH - MARGIN) {
      x = MARGIN;
      y += 20;
    }
    parts.push(
      swatch === "square"
        ? element("rect", { x, y: y - 10, width: 12, height: 12, fill: s.colour })
        : element("line", {
            x1: x - 2,
            y1: y - 4,
            x2: x + 14,
            y2: y - 4,
            stroke: s.colour,
            "stroke-width": 3,
          }),
      label(x + 18, y, text, { "font-size": 12 }),
    );
    x += width;
  }
  return { markup: parts.join(""), bottom: y + 8 };
}

/** A round step for about `count` gridlines up to `max`: 1, 2, 2.5 or 5 times a power of ten. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= raw) ?? 10;
  return step * power;
}

interface BarGroup {
  readonly label: string;
  readonly bars: readonly {
    readonly series: Series;
    readonly value: number;
    readonly text: string;
  }[];
}

const BAR_HEIGHT = 16;
const BAR_GAP = 3;
const GROUP_GAP = 14;

/**
 * Horizontal bars on a linear scale from zero, grouped (one group per
 * RPC or protocol, labelled on the left), each bar labelled with its value:
 * a bar twice as long is twice the value.
 */
function barChart(chart: {
  title: string;
  subtitle: string;
  axisLabel: string;
  legend: readonly Series[];
  groups: readonly BarGroup[];
}): string {
  const key = legend(chart.legend, 84, "square");
  const top = key.bottom + 16;
  const left = MARGIN + Math.max(...chart.groups.map((g) => textWidth(g.label, 13))) + 12;
  const valueRoom =
    Math.max(...chart.groups.flatMap((g) => g.bars.map((b) => textWidth(b.text, 11)))) + 8;
  const plotWidth = WIDTH - MARGIN - valueRoom - left;
  const max = Math.max(...chart.groups.flatMap((g) => g.bars.map((b) => b.value)));
  const step = niceStep(max > 0 ? max : 1, 6);
  const steps = Math.max(1, Math.ceil(max / step));
  const x = (value: number) => left + (value / (steps * step)) * plotWidth;

  const parts: string[] = [];
  let y = top;
  for (const group of chart.groups) {
    const height = group.bars.length * (BAR_HEIGHT + BAR_GAP) - BAR_GAP;
    parts.push(
      label(left - 10, y + height / 2 + 4, group.label, {
        "font-size": 13,
        "text-anchor": "end",
      }),
    );
    for (const bar of group.bars) {
      parts.push(
        element(
          "rect",
          {
            class: "bar",
            x: left,
            y,
            width: x(bar.value) - left,
            height: BAR_HEIGHT,
            fill: bar.series.colour,
          },
          element("title", {}, escapeXml(`${group.label}, ${bar.series.name}: ${bar.text}`)),
        ),
        label(x(bar.value) + 5, y + BAR_HEIGHT - 4, bar.text, { "font-size": 11 }),
      );
      y += BAR_HEIGHT + BAR_GAP;
    }
    y += GROUP_GAP - BAR_GAP;
  }
  const bottom = y - GROUP_GAP + 6;

  const grid: string[] = [];
  for (let i = 0; i <= steps; i++) {
    const value = i * step;
    grid.push(
      element("line", {
        x1: x(value),
        y1: top - 6,
        x2: x(value),
        y2: bottom,
        stroke: value === 0 ? MUTED : GRID,
      }),
      label(x(value), bottom + 16, Number(value.toPrecision(6)).toLocaleString("en-US"), {
        "font-size": 11,
        fill: MUTED,
        "text-anchor": "middle",
      }),
    );
  }
  const height = bottom + 56;
  return svgDocument(
    height,
    chart.title,
    chart.subtitle,
    key.markup,
    ...grid,
    ...parts,
    label(left + plotWidth / 2, bottom + 40, chart.axisLabel, {
      "font-size": 12,
      "text-anchor": "middle",
    }),
  );
}

/** How many nines a percentile has: 1 for p90, 2 for p99, 3 for p99.9. */
const nines = (percentile: number) => -Math.log10(1 - percentile / 100);

/** "p50", "p99.9": a percentile as the report names it. */
const percentileName = (percentile: number) => `p${Number(percentile.toPrecision(6))}`;

/** Round latency marks for a log scale: 1, 2 and 5 times powers of ten. */
function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let power = Math.floor(Math.log10(min)) - 1; power <= Math.ceil(Math.log10(max)); power++)
    for (const m of [1, 2, 5]) ticks.push(Number((m * 10 ** power).toPrecision(6)));
  const below = ticks.filter((t) => t <= min).at(-1) ?? min;
  const above = ticks.find((t) => t >= max) ?? max;
  return ticks.filter((t) => t >= below && t <= above);
}

const PLOT_HEIGHT = 340;

/**
 * Latency against percentile, one line per server: the x axis spaces
 * percentiles by their nines (p90, p99, p99.9 equally apart), so the tail
 * gets as much room as the median; the y axis is logarithmic, since the
 * tail is ten times the median and more.
 */
function percentileChart(chart: {
  title: string;
  subtitle: string;
  lines: readonly LatencyLine[];
}): string {
  const key = legend(
    chart.lines.map((l) => l.series),
    84,
    "line",
  );
  const top = key.bottom + 20;
  const left = MARGIN + 58;
  const right = WIDTH - MARGIN - 16;
  const bottom = top + PLOT_HEIGHT;
  const points = chart.lines.flatMap((l) => l.points);
  const percentiles = unique(points.map((p) => p.percentile)).sort((a, b) => a - b);
  const latencies = points.map((p) => p.ms).filter((ms) => Number.isFinite(ms) && ms > 0);
  const ticks = logTicks(Math.min(...latencies), Math.max(...latencies));
  const [low, high] = [Math.log10(ticks[0] ?? 0.1), Math.log10(ticks.at(-1) ?? 100)];
  const [first, last] = [
    nines(percentiles[0] ?? 50) - 0.15,
    nines(percentiles.at(-1) ?? 99) + 0.15,
  ];
  const x = (percentile: number) =>
    left + ((nines(percentile) - first) / (last - first)) * (right - left);
  const y = (ms: number) => bottom - ((Math.log10(ms) - low) / (high - low || 1)) * PLOT_HEIGHT;

  const grid: string[] = [];
  for (const tick of ticks) {
    grid.push(
      element("line", { x1: left, y1: y(tick), x2: right, y2: y(tick), stroke: GRID }),
      label(left - 8, y(tick) + 4, String(tick), {
        "font-size": 11,
        fill: MUTED,
        "text-anchor": "end",
      }),
    );
  }
  for (const percentile of percentiles) {
    grid.push(
      element("line", { x1: x(percentile), y1: top, x2: x(percentile), y2: bottom, stroke: GRID }),
      label(x(percentile), bottom + 16, percentileName(percentile), {
        "font-size": 11,
        fill: MUTED,
        "text-anchor": "middle",
      }),
    );
  }
  const lines = chart.lines.map((line) => {
    const drawn = line.points.filter((p) => Number.isFinite(p.ms) && p.ms > 0);
    return element(
      "g",
      { fill: line.series.colour },
      element("polyline", {
        class: "line",
        points: drawn.map((p) => `${round(x(p.percentile))},${round(y(p.ms))}`).join(" "),
        fill: "none",
        stroke: line.series.colour,
        "stroke-width": 2,
        "stroke-linejoin": "round",
      }),
      ...drawn.map((p) =>
        element(
          "circle",
          { cx: x(p.percentile), cy: y(p.ms), r: 3.5 },
          element(
            "title",
            {},
            escapeXml(
              `${line.series.name}, ${percentileName(p.percentile)}: ${p.ms.toFixed(2)} ms`,
            ),
          ),
        ),
      ),
    );
  });
  const height = bottom + 56;
  return svgDocument(
    height,
    chart.title,
    chart.subtitle,
    key.markup,
    ...grid,
    element("rect", {
      x: left,
      y: top,
      width: right - left,
      height: PLOT_HEIGHT,
      fill: "none",
      stroke: MUTED,
    }),
    ...lines,
    label(
      (left + right) / 2,
      bottom + 40,
      "Percentile (nines scale: p90, p99, p99.9 equally far apart)",
      {
        "font-size": 12,
        "text-anchor": "middle",
      },
    ),
    label(0, 0, "Latency (ms, log scale)", {
      "font-size": 12,
      "text-anchor": "middle",
      transform: `translate(${MARGIN + 4} ${(top + bottom) / 2}) rotate(-90)`,
    }),
  );
}
