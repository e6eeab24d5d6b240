/** Order statistics for the load test's samples. */

/** Nearest-rank quantile of ascending `sorted` (q in [0, 1]); NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

export function ascending(values: Iterable<number>): number[] {
  return [...values].sort((a, b) => a - b);
}

export interface Summary {
  readonly count: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

export function summarize(values: Iterable<number>): Summary {
  const s = ascending(values);
  return { count: s.length, p50: quantile(s, 0.5), p95: quantile(s, 0.95), p99: quantile(s, 0.99), max: s.length ? s[s.length - 1]! : Number.NaN };
}

/** Rounded for JSON: 0.01 ms is below what loopback timing can tell apart. */
export function ms(v: number): number {
  return Math.round(v * 100) / 100;
}

/** A seeded uniform [0, 1) source (mulberry32), so a run's choice of leavers can be repeated. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
