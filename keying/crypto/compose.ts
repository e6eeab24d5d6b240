import type { SuitePrimitives } from "./cipher-suite.js";
import { AEADS, SIGNATURES, isEcdsa, isUncompressedPoint, leftPad } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import { guardAsync } from "./guard.js";
import { hkdf } from "./kdf.js";
import type { Aead, HashFunctions, HpkeScheme, Signer } from "./primitives.js";
import type { SuiteParams } from "./suites.js";

export interface SuiteParts {
  readonly hash: HashFunctions;
  readonly aead: Aead;
  readonly signer: Signer;
  readonly hpke: HpkeScheme;
  readonly randomBytes: (length: number) => Uint8Array;
}

/**
 * SuitePrimitives from one backend's parts. The checks every backend would otherwise repeat live
 * here: key, nonce and signature-key lengths, and the rule that nothing but CryptoError escapes.
 */
export function composePrimitives(params: SuiteParams, parts: SuiteParts): SuitePrimitives {
  const { hash, aead, signer, hpke, randomBytes } = parts;
  const kdf = hkdf(hash);
  const { Nk, Nn } = AEADS[params.aead];
  const sig = SIGNATURES[params.signature];
  const ecdsa = isEcdsa(params.signature);

  const checkAead = (key: Uint8Array, nonce: Uint8Array) => {
    if (key.length !== Nk) throw new CryptoError("invalid-length", `AEAD key must be ${Nk} bytes`);
    if (nonce.length !== Nn) throw new CryptoError("invalid-length", `AEAD nonce must be ${Nn} bytes`);
  };
  // ECDSA scalars from other implementations sometimes drop leading zero bytes.
  const signingKey = (sk: Uint8Array) => {
    const ok = ecdsa ? sk.length > 0 && sk.length <= sig.Nsk : sk.length === sig.Nsk;
    if (!ok) throw new CryptoError("invalid-private-key", `${params.signature} private key must be ${sig.Nsk} bytes`);
    return ecdsa ? leftPad(sk, sig.Nsk) : sk;
  };
  const verifyingKey = (pk: Uint8Array) => {
    const ok = ecdsa ? isUncompressedPoint(pk, sig.Npk) : pk.length === sig.Npk;
    if (!ok) throw new CryptoError("invalid-public-key", `${params.signature} public key must be ${sig.Npk} bytes`);
    return pk;
  };

  return {
    params,
    hash: (data) => guardAsync("operation-failed", "hash failed", () => hash.digest(data)),
    hmac: (key, data) => guardAsync("operation-failed", "HMAC failed", () => hash.hmac(key, data)),
    kdfExtract: (salt, ikm) => guardAsync("operation-failed", "HKDF-Extract failed", () => kdf.extract(salt, ikm)),
    kdfExpand: (prk, info, length) => guardAsync("invalid-length", "HKDF-Expand failed", () => kdf.expand(prk, info, length)),
    aeadSeal: (key, nonce, aad, plaintext) =>
      guardAsync("invalid-length", "AEAD seal failed", () => {
        checkAead(key, nonce);
        return aead.seal(key, nonce, aad, plaintext);
      }),
    aeadOpen: (key, nonce, aad, ciphertext) =>
      guardAsync("aead-open-failed", "AEAD ciphertext did not authenticate", () => {
        checkAead(key, nonce);
        return aead.open(key, nonce, aad, ciphertext);
      }),
    hpkeSeal: (pk, info, aad, plaintext) => guardAsync("invalid-public-key", "HPKE seal failed", () => hpke.hpkeSeal(pk, info, aad, plaintext)),
    hpkeOpen: (sk, kemOutput, info, aad, ciphertext) =>
      guardAsync("hpke-open-failed", "HPKE ciphertext did not authenticate", () => hpke.hpkeOpen(sk, kemOutput, info, aad, ciphertext)),
    hpkeExportSender: (pk, info, ctx, length) =>
      guardAsync("invalid-public-key", "HPKE export failed", () => hpke.hpkeExportSender(pk, info, ctx, length)),
    hpkeExportReceiver: (sk, kemOutput, info, ctx, length) =>
      guardAsync("hpke-open-failed", "HPKE export failed", () => hpke.hpkeExportReceiver(sk, kemOutput, info, ctx, length)),
    hpkeDeriveKeyPair: (ikm) => guardAsync("invalid-private-key", "DeriveKeyPair failed", () => hpke.hpkeDeriveKeyPair(ikm)),
    hpkeGenerateKeyPair: () => guardAsync("operation-failed", "key generation failed", () => hpke.hpkeGenerateKeyPair()),
    signatureGenerateKeyPair: () => guardAsync("operation-failed", "key generation failed", () => signer.generateKeyPair()),
    signaturePublicKey: (sk) => guardAsync("invalid-private-key", "unusable signature private key", () => signer.publicKey(signingKey(sk))),
    sign: (sk, message) => guardAsync("invalid-private-key", "signing failed", () => signer.sign(signingKey(sk), message)),
    verify: (pk, message, signature) =>
      guardAsync("invalid-public-key", "unusable signature public key", () => signer.verify(verifyingKey(pk), message, signature)),
    randomBytes,
  };
}
