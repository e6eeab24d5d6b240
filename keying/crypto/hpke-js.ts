import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite as HpkeCipherSuite,
  DhkemP256HkdfSha256,
  DhkemP384HkdfSha384,
  DhkemP521HkdfSha512,
  HkdfSha256,
  HkdfSha384,
  HkdfSha512,
  type AeadInterface,
  type KdfInterface,
  type KemInterface,
} from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { DhkemX448HkdfSha512 } from "@hpke/dhkem-x448";
import type { KeyPair } from "./cipher-suite.js";
import { KEMS, isUncompressedPoint } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import { guardAsync } from "./guard.js";
import type { HpkeScheme } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SuiteParams } from "./suites.js";

/** HPKE for the portable provider, by hpke-js: the independent implementation our own hpke.ts is checked against. */

const KEM_CLASSES: Record<KemAlgorithm, new () => KemInterface> = {
  "DHKEM-X25519": DhkemX25519HkdfSha256,
  "DHKEM-X448": DhkemX448HkdfSha512,
  "DHKEM-P256": DhkemP256HkdfSha256,
  "DHKEM-P384": DhkemP384HkdfSha384,
  "DHKEM-P521": DhkemP521HkdfSha512,
};
const KDF_CLASSES: Record<HashAlgorithm, new () => KdfInterface> = { "SHA-256": HkdfSha256, "SHA-384": HkdfSha384, "SHA-512": HkdfSha512 };
const AEAD_CLASSES: Record<AeadAlgorithm, new () => AeadInterface> = {
  "AES-128-GCM": Aes128Gcm,
  "AES-256-GCM": Aes256Gcm,
  ChaCha20Poly1305: Chacha20Poly1305,
};

export function hpkeJs(params: SuiteParams): HpkeScheme {
  const suite = new HpkeCipherSuite({ kem: new KEM_CLASSES[params.kem](), kdf: new KDF_CLASSES[params.hash](), aead: new AEAD_CLASSES[params.aead]() });
  const { Npk, Nsk, order } = KEMS[params.kem];

  // hpke-js accepts some encodings RFC 9180 does not (e.g. compressed points), so check first.
  const publicKey = (pk: Uint8Array) => {
    const ok = order === undefined ? pk.length === Npk : isUncompressedPoint(pk, Npk);
    if (!ok) throw new CryptoError("invalid-public-key", `HPKE public key must be a ${Npk}-byte encoding`);
    return guardAsync("invalid-public-key", "unusable HPKE public key", () => suite.kem.deserializePublicKey(pk));
  };
  const privateKey = (sk: Uint8Array) => {
    if (sk.length !== Nsk) throw new CryptoError("invalid-private-key", `HPKE private key must be ${Nsk} bytes`);
    return guardAsync("invalid-private-key", "unusable HPKE private key", () => suite.kem.deserializePrivateKey(sk));
  };
  const serialize = async (kp: CryptoKeyPair): Promise<KeyPair> => ({
    privateKey: new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey)),
    publicKey: new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey)),
  });
  const opening = <T>(run: () => Promise<T>) => guardAsync("hpke-open-failed", "HPKE ciphertext did not authenticate", run);

  return {
    async hpkeSeal(pk, info, aad, plaintext) {
      const recipientPublicKey = await publicKey(pk);
      const sealed = await guardAsync("invalid-public-key", "HPKE seal failed", () => suite.seal({ recipientPublicKey, info }, plaintext, aad));
      return { kemOutput: new Uint8Array(sealed.enc), ciphertext: new Uint8Array(sealed.ct) };
    },
    async hpkeOpen(sk, kemOutput, info, aad, ciphertext) {
      const [recipientKey] = await Promise.all([privateKey(sk), publicKey(kemOutput)]);
      return new Uint8Array(await opening(() => suite.open({ recipientKey, enc: kemOutput, info }, ciphertext, aad)));
    },
    async hpkeExportSender(pk, info, exporterContext, length) {
      const recipientPublicKey = await publicKey(pk);
      const ctx = await guardAsync("invalid-public-key", "HPKE setup failed", () => suite.createSenderContext({ recipientPublicKey, info }));
      const secret = await guardAsync("invalid-length", "HPKE export failed", () => ctx.export(exporterContext, length));
      return { kemOutput: new Uint8Array(ctx.enc), secret: new Uint8Array(secret) };
    },
    async hpkeExportReceiver(sk, kemOutput, info, exporterContext, length) {
      const [recipientKey] = await Promise.all([privateKey(sk), publicKey(kemOutput)]);
      const ctx = await opening(() => suite.createRecipientContext({ recipientKey, enc: kemOutput, info }));
      return new Uint8Array(await guardAsync("invalid-length", "HPKE export failed", () => ctx.export(exporterContext, length)));
    },
    hpkeDeriveKeyPair: async (ikm) => serialize(await guardAsync("invalid-private-key", "DeriveKeyPair failed", () => suite.kem.deriveKeyPair(ikm))),
    hpkeGenerateKeyPair: async () => serialize(await suite.kem.generateKeyPair()),
  };
}
