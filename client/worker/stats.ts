import type { DropReason, FrameCryptoOptions, FromWorker, ParticipantStats, WorkerError } from "./protocol.js";

const MAX_MESSAGE = 200;

/** A failure's text for stats and error posts: SFrameErrors name a KID and a reason, never key bytes. */
export function describeError(e: unknown): string {
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text;
}

/**
 * Per-participant frame counters and throttled error reports. Stats go to the page on a timer, only
 * when something changed; an error is posted at once unless the same participant and reason posted one
 * within errorIntervalMs, in which case it is counted and the count rides on the next post.
 */
export class StatsBook {
  private readonly entries = new Map<string, ParticipantStats>();
  private readonly throttle = new Map<string, { at: number; suppressed: number }>();
  private dirty = false;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly post: (message: FromWorker) => void,
    private options: Pick<FrameCryptoOptions, "statsIntervalMs" | "errorIntervalMs">,
  ) {
    this.schedule();
  }

  reconfigure(options: Pick<FrameCryptoOptions, "statsIntervalMs" | "errorIntervalMs">): void {
    this.options = options;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = setInterval(() => this.flush(), this.options.statsIntervalMs);
  }

  of(participantId: string): ParticipantStats {
    let s = this.entries.get(participantId);
    if (!s) {
      s = { participantId, encrypted: 0, decrypted: 0, held: 0, released: 0, dropped: {}, replayRejected: 0 };
      this.entries.set(participantId, s);
    }
    this.dirty = true;
    return s;
  }

  encrypted(participantId: string, epoch: bigint | undefined): void {
    const s = this.of(participantId);
    s.encrypted++;
    s.epoch = epoch;
  }

  decrypted(participantId: string, epoch: bigint | undefined, wasHeld: boolean): void {
    const s = this.of(participantId);
    s.decrypted++;
    if (wasHeld) s.released++;
    s.epoch = epoch;
  }

  held(participantId: string): void {
    this.of(participantId).held++;
  }

  dropped(participantId: string, reason: DropReason | "replay", error: unknown): void {
    const s = this.of(participantId);
    if (reason === "replay") s.replayRejected++;
    else s.dropped[reason] = (s.dropped[reason] ?? 0) + 1;
    const message = describeError(error);
    s.lastError = { reason, message, at: Date.now() };
    this.error(participantId, reason, message);
  }

  error(participantId: string, reason: WorkerError["reason"], message: string): void {
    const key = `${reason}\u0000${participantId}`;
    const now = Date.now();
    const t = this.throttle.get(key);
    if (t && now - t.at < this.options.errorIntervalMs) {
      t.suppressed++;
      return;
    }
    this.throttle.set(key, { at: now, suppressed: 0 });
    this.post({ type: "error", error: { participantId, reason, message, suppressed: t?.suppressed ?? 0 } });
  }

  snapshot(): ParticipantStats[] {
    return [...this.entries.values()].map((s) => ({ ...s, dropped: { ...s.dropped } }));
  }

  /** Posts the stats now if they changed since the last post. */
  flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.post({ type: "stats", stats: this.snapshot() });
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }
}
