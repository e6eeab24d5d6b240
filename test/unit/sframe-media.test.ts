import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { bytesEqual, concatBytes, fromHex, toHex } from "../../keying/codec/bytes.js";
import { escapeInto, h264ClearRegion, trailingZeros, unescape } from "../../keying/sframe/h264.js";
import {
  codecFromMimeType,
  decodeHeader,
  protectFrame,
  SFrameContext,
  SFrameError,
  unprotectFrame,
  type MediaCodec,
} from "../../keying/sframe/index.js";
import type { FixtureManifest } from "../fixtures/record-frames.js";
import { rejection } from "./expect-error.js";

const KID = 0x15n;
const BASE = new Uint8Array(16).fill(0x42);

let tx: SFrameContext;
let rx: SFrameContext;
beforeAll(async () => {
  tx = new SFrameContext(4);
  rx = new SFrameContext(4);
  await tx.addSendKey(KID, BASE);
  await rx.addReceiveKey(KID, BASE);
});

const protect = (codec: MediaCodec, frame: Uint8Array) => protectFrame(tx, KID, codec, frame);
const unprotect = (codec: MediaCodec, frame: Uint8Array) => unprotectFrame(rx, codec, frame);

/** Real frames from Chromium's fake camera and microphone (test/fixtures/record-frames.ts). */
const framesDir = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "frames");
const manifest = JSON.parse(readFileSync(join(framesDir, "manifest.json"), "utf8")) as FixtureManifest;
const fixtures = manifest.frames.map((f) => ({ ...f, data: new Uint8Array(readFileSync(join(framesDir, f.file))) }));
const recorded = (codec: MediaCodec) => fixtures.filter((f) => f.codec === codec);

/** Offsets just past each 00 00 01 in `b`. */
function startCodes(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 2; i < b.length; i++) if (b[i] === 1 && b[i - 1] === 0 && b[i - 2] === 0) out.push(i + 1);
  return out;
}

/** H.264 §7.4.1: no 00 00 00, 00 00 01 or 00 00 02 inside a NAL unit, and no trailing zero byte. */
function emulationFree(b: Uint8Array): boolean {
  for (let i = 2; i < b.length; i++) if (b[i - 2] === 0 && b[i - 1] === 0 && b[i]! <= 2) return false;
  return b.length === 0 || b[b.length - 1] !== 0;
}

/** Exp-Golomb ue(v) bits and raw-byte packing, to craft H.264 slice headers. */
function ue(v: number): string {
  const code = (v + 1).toString(2);
  return "0".repeat(code.length - 1) + code;
}
function bitsToBytes(bits: string): Uint8Array {
  const padded = bits.padEnd(Math.ceil(bits.length / 8) * 8, "0");
  return Uint8Array.from({ length: padded.length / 8 }, (_, i) => parseInt(padded.slice(i * 8, i * 8 + 8), 2));
}

describe("fixtures", () => {
  it("hold real frames for every codec", () => {
    expect(manifest.skipped).toEqual([]);
    for (const codec of ["vp8", "vp9", "h264", "av1", "opus"] as const) {
      const frames = recorded(codec);
      expect(frames.length).toBeGreaterThanOrEqual(4);
      for (const f of frames) expect(f.data.length).toBe(f.bytes);
      if (codec !== "opus") expect(frames.map((f) => f.frameType)).toContain("delta");
      expect(frames[0]!.frameType).toBe("key");
    }
  });
});

describe("codecFromMimeType", () => {
  it("maps WebRTC mime types and refuses the rest", () => {
    expect(codecFromMimeType("video/VP8")).toBe("vp8");
    expect(codecFromMimeType("video/vp9")).toBe("vp9");
    expect(codecFromMimeType("video/H264")).toBe("h264");
    expect(codecFromMimeType("video/AV1")).toBe("av1");
    expect(codecFromMimeType("audio/opus")).toBe("opus");
    expect(codecFromMimeType("video/rtx")).toBeUndefined();
    expect(codecFromMimeType("audio/red")).toBeUndefined();
  });
});

describe("VP8: 10 clear bytes on key frames, 3 on delta frames", () => {
  it("round-trips the recorded frames with the frame tag (and key frame header) in the clear", async () => {
    for (const f of recorded("vp8")) {
      const n = f.frameType === "key" ? 10 : 3;
      expect(f.data[0]! & 1).toBe(f.frameType === "key" ? 0 : 1); // the P bit the rule reads
      const out = await protect("vp8", f.data);
      expect(out.subarray(0, n)).toEqual(f.data.subarray(0, n));
      expect(decodeHeader(out.subarray(n)).kid).toBe(KID);
      expect(out.length).toBe(f.data.length + decodeHeader(out.subarray(n)).length + 16);
      expect((await unprotect("vp8", out)).frame).toEqual(f.data);
    }
  });

  it("authenticates the clear prefix", async () => {
    const key = recorded("vp8")[0]!.data;
    for (const i of [0, 3, 6, 9]) {
      const out = await protect("vp8", key);
      out[i]! ^= i === 0 ? 0x10 : 0x01; // byte 0: keep the P bit, change the version bits
      expect((await rejection(SFrameError, unprotect("vp8", out))).code).toBe("auth-failed");
    }
    // Turning a key frame into a delta frame moves the prefix boundary: refused (how depends on the bytes
    // that now parse as the SFrame header), never decrypted.
    const out = await protect("vp8", key);
    out[0]! |= 1;
    await rejection(SFrameError, unprotect("vp8", out));
  });

  it("handles frames exactly as long as the prefix and refuses shorter ones on both sides", async () => {
    const key10 = fromHex("f0380000009d012a4001");
    const delta3 = fromHex("910d00");
    expect((await unprotect("vp8", await protect("vp8", key10))).frame).toEqual(key10);
    expect((await unprotect("vp8", await protect("vp8", delta3))).frame).toEqual(delta3);
    for (const short of [new Uint8Array(0), key10.subarray(0, 9), delta3.subarray(0, 2)]) {
      expect((await rejection(SFrameError, protect("vp8", short))).code).toBe("frame-too-short");
      expect((await rejection(SFrameError, unprotect("vp8", short))).code).toBe("frame-too-short");
    }
    // A delta prefix followed by a header too short to be SFrame.
    expect((await rejection(SFrameError, unprotect("vp8", fromHex("910d0080")))).code).toBe("truncated");
  });
});

describe("VP9 and Opus: no clear prefix", () => {
  for (const codec of ["vp9", "opus"] as const) {
    it(`${codec}: the whole recorded frame is SFrame ciphertext and round-trips`, async () => {
      for (const f of recorded(codec)) {
        const out = await protect(codec, f.data);
        const h = decodeHeader(out);
        expect(h.kid).toBe(KID);
        expect(out.length).toBe(h.length + f.data.length + 16);
        const forged = out.slice();
        forged[forged.length - 1]! ^= 1;
        expect((await rejection(SFrameError, unprotect(codec, forged))).code).toBe("auth-failed");
        expect((await unprotect(codec, out)).frame).toEqual(f.data);
      }
    });
  }

  it("an empty frame still encrypts, and an empty protected frame is truncated", async () => {
    expect((await unprotect("opus", await protect("opus", new Uint8Array(0)))).frame).toEqual(new Uint8Array(0));
    expect((await rejection(SFrameError, unprotect("vp9", new Uint8Array(0)))).code).toBe("truncated");
  });
});

describe("H.264: NAL headers and the slice header through pic_parameter_set_id clear, ciphertext escaped", () => {
  it("round-trips the recorded frames; the packetizer sees the same NAL units with the same headers", async () => {
    for (const f of recorded("h264")) {
      const { sliceStart, clearEnd } = h264ClearRegion(f.data);
      const out = await protect("h264", f.data);
      expect(out.subarray(0, clearEnd)).toEqual(f.data.subarray(0, clearEnd));
      // Every start code up to the first slice survives, and the ciphertext adds none.
      const before = startCodes(f.data).filter((o) => o <= sliceStart);
      expect(startCodes(out)).toEqual(before);
      expect(emulationFree(out.subarray(sliceStart))).toBe(true);
      expect((await unprotect("h264", out)).frame).toEqual(f.data);
    }
    // The recorded key frame is SPS, PPS, IDR: the first two are passed clear.
    const key = recorded("h264")[0]!.data;
    expect(startCodes(key).map((o) => key[o]! & 0x1f)).toEqual([7, 8, 5]);
    expect(startCodes(await protect("h264", key)).map((o) => key[o]! & 0x1f)).toEqual([7, 8, 5]);
  });

  it("authenticates the slice NAL header and slice header fields, not leading parameter sets", async () => {
    const key = recorded("h264")[0]!.data;
    const { sliceStart, clearEnd } = h264ClearRegion(key);
    const out = await protect("h264", key);
    const nalRefIdc = out.slice();
    nalRefIdc[sliceStart]! ^= 0x20;
    expect((await rejection(SFrameError, unprotect("h264", nalRefIdc))).code).toBe("auth-failed");
    const field = out.slice();
    field[clearEnd - 1]! ^= 0x01;
    await rejection(SFrameError, unprotect("h264", field)); // refused, typed: the bytes after it may parse differently
    // libwebrtc may rewrite SPS VUI in transit, so SPS bytes are passed through unauthenticated.
    const sps = out.slice();
    sps[10]! ^= 0x01;
    const back = await unprotect("h264", sps);
    expect(back.frame.subarray(sliceStart)).toEqual(key.subarray(sliceStart));
  });

  it("accepts a receiver-side frame whose start codes changed length", async () => {
    const delta = recorded("h264")[1]!.data; // 00 00 00 01 61 ...
    expect(Array.from(delta.subarray(0, 4))).toEqual([0, 0, 0, 1]);
    const out = await protect("h264", delta);
    const threeByte = out.subarray(1); // depacketizers may rebuild 00 00 01
    expect((await unprotect("h264", threeByte)).frame).toEqual(delta.subarray(1));
  });

  /** A crafted frame: optional leading NAL units, then a slice whose header is `sliceBits`, then `payload`. */
  function slice(nalHeader: number, sliceBits: string, payload: Uint8Array, leading: Uint8Array = new Uint8Array(0)): Uint8Array {
    return concatBytes(leading, fromHex("00000001"), Uint8Array.of(nalHeader), bitsToBytes(sliceBits), payload);
  }

  it("escapes start-code emulation in crafted frames with zero-heavy plaintext and several slices", async () => {
    const aud = fromHex("0000000109f0");
    const sei = fromHex("000001060501aa80");
    const zeros = concatBytes(new Uint8Array(300), fromHex("000001000002000003"), new Uint8Array(5));
    const secondSlice = concatBytes(fromHex("00000001"), fromHex("41"), bitsToBytes(ue(99) + ue(0) + ue(0) + "1"), zeros);
    const cases = [
      slice(0x65, ue(0) + ue(7) + ue(0) + "1", zeros, aud),
      slice(0x41, ue(0) + ue(5) + ue(3), concatBytes(zeros, secondSlice), sei),
      // pps_id = 255 with its 8 info bits filling a byte: the clear part ends in 00 (one leading zero)
      slice(0x61, ue(0) + ue(5) + "0000000" + "1" + "00000000", fromHex("8899")),
      // pps_id's info bits fill two whole bytes (out of range, but parsed): the clear part ends in 00 00 and
      // the raw slice continues with an emulation-prevention 03
      slice(0x61, ue(3) + ue(1) + "0".repeat(15) + "1" + "0".repeat(16), fromHex("03018899")),
    ];
    for (const frame of cases) {
      const { sliceStart, clearEnd } = h264ClearRegion(frame);
      const out = await protect("h264", frame);
      expect(startCodes(out).filter((o) => o > sliceStart)).toEqual([]);
      expect(emulationFree(out.subarray(sliceStart))).toBe(true);
      expect(out.subarray(0, clearEnd)).toEqual(frame.subarray(0, clearEnd));
      expect((await unprotect("h264", out)).frame).toEqual(frame);
    }
    expect(trailingZeros(cases[2]!.subarray(0, h264ClearRegion(cases[2]!).clearEnd))).toBe(1);
    expect(trailingZeros(cases[3]!.subarray(0, h264ClearRegion(cases[3]!).clearEnd))).toBe(2);
  });

  it("escape and unescape are inverse and emulation-free for every leading-zero state", () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    const alphabet = [0, 0, 0, 0, 1, 2, 3, 3, 0x80, 0xff];
    const failures: string[] = [];
    for (let n = 0; n < 3000; n++) {
      const src = Uint8Array.from({ length: 1 + (rand() % 40) }, () => alphabet[rand() % alphabet.length]!);
      for (const lead of [0, 1, 2]) {
        const prefix = Uint8Array.from([0x65, 0, 0].slice(0, lead + 1));
        const escaped = escapeInto(src, lead, prefix);
        const ok =
          bytesEqual(escaped.subarray(0, prefix.length), prefix) &&
          emulationFree(escaped) &&
          bytesEqual(unescape(escaped.subarray(prefix.length), lead), src);
        if (!ok) failures.push(`${toHex(src)} after ${lead} zeros`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("refuses frames without a complete slice header, typed", async () => {
    const cases: [string, Uint8Array][] = [
      ["frame-too-short", new Uint8Array(0)],
      ["frame-too-short", fromHex("00000001")],
      ["frame-too-short", fromHex("0000000165")], // slice NAL header only
      ["frame-too-short", fromHex("000000016500")], // first_mb_in_slice unterminated
      ["frame-too-short", concatBytes(fromHex("0000000165"), bitsToBytes(ue(0) + ue(7)))], // no pps_id
      ["malformed-frame", fromHex("0000000167428015")], // SPS without a slice
      ["malformed-frame", fromHex("6742801500000165b8")], // bytes before the first start code
      ["malformed-frame", fromHex("00000001e5b8")], // forbidden_zero_bit
      ["malformed-frame", fromHex("1234")],
    ];
    for (const [code, frame] of cases) {
      expect((await rejection(SFrameError, protect("h264", frame))).code).toBe(code);
      expect((await rejection(SFrameError, unprotect("h264", frame))).code).toBe(code);
    }
  });
});

describe("AV1: temporal delimiters, then one OBU carrying the first OBU's header in the clear", () => {
  /** [type, extension?, payload start, end] for each OBU, or throws on a size that overruns. */
  function obus(b: Uint8Array): { type: number; header: number[]; size: number }[] {
    const out = [];
    let p = 0;
    while (p < b.length) {
      const h = b[p]!;
      const ext = h & 4 ? 1 : 0;
      let q = p + 1 + ext;
      let size = 0;
      if (h & 2) {
        for (let i = 0; ; i++) {
          const x = b[q++]!;
          size += (x & 0x7f) * 2 ** (7 * i);
          if (!(x & 0x80)) break;
        }
      } else size = b.length - q;
      if (q + size > b.length) throw new Error("OBU overruns");
      out.push({ type: (h >> 3) & 0xf, header: Array.from(b.subarray(p, p + 1 + ext)), size });
      p = q + size;
    }
    return out;
  }

  it("round-trips the recorded frames as a well-formed OBU sequence", async () => {
    for (const f of recorded("av1")) {
      const original = obus(f.data);
      expect(original[0]!.type).toBe(2); // temporal delimiter
      const out = await protect("av1", f.data);
      const carried = obus(out);
      expect(carried).toHaveLength(2);
      expect(carried[0]).toEqual(original[0]);
      expect(carried[1]!.type).toBe(original[1]!.type); // sequence header on key frames, frame OBU on deltas
      expect(carried[1]!.header).toEqual(original[1]!.header);
      expect((await unprotect("av1", out)).frame).toEqual(f.data);
    }
    expect(obus(recorded("av1")[0]!.data).map((o) => o.type)).toEqual([2, 1, 6]);
  });

  it("decrypts what a depacketizer delivers: temporal delimiters dropped, size fields added", async () => {
    const f = recorded("av1")[1]!.data;
    const out = await protect("av1", f);
    const withoutTd = out.subarray(2);
    expect((await unprotect("av1", withoutTd)).frame).toEqual(f.subarray(2));

    // A carrier written without obu_has_size_field (last OBU of a frame) is the same OBU.
    const frame = concatBytes(Uint8Array.of(0x30), new Uint8Array(20).fill(9)); // frame OBU, no size field
    const sized = await protect("av1", frame);
    expect(sized[0]).toBe(0x32);
    const lenBytes = obus(sized)[0]!.size < 128 ? 1 : 2;
    const unsized = concatBytes(Uint8Array.of(0x30), sized.subarray(1 + lenBytes));
    expect((await unprotect("av1", unsized)).frame).toEqual(frame);
  });

  it("keeps and authenticates the extension byte (temporal and spatial ids)", async () => {
    const frame = concatBytes(fromHex("1200"), Uint8Array.of(0x36, 0x48), Uint8Array.of(3), fromHex("aabbcc"));
    const out = await protect("av1", frame);
    expect(Array.from(out.subarray(0, 4))).toEqual([0x12, 0x00, 0x36, 0x48]);
    const other = out.slice();
    other[3] = 0x28; // another temporal/spatial layer
    expect((await rejection(SFrameError, unprotect("av1", other))).code).toBe("auth-failed");
    const otherType = out.slice();
    otherType[2] = 0x2e; // frame header OBU instead of frame OBU
    expect((await rejection(SFrameError, unprotect("av1", otherType))).code).toBe("auth-failed");
    expect((await unprotect("av1", out)).frame).toEqual(frame);
  });

  it("refuses frames without a carrier OBU, typed", async () => {
    const cases: [string, Uint8Array][] = [
      ["frame-too-short", new Uint8Array(0)],
      ["frame-too-short", Uint8Array.of(0x36)], // extension flag, extension byte missing
      ["frame-too-short", fromHex("1200328080")], // size field cut off
      ["malformed-frame", fromHex("1200")], // only a temporal delimiter
      ["malformed-frame", fromHex("120100")], // temporal delimiter with a payload
      ["malformed-frame", fromHex("b200")], // forbidden bit
      ["malformed-frame", fromHex("320500")], // size beyond the frame
      ["malformed-frame", fromHex("7a00")], // padding OBU cannot carry the frame
      ["malformed-frame", fromHex("4200")], // tile list OBU cannot carry the frame
      ["malformed-frame", fromHex("328080808080808080808001")], // size field longer than 8 bytes
    ];
    for (const [code, frame] of cases) expect([code, (await rejection(SFrameError, protect("av1", frame))).code]).toEqual([code, code]);
    const out = await protect("av1", fromHex("1200320100"));
    expect((await rejection(SFrameError, unprotect("av1", concatBytes(out, fromHex("1200"))))).code).toBe("malformed-frame"); // bytes after the carrier
  });
});
