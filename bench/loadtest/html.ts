/**
 * The load test's HTML report: one self-contained file (inline CSS and SVG, no scripts, no external
 * assets) with the result table, the latency CDF, latency per change, and latency against group size
 * when several sizes ran.
 */
import type { LoadTestResult } from "./results.js";
import { resultTable } from "./table.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const W = 720;
const H = 340;
const M = { left: 64, right: 20, top: 20, bottom: 48 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

interface Axis {
  readonly min: number;
  readonly max: number;
  readonly log: boolean;
}

/** An axis over `values`, logarithmic when they span more than a factor of 30. */
function axisOf(values: readonly number[], forceLog?: boolean, from0 = true): Axis {
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  const lo = positive.length ? Math.min(...positive) : 1;
  const hi = positive.length ? Math.max(...positive) : 1;
  const log = forceLog ?? hi / lo > 30;
  if (log) return { min: 10 ** Math.floor(Math.log10(lo)), max: 10 ** Math.ceil(Math.log10(hi)), log };
  const step = niceStep((hi - (from0 ? 0 : lo)) / 5);
  return { min: from0 ? 0 : Math.floor(lo / step) * step, max: Math.ceil(hi / step) * step || step, log };
}

function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function ticks(a: Axis): number[] {
  if (a.log) {
    const out: number[] = [];
    for (let v = a.min; v <= a.max * 1.0001; v *= 10) out.push(v);
    return out;
  }
  const step = niceStep((a.max - a.min) / 5);
  const out: number[] = [];
  for (let v = a.min; v <= a.max + step / 1000; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

function scale(a: Axis, from: number, to: number): (v: number) => number {
  if (a.log) {
    const l0 = Math.log10(a.min);
    const l1 = Math.log10(a.max);
    return (v) => from + ((Math.log10(Math.max(v, a.min)) - l0) / (l1 - l0 || 1)) * (to - from);
  }
  return (v) => from + ((v - a.min) / (a.max - a.min || 1)) * (to - from);
}

/** Inside every chart, so a chart saved on its own (--svg) looks the same as in the report. */
const SVG_STYLE =
  "<style>text{font:11px system-ui,sans-serif;fill:#333}.axis{font-size:12px}.small{font-size:9px;fill:#777}.grid{stroke:#e4e4e4}.plot{fill:#fff;stroke:#bbb}</style>";

const label = (v: number) => (v >= 1000 && v % 1000 === 0 ? `${v / 1000}k` : String(v));

interface Chart {
  readonly x: Axis;
  readonly y: Axis;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly body: (sx: (v: number) => number, sy: (v: number) => number) => string;
  readonly legend: readonly { readonly name: string; readonly color: string; readonly dash?: boolean }[];
}

function svg(c: Chart): string {
  const sx = scale(c.x, M.left, W - M.right);
  const sy = scale(c.y, H - M.bottom, M.top);
  const grid = [
    ...ticks(c.x).map(
      (t) =>
        `<line x1="${sx(t)}" x2="${sx(t)}" y1="${M.top}" y2="${H - M.bottom}" class="grid"/><text x="${sx(t)}" y="${H - M.bottom + 16}" text-anchor="middle">${label(t)}</text>`,
    ),
    ...ticks(c.y).map(
      (t) => `<line x1="${M.left}" x2="${W - M.right}" y1="${sy(t)}" y2="${sy(t)}" class="grid"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end">${label(t)}</text>`,
    ),
  ].join("");
  let at = M.left + 10;
  const legend = c.legend
    .map((l) => {
      const x = at;
      // About 6 px per character at 11 px.
      at += 44 + l.name.length * 6;
      return (
        `<line x1="${x}" x2="${x + 24}" y1="${M.top + 8}" y2="${M.top + 8}" stroke="${l.color}" stroke-width="2.5"${l.dash ? ' stroke-dasharray="5 4"' : ""}/>` +
        `<text x="${x + 30}" y="${M.top + 12}">${esc(l.name)}</text>`
      );
    })
    .join("");
  return (
    `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg" role="img">${SVG_STYLE}` +
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" class="plot"/>${grid}${c.body(sx, sy)}` +
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" text-anchor="middle" class="axis">${esc(c.xLabel)}</text>` +
    `<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle" class="axis">${esc(c.yLabel)}</text>${legend}</svg>`
  );
}

const points = (pts: readonly (readonly [number, number])[]) => pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");

/** Fraction of (change, participant) samples at or below each latency, one line per group size. */
export function cdfChart(results: readonly LoadTestResult[]): string {
  const all = results.flatMap((r) => r.samples.flatMap((s) => s.latency_ms));
  return svg({
    x: axisOf(all),
    y: { min: 0, max: 1, log: false },
    xLabel: "rekey latency (ms): change requested -> participant holds the new SFrame keys",
    yLabel: "fraction of samples",
    legend: results.map((r, i) => ({ name: `${r.members} members`, color: COLORS[i % COLORS.length]! })),
    body: (sx, sy) =>
      results
        .map((r, i) => {
          const sorted = r.samples.flatMap((s) => s.latency_ms).sort((a, b) => a - b);
          // Thinned to at most ~400 steps: the curve's shape, not every sample.
          const stride = Math.max(1, Math.floor(sorted.length / 400));
          const pts: [number, number][] = [];
          for (let k = 0; k < sorted.length; k += stride) pts.push([sx(sorted[k]!), sy((k + 1) / sorted.length)]);
          if (sorted.length) pts.push([sx(sorted[sorted.length - 1]!), sy(1)]);
          return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2" points="${points(pts)}"/>`;
        })
        .join(""),
  });
}

/** Per change: the range over participants (bar), the median (dot) and the last participant (diamond). */
export function perChangeChart(r: LoadTestResult, color: string): string {
  const values = r.samples.flatMap((s) => s.latency_ms);
  const n = Math.max(1, r.samples.length);
  return svg({
    x: { min: 0, max: n + 1, log: false },
    y: axisOf(values, false),
    xLabel: `change # (${r.members} members; J = join, L = leave)`,
    yLabel: "rekey latency (ms)",
    legend: [
      { name: "median participant", color },
      { name: "last participant", color: "#444" },
    ],
    body: (sx, sy) =>
      r.samples
        .map((s, i) => {
          const l = s.latency_ms;
          if (l.length === 0) return `<text x="${sx(i + 1)}" y="${sy(0) - 4}" text-anchor="middle" fill="#d62728">x</text>`;
          const x = sx(i + 1);
          const med = l[Math.floor((l.length - 1) / 2)]!;
          const last = l[l.length - 1]!;
          return (
            `<line x1="${x}" x2="${x}" y1="${sy(l[0]!)}" y2="${sy(last)}" stroke="${color}" stroke-opacity="0.35" stroke-width="6"/>` +
            `<circle cx="${x}" cy="${sy(med)}" r="3.5" fill="${color}"/>` +
            `<path d="M${x} ${sy(last) - 5} l5 5 l-5 5 l-5 -5 z" fill="#444"/>` +
            (n <= 60 ? `<text x="${x}" y="${H - M.bottom - 4}" text-anchor="middle" class="small">${s.kind === "join" ? "J" : "L"}</text>` : "")
          );
        })
        .join(""),
  });
}

/** p50, p95, p99 and max against group size, with the issue's targets. */
export function sizeChart(results: readonly LoadTestResult[]): string {
  const series = [
    { name: "p50", get: (r: LoadTestResult) => r.p50_ms, color: COLORS[0]! },
    { name: "p95", get: (r: LoadTestResult) => r.p95_ms, color: COLORS[2]! },
    { name: "p99", get: (r: LoadTestResult) => r.p99_ms, color: COLORS[1]! },
    { name: "max", get: (r: LoadTestResult) => r.max_ms, color: "#444" },
  ];
  const targets: [number, number][] = [
    [100, 200],
    [1000, 2000],
  ];
  const sizes = results.map((r) => r.members);
  const x = axisOf([...sizes, ...targets.map((t) => t[0])], true);
  const y = axisOf([...results.flatMap((r) => series.map((s) => s.get(r))), ...targets.map((t) => t[1])], true);
  return svg({
    x,
    y,
    xLabel: "members in the call",
    yLabel: "rekey latency (ms)",
    legend: [...series.map((s) => ({ name: s.name, color: s.color })), { name: "p99 target", color: "#999", dash: true }],
    body: (sx, sy) =>
      series
        .map((s) => {
          const pts = results.map((r) => [sx(r.members), sy(s.get(r))] as [number, number]);
          return `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points(pts)}"/>` + pts.map(([px, py]) => `<circle cx="${px}" cy="${py}" r="3" fill="${s.color}"/>`).join("");
        })
        .join("") +
      targets
        .filter(([m]) => m >= x.min && m <= x.max)
        .map(([m, t]) => `<line x1="${Math.max(M.left, sx(m) - 14)}" x2="${Math.min(W - M.right, sx(m) + 14)}" y1="${sy(t)}" y2="${sy(t)}" stroke="#999" stroke-width="2" stroke-dasharray="5 4"/>`)
        .join(""),
  });
}

/** The report's charts as standalone SVG files: name -> SVG text. */
export function svgCharts(results: readonly LoadTestResult[]): Map<string, string> {
  const charts = new Map<string, string>([["latency-cdf.svg", cdfChart(results)]]);
  results.forEach((r, i) => charts.set(`latency-per-change-${r.members}.svg`, perChangeChart(r, COLORS[i % COLORS.length]!)));
  if (results.length > 1) charts.set("latency-vs-size.svg", sizeChart(results));
  return charts;
}

export function htmlReport(results: readonly LoadTestResult[], command: string): string {
  const env = results[0]?.environment;
  const verdict = results.map((r) => `${r.members} members: ${r.ok ? "correct (no divergence, every change seen by everyone)" : "FAILED"}`).join("; ");
  const failures = results.flatMap((r) => r.failures.map((f) => `${r.members} members: ${f}`));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conclave rekey latency load test</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:800px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}pre{background:#f5f5f5;padding:10px;overflow-x:auto;font-size:12px}
.bad{color:#b00}
</style></head><body>
<h1>Conclave rekey latency load test</h1>
<p><code>${esc(command)}</code></p>
<p>${env ? esc(`${env.workers} participant worker threads on ${env.cpus} CPUs (${env.cpu_model}), node ${env.node}; DS: ${env.ds}; seed ${env.seed}.`) : ""}</p>
<p class="${results.every((r) => r.ok) ? "" : "bad"}">${esc(verdict)}</p>
${failures.length ? `<pre class="bad">${esc(failures.join("\n"))}</pre>` : ""}
<p>Rekey latency is measured per change and participant: from the change being requested (join() or leave()
called) to that participant's media hook holding the SFrame keys of the epoch the change's commit starts.</p>
<h2>Results</h2>
<pre>${esc(resultTable(results))}</pre>
<h2>Latency CDF</h2>
${cdfChart(results)}
<h2>Latency per change</h2>
${results.map((r, i) => perChangeChart(r, COLORS[i % COLORS.length]!)).join("\n")}
${results.length > 1 ? `<h2>Latency against group size</h2>\n${sizeChart(results)}` : ""}
</body></html>
`;
}
