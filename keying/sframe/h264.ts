import { SFrameError } from "./errors.js";

/**
 * H.264 Annex B framing for SFrame media frames. The packetizer splits a frame at start codes and reads
 * each NAL unit header; the receiver's depacketizer parses SPS and PPS and, for the first packet of an
 * IDR, the slice header up to pic_parameter_set_id (libwebrtc requests a key frame when it cannot find
 * that PPS). So everything up to and including those slice-header fields of the first slice stays
 * clear; the rest of the frame (the slice data and any later NAL units, start codes and all) is the
 * SFrame plaintext. The ciphertext continues the first slice's NAL unit, escaped with
 * emulation-prevention bytes so that it contains no start code.
 */

function malformed(detail: string): SFrameError {
  return new SFrameError("malformed-frame", `H.264: ${detail}`);
}

/** Index just past the next 00 00 01 at or after `from`, or -1. */
function nextStartCode(b: Uint8Array, from: number): number {
  for (let i = b.indexOf(1, from + 2); i >= 0; i = b.indexOf(1, i + 1)) {
    if (b[i - 1] === 0 && b[i - 2] === 0) return i + 1;
  }
  return -1;
}

/**
 * Bit reader over NAL unit bytes that skips emulation-prevention bytes (00 00 03), used for the
 * Exp-Golomb fields at the start of a slice header.
 */
class NalBits {
  private pos: number;
  private bit = 8;
  private byte = 0;
  private zeros = 0;

  constructor(
    private readonly b: Uint8Array,
    start: number,
    private readonly end: number,
  ) {
    this.pos = start;
  }

  /** Offset just past the last byte a read touched. */
  get consumed(): number {
    return this.pos;
  }

  private readBit(): number {
    if (this.bit === 8) {
      if (this.pos < this.end && this.zeros >= 2 && this.b[this.pos] === 3) {
        this.pos++;
        this.zeros = 0;
      }
      if (this.pos >= this.end) throw new SFrameError("frame-too-short", "H.264: slice header ends before pic_parameter_set_id");
      this.byte = this.b[this.pos++]!;
      this.zeros = this.byte === 0 ? this.zeros + 1 : 0;
      this.bit = 0;
    }
    return (this.byte >> (7 - this.bit++)) & 1;
  }

  /** ue(v), H.264 §9.1. Fields read here are at most 32 bits. */
  readUe(): number {
    let leading = 0;
    while (this.readBit() === 0) if (++leading > 31) throw malformed("Exp-Golomb code too long");
    let v = 0;
    for (let i = 0; i < leading; i++) v = v * 2 + this.readBit();
    return v + 2 ** leading - 1;
  }
}

const isSlice = (nalType: number): boolean => nalType >= 1 && nalType <= 5;

export interface H264ClearRegion {
  /** Offset of the first slice's NAL unit header. */
  readonly sliceStart: number;
  /** Offset where the clear bytes end: after first_mb_in_slice, slice_type and pic_parameter_set_id. */
  readonly clearEnd: number;
}

/**
 * Locates the clear part of an Annex B frame, reading only bytes that stay clear, so sender and
 * receiver find the same boundary. Leading NAL units (SPS, PPS, AUD, SEI) are passed as they are.
 */
export function h264ClearRegion(frame: Uint8Array): H264ClearRegion {
  if (frame.length === 0) throw new SFrameError("frame-too-short", "H.264: empty frame");
  let header = nextStartCode(frame, 0);
  if (header < 0) throw malformed("no start code");
  for (let i = 0; i < header - 3; i++) if (frame[i] !== 0) throw malformed("bytes before the first start code");
  for (;;) {
    if (header >= frame.length) throw new SFrameError("frame-too-short", "H.264: start code without a NAL unit");
    const nal = frame[header]!;
    if (nal & 0x80) throw malformed("forbidden_zero_bit set");
    const next = nextStartCode(frame, header + 1);
    if (isSlice(nal & 0x1f)) {
      const bits = new NalBits(frame, header + 1, next < 0 ? frame.length : next - 3);
      bits.readUe(); // first_mb_in_slice
      bits.readUe(); // slice_type
      bits.readUe(); // pic_parameter_set_id
      return { sliceStart: header, clearEnd: bits.consumed };
    }
    if (next < 0) throw malformed("no slice NAL unit");
    header = next;
  }
}

/** Zero bytes (up to 2) ending `b`: the escaping state a region continues from. */
export function trailingZeros(b: Uint8Array): number {
  const n = b.length;
  return n > 0 && b[n - 1] === 0 ? (n > 1 && b[n - 2] === 0 ? 2 : 1) : 0;
}

/**
 * Positions before `end` whose byte follows two zero bytes and satisfies `marks`; a marked byte breaks
 * the zero run (an emulation prevention byte stands, or is inserted, before it). Zero bytes are found
 * with indexOf, so ciphertext (a zero every 256 bytes, a zero pair every 64 KiB) is mostly skipped.
 */
function afterTwoZeros(src: Uint8Array, end: number, leadingZeros: number, marks: (b: number) => boolean): number[] {
  const found: number[] = [];
  let zeros = leadingZeros;
  for (let i = 0; i < end; ) {
    const b = src[i]!;
    if (zeros >= 2 && marks(b)) {
      found.push(i);
      zeros = 0;
    }
    if (b === 0) {
      zeros++;
      i++;
    } else {
      zeros = 0;
      i = src.indexOf(0, i + 1);
      if (i < 0 || i >= end) break;
    }
  }
  return found;
}

/**
 * Emulation prevention (H.264 §7.4.1): after two zero bytes, a byte 00..03 gets a 03 in front. A
 * region ending in 00 or 03 gets one more 03 so that it neither runs into the next start code nor ends
 * ambiguously; the receiver drops a final 03 before unescaping.
 */
export function escapeInto(src: Uint8Array, leadingZeros: number, prefix: Uint8Array): Uint8Array {
  const n = src.length;
  const inserts = afterTwoZeros(src, n, leadingZeros, (b) => b <= 3);
  const last = n > 0 ? src[n - 1]! : -1;
  const tail = last === 0 || last === 3 ? 1 : 0;
  const out = new Uint8Array(prefix.length + n + inserts.length + tail);
  out.set(prefix);
  let o = prefix.length;
  let from = 0;
  for (const at of inserts) {
    out.set(src.subarray(from, at), o);
    o += at - from;
    out[o++] = 3;
    from = at;
  }
  out.set(src.subarray(from), o);
  if (tail) out[out.length - 1] = 3;
  return out;
}

/** Inverse of escapeInto for the region after the clear bytes. */
export function unescape(src: Uint8Array, leadingZeros: number): Uint8Array {
  const n = src.length > 0 && src[src.length - 1] === 3 ? src.length - 1 : src.length;
  const removed = afterTwoZeros(src, n, leadingZeros, (b) => b === 3);
  if (removed.length === 0) return src.subarray(0, n);
  const out = new Uint8Array(n - removed.length);
  let o = 0;
  let from = 0;
  for (const at of removed) {
    out.set(src.subarray(from, at), o);
    o += at - from;
    from = at + 1;
  }
  out.set(src.subarray(from, n), o);
  return out;
}
