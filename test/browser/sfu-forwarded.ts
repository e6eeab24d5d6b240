/**
 * Reading what the SFU forwarded (its `tapForwarded` hook) back into media frames, for tests that check the
 * forwarded payloads are SFrame ciphertext: strip the RTP payload descriptor, reassemble each frame, then the
 * frame is clear prefix || SFrame ciphertext (brief, decision 6).
 */
import type { ForwardedRtp } from "../../sfu-signaling/sfu/index.js";

/**
 * RFC 7741 §4.2 VP8 payload descriptor: its length, and whether the packet starts a frame (S=1, PID=0).
 * The descriptor is written by the RTP packetizer after any frame transform, so it is always in the clear.
 */
export function vp8Descriptor(payload: Uint8Array): { length: number; frameStart: boolean } {
  const first = payload[0]!;
  let length = 1;
  if (first & 0x80) {
    const ext = payload[length++]!;
    if (ext & 0x80) length += payload[length]! & 0x80 ? 2 : 1;
    if (ext & 0x40) length++;
    if (ext & 0x30) length++;
  }
  return { length, frameStart: (first & 0x10) !== 0 && (first & 0x07) === 0 };
}

/**
 * Whole VP8 frames (descriptor stripped, packets in order) for every timestamp whose packets were all seen.
 * `packets` must be one stream: one `from`, one `to`, video.
 */
export function vp8Frames(packets: ForwardedRtp[]): Uint8Array[] {
  const byTimestamp = new Map<number, Map<number, ForwardedRtp>>();
  for (const p of packets) {
    const frame = byTimestamp.get(p.timestamp) ?? new Map<number, ForwardedRtp>();
    frame.set(p.sequenceNumber, p);
    byTimestamp.set(p.timestamp, frame);
  }
  const frames: Uint8Array[] = [];
  for (const frame of byTimestamp.values()) {
    const first = [...frame.values()].find((p) => vp8Descriptor(p.payload).frameStart);
    if (!first) continue;
    const parts: Uint8Array[] = [];
    for (let seq = first.sequenceNumber; ; seq = (seq + 1) & 0xffff) {
      const p = frame.get(seq);
      if (!p) break;
      parts.push(p.payload.subarray(vp8Descriptor(p.payload).length));
      if (p.marker) {
        frames.push(Buffer.concat(parts));
        break;
      }
    }
  }
  return frames;
}

/** VP8 clear prefix of decision 6: 10 bytes on key frames (P bit 0), 3 on delta frames. */
export const vp8Prefix = (frame: Uint8Array): number => ((frame[0]! & 1) === 0 ? 10 : 3);
