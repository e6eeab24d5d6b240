import { describe, expect, it } from "vitest";
import { safetyCode } from "../../keying/call/safety-code.js";
import { MlsValidationError } from "../../keying/mls/errors.js";

describe("safety code", () => {
  it("renders 30 bytes as six groups of five digits, big-endian 40-bit chunks mod 10^5", () => {
    const a = new Uint8Array(32);
    a.fill(0xff, 0, 5); // 2^40 - 1 = 1099511627775
    a[9] = 7; // second chunk = 7
    expect(safetyCode(a)).toBe("27775 00007 00000 00000 00000 00000");
  });

  it("differs when any byte of the first 30 differs", () => {
    const base = new Uint8Array(32).map((_, i) => i * 37);
    const seen = new Set([safetyCode(base)]);
    for (let i = 0; i < 30; i++) {
      const other = base.slice();
      other[i]! ^= 1;
      seen.add(safetyCode(other));
    }
    expect(seen.size).toBe(31);
  });

  it("refuses an authenticator too short to fill the code", () => {
    expect(() => safetyCode(new Uint8Array(29))).toThrow(MlsValidationError);
  });
});
