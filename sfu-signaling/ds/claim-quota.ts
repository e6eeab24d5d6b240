/**
 * How often one claimer may take another user's single-use KeyPackages. Each KeyPackage can be handed out
 * once, so without a quota anyone authenticated could drain a user's supply as fast as the connection rate
 * limit allows, and nobody could add that user any more (only the last-resort KeyPackage would be left).
 *
 * Claims are counted per (claimer, target user) in a sliding window; only claims that took at least one
 * single-use KeyPackage count (a claim answered from last-resort KeyPackages drains nothing). The table is
 * bounded: expired entries are dropped, and past `maxTracked` pairs the oldest are forgotten.
 */
import { DsError } from "../errors.js";

export interface ClaimQuotaOptions {
  /** Claims that took single-use KeyPackages, per claimer and target user, within the window. */
  readonly claims: number;
  readonly windowMs: number;
  /** (claimer, target) pairs remembered at most. */
  readonly maxTracked: number;
}

export const DEFAULT_CLAIM_QUOTA: ClaimQuotaOptions = { claims: 6, windowMs: 60_000, maxTracked: 100_000 };

/** The quota key of a user of this DS. */
export function localClaimer(user: string): string {
  return `local:${user}`;
}

/** The quota key of a remote provider's user (the provider vouches for it on the link). */
export function remoteClaimer(provider: string, user: string): string {
  return `remote:${provider}:${user}`;
}

export class ClaimQuota {
  /** Reservation times (ms) per pair, oldest first; never more than `claims` each. */
  private readonly recent = new Map<string, number[]>();

  constructor(
    private readonly options: ClaimQuotaOptions,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Reserves one claim of `claimer` on `target`, or refuses with `claim-quota-exceeded` (extra:
   * `retryAfterMs`). The returned function gives the reservation back (the claim took nothing single-use).
   */
  take(claimer: string, target: string): () => void {
    const now = this.clock();
    const key = JSON.stringify([claimer, target]);
    const times = (this.recent.get(key) ?? []).filter((t) => t > now - this.options.windowMs);
    if (times.length >= this.options.claims) {
      this.recent.set(key, times);
      const retryAfterMs = Math.max(1, times[0]! + this.options.windowMs - now);
      throw new DsError("claim-quota-exceeded", `at most ${this.options.claims} KeyPackage claims per user every ${Math.round(this.options.windowMs / 1000)} s; retry later`, {
        retryAfterMs,
      });
    }
    times.push(now);
    this.recent.delete(key);
    this.recent.set(key, times);
    if (this.recent.size > this.options.maxTracked) this.prune(now);
    return () => {
      const current = this.recent.get(key);
      const i = current?.lastIndexOf(now) ?? -1;
      if (i >= 0) current!.splice(i, 1);
      if (current?.length === 0) this.recent.delete(key);
    };
  }

  /** Pairs tracked now (for tests and metrics). */
  get size(): number {
    return this.recent.size;
  }

  /** Drops expired pairs; if that is not enough, the least recently claimed ones down to 90% of the cap. */
  private prune(now: number): void {
    for (const [key, times] of this.recent) if (times[times.length - 1]! <= now - this.options.windowMs) this.recent.delete(key);
    const target = Math.floor(this.options.maxTracked * 0.9);
    for (const key of this.recent.keys()) {
      if (this.recent.size <= target) break;
      this.recent.delete(key);
    }
  }
}
