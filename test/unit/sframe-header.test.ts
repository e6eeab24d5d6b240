import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../keying/codec/bytes.js";
import { decodeHeader, encodeHeader, headerLength, MAX_HEADER_LENGTH, MAX_UINT64, SFrameError } from "../../keying/sframe/index.js";
import { thrown } from "./expect-error.js";

describe("SFrame header (RFC 9605 §4.3)", () => {
  const cases: [bigint, bigint, string][] = [
    [0n, 0n, "00"],
    [7n, 7n, "77"],
    [0n, 7n, "07"],
    [7n, 0n, "70"],
    [8n, 0n, "8008"],
    [0n, 8n, "0808"],
    [8n, 8n, "880808"],
    [7n, 8n, "7808"],
    [8n, 7n, "8708"],
    [255n, 256n, "89ff0100"],
    [MAX_UINT64, 0n, "f0ffffffffffffffff"],
    [0n, MAX_UINT64, "0fffffffffffffffff"],
    [MAX_UINT64, MAX_UINT64, "ff" + "ff".repeat(16)],
    [1n << 56n, (1n << 32n) + 5n, "fc" + "0100000000000000" + "0100000005"],
    [0x1234n, 0x10000n, "9a1234010000"],
  ];

  it.each(cases)("kid %s ctr %s encodes to %s and back", (kid, ctr, hex) => {
    const enc = encodeHeader(kid, ctr);
    expect(toHex(enc)).toBe(hex);
    expect(headerLength(kid, ctr)).toBe(enc.length);
    expect(decodeHeader(enc)).toEqual({ kid, ctr, length: enc.length });
  });

  it("is at most MAX_HEADER_LENGTH bytes", () => {
    expect(encodeHeader(MAX_UINT64, MAX_UINT64).length).toBe(MAX_HEADER_LENGTH);
  });

  it("decodes a header followed by ciphertext, reporting its length", () => {
    expect(decodeHeader(fromHex("8808 08 deadbeef".replace(/ /g, "")))).toEqual({ kid: 8n, ctr: 8n, length: 3 });
    expect(decodeHeader(fromHex("11ffff"))).toEqual({ kid: 1n, ctr: 1n, length: 1 });
  });

  it("rejects truncated headers", () => {
    expect(thrown(SFrameError, () => decodeHeader(new Uint8Array(0))).code).toBe("truncated");
    expect(thrown(SFrameError, () => decodeHeader(fromHex("88"))).code).toBe("truncated");
    expect(thrown(SFrameError, () => decodeHeader(fromHex("8808"))).code).toBe("truncated");
    expect(thrown(SFrameError, () => decodeHeader(fromHex("f0ffffffffffffff"))).code).toBe("truncated");
    expect(thrown(SFrameError, () => decodeHeader(fromHex("0f" + "ff".repeat(7)))).code).toBe("truncated");
  });

  it("rejects non-minimal encodings", () => {
    expect(thrown(SFrameError, () => decodeHeader(fromHex("8005"))).code).toBe("non-minimal"); // KID 5 must sit in the config byte
    expect(thrown(SFrameError, () => decodeHeader(fromHex("0807"))).code).toBe("non-minimal"); // CTR 7 likewise
    expect(thrown(SFrameError, () => decodeHeader(fromHex("9000ff"))).code).toBe("non-minimal"); // 2-byte KID with a leading zero
    expect(thrown(SFrameError, () => decodeHeader(fromHex("09000a"))).code).toBe("non-minimal"); // 2-byte CTR 10
    expect(thrown(SFrameError, () => decodeHeader(fromHex("0f00" + "ff".repeat(7)))).code).toBe("non-minimal");
  });

  it("refuses values outside 64 bits", () => {
    expect(thrown(SFrameError, () => encodeHeader(-1n, 0n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => encodeHeader(0n, MAX_UINT64 + 1n)).code).toBe("invalid-argument");
  });

  it("round-trips every length of KID and CTR", () => {
    for (let kb = 0; kb <= 64; kb += 4) {
      for (let cb = 0; cb <= 64; cb += 8) {
        const kid = kb === 0 ? 0n : (1n << BigInt(kb)) - 1n;
        const ctr = cb === 0 ? 3n : (1n << BigInt(cb)) - 2n;
        const enc = encodeHeader(kid, ctr);
        expect(decodeHeader(enc)).toEqual({ kid, ctr, length: enc.length });
      }
    }
  });
});
