/** RFC 9420 §17.1 cipher suites 1-7: the parameters every provider must honour. */
export type CipherSuiteId = 1 | 2 | 3 | 4 | 5 | 6 | 7;

export type KemAlgorithm = "DHKEM-X25519" | "DHKEM-P256" | "DHKEM-X448" | "DHKEM-P521" | "DHKEM-P384";
export type AeadAlgorithm = "AES-128-GCM" | "AES-256-GCM" | "ChaCha20Poly1305";
export type HashAlgorithm = "SHA-256" | "SHA-384" | "SHA-512";
export type SignatureScheme = "Ed25519" | "Ed448" | "ECDSA-P256-SHA256" | "ECDSA-P384-SHA384" | "ECDSA-P521-SHA512";

export interface SuiteParams {
  readonly id: CipherSuiteId;
  readonly name: string;
  readonly kem: KemAlgorithm;
  readonly aead: AeadAlgorithm;
  readonly hash: HashAlgorithm;
  readonly signature: SignatureScheme;
  /** Hash / KDF output length (KDF.Nh). */
  readonly Nh: number;
  /** AEAD key length. */
  readonly Nk: number;
  /** AEAD nonce length. */
  readonly Nn: number;
}

export const SUITES: Readonly<Record<CipherSuiteId, SuiteParams>> = {
  1: { id: 1, name: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", kem: "DHKEM-X25519", aead: "AES-128-GCM", hash: "SHA-256", signature: "Ed25519", Nh: 32, Nk: 16, Nn: 12 },
  2: { id: 2, name: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", kem: "DHKEM-P256", aead: "AES-128-GCM", hash: "SHA-256", signature: "ECDSA-P256-SHA256", Nh: 32, Nk: 16, Nn: 12 },
  3: { id: 3, name: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", kem: "DHKEM-X25519", aead: "ChaCha20Poly1305", hash: "SHA-256", signature: "Ed25519", Nh: 32, Nk: 32, Nn: 12 },
  4: { id: 4, name: "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", kem: "DHKEM-X448", aead: "AES-256-GCM", hash: "SHA-512", signature: "Ed448", Nh: 64, Nk: 32, Nn: 12 },
  5: { id: 5, name: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521", kem: "DHKEM-P521", aead: "AES-256-GCM", hash: "SHA-512", signature: "ECDSA-P521-SHA512", Nh: 64, Nk: 32, Nn: 12 },
  6: { id: 6, name: "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", kem: "DHKEM-X448", aead: "ChaCha20Poly1305", hash: "SHA-512", signature: "Ed448", Nh: 64, Nk: 32, Nn: 12 },
  7: { id: 7, name: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384", kem: "DHKEM-P384", aead: "AES-256-GCM", hash: "SHA-384", signature: "ECDSA-P384-SHA384", Nh: 48, Nk: 32, Nn: 12 },
};

export const SUITE_IDS: readonly CipherSuiteId[] = [1, 2, 3, 4, 5, 6, 7];

export function isCipherSuiteId(n: number): n is CipherSuiteId {
  return Number.isInteger(n) && n >= 1 && n <= 7;
}
