/**
 * What a tile's E2EE badge says about a participant, read from the frame-transform worker's counters.
 * The worker posts cumulative counts only when they change, so the state is judged over a sliding window
 * of recent samples: frames decrypted in the window mean "decrypting"; frames dropped in the window with
 * fewer decrypted mean "failing"; nothing decrypted (no frames yet, or frames held for an epoch whose
 * commit has not arrived) means "waiting-for-keys". For the local participant "decrypting" reads as
 * encrypting: its frames are counted as encrypted instead.
 */
import type { DropReason, ParticipantStats } from "../worker/protocol.js";

export type E2eeState = "decrypting" | "waiting-for-keys" | "failing";

export interface ParticipantE2ee {
  /** The participant as the media layer names it ("user/device"). */
  readonly participantId: string;
  readonly state: E2eeState;
  /** Frames decrypted from this participant (for the local participant: frames encrypted). */
  readonly frames: number;
  /** Frames that could not be decrypted (or encrypted): dropped for any reason but a missing send key, or replayed. */
  readonly failures: number;
  /** Frames held for an epoch not known yet, and how many of them were released (decrypted) later. */
  readonly held: number;
  readonly released: number;
  /** Epoch of the last frame processed. */
  readonly epoch: bigint | undefined;
  /** The last failure, for a tooltip (reason and message; never key material). */
  readonly lastError: string | undefined;
}

/** Drops that are waiting, not failure: sending before the first epoch's keys are in. */
const WAITING_DROPS: ReadonlySet<DropReason> = new Set(["no-send-key"]);

interface Sample {
  readonly at: number;
  readonly frames: number;
  readonly failures: number;
}

interface Track {
  samples: Sample[];
  latest: ParticipantStats;
}

function failuresOf(s: ParticipantStats): number {
  let n = s.replayRejected;
  for (const [reason, count] of Object.entries(s.dropped) as [DropReason, number | undefined][]) {
    if (!WAITING_DROPS.has(reason)) n += count ?? 0;
  }
  return n;
}

export class E2eeStatusBook {
  private readonly tracks = new Map<string, Track>();

  /**
   * @param selfId the local participant's id in the worker's stats (judged by frames encrypted)
   * @param windowMs how far back "recent" reaches; a few stats intervals
   */
  constructor(
    private readonly selfId: string,
    private readonly windowMs = 3000,
  ) {}

  /** Takes a stats post (cumulative counters, one entry per participant). */
  update(stats: readonly ParticipantStats[], now: number): void {
    for (const s of stats) {
      const frames = s.participantId === this.selfId ? s.encrypted : s.decrypted;
      let track = this.tracks.get(s.participantId);
      if (!track) this.tracks.set(s.participantId, (track = { samples: [], latest: s }));
      track.latest = s;
      track.samples.push({ at: now, frames, failures: failuresOf(s) });
    }
  }

  /** Every participant the worker has counted, as of `now`. */
  statuses(now: number): ParticipantE2ee[] {
    return [...this.tracks.keys()].map((id) => this.status(id, now)!);
  }

  status(participantId: string, now: number): ParticipantE2ee | undefined {
    const track = this.tracks.get(participantId);
    if (!track) return undefined;
    const { samples, latest } = track;
    // Keep one sample at or before the window's start: the baseline the recent counts are measured from.
    while (samples.length > 1 && samples[1]!.at <= now - this.windowMs) samples.shift();
    const last = samples[samples.length - 1]!;
    const base = samples[0]!.at <= now - this.windowMs ? samples[0]! : { at: 0, frames: 0, failures: 0 };
    const frames = last.frames - base.frames;
    const failures = last.failures - base.failures;
    const state: E2eeState = failures > 0 && failures >= frames ? "failing" : frames > 0 ? "decrypting" : "waiting-for-keys";
    return {
      participantId,
      state,
      frames: last.frames,
      failures: last.failures,
      held: latest.held,
      released: latest.released,
      epoch: latest.epoch,
      lastError: latest.lastError ? `${latest.lastError.reason}: ${latest.lastError.message}` : undefined,
    };
  }

  forget(participantId: string): void {
    this.tracks.delete(participantId);
  }
}
