/** The load test's text report: one column per group size. */
import type { LoadTestResult, SizeSummary, SummaryMs } from "./results.js";

const fmt = (v: number | null | undefined, digits = 1): string => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(digits));
const spread = (s: SummaryMs): string => (s.count === 0 ? "-" : `${fmt(s.p50_ms)} / ${fmt(s.p99_ms)} / ${fmt(s.max_ms)}`);
const sizes = (s: SizeSummary | null): string => (s === null ? "-" : s.min === s.max ? `${s.p50}` : `${s.p50} (${s.min}-${s.max})`);

export function resultTable(results: readonly LoadTestResult[]): string {
  const rows: [string, (r: LoadTestResult) => string][] = [
    ["members", (r) => String(r.members)],
    ["changes (concurrency)", (r) => `${r.samples.length} (${r.concurrency})`],
    ["rekey latency p50 ms", (r) => fmt(r.p50_ms)],
    ["rekey latency p95 ms", (r) => fmt(r.p95_ms)],
    ["rekey latency p99 ms", (r) => fmt(r.p99_ms)],
    ["rekey latency max ms", (r) => fmt(r.max_ms)],
    ["all keyed p50/p99/max ms", (r) => spread(r.complete)],
    ["DS accepted p50/p99/max ms", (r) => spread(r.accept)],
    ["delivery p50/p99/max ms", (r) => spread(r.delivery)],
    ["processing p50/p99/max ms", (r) => spread(r.processing)],
    ["join commit bytes", (r) => sizes(r.commit_bytes.join)],
    ["leave commit bytes", (r) => sizes(r.commit_bytes.leave)],
    ["Welcome bytes", () => "none (external commit)"],
    ["joiner download bytes", (r) => (r.joiner_download_bytes ? `${r.joiner_download_bytes.group_info} + ${r.joiner_download_bytes.ratchet_tree} tree` : "-")],
    ["CPU / participant / commit ms", (r) => `${fmt(r.cpu.per_participant_commit_ms, 2)}${r.cpu.source === "thread" ? "" : " (loop)"}`],
    ["DS CPU / commit ms", (r) => fmt(r.cpu.ds_per_commit_ms, 2)],
    ["DS fan-out mean ms", (r) => fmt(r.ds_fanout?.mean_ms, 2)],
    ["DS fan-out p50/p99 <= ms", (r) => (r.ds_fanout ? `${fmt(r.ds_fanout.p50_le_ms)} / ${fmt(r.ds_fanout.p99_le_ms)}` : "-")],
    ["worker loop delay p99 ms", (r) => r.cpu.worker_loop_delay_p99_ms.map((v) => fmt(v, 0)).join(", ") || "-"],
    ["setup (joins) s", (r) => `${fmt(r.setup.total_ms / 1000)} (${fmt(r.setup.join_ms / 1000)})`],
    ["setup joins/s, lost races", (r) => `${fmt(r.setup.joins_per_second)}, ${r.setup.lost_races ?? "-"}`],
    ["epoch_authenticator", (r) => (r.diverged ? `DIVERGED (epochs ${r.divergent_epochs.slice(0, 5).join(",") || "final"})` : "identical")],
    ["unobserved installs", (r) => String(r.unobserved)],
    ["session errors", (r) => String(r.problems.length)],
    ["participants' memory (RSS MB)", (r) => String(r.environment.rss_mb_after_setup ?? "-")],
    ["load average before/after", (r) => `${fmt(r.environment.loadavg_before[0], 2)} / ${fmt(r.environment.loadavg_after[0], 2)}`],
    ["machine share used (changes)", (r) => (r.environment.machine_share === null ? "-" : `${Math.round(r.environment.machine_share * 100)}%`)],
  ];
  const cells = rows.map(([label, f]) => [label, ...results.map(f)]);
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}
