import { concatBytes } from "../codec/bytes.js";
import { av1Protected, av1Split, leb128 } from "./av1.js";
import type { SFrameContext } from "./context.js";
import { SFrameError } from "./errors.js";
import { escapeInto, h264ClearRegion, trailingZeros, unescape } from "./h264.js";

/**
 * Codec-aware media frames (BRIEF decision 6): protected frame = clear_prefix || SFrame ciphertext.
 * Browsers packetize transformed frames with codec packetizers that read the first payload bytes, so
 * those bytes stay clear and are fed to SFrame as metadata, hence authenticated. The receiver finds
 * the prefix with the same rules, reading only clear bytes.
 *
 *   vp8   10 bytes on key frames, 3 on delta frames (the P bit of the frame tag tells which)
 *   vp9   nothing (its RTP descriptor comes from the encoder, not the bitstream); opus: nothing
 *   h264  everything through the first slice's pic_parameter_set_id (see h264.ts); the ciphertext is
 *         escaped so it holds no start code. Leading SPS/PPS/SEI are clear but NOT authenticated:
 *         libwebrtc rewrites SPS VUI in transit and may insert parameter sets, so their bytes differ
 *         at the receiver; only the slice NAL header and slice-header fields are metadata.
 *   av1   leading temporal delimiters, then one OBU with the first real OBU's header (see av1.ts)
 *
 * A frame too short for its prefix (VP8 under 10/3 bytes, H.264 without a complete slice header, AV1
 * without an OBU) is refused with a typed error, never sent in the clear: such a frame is not a valid
 * frame of its codec, and a "whole frame as prefix" fallback would need a signal the receiver cannot
 * read from clear bytes without ambiguity. The caller drops it.
 */
export type MediaCodec = "vp8" | "vp9" | "h264" | "av1" | "opus";

export const MEDIA_CODECS: readonly MediaCodec[] = ["vp8", "vp9", "h264", "av1", "opus"];

/** "video/VP8" (RTCEncodedFrame metadata mimeType) to "vp8"; undefined for a codec SFrame does not frame. */
export function codecFromMimeType(mimeType: string): MediaCodec | undefined {
  const name = mimeType.slice(mimeType.indexOf("/") + 1).toLowerCase();
  return (MEDIA_CODECS as readonly string[]).includes(name) ? (name as MediaCodec) : undefined;
}

export interface UnprotectedFrame {
  readonly frame: Uint8Array;
  readonly kid: bigint;
  readonly ctr: bigint;
}

/** VP8 frame tag (RFC 6386 §9.1): P bit 0 is a key frame, whose 10-byte header ends after the dimensions. */
function vp8PrefixLength(frame: Uint8Array): number {
  if (frame.length === 0) throw new SFrameError("frame-too-short", "VP8: empty frame");
  const n = (frame[0]! & 1) === 0 ? 10 : 3;
  if (frame.length < n) throw new SFrameError("frame-too-short", `VP8: ${frame.length} bytes, prefix needs ${n}`);
  return n;
}

/** Encrypts one encoded frame under `kid` (a send key of `ctx`) into the protected layout of its codec. */
export async function protectFrame(ctx: SFrameContext, kid: bigint, codec: MediaCodec, frame: Uint8Array): Promise<Uint8Array> {
  switch (codec) {
    case "vp9":
    case "opus":
      return ctx.encrypt(kid, frame);
    case "vp8": {
      const n = vp8PrefixLength(frame);
      return ctx.encrypt(kid, frame.subarray(n), frame.subarray(0, n), true);
    }
    case "h264": {
      const { sliceStart, clearEnd } = h264ClearRegion(frame);
      const sframe = await ctx.encrypt(kid, frame.subarray(clearEnd), frame.subarray(sliceStart, clearEnd));
      const clear = frame.subarray(0, clearEnd);
      return escapeInto(sframe, trailingZeros(clear), clear);
    }
    case "av1": {
      const { carrierStart, carrierHeader } = av1Split(frame);
      const sframe = await ctx.encrypt(kid, frame.subarray(carrierStart), carrierHeader);
      return concatBytes(frame.subarray(0, carrierStart), carrierHeader, leb128(sframe.length), sframe);
    }
    default:
      throw new SFrameError("invalid-argument", `unknown codec ${String(codec)}`);
  }
}

/**
 * Decrypts a protected frame back to the encoded frame. Errors are SFrameErrors: `unknown-kid` (the
 * caller may hold the frame until its epoch arrives), `auth-failed`, `replay`, `malformed-frame`...
 */
export async function unprotectFrame(ctx: SFrameContext, codec: MediaCodec, frame: Uint8Array): Promise<UnprotectedFrame> {
  switch (codec) {
    case "vp9":
    case "opus": {
      const { kid, ctr, plaintext } = await ctx.decrypt(frame);
      return { frame: plaintext, kid, ctr };
    }
    case "vp8": {
      const prefix = frame.subarray(0, vp8PrefixLength(frame));
      const { kid, ctr, plaintext } = await ctx.decrypt(frame.subarray(prefix.length), prefix);
      return { frame: concatBytes(prefix, plaintext), kid, ctr };
    }
    case "h264": {
      const { sliceStart, clearEnd } = h264ClearRegion(frame);
      const clear = frame.subarray(0, clearEnd);
      const sframe = unescape(frame.subarray(clearEnd), trailingZeros(clear));
      const { kid, ctr, plaintext } = await ctx.decrypt(sframe, frame.subarray(sliceStart, clearEnd));
      return { frame: concatBytes(clear, plaintext), kid, ctr };
    }
    case "av1": {
      const { carrierStart, carrierHeader, ciphertext } = av1Protected(frame);
      const { kid, ctr, plaintext } = await ctx.decrypt(ciphertext, carrierHeader);
      return { frame: carrierStart === 0 ? plaintext : concatBytes(frame.subarray(0, carrierStart), plaintext), kid, ctr };
    }
    default:
      throw new SFrameError("invalid-argument", `unknown codec ${String(codec)}`);
  }
}
