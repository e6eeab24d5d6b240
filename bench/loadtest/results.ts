/**
 * What one load-test run found, in the shape `--json` writes (snake_case, milliseconds), and the analysis
 * that turns the coordinator's raw records into it.
 *
 * Rekey latency of a change, per participant: from the change being requested (the joiner calling join(),
 * the leaver calling leave()) to that participant's media hook receiving the SFrame keys of the epoch the
 * change's commit starts. Its parts: `accept` (request -> the DS sequenced the commit, the DS's own stamp),
 * `delivery` (DS acceptance -> the participant's socket received the commit) and `processing` (received ->
 * keys installed: waiting for its thread plus MLS commit processing and key derivation).
 */
import type { SessionProblem } from "./protocol.js";
import { ms, summarize, type Summary } from "./stats.js";

export type ChangeKind = "join" | "leave";

/** One membership change (`samples[]` in the JSON). */
export interface ChangeSample {
  readonly index: number;
  /** Changes of one batch (`--concurrency`) were requested together. */
  readonly batch: number;
  readonly kind: ChangeKind;
  /** The joining or leaving participant's identity. */
  readonly participant: string;
  /** When it was requested, since the first change. */
  readonly requested_at_ms: number;
  /** The epoch the change's commit started (null if it never happened). */
  readonly epoch: number | null;
  readonly commit_bytes: number | null;
  /** Request -> the DS accepted the commit (DS clock, 1 ms grain). */
  readonly accept_ms: number | null;
  /** Request -> the last participant installed the epoch's keys. */
  readonly complete_ms: number | null;
  /** Participants that had to install the epoch, and how many did. */
  readonly observers: number;
  readonly observed: number;
  /** Identities of observers that never installed it. */
  readonly missing: readonly string[];
  /** Request -> keys installed, one value per observer, ascending. */
  readonly latency_ms: readonly number[];
  readonly delivery_p50_ms: number | null;
  readonly processing_p50_ms: number | null;
}

export interface SummaryMs {
  readonly count: number;
  readonly p50_ms: number;
  readonly p95_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
}

export interface LoadTestResult {
  readonly members: number;
  readonly changes: number;
  readonly concurrency: number;
  /** Rekey latency over every (change, observer) pair. */
  readonly p50_ms: number;
  readonly p95_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  /** Some epoch's epoch_authenticator differed between participants, or they ended in different states. */
  readonly diverged: boolean;
  readonly samples: readonly ChangeSample[];
  /** True when nothing diverged, every change was observed by every participant, no session reported an error, and nothing failed. */
  readonly ok: boolean;
  /** Per change: request -> every participant had the keys. */
  readonly complete: SummaryMs;
  readonly accept: SummaryMs;
  readonly delivery: SummaryMs;
  readonly processing: SummaryMs;
  readonly commit_bytes: { readonly join: SizeSummary | null; readonly leave: SizeSummary | null };
  /** Joins are external commits: no Welcome is ever sent. What a joiner downloads instead is below. */
  readonly welcome_bytes: null;
  readonly joiner_download_bytes: { readonly group_info: number; readonly ratchet_tree: number } | null;
  readonly cpu: {
    /** Participant threads' CPU time in the change phase over (participants x commits) processed. */
    readonly per_participant_commit_ms: number | null;
    readonly source: "thread" | "event-loop";
    /** The DS process's CPU time in the change phase over the commits it accepted (child DS only). */
    readonly ds_per_commit_ms: number | null;
    /** Each worker thread's event-loop delay p99 during the change phase. */
    readonly worker_loop_delay_p99_ms: readonly number[];
  };
  readonly ds_fanout: DsFanout | null;
  readonly setup: SetupReport;
  readonly unobserved: number;
  readonly divergent_epochs: readonly number[];
  readonly problems: readonly SessionProblem[];
  readonly failures: readonly string[];
  readonly environment: Environment;
}

export interface SizeSummary {
  readonly count: number;
  readonly min: number;
  readonly p50: number;
  readonly max: number;
}

export interface DsFanout {
  /** conclave_ds_fanout_seconds: from the DS receiving a message to handing it to Socket.IO for every subscriber. */
  readonly source: string;
  readonly messages: number;
  readonly mean_ms: number;
  /** Histogram bucket bounds holding the quantile (the DS keeps buckets, not samples). */
  readonly p50_le_ms: number | null;
  readonly p99_le_ms: number | null;
  readonly commits_accepted: number;
  readonly commits_refused: number;
  readonly requests_refused: number;
}

export interface SetupReport {
  /** First join requested -> last join accepted. */
  readonly join_ms: number;
  /** -> every member installed the last epoch. */
  readonly total_ms: number;
  readonly joins_per_second: number;
  /** External commits that lost the epoch to another and were redone (DS wrong-epoch refusals). */
  readonly lost_races: number | null;
  readonly join_window: number;
}

export interface Environment {
  readonly workers: number;
  readonly cpus: number;
  readonly cpu_model: string;
  readonly node: string;
  readonly ds: string;
  readonly loadavg_before: readonly number[];
  readonly loadavg_after: readonly number[];
  readonly final_epoch: number;
  readonly seed: number;
  /**
   * CPU time this run used in the change phase (participants, coordinator, child DS) over wall time x CPUs.
   * Well below 1 while latencies are high means other work on the machine took the rest.
   */
  readonly machine_share: number | null;
  /** Resident memory of the coordinator process (all participant workers included) once the call is full. */
  readonly rss_mb_after_setup: number | null;
}

export function summaryMs(values: Iterable<number>): SummaryMs {
  const s: Summary = summarize(values);
  return { count: s.count, p50_ms: ms(s.p50), p95_ms: ms(s.p95), p99_ms: ms(s.p99), max_ms: ms(s.max) };
}

export function sizeSummary(values: readonly number[]): SizeSummary | null {
  if (values.length === 0) return null;
  const s = summarize(values);
  return { count: s.count, min: Math.min(...values), p50: s.p50, max: s.max };
}

// ---------------------------------------------------------------------------------------------------------
// From the coordinator's records to samples

export interface InstallRecord {
  readonly installedAt: number;
  /** NaN for the joiner's own first epoch (it installs on the DS's acceptance, not on the echo). */
  readonly commitReceivedAt: number;
}

export interface EpochRecord {
  /** By participant id. */
  readonly installs: Map<number, InstallRecord>;
  /** The first epoch_authenticator reported for the epoch; `divergent` when another one differed. */
  authenticator: string | undefined;
  divergent: boolean;
  commit: { readonly at: number; readonly bytes: number } | undefined;
}

export interface ChangeRecord {
  readonly index: number;
  readonly batch: number;
  readonly kind: ChangeKind;
  readonly id: number;
  requestedAt: number;
  epoch: number | undefined;
  /** Participants that had to install `epoch`: the members after the batch that joined at or before it. */
  observers: readonly number[];
}

/** Each observer's timings for the epoch: undefined when it never installed it. */
function observerTimings(record: EpochRecord | undefined, observers: readonly number[], requestedAt: number) {
  return observers.map((id) => {
    const install = record?.installs.get(id);
    if (!install) return { id, latency: undefined, delivery: undefined, processing: undefined };
    const received = record?.commit && !Number.isNaN(install.commitReceivedAt);
    return {
      id,
      latency: install.installedAt - requestedAt,
      delivery: received ? install.commitReceivedAt - record!.commit!.at : undefined,
      processing: received ? install.installedAt - install.commitReceivedAt : undefined,
    };
  });
}

const defined = (values: readonly (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined);

export function sampleOf(c: ChangeRecord, epochs: ReadonlyMap<number, EpochRecord>, phaseStart: number, identity: (id: number) => string): ChangeSample {
  const record = c.epoch === undefined ? undefined : epochs.get(c.epoch);
  const timings = observerTimings(record, c.observers, c.requestedAt);
  const latencies = defined(timings.map((t) => t.latency)).sort((a, b) => a - b);
  const missing = timings.filter((t) => t.latency === undefined).map((t) => identity(t.id));
  const delivery = defined(timings.map((t) => t.delivery));
  const processing = defined(timings.map((t) => t.processing));
  const commit = record?.commit;
  return {
    index: c.index,
    batch: c.batch,
    kind: c.kind,
    participant: identity(c.id),
    requested_at_ms: ms(c.requestedAt - phaseStart),
    epoch: c.epoch ?? null,
    commit_bytes: commit?.bytes ?? null,
    accept_ms: commit ? ms(commit.at - c.requestedAt) : null,
    complete_ms: latencies.length > 0 && missing.length === 0 ? ms(latencies[latencies.length - 1]!) : null,
    observers: c.observers.length,
    observed: latencies.length,
    missing,
    latency_ms: latencies.map(ms),
    delivery_p50_ms: delivery.length ? ms(summarize(delivery).p50) : null,
    processing_p50_ms: processing.length ? ms(summarize(processing).p50) : null,
  };
}

/** Delivery and processing times of every (epoch, observer) pair whose commit was received (each epoch once). */
export function breakdown(changes: readonly ChangeRecord[], epochs: ReadonlyMap<number, EpochRecord>): { delivery: number[]; processing: number[] } {
  const delivery: number[] = [];
  const processing: number[] = [];
  const seen = new Set<number>();
  for (const c of changes) {
    if (c.epoch === undefined || seen.has(c.epoch)) continue;
    seen.add(c.epoch);
    const timings = observerTimings(epochs.get(c.epoch), c.observers, c.requestedAt);
    delivery.push(...defined(timings.map((t) => t.delivery)));
    processing.push(...defined(timings.map((t) => t.processing)));
  }
  return { delivery, processing };
}
