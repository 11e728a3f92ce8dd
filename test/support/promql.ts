/** Words of PromQL that look like metric names but are not. */
const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "bool",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression selects: its identifiers, less
 * strings, label matchers, ranges, grouping label lists, functions and
 * keywords. Enough for the queries of our own dashboard and rules (checked
 * against a real server's /metrics), not a PromQL parser: promtool checks
 * that they parse.
 */
export function metricNames(expr: string): Set<string> {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  // Not within a number (1e3, 0.5) nor a Grafana variable ($job).
  for (const match of bare.matchAll(/(?<![\w.$:])[A-Za-z_:][\w:]*/g)) {
    const isFunction = /^\s*\(/.test(bare.slice((match.index ?? 0) + match[0].length));
    if (!isFunction && !KEYWORDS.has(match[0].toLowerCase())) names.add(match[0]);
  }
  return names;
}

/**
 * The names of the series an exposition (a /metrics body) can hold, from
 * its `# TYPE` lines, so a metric counts even before it has a sample:
 * a histogram's `_bucket`, `_sum` and `_count`, a summary's quantiles,
 * `_sum` and `_count`, and every other type's own name.
 */
export function exportedSeriesNames(exposition: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const [, name = "", type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const series =
      type === "histogram"
        ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
        : type === "summary"
          ? [name, `${name}_sum`, `${name}_count`]
          : [name];
    for (const s of series) names.set(s, name);
  }
  return names;
}
