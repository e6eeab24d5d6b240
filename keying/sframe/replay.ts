import { SFrameError } from "./errors.js";

/**
 * Receiver anti-replay on CTR (RFC 9605 §9.4 suggests adapting RFC 3711 §3.3.2): accept a CTR above
 * the highest seen, or one within `width` below it that has not been seen; reject the rest. The bitmap
 * is a ring indexed by CTR mod width, so moving the window forward clears slots instead of shifting.
 */
export function assertReplayWidth(width: number): void {
  if (!Number.isInteger(width) || width < 32 || width > 65536 || (width & (width - 1)) !== 0) {
    throw new SFrameError("invalid-argument", "replay window width must be a power of two in 32..65536");
  }
}

export class ReplayWindow {
  /** Highest accepted CTR; -1 before the first. */
  private top = -1n;
  private readonly seen: Uint32Array;
  private readonly mask: bigint;
  private readonly span: bigint;

  constructor(readonly width: number) {
    assertReplayWidth(width);
    this.seen = new Uint32Array(width / 32);
    this.mask = BigInt(width - 1);
    this.span = BigInt(width);
  }

  private slot(ctr: bigint): number {
    return Number(ctr & this.mask);
  }

  private isSeen(ctr: bigint): boolean {
    const i = this.slot(ctr);
    return (this.seen[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  /** Could `ctr` be accepted now? A cheap test before spending an AEAD on the frame. */
  check(ctr: bigint): boolean {
    if (ctr > this.top) return true;
    return this.top - ctr < this.span && !this.isSeen(ctr);
  }

  /** Records `ctr` after its frame authenticated; false if it is a replay (or lost a race to one). */
  accept(ctr: bigint): boolean {
    if (ctr > this.top) {
      const gap = ctr - this.top;
      if (this.top < 0n || gap >= this.span) this.seen.fill(0);
      else {
        // Slots top+1 .. ctr held CTRs one window older: free them.
        for (let i = this.slot(this.top + 1n), n = Number(gap); n > 0; n--, i = (i + 1) & (this.width - 1)) {
          this.seen[i >>> 5]! &= ~(1 << (i & 31));
        }
      }
      this.top = ctr;
    } else if (!this.check(ctr)) return false;
    const i = this.slot(ctr);
    this.seen[i >>> 5]! |= 1 << (i & 31);
    return true;
  }
}
