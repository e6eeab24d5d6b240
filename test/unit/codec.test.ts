import { describe, expect, it } from "vitest";
import { MAX_VARINT, MlsDecodeError, Reader, Writer, decode, encode, fromHex, toHex, type Decoder } from "../../keying/codec/index.js";
import { thrown } from "./expect-error.js";

const readVarint: Decoder<number> = (r) => r.varint();
const readOpaque: Decoder<Uint8Array> = (r) => r.opaque();

describe("varint (RFC 9420 §2.1.2)", () => {
  const boundaries: [number, string][] = [
    [0, "00"],
    [63, "3f"],
    [64, "4040"],
    [16383, "7fff"],
    [16384, "80004000"],
    [MAX_VARINT, "bfffffff"],
  ];

  it.each(boundaries)("%d encodes minimally as %s and decodes back", (n, hex) => {
    expect(toHex(new Writer().varint(n).finish())).toBe(hex);
    expect(decode(readVarint, fromHex(hex))).toBe(n);
  });

  it("MAX_VARINT is 2^30-1 and larger values cannot be written", () => {
    expect(MAX_VARINT).toBe(2 ** 30 - 1);
    expect(() => new Writer().varint(2 ** 30)).toThrow(RangeError);
    expect(() => new Writer().varint(-1)).toThrow(RangeError);
    expect(() => new Writer().varint(1.5)).toThrow(RangeError);
  });

  it.each(["4000", "403f", "80000000", "80003fff", "4001"])("non-minimal %s is rejected", (hex) => {
    expect(thrown(MlsDecodeError, () => decode(readVarint, fromHex(hex))).code).toBe("non-minimal-length");
  });

  it.each(["c0", "c0000000", "ff", "ffffffffffffffff"])("the reserved 0b11 prefix %s is rejected", (hex) => {
    expect(thrown(MlsDecodeError, () => decode(readVarint, fromHex(hex))).code).toBe("invalid-length");
  });

  it("a varint cut short is truncated", () => {
    for (const hex of ["", "40", "80", "8000", "800040"]) {
      expect(thrown(MlsDecodeError, () => decode(readVarint, fromHex(hex))).code).toBe("truncated");
    }
  });
});

describe("vectors and opaque", () => {
  it("a vector whose declared length runs past the end is truncated, without reading beyond", () => {
    expect(thrown(MlsDecodeError, () => decode(readOpaque, fromHex("05010203"))).code).toBe("truncated");
    expect(thrown(MlsDecodeError, () => decode(readOpaque, fromHex("bfffffff00"))).code).toBe("truncated");
    const r = new Reader(fromHex("0301020304"));
    expect(toHex(r.opaque())).toBe("010203");
    expect(r.remaining).toBe(1);
  });

  it("items of a vector must end exactly at its declared length", () => {
    const readU16s: Decoder<number[]> = (r) => r.vector((s) => s.u16());
    expect(decode(readU16s, fromHex("0400010002"))).toEqual([1, 2]);
    // three bytes cannot hold uint16 items: the item decoder hits the vector's end, not the buffer's
    expect(thrown(MlsDecodeError, () => decode(readU16s, fromHex("03000100ff"))).code).toBe("truncated");
  });

  it("vector encoding prefixes the items' total byte size", () => {
    const bytes = new Writer().vector([1, 2, 3], (w, v) => void w.u16(v)).finish();
    expect(toHex(bytes)).toBe("06000100020003");
    const big = new Writer().opaque(new Uint8Array(300)).finish();
    expect(toHex(big.subarray(0, 2))).toBe("412c");
    expect(big.length).toBe(302);
  });

  it.each([0, 1, 63, 64, 300, 16383, 16384, 70000])("a nested vector of %i bytes, written in place, reads back with a minimal header", (size) => {
    const items = [new Uint8Array(size).fill(7), Uint8Array.of(1, 2)];
    const bytes = new Writer().u8(0xaa).vector([items], (w, inner) => void w.vector(inner, (w2, b) => void w2.opaque(b))).u8(0xbb).finish();
    const r = new Reader(bytes);
    expect(r.u8()).toBe(0xaa);
    expect(r.vector((o) => o.vector((i) => i.opaque()))).toEqual([items]);
    expect(r.u8()).toBe(0xbb);
    // Minimal headers all the way down: opaque(size) and opaque(2) inside, then the two vectors around them.
    const h = (n: number) => (n < 0x40 ? 1 : n < 0x4000 ? 2 : 4);
    const inner = h(size) + size + 3;
    const outer = h(inner) + inner;
    expect(bytes.length).toBe(1 + h(outer) + outer + 1);
  });

  it("trailing bytes after a complete structure are rejected", () => {
    expect(thrown(MlsDecodeError, () => decode(readOpaque, fromHex("0102ff"))).code).toBe("trailing-bytes");
    expect(thrown(MlsDecodeError, () => decode(readVarint, fromHex("0000"))).code).toBe("trailing-bytes");
  });
});

describe("optional", () => {
  const readOpt: Decoder<number | undefined> = (r) => r.optional((s) => s.u8());

  it("presence bytes 0 and 1 round trip", () => {
    expect(decode(readOpt, fromHex("00"))).toBeUndefined();
    expect(decode(readOpt, fromHex("012a"))).toBe(42);
    expect(toHex(new Writer().optional(undefined, (w, v: number) => void w.u8(v)).finish())).toBe("00");
    expect(toHex(new Writer().optional(42, (w, v: number) => void w.u8(v)).finish())).toBe("012a");
  });

  it("presence byte 2 is rejected", () => {
    const e = thrown(MlsDecodeError, () => decode(readOpt, fromHex("022a")));
    expect(e.code).toBe("invalid-value");
    expect(e.offset).toBe(0);
  });
});

describe("fixed-width integers", () => {
  it("u64 round trips across the whole range", () => {
    for (const v of [0n, 1n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 0xfffffffffffffffen, 0xffffffffffffffffn]) {
      const bytes = encode((w, x: bigint) => void w.u64(x), v);
      expect(bytes.length).toBe(8);
      expect(decode((r) => r.u64(), bytes)).toBe(v);
    }
    expect(toHex(encode((w, x: bigint) => void w.u64(x), 0x0102030405060708n))).toBe("0102030405060708");
    expect(() => new Writer().u64(-1n)).toThrow(RangeError);
    expect(() => new Writer().u64(2n ** 64n)).toThrow(RangeError);
  });

  it("u32 reads as unsigned", () => {
    expect(decode((r) => r.u32(), fromHex("ffffffff"))).toBe(0xffffffff);
    expect(toHex(new Writer().u32(0xffffffff).u16(0xabcd).u8(0x7f).finish())).toBe("ffffffffabcd7f");
  });

  it("short fixed-width reads are truncated with the offset", () => {
    const e = thrown(MlsDecodeError, () => decode((r) => [r.u16(), r.u32()], fromHex("0001aabbcc")));
    expect(e.code).toBe("truncated");
    expect(e.offset).toBe(2);
  });
});
