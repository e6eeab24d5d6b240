import { gcm } from "@noble/ciphers/aes.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { ed448, x448 } from "@noble/curves/ed448.js";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { HASHES } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import { falseOnError, guard } from "./guard.js";
import type { Aead, Backend, DhGroup, HashFunctions, Signer } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/** Pure-JS primitives (@noble/*): everywhere, synchronous, and the fallback for what WebCrypto lacks. */

const HASH_FNS = { "SHA-256": sha256, "SHA-384": sha384, "SHA-512": sha512 } as const;
const CIPHERS = { "AES-128-GCM": gcm, "AES-256-GCM": gcm, ChaCha20Poly1305: chacha20poly1305 } as const;
const MONTGOMERY = { "DHKEM-X25519": x25519, "DHKEM-X448": x448 } as const;
const WEIERSTRASS = { "DHKEM-P256": p256, "DHKEM-P384": p384, "DHKEM-P521": p521 } as const;
const ECDSA = { "ECDSA-P256-SHA256": p256, "ECDSA-P384-SHA384": p384, "ECDSA-P521-SHA512": p521 } as const;

function hash(alg: HashAlgorithm): HashFunctions {
  const h = HASH_FNS[alg];
  return { Nh: HASHES[alg].Nh, digest: (data) => h(data), hmac: (key, data) => hmac(h, key, data) };
}

function aead(alg: AeadAlgorithm): Aead {
  const cipher = CIPHERS[alg];
  return {
    seal: (key, nonce, aad, plaintext) => cipher(key, nonce, aad).encrypt(plaintext),
    open: (key, nonce, aad, ciphertext) =>
      guard("aead-open-failed", "AEAD ciphertext did not authenticate", () => cipher(key, nonce, aad).decrypt(ciphertext)),
  };
}

function dh(kem: KemAlgorithm): DhGroup {
  if (kem === "DHKEM-X25519" || kem === "DHKEM-X448") {
    const curve = MONTGOMERY[kem];
    return {
      generateKeyPair() {
        const privateKey = curve.utils.randomSecretKey();
        return { privateKey, publicKey: curve.getPublicKey(privateKey) };
      },
      publicKey: (sk) => curve.getPublicKey(sk),
      dh: (sk, pk) => guard("invalid-public-key", `${kem} public key has small order`, () => curve.getSharedSecret(sk, pk)),
    };
  }
  const curve = WEIERSTRASS[kem];
  const scalar = (sk: Uint8Array) => {
    if (!curve.utils.isValidSecretKey(sk)) throw new CryptoError("invalid-private-key", `unusable ${kem} private key`);
    return sk;
  };
  return {
    generateKeyPair() {
      const privateKey = curve.utils.randomSecretKey();
      return { privateKey, publicKey: curve.getPublicKey(privateKey, false) };
    },
    publicKey: (sk) => curve.getPublicKey(scalar(sk), false),
    // The shared secret is the x-coordinate: drop the compressed point's prefix byte.
    dh: (sk, pk) =>
      guard("invalid-public-key", `${kem} public key is not on the curve`, () => curve.getSharedSecret(scalar(sk), pk, true).subarray(1)),
  };
}

function signer(scheme: SignatureScheme): Signer {
  if (scheme === "Ed25519" || scheme === "Ed448") {
    const curve = scheme === "Ed25519" ? ed25519 : ed448;
    return {
      generateKeyPair() {
        const { secretKey, publicKey } = curve.keygen();
        return { privateKey: secretKey, publicKey };
      },
      publicKey: (sk) => curve.getPublicKey(sk),
      sign: (sk, message) => curve.sign(message, sk),
      verify: (pk, message, signature) => falseOnError(() => curve.verify(signature, message, pk)),
    };
  }
  const curve = ECDSA[scheme];
  const checkedScalar = (sk: Uint8Array) => {
    if (!curve.utils.isValidSecretKey(sk)) throw new CryptoError("invalid-private-key", `unusable ${scheme} private key`);
    return sk;
  };
  const checkedPoint = (pk: Uint8Array) => {
    if (!curve.utils.isValidPublicKey(pk, false)) throw new CryptoError("invalid-public-key", `${scheme} public key is not on the curve`);
    return pk;
  };
  return {
    generateKeyPair() {
      const privateKey = curve.utils.randomSecretKey();
      return { privateKey, publicKey: curve.getPublicKey(privateKey, false) };
    },
    publicKey: (sk) => curve.getPublicKey(checkedScalar(sk), false),
    // prehash uses the curve's own hash (SHA-256/384/512), which is the suite's.
    sign: (sk, message) => curve.sign(message, checkedScalar(sk), { format: "der" }),
    // Other implementations (OpenSSL) do not normalise s, so high-S signatures must verify.
    verify(pk, message, signature) {
      checkedPoint(pk);
      return falseOnError(() => curve.verify(signature, message, pk, { format: "der", lowS: false }));
    },
  };
}

export const nobleBackend = { name: "noble", hash, aead, dh, signer, randomBytes } satisfies Backend;
