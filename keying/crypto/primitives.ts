import type { KeyPair, SuitePrimitives } from "./cipher-suite.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/**
 * The building blocks a backend (node:crypto, WebCrypto, noble) supplies, one per algorithm.
 * Providers compose them into SuitePrimitives; HKDF and HPKE are written once on top of them.
 * Synchronous backends return plain values, so the Node path never pays for an async hop it
 * does not need. Every function throws CryptoError on bad input.
 */
export type Awaitable<T> = T | Promise<T>;

export interface HashFunctions {
  readonly Nh: number;
  digest(data: Uint8Array): Awaitable<Uint8Array>;
  hmac(key: Uint8Array, data: Uint8Array): Awaitable<Uint8Array>;
}

export interface Kdf {
  readonly Nh: number;
  extract(salt: Uint8Array, ikm: Uint8Array): Awaitable<Uint8Array>;
  expand(prk: Uint8Array, info: Uint8Array, length: number): Awaitable<Uint8Array>;
}

/** Callers have checked key and nonce lengths; ciphertexts carry a 16-byte tag. */
export interface Aead {
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Awaitable<Uint8Array>;
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Awaitable<Uint8Array>;
}

/**
 * The Diffie-Hellman group under a DHKEM, on RFC 9180 serialized keys. Keys arrive with the
 * right length (HPKE checks it); `dh` rejects public keys off the curve with CryptoError.
 */
export interface DhGroup {
  generateKeyPair(): Awaitable<KeyPair>;
  publicKey(privateKey: Uint8Array): Awaitable<Uint8Array>;
  dh(privateKey: Uint8Array, publicKey: Uint8Array): Awaitable<Uint8Array>;
  /**
   * Encap's half of DHKEM: a fresh key pair's public key and its DH with `publicKey`. Optional; a backend
   * offers it when it can do better than generateKeyPair then dh (keep the private key in its own form,
   * generate it off the main thread).
   */
  ephemeralDh?(publicKey: Uint8Array): Awaitable<{ readonly publicKey: Uint8Array; readonly dh: Uint8Array }>;
}

/** Keys and signatures in the RFC 9420 encodings; lengths of keys are already checked. */
export interface Signer {
  generateKeyPair(): Awaitable<KeyPair>;
  publicKey(privateKey: Uint8Array): Awaitable<Uint8Array>;
  sign(privateKey: Uint8Array, message: Uint8Array): Awaitable<Uint8Array>;
  /** False for a bad or malformed signature. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Awaitable<boolean>;
}

/** What HPKE offers MLS; our RFC 9180 code and the hpke-js adapter both implement it. */
export type HpkeScheme = Pick<
  SuitePrimitives,
  "hpkeSeal" | "hpkeOpen" | "hpkeExportSender" | "hpkeExportReceiver" | "hpkeDeriveKeyPair" | "hpkeGenerateKeyPair"
>;

/** One implementation of the primitives; `undefined` means "not available here, fall back". */
export interface Backend {
  readonly name: string;
  hash(alg: HashAlgorithm): Awaitable<HashFunctions | undefined>;
  aead(alg: AeadAlgorithm): Awaitable<Aead | undefined>;
  dh(kem: KemAlgorithm): Awaitable<DhGroup | undefined>;
  signer(scheme: SignatureScheme): Awaitable<Signer | undefined>;
  randomBytes(length: number): Uint8Array;
}
