/**
 * The DS under test, as the operator runs it (`sfu-signaling/main.ts`, development mode so participants can
 * fetch /dev/token), in a child process of its own so it never shares an event loop with the participants.
 * Also what the load test reads from outside a DS: its /metrics.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface ChildDs {
  readonly url: string;
  readonly pid: number;
  /** The last lines it printed (its log), for error reports. */
  logTail(): string;
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);

/** The tsx loader, as a file URL usable in `--import` from any working directory. */
export function tsxLoaderUrl(): string {
  return pathToFileURL(require.resolve("tsx")).href;
}

/** tsx's ESM API module, for a worker thread to register TypeScript loading before importing a .ts entry. */
export function tsxApiUrl(): string {
  return import.meta.resolve("tsx/esm/api");
}

export interface ChildDsOptions {
  /** Extra node flags for the DS process (e.g. --cpu-prof --cpu-prof-dir=<dir>). */
  readonly nodeArgs?: readonly string[];
  /** Extra DS flags (see sfu-signaling/main.ts). */
  readonly dsArgs?: readonly string[];
  readonly startTimeoutMs?: number;
}

export function startChildDs(options: ChildDsOptions = {}): Promise<ChildDs> {
  const main = fileURLToPath(new URL("../../sfu-signaling/main.ts", import.meta.url));
  const args = [...(options.nodeArgs ?? []), "--import", tsxLoaderUrl(), main, "--port", "0", "--data-dir", ":memory:", "--dev", ...(options.dsArgs ?? [])];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_ENV: "development" } });
  const tail: string[] = [];
  const remember = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) tail.push(line);
    if (tail.length > 40) tail.splice(0, tail.length - 40);
  };
  child.stderr!.on("data", remember);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the DS did not start within ${options.startTimeoutMs ?? 60_000} ms:\n${tail.join("\n")}`));
    }, options.startTimeoutMs ?? 60_000);
    let buffered = "";
    const onStdout = (chunk: Buffer) => {
      remember(chunk);
      buffered += chunk.toString("utf8");
      const m = /Conclave DS listening on (\S+)/.exec(buffered);
      if (!m) return;
      clearTimeout(timer);
      buffered = "";
      child.stdout!.off("data", onStdout);
      child.stdout!.on("data", remember);
      resolve({
        url: m[1]!,
        pid: child.pid!,
        logTail: () => tail.join("\n"),
        async close() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          // SIGTERM: the DS closes cleanly, which is also when --cpu-prof writes its profile.
          child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await exited;
          clearTimeout(killer);
        },
      });
    };
    child.stdout!.on("data", onStdout);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the DS exited (${signal ?? code}) before listening:\n${tail.join("\n")}`));
    });
  });
}

/** One scrape of the DS's Prometheus text: every sample by its full series name (`name{labels}`). */
export type MetricsScrape = ReadonlyMap<string, number>;

/** `token`: the DS's DS_METRICS_TOKEN, needed unless the DS runs on this host (loopback is let in without one). */
export async function scrapeMetrics(url: string, token?: string): Promise<MetricsScrape | undefined> {
  try {
    const res = await fetch(new URL("/metrics", url), token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) return undefined;
    const out = new Map<string, number>();
    for (const line of (await res.text()).split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const space = line.lastIndexOf(" ");
      out.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    return out;
  } catch {
    return undefined;
  }
}

/** The growth of a counter (all its label sets when `series` names only the metric) between two scrapes. */
export function counterDelta(before: MetricsScrape, after: MetricsScrape, series: string): number {
  let sum = 0;
  for (const [k, v] of after) if (k === series || k.startsWith(`${series}{`)) sum += v - (before.get(k) ?? 0);
  return sum;
}

export interface HistogramDelta {
  readonly count: number;
  readonly sumSeconds: number;
  /** [upper bound in seconds, observations <= bound] for the interval, cumulative as Prometheus has it. */
  readonly buckets: readonly (readonly [number, number])[];
}

export function histogramDelta(before: MetricsScrape, after: MetricsScrape, name: string): HistogramDelta {
  const buckets: [number, number][] = [];
  for (const [k, v] of after) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`).exec(k);
    if (m) buckets.push([m[1] === "+Inf" ? Infinity : Number(m[1]), v - (before.get(k) ?? 0)]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  return {
    count: (after.get(`${name}_count`) ?? 0) - (before.get(`${name}_count`) ?? 0),
    sumSeconds: (after.get(`${name}_sum`) ?? 0) - (before.get(`${name}_sum`) ?? 0),
    buckets,
  };
}

/** The smallest bucket bound holding quantile q of the interval's observations (what a histogram can say). */
export function histogramQuantileBound(h: HistogramDelta, q: number): number | undefined {
  if (h.count === 0) return undefined;
  const rank = Math.ceil(q * h.count);
  for (const [bound, n] of h.buckets) if (n >= rank) return bound;
  return Infinity;
}
