import { SFrameError } from "./errors.js";
import type { MlsExporter } from "./mls.js";

/**
 * MLS-SRTP: SRTP master keys for native (non-SFrame) media legs, one per sender per epoch, from the
 * same MLS exporter that keys SFrame, so a leg that cannot run SFrame still rekeys on every commit.
 *
 *   secret = MLS-Exporter("MLS-SRTP 1.0", uint16(profile) || uint32(leaf_index), key_len + salt_len)
 *   master_key = secret[..key_len], master_salt = secret[key_len..]
 *
 * The label is distinct from SFrame's, so the two key families are independent. The context binds
 * the sender, giving each member its own master key (SRTP needs a key used by one sender only, like
 * SFrame's KID rule), and the profile's RFC 5764 identifier, so one epoch never yields the same bytes
 * under two profiles with different key/salt splits.
 */
export const MLS_SRTP_EXPORTER_LABEL = "MLS-SRTP 1.0";

export interface SrtpProfile {
  /** RFC 5764 §4.1.2 / RFC 7714 §14.2 SRTPProtectionProfile value. */
  readonly id: number;
  readonly keyLength: number;
  readonly saltLength: number;
}

export const SRTP_PROFILES = {
  /** RFC 3711 AES_CM_128_HMAC_SHA1_80: 128-bit master key, 112-bit master salt. */
  SRTP_AES128_CM_HMAC_SHA1_80: { id: 0x0001, keyLength: 16, saltLength: 14 },
  /** RFC 7714 AEAD_AES_128_GCM: 128-bit master key, 96-bit master salt. */
  SRTP_AEAD_AES_128_GCM: { id: 0x0007, keyLength: 16, saltLength: 12 },
} as const satisfies Record<string, SrtpProfile>;

export type SrtpProfileName = keyof typeof SRTP_PROFILES;

export interface SrtpMasterKey {
  readonly profile: SrtpProfileName;
  readonly masterKey: Uint8Array;
  readonly masterSalt: Uint8Array;
}

export function mlsSrtpContext(profile: SrtpProfile, leafIndex: number): Uint8Array {
  if (!Number.isInteger(leafIndex) || leafIndex < 0 || leafIndex > 0xffff_ffff) throw new SFrameError("invalid-argument", "leaf index outside uint32");
  const context = new Uint8Array(6);
  const view = new DataView(context.buffer);
  view.setUint16(0, profile.id);
  view.setUint32(2, leafIndex);
  return context;
}

/** The SRTP master key and salt the member at `leafIndex` sends with in the exporter's epoch. */
export async function exportSrtpMasterKey(exporter: MlsExporter, profile: SrtpProfileName, leafIndex: number): Promise<SrtpMasterKey> {
  const p: SrtpProfile | undefined = Object.hasOwn(SRTP_PROFILES, profile) ? SRTP_PROFILES[profile] : undefined;
  if (!p) throw new SFrameError("unsupported-suite", `SRTP profile ${String(profile)}`);
  const length = p.keyLength + p.saltLength;
  const secret = await exporter(MLS_SRTP_EXPORTER_LABEL, mlsSrtpContext(p, leafIndex), length);
  if (secret.length !== length) throw new SFrameError("invalid-argument", `exporter returned ${secret.length} bytes, want ${length}`);
  return { profile, masterKey: secret.slice(0, p.keyLength), masterSalt: secret.slice(p.keyLength) };
}
