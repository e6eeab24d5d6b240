/**
 * npm run loadtest -- --members <N[,N2,...]> --changes <M> [--concurrency <k>] [--url <ds> [--metrics-token <t>]]
 *                     [--json <file>] [--html <file>] [--svg <dir>] [--workers <w>] [--join-window <j>] [--seed <s>]
 *                     [--profile <dir>]
 *
 * Rekey latency under load (issue 7): for each group size, a call of N real participants (CallSession over
 * socket.io-client, spread over worker threads) against a DS in a child process (or --url, a DS in
 * development mode; `--metrics-token` is its DS_METRICS_TOKEN when it is not on this host), then M joins and
 * leaves, k at once. Live progress on stderr; the table on stdout;
 * `--json` writes the run's result (one size: the object; several: `{ runs: [...] }`), `--html` a
 * self-contained report with charts, `--svg` the same charts as separate files. Exit code 1 when any run diverged, missed a change or failed.
 * See bench/loadtest/README.md for what each number means.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { htmlReport, svgCharts } from "./html.js";
import type { LoadTestResult } from "./results.js";
import { runLoadTest, type Progress } from "./run.js";
import { resultTable } from "./table.js";

const USAGE =
  "usage: npm run loadtest -- --members <N[,N2,...]> --changes <M> [--concurrency <k>] [--url <ds> [--metrics-token <t>]]\n" +
  "                           [--json <file>] [--html <file>] [--svg <dir>] [--workers <w>] [--join-window <j>] [--seed <s>] [--profile <dir>]";

interface CliOptions {
  readonly members: number[];
  readonly changes: number;
  readonly concurrency: number;
  readonly url: string | undefined;
  readonly metricsToken: string | undefined;
  readonly json: string | undefined;
  readonly html: string | undefined;
  readonly svg: string | undefined;
  readonly workers: number | undefined;
  readonly joinWindow: number | undefined;
  readonly seed: number;
  readonly profile: string | undefined;
}

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function positive(flag: string, raw: string, min = 1): number {
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) fail(`${flag} takes an integer of at least ${min}, got "${raw}"`);
  return v;
}

function parseCli(argv: readonly string[]): CliOptions {
  const o: { -readonly [K in keyof CliOptions]: CliOptions[K] } = {
    members: [],
    changes: -1,
    concurrency: 1,
    url: undefined,
    metricsToken: undefined,
    json: undefined,
    html: undefined,
    svg: undefined,
    workers: undefined,
    joinWindow: undefined,
    seed: 1,
    profile: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => argv[++i] ?? fail(`${flag} needs a value`);
    switch (flag) {
      case "--members":
        o.members = value()
          .split(",")
          .map((m) => positive("--members", m.trim(), 2));
        break;
      case "--changes":
        o.changes = positive("--changes", value(), 0);
        break;
      case "--concurrency":
        o.concurrency = positive("--concurrency", value());
        break;
      case "--url":
        o.url = value();
        break;
      case "--metrics-token":
        o.metricsToken = value();
        break;
      case "--json":
        o.json = value();
        break;
      case "--html":
        o.html = value();
        break;
      case "--svg":
        o.svg = value();
        break;
      case "--workers":
        o.workers = positive("--workers", value());
        break;
      case "--join-window":
        o.joinWindow = positive("--join-window", value());
        break;
      case "--seed":
        o.seed = positive("--seed", value(), 0);
        break;
      case "--profile":
        o.profile = value();
        break;
      case "--help":
      case "-h":
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        fail(`unknown argument ${flag}`);
    }
  }
  if (o.members.length === 0) fail("--members is required");
  if (o.changes < 0) fail("--changes is required");
  return o;
}

/** A one-line bar redrawn in place on a terminal; on a pipe, a line every few seconds. */
class ProgressBar {
  private lastLine = 0;
  private readonly started = performance.now();
  private drawn = false;
  constructor(private readonly size: number) {}

  update(p: Progress): void {
    const elapsed = ((performance.now() - this.started) / 1000).toFixed(1);
    const width = 30;
    const fraction = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const filled = Math.round(fraction * width);
    const text = `[${this.size} members] ${p.phase.padEnd(10)} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${p.done}/${p.total}  in call ${p.members}  ${elapsed}s`;
    if (process.stderr.isTTY) {
      // Redrawn at most ten times a second: a large call reports thousands of installs a second.
      if (performance.now() - this.lastLine < 100 && p.done !== p.total) return;
      this.lastLine = performance.now();
      process.stderr.write(`\r${text.padEnd(process.stderr.columns ? Math.min(process.stderr.columns - 1, 120) : 100)}`);
      this.drawn = true;
    } else if (performance.now() - this.lastLine > 5000 || p.done === p.total) {
      this.lastLine = performance.now();
      process.stderr.write(`${text}\n`);
    }
  }

  end(): void {
    if (this.drawn) process.stderr.write("\n");
  }
}

const options = parseCli(process.argv.slice(2));
// The report shows the command line, never the metrics token.
const command = `npm run loadtest -- ${process.argv
  .slice(2)
  .map((a, i, all) => (all[i - 1] === "--metrics-token" ? "<token>" : a))
  .join(" ")}`;
const results: LoadTestResult[] = [];
for (const members of options.members) {
  const bar = new ProgressBar(members);
  const result = await runLoadTest({
    members,
    changes: options.changes,
    concurrency: options.concurrency,
    url: options.url,
    metricsToken: options.metricsToken,
    workers: options.workers,
    joinWindow: options.joinWindow,
    seed: options.seed,
    profileDir: options.profile,
    onProgress: (p) => bar.update(p),
  });
  bar.end();
  for (const f of result.failures) console.error(`[${members} members] FAILED: ${f}`);
  for (const p of result.problems.slice(0, 10)) console.error(`[${members} members] session ${p.id}: ${p.code}: ${p.message}`);
  results.push(result);
}

const env = results[0]!.environment;
console.log(`\n${command}`);
console.log(`${env.workers} participant worker threads, ${env.cpus} CPUs (${env.cpu_model}), node ${env.node}; DS: ${env.ds}\n`);
console.log(resultTable(results));

const write = async (file: string, text: string) => {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  console.log(`wrote ${file}`);
};
if (options.json) await write(options.json, JSON.stringify(results.length === 1 ? results[0] : { runs: results }, null, 2) + "\n");
if (options.html) await write(options.html, htmlReport(results, command));
if (options.svg) for (const [name, chart] of svgCharts(results)) await write(join(options.svg, name), chart);
process.exit(results.every((r) => r.ok) ? 0 : 1);
