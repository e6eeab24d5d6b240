import { SFrameError } from "./errors.js";

/**
 * The SFrame header (RFC 9605 §4.3): a config byte |X|KKK|Y|CCC| followed by the KID and then the CTR,
 * each either carried in its 3-bit field (values 0-7) or appended in the fewest big-endian bytes
 * (1-8, length-1 in the field). KID and CTR are 64-bit, so they are bigints at this boundary.
 */

export const MAX_UINT64 = (1n << 64n) - 1n;
/** Longest possible header: config byte + 8-byte KID + 8-byte CTR. */
export const MAX_HEADER_LENGTH = 17;

export interface SFrameHeader {
  readonly kid: bigint;
  readonly ctr: bigint;
  /** Bytes the header occupies at the start of the ciphertext. */
  readonly length: number;
}

const TWO_32 = 0x1_0000_0000;

/** Bytes a value takes after the config byte: 0 when it fits the 3-bit field. */
function extraLength(v: bigint): number {
  if (v < 8n) return 0;
  if (v < 0x1_0000_0000n) return v < 0x100n ? 1 : v < 0x1_0000n ? 2 : v < 0x100_0000n ? 3 : 4;
  return v < 0x100_0000_0000n ? 5 : v < 0x1_0000_0000_0000n ? 6 : v < 0x100_0000_0000_0000n ? 7 : 8;
}

function checkRange(name: string, v: bigint): void {
  if (v < 0n || v > MAX_UINT64) throw new SFrameError("invalid-argument", `${name} outside 0..2^64-1`);
}

/** Encoded length of the header for (kid, ctr). */
export function headerLength(kid: bigint, ctr: bigint): number {
  return 1 + extraLength(kid) + extraLength(ctr);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Writes `v` as `n` big-endian bytes at out[o] in 32-bit arithmetic. Below 2^53 (every CTR in practice)
 * the split takes no bigint operation, each of which allocates: this runs for every frame.
 */
export function writeUint(out: Uint8Array, o: number, v: bigint, n: number): void {
  let lo: number;
  let hi: number;
  if (v <= MAX_SAFE) {
    const x = Number(v);
    lo = x >>> 0;
    hi = (x - lo) / TWO_32;
  } else {
    lo = Number(v & 0xffff_ffffn);
    hi = Number(v >> 32n);
  }
  for (let i = n - 1; i >= 0; i--) {
    if (i >= n - 4) {
      out[o + i] = lo & 0xff;
      lo >>>= 8;
    } else {
      out[o + i] = hi & 0xff;
      hi >>>= 8;
    }
  }
}

/** Writes the header for (kid, ctr) at out[offset] and returns its length. Range-checks both values. */
export function writeHeader(out: Uint8Array, offset: number, kid: bigint, ctr: bigint): number {
  checkRange("KID", kid);
  checkRange("CTR", ctr);
  const kl = extraLength(kid);
  const cl = extraLength(ctr);
  const k = kl === 0 ? Number(kid) : 0x8 | (kl - 1);
  const c = cl === 0 ? Number(ctr) : 0x8 | (cl - 1);
  out[offset] = (k << 4) | c;
  if (kl > 0) writeUint(out, offset + 1, kid, kl);
  if (cl > 0) writeUint(out, offset + 1 + kl, ctr, cl);
  return 1 + kl + cl;
}

export function encodeHeader(kid: bigint, ctr: bigint): Uint8Array {
  const out = new Uint8Array(headerLength(kid, ctr));
  writeHeader(out, 0, kid, ctr);
  return out;
}

/** Reads an n-byte big-endian value that must be minimal: no leading zero byte, and >= 8 when one byte. */
function readUint(b: Uint8Array, o: number, n: number, name: string): bigint {
  if (b[o] === 0 || (n === 1 && b[o]! < 8)) throw new SFrameError("non-minimal", `${name} not in its shortest encoding`);
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < n; i++) {
    // Bytes beyond the low four shift through `hi`; `lo` stays a uint32.
    hi = hi * 256 + (lo >>> 24);
    lo = ((lo << 8) | b[o + i]!) >>> 0;
  }
  return hi === 0 ? BigInt(lo) : n <= 6 ? BigInt(hi * TWO_32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Parses the header at the start of `bytes` (which may continue with the AEAD ciphertext). */
export function decodeHeader(bytes: Uint8Array): SFrameHeader {
  if (bytes.length < 1) throw new SFrameError("truncated", "empty SFrame ciphertext");
  const config = bytes[0]!;
  const kl = config & 0x80 ? ((config >> 4) & 0x7) + 1 : 0;
  const cl = config & 0x08 ? (config & 0x7) + 1 : 0;
  const length = 1 + kl + cl;
  if (bytes.length < length) throw new SFrameError("truncated", `header needs ${length} bytes, have ${bytes.length}`);
  const kid = kl === 0 ? BigInt((config >> 4) & 0x7) : readUint(bytes, 1, kl, "KID");
  const ctr = cl === 0 ? BigInt(config & 0x7) : readUint(bytes, 1 + kl, cl, "CTR");
  return { kid, ctr, length };
}
