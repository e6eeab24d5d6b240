import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/** RFC 9180 §7 constants of the algorithms MLS suites 1-7 use. */

export const HASHES: Readonly<Record<HashAlgorithm, { readonly Nh: number; readonly kdfId: number }>> = {
  "SHA-256": { Nh: 32, kdfId: 0x0001 },
  "SHA-384": { Nh: 48, kdfId: 0x0002 },
  "SHA-512": { Nh: 64, kdfId: 0x0003 },
};

export const AEADS: Readonly<Record<AeadAlgorithm, { readonly id: number; readonly Nk: number; readonly Nn: number }>> = {
  "AES-128-GCM": { id: 0x0001, Nk: 16, Nn: 12 },
  "AES-256-GCM": { id: 0x0002, Nk: 32, Nn: 12 },
  ChaCha20Poly1305: { id: 0x0003, Nk: 32, Nn: 12 },
};

export const AEAD_TAG_LENGTH = 16;

export interface KemParams {
  readonly id: number;
  /** The KEM's own KDF (DHKEM's ExtractAndExpand). */
  readonly hash: HashAlgorithm;
  readonly Nsecret: number;
  /** Npk = Nenc for every DHKEM. */
  readonly Npk: number;
  readonly Nsk: number;
  /** Weierstrass curves: group order and DeriveKeyPair bitmask (RFC 9180 §7.1.3). */
  readonly order?: bigint;
  readonly bitmask?: number;
}

export const KEMS: Readonly<Record<KemAlgorithm, KemParams>> = {
  "DHKEM-P256": {
    id: 0x0010, hash: "SHA-256", Nsecret: 32, Npk: 65, Nsk: 32, bitmask: 0xff,
    order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  },
  "DHKEM-P384": {
    id: 0x0011, hash: "SHA-384", Nsecret: 48, Npk: 97, Nsk: 48, bitmask: 0xff,
    order: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  },
  "DHKEM-P521": {
    id: 0x0012, hash: "SHA-512", Nsecret: 64, Npk: 133, Nsk: 66, bitmask: 0x01,
    order: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
  },
  "DHKEM-X25519": { id: 0x0020, hash: "SHA-256", Nsecret: 32, Npk: 32, Nsk: 32 },
  "DHKEM-X448": { id: 0x0021, hash: "SHA-512", Nsecret: 64, Npk: 56, Nsk: 56 },
};

export interface SignatureParams {
  readonly Npk: number;
  readonly Nsk: number;
  /** ECDSA: the hash signed; EdDSA hashes internally. */
  readonly hash?: HashAlgorithm;
}

export const SIGNATURES: Readonly<Record<SignatureScheme, SignatureParams>> = {
  Ed25519: { Npk: 32, Nsk: 32 },
  Ed448: { Npk: 57, Nsk: 57 },
  "ECDSA-P256-SHA256": { Npk: 65, Nsk: 32, hash: "SHA-256" },
  "ECDSA-P384-SHA384": { Npk: 97, Nsk: 48, hash: "SHA-384" },
  "ECDSA-P521-SHA512": { Npk: 133, Nsk: 66, hash: "SHA-512" },
};

export function isEcdsa(scheme: SignatureScheme): boolean {
  return SIGNATURES[scheme].hash !== undefined;
}

export function isWeierstrass(kem: KemAlgorithm): boolean {
  return KEMS[kem].order !== undefined;
}

/** SEC1 uncompressed point: 0x04 || x || y. Hybrid and compressed forms are not allowed by RFC 9180/9420. */
export function isUncompressedPoint(key: Uint8Array, length: number): boolean {
  return key.length === length && key[0] === 0x04;
}

/** Big-endian integer bytes left-padded to `length` (keys exported without leading zeros). */
export function leftPad(bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length >= length) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes, length - bytes.length);
  return out;
}
