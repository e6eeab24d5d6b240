import { SFrameError } from "./errors.js";

/**
 * AV1 low-overhead bitstream framing (AV1 §5.3) for SFrame media frames. The RTP packetizer parses
 * the frame as a sequence of OBUs (header, optional extension byte, leb128 size), drops temporal
 * delimiters, and the depacketizer rebuilds every OBU with a size field. So the protected frame is
 * again a well-formed OBU sequence: the leading temporal delimiters as they were, then one carrier OBU
 * whose header (type and extension) is the first real OBU's, in the clear, and whose payload is the
 * SFrame ciphertext of the whole rest of the original frame, that OBU's own header included.
 */

const OBU_TEMPORAL_DELIMITER = 2;
const OBU_TILE_LIST = 8;
const OBU_PADDING = 15;
const EXTENSION_FLAG = 0x04;
const HAS_SIZE_FIELD = 0x02;
const MAX_OBU_SIZE = 0xffff_ffff;

function malformed(detail: string): SFrameError {
  return new SFrameError("malformed-frame", `AV1: ${detail}`);
}

interface Obu {
  readonly type: number;
  /** Header bytes: 1, or 2 with the extension byte. */
  readonly headerLength: number;
  readonly payloadStart: number;
  readonly end: number;
}

/** leb128() of AV1 §4.10.5: at most 8 bytes, value below 2^32. */
function readLeb128(b: Uint8Array, pos: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < 8; i++) {
    if (pos + i >= b.length) throw new SFrameError("frame-too-short", "AV1: OBU size field truncated");
    const byte = b[pos + i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (value > MAX_OBU_SIZE) throw malformed("OBU size above 2^32-1");
      return { value, next: pos + i + 1 };
    }
  }
  throw malformed("OBU size longer than 8 bytes");
}

export function leb128(value: number): Uint8Array {
  const out: number[] = [];
  do {
    const low = value % 128;
    value = Math.floor(value / 128);
    out.push(value > 0 ? low | 0x80 : low);
  } while (value > 0);
  return Uint8Array.from(out);
}

function readObu(b: Uint8Array, pos: number): Obu {
  const h = b[pos]!;
  if (h & 0x80) throw malformed("forbidden bit set");
  const headerLength = h & EXTENSION_FLAG ? 2 : 1;
  if (pos + headerLength > b.length) throw new SFrameError("frame-too-short", "AV1: OBU header truncated");
  const type = (h >> 3) & 0xf;
  if (!(h & HAS_SIZE_FIELD)) return { type, headerLength, payloadStart: pos + headerLength, end: b.length };
  const { value, next } = readLeb128(b, pos + headerLength);
  if (next + value > b.length) throw malformed("OBU runs past the end of the frame");
  return { type, headerLength, payloadStart: next, end: next + value };
}

export interface Av1Split {
  /** Offset of the first OBU that is not a temporal delimiter. */
  readonly carrierStart: number;
  /** That OBU's header with obu_has_size_field set: the authenticated metadata. */
  readonly carrierHeader: Uint8Array;
}

function carrierHeader(b: Uint8Array, obu: Obu, pos: number): Uint8Array {
  const header = b.slice(pos, pos + obu.headerLength);
  header[0]! |= HAS_SIZE_FIELD;
  return header;
}

/** Skips leading temporal delimiters (which carry nothing) and returns the carrier OBU. */
function firstRealObu(frame: Uint8Array): { pos: number; obu: Obu } {
  if (frame.length === 0) throw new SFrameError("frame-too-short", "AV1: empty frame");
  let pos = 0;
  for (;;) {
    if (pos >= frame.length) throw malformed("only temporal delimiters");
    const obu = readObu(frame, pos);
    if (obu.type !== OBU_TEMPORAL_DELIMITER) return { pos, obu };
    if (obu.end !== obu.payloadStart) throw malformed("temporal delimiter with a payload");
    pos = obu.end;
  }
}

/** Sender side: where the encrypted part starts and what to authenticate. */
export function av1Split(frame: Uint8Array): Av1Split {
  const { pos, obu } = firstRealObu(frame);
  // The packetizer drops these types, and the ciphertext with them.
  if (obu.type === OBU_TILE_LIST || obu.type === OBU_PADDING) throw malformed(`OBU type ${obu.type} cannot carry the frame`);
  return { carrierStart: pos, carrierHeader: carrierHeader(frame, obu, pos) };
}

/** Receiver side: the leading delimiters, the carrier header (canonical) and its payload, the SFrame ciphertext. */
export function av1Protected(frame: Uint8Array): Av1Split & { readonly ciphertext: Uint8Array } {
  const { pos, obu } = firstRealObu(frame);
  if (obu.end !== frame.length) throw malformed("bytes after the carrier OBU");
  return { carrierStart: pos, carrierHeader: carrierHeader(frame, obu, pos), ciphertext: frame.subarray(obu.payloadStart, obu.end) };
}
