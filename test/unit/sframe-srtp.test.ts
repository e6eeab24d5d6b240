import { describe, expect, it } from "vitest";
import { bytesEqual, concatBytes, fromHex, toHex } from "../../keying/codec/bytes.js";
import {
  exportSrtpMasterKey,
  MLS_SRTP_EXPORTER_LABEL,
  mlsSrtpContext,
  SFRAME_BASE_KEY_LABEL,
  SFrameError,
  SRTP_PROFILES,
  type MlsExporter,
  type SrtpProfileName,
} from "../../keying/sframe/index.js";
import { rejection } from "./expect-error.js";
import { realExporter } from "./sframe-helpers.js";

describe("MLS-SRTP master keys", () => {
  it("use the documented profile constants (RFC 5764, RFC 7714)", () => {
    expect(SRTP_PROFILES.SRTP_AES128_CM_HMAC_SHA1_80).toEqual({ id: 0x0001, keyLength: 16, saltLength: 14 });
    expect(SRTP_PROFILES.SRTP_AEAD_AES_128_GCM).toEqual({ id: 0x0007, keyLength: 16, saltLength: 12 });
  });

  it('export MLS-Exporter("MLS-SRTP 1.0", uint16(profile) || uint32(leaf), key_len + salt_len) and split it', async () => {
    const calls: [string, string, number][] = [];
    const exporter: MlsExporter = async (label, context, length) => {
      calls.push([label, toHex(context), length]);
      return Uint8Array.from({ length }, (_, i) => i);
    };
    const cm = await exportSrtpMasterKey(exporter, "SRTP_AES128_CM_HMAC_SHA1_80", 3);
    const gcm = await exportSrtpMasterKey(exporter, "SRTP_AEAD_AES_128_GCM", 0x01020304);
    expect(MLS_SRTP_EXPORTER_LABEL).toBe("MLS-SRTP 1.0");
    expect(calls).toEqual([
      ["MLS-SRTP 1.0", "000100000003", 30],
      ["MLS-SRTP 1.0", "000701020304", 28],
    ]);
    expect(cm.profile).toBe("SRTP_AES128_CM_HMAC_SHA1_80");
    expect(cm.masterKey).toEqual(Uint8Array.from({ length: 16 }, (_, i) => i));
    expect(cm.masterSalt).toEqual(Uint8Array.from({ length: 14 }, (_, i) => 16 + i));
    expect(gcm.masterKey).toHaveLength(16);
    expect(gcm.masterSalt).toEqual(Uint8Array.from({ length: 12 }, (_, i) => 16 + i));
  });

  it("match the MLS exporter of the epoch, and differ per sender, per profile and per epoch", async () => {
    const epoch1 = await realExporter(1);
    const epoch2 = await realExporter(2);
    const direct = await epoch1(MLS_SRTP_EXPORTER_LABEL, fromHex("000700000005"), 28);
    const k = await exportSrtpMasterKey(epoch1, "SRTP_AEAD_AES_128_GCM", 5);
    expect(concatBytes(k.masterKey, k.masterSalt)).toEqual(direct);

    const keys = await Promise.all([
      exportSrtpMasterKey(epoch1, "SRTP_AEAD_AES_128_GCM", 0),
      exportSrtpMasterKey(epoch1, "SRTP_AEAD_AES_128_GCM", 1),
      exportSrtpMasterKey(epoch1, "SRTP_AES128_CM_HMAC_SHA1_80", 0),
      exportSrtpMasterKey(epoch2, "SRTP_AEAD_AES_128_GCM", 0),
    ]);
    const sframeBase = await epoch1(SFRAME_BASE_KEY_LABEL, new Uint8Array(0), 16);
    const masters = [...keys.map((x) => x.masterKey), sframeBase];
    for (let i = 0; i < masters.length; i++) for (let j = i + 1; j < masters.length; j++) expect(bytesEqual(masters[i]!, masters[j]!)).toBe(false);
  });

  it("refuse bad input, typed", async () => {
    const exporter = await realExporter(1);
    for (const leaf of [-1, 2 ** 32, 1.5]) {
      expect((await rejection(SFrameError, exportSrtpMasterKey(exporter, "SRTP_AEAD_AES_128_GCM", leaf))).code).toBe("invalid-argument");
    }
    expect(() => mlsSrtpContext(SRTP_PROFILES.SRTP_AEAD_AES_128_GCM, -1)).toThrow(SFrameError);
    for (const name of ["SRTP_NULL", "toString", "__proto__"]) {
      expect((await rejection(SFrameError, exportSrtpMasterKey(exporter, name as SrtpProfileName, 0))).code).toBe("unsupported-suite");
    }
    expect((await rejection(SFrameError, exportSrtpMasterKey(async () => new Uint8Array(16), "SRTP_AEAD_AES_128_GCM", 0))).code).toBe("invalid-argument");
  });
});
