import { Writer } from "../codec/writer.js";
import { utf8 } from "../codec/bytes.js";
import type { CipherSuiteId, SuiteParams } from "./suites.js";

/**
 * What a crypto provider supplies for one suite: the raw primitives. Everything MLS-specific
 * (labels, KDFLabel, SignContent, EncryptContext) is built once on top of these in `CipherSuite`,
 * so the two providers cannot disagree on framing, only on arithmetic — which the vectors check.
 *
 * Key encodings are RFC 9180 SerializePublicKey/SerializePrivateKey for HPKE keys and the
 * encodings of RFC 9420 §5.1.1 for signature keys (raw Ed25519/Ed448 keys; ECDSA private scalar
 * and uncompressed public point). ECDSA signatures are DER-encoded as in TLS 1.3.
 * Every async method rejects with a CryptoError on bad input or failed authentication.
 */
export interface SuitePrimitives {
  readonly params: SuiteParams;
  hash(data: Uint8Array): Promise<Uint8Array>;
  hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  kdfExtract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array>;
  kdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;
  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array>;
  /** HPKE base mode (RFC 9180 §5.1.1) single-shot seal. */
  hpkeSeal(publicKey: Uint8Array, info: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<HpkeCiphertext>;
  hpkeOpen(privateKey: Uint8Array, kemOutput: Uint8Array, info: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array>;
  /** SetupBaseS + Export: used by external init (RFC 9420 §8.3). */
  hpkeExportSender(publicKey: Uint8Array, info: Uint8Array, exporterContext: Uint8Array, length: number): Promise<{ kemOutput: Uint8Array; secret: Uint8Array }>;
  hpkeExportReceiver(privateKey: Uint8Array, kemOutput: Uint8Array, info: Uint8Array, exporterContext: Uint8Array, length: number): Promise<Uint8Array>;
  /** RFC 9180 DeriveKeyPair. */
  hpkeDeriveKeyPair(ikm: Uint8Array): Promise<KeyPair>;
  hpkeGenerateKeyPair(): Promise<KeyPair>;
  signatureGenerateKeyPair(): Promise<KeyPair>;
  signaturePublicKey(privateKey: Uint8Array): Promise<Uint8Array>;
  sign(privateKey: Uint8Array, message: Uint8Array): Promise<Uint8Array>;
  /** False for a bad signature; CryptoError only for an unusable key. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
  randomBytes(length: number): Uint8Array;
}

export interface KeyPair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface HpkeCiphertext {
  readonly kemOutput: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/** A source of SuitePrimitives: `native` (node:crypto / WebCrypto) or `portable` (@noble/*, hpke-js). */
export interface CryptoProvider {
  readonly name: "native" | "portable";
  primitives(id: CipherSuiteId): Promise<SuitePrimitives>;
}

const MLS_PREFIX = "MLS 1.0 ";

function labeled(label: string, context: Uint8Array): Uint8Array {
  return new Writer().opaque(utf8(MLS_PREFIX + label)).opaque(context).finish();
}

/** RFC 9420 §5: the MLS cryptographic functions of one cipher suite, over one provider's primitives. */
export class CipherSuite {
  readonly id: CipherSuiteId;
  constructor(readonly primitives: SuitePrimitives) {
    this.id = primitives.params.id;
  }

  get params(): SuiteParams {
    return this.primitives.params;
  }

  hash(data: Uint8Array): Promise<Uint8Array> {
    return this.primitives.hash(data);
  }

  mac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
    return this.primitives.hmac(key, data);
  }

  extract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array> {
    return this.primitives.kdfExtract(salt, ikm);
  }

  /** ExpandWithLabel(Secret, Label, Context, Length) — §5.1 */
  expandWithLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number): Promise<Uint8Array> {
    const info = new Writer().u16(length).opaque(utf8(MLS_PREFIX + label)).opaque(context).finish();
    return this.primitives.kdfExpand(secret, info, length);
  }

  /** DeriveSecret(Secret, Label) — §5.1 */
  deriveSecret(secret: Uint8Array, label: string): Promise<Uint8Array> {
    return this.expandWithLabel(secret, label, new Uint8Array(0), this.params.Nh);
  }

  /** DeriveTreeSecret(Secret, Label, Generation, Length) — §9 */
  deriveTreeSecret(secret: Uint8Array, label: string, generation: number, length: number): Promise<Uint8Array> {
    return this.expandWithLabel(secret, label, new Writer().u32(generation).finish(), length);
  }

  /** RefHash(label, value) — §5.2; the label is used as given (e.g. "MLS 1.0 KeyPackage Reference"). */
  refHash(label: string, value: Uint8Array): Promise<Uint8Array> {
    return this.primitives.hash(new Writer().opaque(utf8(label)).opaque(value).finish());
  }

  /** SignWithLabel — §5.1.2 */
  signWithLabel(privateKey: Uint8Array, label: string, content: Uint8Array): Promise<Uint8Array> {
    return this.primitives.sign(privateKey, labeled(label, content));
  }

  /** VerifyWithLabel — §5.1.2 */
  verifyWithLabel(publicKey: Uint8Array, label: string, content: Uint8Array, signature: Uint8Array): Promise<boolean> {
    return this.primitives.verify(publicKey, labeled(label, content), signature);
  }

  /** EncryptWithLabel — §5.1.3 */
  encryptWithLabel(publicKey: Uint8Array, label: string, context: Uint8Array, plaintext: Uint8Array): Promise<HpkeCiphertext> {
    return this.primitives.hpkeSeal(publicKey, labeled(label, context), new Uint8Array(0), plaintext);
  }

  /** DecryptWithLabel — §5.1.3 */
  decryptWithLabel(privateKey: Uint8Array, label: string, context: Uint8Array, kemOutput: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    return this.primitives.hpkeOpen(privateKey, kemOutput, labeled(label, context), new Uint8Array(0), ciphertext);
  }

  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.primitives.aeadSeal(key, nonce, aad, plaintext);
  }

  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    return this.primitives.aeadOpen(key, nonce, aad, ciphertext);
  }

  deriveKeyPair(ikm: Uint8Array): Promise<KeyPair> {
    return this.primitives.hpkeDeriveKeyPair(ikm);
  }

  randomBytes(length: number): Uint8Array {
    return this.primitives.randomBytes(length);
  }
}
