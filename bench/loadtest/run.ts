/**
 * One load-test run: N participants in one call, then M membership changes, measured (see results.ts).
 *
 * The coordinator (this module, on the caller's thread) starts the DS in a child process (or uses a given
 * URL), spreads the participants over worker threads (participants.ts) and drives them: every participant
 * connects first; then they join by external commit, several at once (`joinWindow`), each lost race
 * retried by CallSession from the DS's wrong-epoch answer; then the changes run in batches of
 * `concurrency`, alternating join (a participant connected beforehand but not yet in the call) and leave
 * (a member drawn by a seeded random source). A batch ends when each of its changes has its epoch and
 * every member holds the last of those epochs; the next batch starts from that quiet state. Waiting has
 * a deadline, so a lost commit shows up as a failure, not a hang.
 */
import { mkdirSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { Worker } from "node:worker_threads";
import { DsConnection } from "../../client/ds-connection.js";
import { fetchDevToken } from "../../client/dev-token.js";
import { bytesOf } from "../../client/protocol.js";
import {
  counterDelta,
  histogramDelta,
  histogramQuantileBound,
  scrapeMetrics,
  startChildDs,
  tsxApiUrl,
  type ChildDs,
  type MetricsScrape,
} from "./ds-process.js";
import { inWindows, procStatCpuMs } from "./util.js";
import { identityOf, now, type Command, type FinalState, type Report, type SessionProblem, type WorkerSetup } from "./protocol.js";
import {
  breakdown,
  sampleOf,
  sizeSummary,
  summaryMs,
  type ChangeKind,
  type ChangeRecord,
  type DsFanout,
  type EpochRecord,
  type LoadTestResult,
} from "./results.js";
import { ms, seededRandom } from "./stats.js";

export interface LoadTestOptions {
  readonly members: number;
  readonly changes: number;
  /** Changes requested at once (default 1). */
  readonly concurrency?: number;
  /** A running DS (development mode, for /dev/token); default: a child process started for this run. */
  readonly url?: string;
  /** Bearer token for the /metrics of the DS at `url` (its DS_METRICS_TOKEN); a DS on loopback needs none. */
  readonly metricsToken?: string;
  /** Worker threads hosting participants (default: one per CPU). */
  readonly workers?: number;
  /** External-commit joins in flight at once while the call fills up (default 2: one sequenced while the next is built). */
  readonly joinWindow?: number;
  /** Seed of the choice of leavers (default 1). */
  readonly seed?: number;
  /** Longest wait for one batch of changes to reach everyone (default 60 s + 60 ms per member). */
  readonly batchTimeoutMs?: number;
  /** Write CPU profiles here: each worker thread's of the change phase, and the child DS's of its whole life (--cpu-prof). */
  readonly profileDir?: string;
  /** Extra flags for the child DS (sfu-signaling/main.ts). */
  readonly dsArgs?: readonly string[];
  readonly onProgress?: (progress: Progress) => void;
}

export type Phase = "starting" | "connecting" | "joining" | "settling" | "changes" | "finishing";

export interface Progress {
  readonly phase: Phase;
  readonly done: number;
  readonly total: number;
  readonly members: number;
}

const DEFAULT_JOIN_WINDOW = 2;
/**
 * Every participant holds its own decoded ratchet tree (about 3 MB of heap at 1000 members), so a thread with
 * all 500 participants of half a 1000-member call carries gigabytes, and its major collections stall it for
 * seconds; past this many participants a thread is added even beyond the CPU count.
 */
const MAX_PARTICIPANTS_PER_THREAD = 250;

const CONNECT_WINDOW = 16;

interface Pending<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** Settles with the next report of type `t` from every worker. */
type Collector = { readonly t: Report["t"]; readonly replies: Report[]; readonly done: Pending<Report[]> };

class Coordinator {
  readonly workers: Worker[] = [];
  readonly epochs = new Map<number, EpochRecord>();
  /** Epochs each leaver was seen leaving in (member-left events). */
  readonly departures = new Map<string, number[]>();
  readonly problems: SessionProblem[] = [];
  /** The newest epoch each participant installed, for saying who lags when a wait times out. */
  readonly newest = new Map<number, number>();
  private readonly joins = new Map<number, Pending<{ epoch: number; requestedAt: number; doneAt: number }>>();
  private readonly leaves = new Map<number, Pending<{ requestedAt: number }>>();
  private readonly prepared = new Map<number, Pending<void>>();
  private readonly waiters = new Set<{ ready: () => boolean; resolve: () => void }>();
  private collector: Collector | undefined;
  private workerError: Error | undefined;
  private closing = false;

  constructor(
    count: number,
    setup: WorkerSetup,
    private readonly onActivity: () => void,
  ) {
    const entry = new URL("./participants.ts", import.meta.url).href;
    // A worker does not inherit the TypeScript loader: register tsx in it, then load the participant code.
    const bootstrap = `import { register } from ${JSON.stringify(tsxApiUrl())}; register(); await import(${JSON.stringify(entry)});`;
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`), {
        workerData: setup,
        name: `participants-${i}`,
        // Hundreds of MLS groups of a large call, each with its own copy of the ratchet tree.
        resourceLimits: { maxOldGenerationSizeMb: 8192 },
      });
      worker.on("message", (r: Report) => this.onReport(r));
      worker.on("error", (e) => this.workerFailed(e));
      worker.on("exit", (code) => {
        if (!this.closing) this.workerFailed(new Error(`a participant worker exited (code ${code})`));
      });
      this.workers.push(worker);
    }
  }

  /** A worker died: every participant in it is gone, so everything waiting fails at once. */
  private workerFailed(e: Error): void {
    this.workerError ??= e;
    for (const map of [this.prepared, this.joins, this.leaves] as Map<number, Pending<unknown>>[]) {
      for (const p of map.values()) p.reject(e);
      map.clear();
    }
    this.collector?.done.reject(e);
    this.collector = undefined;
    for (const w of this.waiters) w.resolve();
  }

  workerOf(id: number): Worker {
    return this.workers[id % this.workers.length]!;
  }

  private send(worker: Worker, command: Command): void {
    worker.postMessage(command);
  }

  private onReport(r: Report): void {
    switch (r.t) {
      case "prepared":
        this.settle(this.prepared, r.id, undefined);
        break;
      case "joined":
        this.settle(this.joins, r.id, r);
        break;
      case "left":
        this.settle(this.leaves, r.id, r);
        break;
      case "failed": {
        const pending = (r.what === "prepare" ? this.prepared : r.what === "join" ? this.joins : this.leaves) as Map<number, Pending<unknown>>;
        pending.get(r.id)?.reject(new Error(`${identityOf(r.id)}: ${r.what} failed: ${r.message}`));
        pending.delete(r.id);
        break;
      }
      case "events":
        for (const [id, epoch, installedAt, commitReceivedAt, auth] of r.installs) {
          const record = this.epoch(epoch);
          record.installs.set(id, { installedAt, commitReceivedAt });
          if (epoch > (this.newest.get(id) ?? -1)) this.newest.set(id, epoch);
          if (record.authenticator === undefined) record.authenticator = auth;
          else if (record.authenticator !== auth) record.divergent = true;
        }
        for (const [epoch, at, bytes] of r.commits) this.epoch(epoch).commit ??= { at, bytes };
        for (const [identity, epoch] of r.departures) {
          const list = this.departures.get(identity) ?? [];
          list.push(epoch);
          this.departures.set(identity, list);
        }
        this.problems.push(...r.problems);
        this.onActivity();
        break;
      default:
        if (this.collector?.t === r.t) {
          this.collector.replies.push(r);
          if (this.collector.replies.length === this.workers.length) {
            const c = this.collector;
            this.collector = undefined;
            c.done.resolve(c.replies);
          }
        }
        return;
    }
    for (const w of this.waiters) {
      if (!w.ready()) continue;
      this.waiters.delete(w);
      w.resolve();
    }
  }

  private settle<T>(map: Map<number, Pending<T>>, id: number, value: T): void {
    map.get(id)?.resolve(value);
    map.delete(id);
  }

  epoch(epoch: number): EpochRecord {
    let record = this.epochs.get(epoch);
    if (!record) this.epochs.set(epoch, (record = { installs: new Map(), authenticator: undefined, divergent: false, commit: undefined }));
    return record;
  }

  private expect<T>(map: Map<number, Pending<T>>, id: number, command: Command): Promise<T> {
    if (this.workerError) return Promise.reject(this.workerError);
    return new Promise<T>((resolve, reject) => {
      map.set(id, { resolve, reject });
      this.send(this.workerOf(id), command);
    });
  }

  /** Connects the participants (each worker a window at a time); `each` after every one that is ready. */
  prepare(ids: readonly number[], each: () => void): Promise<void[]> {
    if (this.workerError) return Promise.reject(this.workerError);
    const all = ids.map((id) => new Promise<void>((resolve, reject) => this.prepared.set(id, { resolve, reject })).then(each));
    for (let w = 0; w < this.workers.length; w++) {
      this.send(this.workers[w]!, { t: "prepare", ids: ids.filter((id) => id % this.workers.length === w) });
    }
    return Promise.all(all);
  }

  join(id: number) {
    return this.expect(this.joins, id, { t: "join", id });
  }

  leave(id: number) {
    return this.expect(this.leaves, id, { t: "leave", id });
  }

  /** One reply of type `t` from every worker. */
  ask<T extends Report["t"]>(command: Command, t: T): Promise<Extract<Report, { t: T }>[]> {
    if (this.workerError) return Promise.reject(this.workerError);
    return new Promise((resolve, reject) => {
      this.collector = { t, replies: [], done: { resolve: resolve as (r: Report[]) => void, reject } };
      for (const w of this.workers) this.send(w, command);
    });
  }

  /** Resolves once `ready()` holds (checked after every report); rejects after `timeoutMs` with `describe()`. */
  waitFor(ready: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (this.workerError) return Promise.reject(this.workerError);
    if (ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        ready: () => ready() || this.workerError !== undefined,
        resolve: () => {
          clearTimeout(timer);
          if (this.workerError) reject(this.workerError);
          else resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /**
   * Whether every one of `ids` (`count` of them) installed `epoch`. Waits ask this after every report, a
   * thousand times an epoch in a large call: the count rules most answers out without reading the ids.
   */
  installed(epoch: number, ids: Iterable<number>, count: number): boolean {
    const installs = this.epochs.get(epoch)?.installs;
    if (!installs || installs.size < count) return false;
    for (const id of ids) if (!installs.has(id)) return false;
    return true;
  }

  installedCount(epoch: number, ids: Iterable<number>): number {
    const installs = this.epochs.get(epoch)?.installs;
    let count = 0;
    if (installs) for (const id of ids) if (installs.has(id)) count++;
    return count;
  }

  async close(): Promise<void> {
    if (!this.workerError) await this.ask({ t: "shutdown" }, "shutdown").catch(() => undefined);
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** The joiner's download (GroupInfo with external_pub, and the ratchet tree), asked as a joiner would. */
async function joinerDownload(url: string, room: string): Promise<{ group_info: number; ratchet_tree: number } | null> {
  let connection: DsConnection | undefined;
  try {
    const { token } = await fetchDevToken(url, { name: "loadtest-probe", device: "probe", rooms: [room] });
    connection = await DsConnection.connect({ url, token, transports: ["websocket"] });
    const reply = await connection.request("room:join", { room });
    const group = reply.group as Record<string, unknown> | null;
    if (!group) return null;
    return { group_info: bytesOf(group.groupInfo, "groupInfo").byteLength, ratchet_tree: bytesOf(group.tree, "tree").byteLength };
  } catch {
    return null;
  } finally {
    connection?.close();
  }
}

function kindOf(index: number): ChangeKind {
  return index % 2 === 0 ? "join" : "leave";
}

export async function runLoadTest(options: LoadTestOptions): Promise<LoadTestResult> {
  const n = options.members;
  const changeCount = options.changes;
  const concurrency = options.concurrency ?? 1;
  const joinWindow = options.joinWindow ?? DEFAULT_JOIN_WINDOW;
  const seed = options.seed ?? 1;
  const batchTimeoutMs = options.batchTimeoutMs ?? 60_000 + 60 * n;
  const workerCount = Math.max(1, options.workers ?? Math.max(availableParallelism(), Math.ceil(n / MAX_PARTICIPANTS_PER_THREAD)));
  if (!Number.isInteger(n) || n < 2) throw new Error("members must be an integer of at least 2");
  if (!Number.isInteger(changeCount) || changeCount < 0) throw new Error("changes must be a non-negative integer");
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error("concurrency must be a positive integer");

  const loadBefore = loadavg();
  let members = n;
  let phase: Phase = "starting";
  let done = 0;
  let total = 0;
  const progress = () => options.onProgress?.({ phase, done, total, members });
  const setPhase = (p: Phase, t: number) => {
    phase = p;
    done = 0;
    total = t;
    progress();
  };
  progress();

  const profileDir = options.profileDir;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  let child: ChildDs | undefined;
  let url = options.url;
  if (!url) {
    child = await startChildDs({
      // Node writes one profile per thread (the DS's main thread, tsx's loader thread) into this folder.
      nodeArgs: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}/ds-${n}-members`] : [],
      dsArgs: options.dsArgs,
    });
    url = child.url;
  }
  const room = `loadtest-${n}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
  const joinCount = Array.from({ length: changeCount }, (_, i) => kindOf(i)).filter((k) => k === "join").length;
  const coordinator = new Coordinator(workerCount, { url, room, connectWindow: CONNECT_WINDOW }, () => progress());
  const failures: string[] = [];
  const changes: ChangeRecord[] = [];
  /** Members of the call now, and the epoch each joined at. */
  const present = new Map<number, number>();
  let phaseStart = 0;
  let lastEpoch = 0;
  let setup: LoadTestResult["setup"] = { join_ms: 0, total_ms: 0, joins_per_second: 0, lost_races: null, join_window: joinWindow };
  let download: LoadTestResult["joiner_download_bytes"] = null;
  let cpuPerParticipantCommit: number | null = null;
  let cpuSource: "thread" | "event-loop" = "thread";
  let dsPerCommit: number | null = null;
  let loopDelays: number[] = [];
  let fanout: DsFanout | null = null;
  let finals: FinalState[] = [];
  let cpuShare: number | null = null;
  let rssAfterSetup: number | null = null;

  try {
    // Everyone connects first, so the joins below measure the MLS side only.
    const ids = Array.from({ length: n + joinCount }, (_, i) => i);
    setPhase("connecting", ids.length);
    await coordinator.prepare(ids, () => {
      done++;
      progress();
    });

    // Filling the call: the first member creates the group, the others join by external commit.
    const metricsAtStart = await scrapeMetrics(url, options.metricsToken);
    setPhase("joining", n);
    const joinStart = now();
    const joined = (id: number, epoch: number) => {
      present.set(id, epoch);
      lastEpoch = Math.max(lastEpoch, epoch);
      done++;
      progress();
    };
    joined(0, (await coordinator.join(0)).epoch);
    // The members that must hold `epoch`: everyone who joined before it.
    const holders = (epoch: number) => [...present].filter(([, joinedAt]) => joinedAt < epoch).map(([id]) => id);
    const lagging = (epoch: number) => {
      const behind = holders(epoch).filter((id) => !coordinator.epochs.get(epoch)?.installs.has(id));
      const shown = behind.slice(0, 8).map((id) => `${identityOf(id)} at ${coordinator.newest.get(id) ?? "none"}`);
      return `${behind.length} behind: ${shown.join(", ")}${behind.length > shown.length ? ", ..." : ""}`;
    };
    await inWindows(ids.slice(1, n), joinWindow, async (id) => {
      // The DS sequences joins without waiting for the members to process them. Unpaced, a large call's members
      // fall minutes behind, and the DS drops a socket whose heartbeat waits behind that backlog (ping timeout);
      // with 1000 members even three epochs of lag (about 5 s of work per thread each) was too much. So a join
      // starts only once every member holds the latest epoch: at most `joinWindow` commits are ever unprocessed.
      const epoch = lastEpoch;
      const ids = holders(epoch);
      await coordinator.waitFor(() => coordinator.installed(epoch, ids, ids.length), batchTimeoutMs, () => `members catching up to epoch ${epoch} while joining (${lagging(epoch)})`);
      joined(id, (await coordinator.join(id)).epoch);
    });
    const joinEnd = now();
    setPhase("settling", n);
    const memberIds = () => present.keys();
    await coordinator.waitFor(
      () => {
        done = coordinator.installedCount(lastEpoch, memberIds());
        return done === present.size;
      },
      batchTimeoutMs,
      () => `every member at epoch ${lastEpoch} after the joins; ${present.size - done} are not`,
    );
    const setupEnd = now();
    const metricsAfterSetup = await scrapeMetrics(url, options.metricsToken);
    setup = {
      join_ms: ms(joinEnd - joinStart),
      total_ms: ms(setupEnd - joinStart),
      joins_per_second: ms(((n - 1) * 1000) / Math.max(1, joinEnd - joinStart)),
      lost_races: metricsAtStart && metricsAfterSetup ? counterDelta(metricsAtStart, metricsAfterSetup, 'conclave_ds_commits_rejected_total{reason="wrong-epoch"}') : null,
      join_window: joinWindow,
    };
    download = await joinerDownload(url, room);
    rssAfterSetup = Math.round(process.memoryUsage().rss / 2 ** 20);

    // The measured phase.
    const setupEpoch = lastEpoch;
    const random = seededRandom(seed);
    let nextSpare = n;
    setPhase("changes", changeCount);
    if (profileDir) await coordinator.ask({ t: "profile-start" }, "profiled");
    const cpuBefore = await coordinator.ask({ t: "cpu" }, "cpu");
    const dsCpuBefore = child ? procStatCpuMs(`/proc/${child.pid}/stat`) : undefined;
    const ownCpuBefore = process.cpuUsage();
    const metricsBefore = await scrapeMetrics(url, options.metricsToken);
    phaseStart = now();
    for (let first = 0, batch = 0; first < changeCount; first += concurrency, batch++) {
      const startEpoch = lastEpoch;
      const candidates = [...present.keys()];
      const batchChanges: ChangeRecord[] = [];
      for (let index = first; index < Math.min(first + concurrency, changeCount); index++) {
        const kind = kindOf(index);
        let id: number;
        if (kind === "join") id = nextSpare++;
        else {
          if (candidates.length <= 2) continue; // keep a call to measure
          id = candidates.splice(Math.floor(random() * candidates.length), 1)[0]!;
        }
        batchChanges.push({ index, batch, kind, id, requestedAt: Number.NaN, epoch: undefined, observers: [] });
      }
      changes.push(...batchChanges);
      const requests = batchChanges.map(async (c) => {
        if (c.kind === "join") {
          const r = await coordinator.join(c.id);
          c.requestedAt = r.requestedAt;
          c.epoch = r.epoch;
        } else {
          c.requestedAt = (await coordinator.leave(c.id)).requestedAt;
        }
      });
      const settled = await Promise.allSettled(requests);
      for (const s of settled) if (s.status === "rejected") failures.push(String((s.reason as Error).message ?? s.reason));
      if (settled.some((s) => s.status === "rejected")) break;
      const leavers = batchChanges.filter((c) => c.kind === "leave");
      const removalEpoch = (c: ChangeRecord) => (coordinator.departures.get(identityOf(c.id)) ?? []).filter((e) => e > startEpoch).sort((a, b) => a - b)[0];
      try {
        await coordinator.waitFor(
          () => leavers.every((c) => removalEpoch(c) !== undefined),
          batchTimeoutMs,
          () => `batch ${batch}: removal of ${leavers.filter((c) => removalEpoch(c) === undefined).map((c) => identityOf(c.id)).join(", ")}`,
        );
        for (const c of leavers) c.epoch = removalEpoch(c);
        for (const c of batchChanges) {
          if (c.kind === "join") present.set(c.id, c.epoch!);
          else present.delete(c.id);
        }
        lastEpoch = Math.max(lastEpoch, ...batchChanges.map((c) => c.epoch!));
        for (const c of batchChanges) c.observers = [...present].filter(([, joinedAt]) => joinedAt <= c.epoch!).map(([id]) => id);
        members = present.size;
        await coordinator.waitFor(
          () => coordinator.installed(lastEpoch, memberIds(), present.size),
          batchTimeoutMs,
          () => `batch ${batch}: every member at epoch ${lastEpoch}; missing ${[...memberIds()].filter((id) => !coordinator.epochs.get(lastEpoch)?.installs.has(id)).length}`,
        );
      } catch (e) {
        failures.push((e as Error).message);
        break;
      } finally {
        done += batchChanges.length;
        progress();
      }
    }
    const cpuAfter = await coordinator.ask({ t: "cpu" }, "cpu");
    const dsCpuAfter = child ? procStatCpuMs(`/proc/${child.pid}/stat`) : undefined;
    const ownCpu = process.cpuUsage(ownCpuBefore);
    const phaseWall = now() - phaseStart;
    // This process (coordinator and workers) and the child DS, against what the machine had: what is missing went to others.
    const usedMs = (ownCpu.user + ownCpu.system) / 1000 + (dsCpuAfter !== undefined && dsCpuBefore !== undefined ? dsCpuAfter - dsCpuBefore : 0);
    cpuShare = ms(usedMs / (phaseWall * cpus().length));
    const metricsAfter = await scrapeMetrics(url, options.metricsToken);
    if (profileDir) await coordinator.ask({ t: "profile-stop", dir: profileDir, prefix: `participants-${n}` }, "profiled");
    setPhase("finishing", 1);

    // CPU per participant per commit: the participant threads' time over the installs they did meanwhile.
    let installsInPhase = 0;
    for (const [epoch, record] of coordinator.epochs) if (epoch > setupEpoch) installsInPhase += record.installs.size;
    const cpuMs = cpuAfter.reduce((s, r) => s + r.cpuMs, 0) - cpuBefore.reduce((s, r) => s + r.cpuMs, 0);
    cpuSource = cpuAfter[0]?.source ?? "thread";
    if (installsInPhase > 0) cpuPerParticipantCommit = ms(cpuMs / installsInPhase);
    loopDelays = cpuAfter.map((r) => ms(r.eventLoopDelayP99Ms));
    if (metricsBefore && metricsAfter) {
      const h = histogramDelta(metricsBefore, metricsAfter, "conclave_ds_fanout_seconds");
      const accepted = counterDelta(metricsBefore, metricsAfter, "conclave_ds_commits_accepted_total");
      const bound = (q: number) => {
        const b = histogramQuantileBound(h, q);
        return b === undefined ? null : Number.isFinite(b) ? b * 1000 : null;
      };
      fanout = {
        source: "DS /metrics conclave_ds_fanout_seconds (receive -> vetted, stored, handed to Socket.IO for every subscriber)",
        messages: h.count,
        mean_ms: h.count ? ms((h.sumSeconds * 1000) / h.count) : 0,
        p50_le_ms: bound(0.5),
        p99_le_ms: bound(0.99),
        commits_accepted: accepted,
        commits_refused: counterDelta(metricsBefore, metricsAfter, "conclave_ds_commits_rejected_total"),
        requests_refused: counterDelta(metricsBefore, metricsAfter, "conclave_ds_refusals_total"),
      };
      if (dsCpuBefore !== undefined && dsCpuAfter !== undefined && accepted > 0) dsPerCommit = ms((dsCpuAfter - dsCpuBefore) / accepted);
    }
    finals = (await coordinator.ask({ t: "final" }, "final")).flatMap((r) => r.states);
  } catch (e) {
    failures.push((e as Error).message);
  } finally {
    if (failures.length > 0 && child) failures.push(`the DS's last log lines:\n${child.logTail()}`);
    await coordinator.close();
    await child?.close();
  }

  // Analysis.
  const samples = changes.map((c) => sampleOf(c, coordinator.epochs, phaseStart, identityOf));
  const latencies = samples.flatMap((s) => s.latency_ms);
  const overall = summaryMs(latencies);
  const { delivery, processing } = breakdown(changes, coordinator.epochs);
  const divergentEpochs = [...coordinator.epochs.entries()].filter(([, r]) => r.divergent).map(([e]) => e);
  const finalStates = finals.filter((s) => present.has(s.id));
  const finalDiverged = new Set(finalStates.map((s) => `${s.epoch}:${s.authenticator}`)).size > 1 || finalStates.some((s) => s.epoch !== lastEpoch);
  if (finalStates.length !== present.size && failures.length === 0) failures.push(`${present.size - finalStates.length} members were no longer in the call at the end`);
  const diverged = divergentEpochs.length > 0 || finalDiverged;
  const unobserved = samples.reduce((s, x) => s + x.missing.length + (x.epoch === null ? 1 : 0), 0);
  const commitSizes = (kind: ChangeKind) => samples.filter((s) => s.kind === kind && s.commit_bytes !== null).map((s) => s.commit_bytes!);
  return {
    members: n,
    changes: changeCount,
    concurrency,
    p50_ms: overall.p50_ms,
    p95_ms: overall.p95_ms,
    p99_ms: overall.p99_ms,
    max_ms: overall.max_ms,
    diverged,
    samples,
    ok: !diverged && unobserved === 0 && failures.length === 0 && coordinator.problems.length === 0 && samples.length === changeCount,
    complete: summaryMs(samples.filter((s) => s.complete_ms !== null).map((s) => s.complete_ms!)),
    accept: summaryMs(samples.filter((s) => s.accept_ms !== null).map((s) => s.accept_ms!)),
    delivery: summaryMs(delivery),
    processing: summaryMs(processing),
    commit_bytes: { join: sizeSummary(commitSizes("join")), leave: sizeSummary(commitSizes("leave")) },
    welcome_bytes: null,
    joiner_download_bytes: download,
    cpu: { per_participant_commit_ms: cpuPerParticipantCommit, source: cpuSource, ds_per_commit_ms: dsPerCommit, worker_loop_delay_p99_ms: loopDelays },
    ds_fanout: fanout,
    setup,
    unobserved,
    divergent_epochs: divergentEpochs,
    problems: coordinator.problems.slice(0, 50),
    failures,
    environment: {
      workers: workerCount,
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? "unknown",
      node: process.versions.node,
      ds: options.url ? options.url : "child process (sfu-signaling/main.ts, in-memory SQLite)",
      loadavg_before: loadBefore.map((l) => ms(l)),
      loadavg_after: loadavg().map((l) => ms(l)),
      final_epoch: lastEpoch,
      machine_share: cpuShare,
      rss_mb_after_setup: rssAfterSetup,
      seed,
    },
  };
}
