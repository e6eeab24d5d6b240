/**
 * Per-connection token buckets: one for events, one for payload bytes. A connection that keeps pushing past
 * its refusals is cut off, so a flood costs the DS a counter increment per event, not a store write.
 */
export interface RateLimitOptions {
  /** Sustained events per second and the burst allowed above it. */
  readonly eventsPerSecond: number;
  readonly eventBurst: number;
  /** Sustained payload bytes per second and the burst allowed above it. */
  readonly bytesPerSecond: number;
  readonly byteBurst: number;
  /** Refusals in a row after which the connection is dropped. */
  readonly disconnectAfter: number;
}

export const DEFAULT_RATE_LIMITS: RateLimitOptions = {
  eventsPerSecond: 50,
  eventBurst: 200,
  bytesPerSecond: 4 << 20,
  byteBurst: 16 << 20,
  disconnectAfter: 500,
};

class Bucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(n: number, now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

export type RateDecision = "allow" | "refuse" | "disconnect";

export class ConnectionRateLimiter {
  private readonly events: Bucket;
  private readonly bytes: Bucket;
  private refusedInARow = 0;

  constructor(
    private readonly options: RateLimitOptions,
    private readonly clock: () => number = Date.now,
  ) {
    const now = clock();
    this.events = new Bucket(options.eventsPerSecond, options.eventBurst, now);
    this.bytes = new Bucket(options.bytesPerSecond, options.byteBurst, now);
  }

  check(payloadBytes: number): RateDecision {
    const now = this.clock();
    if (this.events.take(1, now) && this.bytes.take(payloadBytes, now)) {
      this.refusedInARow = 0;
      return "allow";
    }
    return ++this.refusedInARow >= this.options.disconnectAfter ? "disconnect" : "refuse";
  }
}

/** Bytes of binary data in a socket payload: what the byte bucket charges (JSON text is bounded by the engine). */
export function payloadBytes(v: unknown, depth = 0): number {
  if (v instanceof Uint8Array) return v.byteLength;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (typeof v === "string") return v.length;
  if (depth > 4 || typeof v !== "object" || v === null) return 8;
  let n = 0;
  for (const x of Object.values(v)) n += payloadBytes(x, depth + 1);
  return n;
}
