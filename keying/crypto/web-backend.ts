import type { KeyPair } from "./cipher-suite.js";
import { AEAD_TAG_LENGTH, HASHES, KEMS, SIGNATURES, leftPad } from "./algorithms.js";
import { ecPkcs8, ecdsaDerToRaw, ecdsaRawToDer, okpPkcs8 } from "./der.js";
import { CryptoError } from "./errors.js";
import { falseOnError, guardAsync } from "./guard.js";
import { PublicKeyCache, SecretKeyCache } from "./key-cache.js";
import type { Aead, Backend, DhGroup, HashFunctions, Signer } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/**
 * WebCrypto (browsers, workers). It has SHA-2, HMAC, AES-GCM and the NIST curves everywhere, and
 * X25519/Ed25519 (and in some engines X448/Ed448) in recent engines: those are probed once and,
 * when absent, `undefined` sends the caller to the noble fallback. ChaCha20-Poly1305 is never there.
 * Raw private keys are imported through PKCS#8; public keys come back from a JWK export.
 */

/** Algorithms a test may declare missing, to exercise the fallback. */
export type WebAlgorithm = "X25519" | "X448" | "Ed25519" | "Ed448" | "ECDH" | "ECDSA";

type NistCurve = "P-256" | "P-384" | "P-521";

const NIST_KEMS: Partial<Record<KemAlgorithm, NistCurve>> = { "DHKEM-P256": "P-256", "DHKEM-P384": "P-384", "DHKEM-P521": "P-521" };
const OKP_KEMS: Partial<Record<KemAlgorithm, "X25519" | "X448">> = { "DHKEM-X25519": "X25519", "DHKEM-X448": "X448" };
const ECDSA_CURVES: Partial<Record<SignatureScheme, NistCurve>> = {
  "ECDSA-P256-SHA256": "P-256",
  "ECDSA-P384-SHA384": "P-384",
  "ECDSA-P521-SHA512": "P-521",
};
/** HMAC keys are zero-padded to the block size, so an empty key equals one zero byte — which WebCrypto accepts. */
const EMPTY_HMAC_KEY = Uint8Array.of(0);

/** WebCrypto's types want ArrayBuffer-backed views; ours never sit on a SharedArrayBuffer. */
function src(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b as Uint8Array<ArrayBuffer>;
}

function fromB64url(s: string | undefined, length: number): Uint8Array {
  const b64 = (s ?? "").replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return leftPad(out, length);
}

export function webBackend(crypto: Crypto | undefined, unavailable: readonly WebAlgorithm[]): Backend {
  const subtle = crypto?.subtle;
  const probes = new Map<WebAlgorithm, Promise<boolean>>();

  /** Does this engine implement the algorithm? Asked once, by generating a throwaway key. */
  function supports(alg: WebAlgorithm): Promise<boolean> {
    if (!subtle || unavailable.includes(alg)) return Promise.resolve(false);
    let p = probes.get(alg);
    if (!p) {
      const params = alg === "ECDH" || alg === "ECDSA" ? { name: alg, namedCurve: "P-256" } : { name: alg };
      const usages: KeyUsage[] = alg === "X25519" || alg === "X448" || alg === "ECDH" ? ["deriveBits"] : ["sign", "verify"];
      p = subtle.generateKey(params, false, usages).then(
        () => true,
        () => false,
      );
      probes.set(alg, p);
    }
    return p;
  }

  function hash(s: SubtleCrypto, alg: HashAlgorithm): HashFunctions {
    const keys = new SecretKeyCache<Promise<CryptoKey>>();
    const hmacKey = (key: Uint8Array) =>
      keys.obtain(key, () => s.importKey("raw", src(key.length === 0 ? EMPTY_HMAC_KEY : key), { name: "HMAC", hash: alg }, false, ["sign"]));
    return {
      Nh: HASHES[alg].Nh,
      digest: async (data) => new Uint8Array(await s.digest(alg, src(data))),
      hmac: async (key, data) => new Uint8Array(await s.sign("HMAC", await hmacKey(key), src(data))),
    };
  }

  function aesGcm(s: SubtleCrypto): Aead {
    const keys = new SecretKeyCache<Promise<CryptoKey>>();
    const aesKey = (key: Uint8Array) => keys.obtain(key, () => s.importKey("raw", src(key), "AES-GCM", false, ["encrypt", "decrypt"]));
    const params = (nonce: Uint8Array, aad: Uint8Array): AesGcmParams => ({
      name: "AES-GCM",
      iv: src(nonce),
      additionalData: src(aad),
      tagLength: AEAD_TAG_LENGTH * 8,
    });
    return {
      seal: async (key, nonce, aad, plaintext) => new Uint8Array(await s.encrypt(params(nonce, aad), await aesKey(key), src(plaintext))),
      open: (key, nonce, aad, ciphertext) =>
        guardAsync("aead-open-failed", "AEAD ciphertext did not authenticate", async () =>
          new Uint8Array(await s.decrypt(params(nonce, aad), await aesKey(key), src(ciphertext))),
        ),
    };
  }

  /**
   * Imports and caches keys of one algorithm. `pkcs8` wraps a raw private key; the public key is
   * read back from a JWK export, so private keys are imported extractable.
   */
  function keyStore(
    s: SubtleCrypto,
    algorithm: AlgorithmIdentifier | EcKeyImportParams,
    pkcs8: (sk: Uint8Array) => Uint8Array,
    usages: { readonly private: KeyUsage[]; readonly public: KeyUsage[] },
  ) {
    const secrets = new SecretKeyCache<Promise<CryptoKey>>();
    const publics = new PublicKeyCache<Promise<CryptoKey>>();
    const privateKey = (sk: Uint8Array) =>
      secrets.obtain(sk, () =>
        guardAsync("invalid-private-key", "unusable private key", () => s.importKey("pkcs8", src(pkcs8(sk)), algorithm, true, usages.private)),
      );
    return {
      privateKey,
      publicKey: (pk: Uint8Array) =>
        publics.obtain(pk, () =>
          guardAsync("invalid-public-key", "unusable public key", () => s.importKey("raw", src(pk), algorithm, true, usages.public)),
        ),
      async generate(Nsk: number, encodePublic: (jwk: JsonWebKey) => Uint8Array): Promise<KeyPair> {
        const kp = (await s.generateKey(algorithm, true, [...usages.private, ...usages.public])) as CryptoKeyPair;
        const jwk = await s.exportKey("jwk", kp.privateKey);
        const privateKey = fromB64url(jwk.d, Nsk);
        secrets.set(privateKey, Promise.resolve(kp.privateKey));
        return { privateKey, publicKey: encodePublic(jwk) };
      },
      async exportPublic(sk: Uint8Array, encodePublic: (jwk: JsonWebKey) => Uint8Array): Promise<Uint8Array> {
        return encodePublic(await s.exportKey("jwk", await privateKey(sk)));
      },
    };
  }

  const okpPublic = (length: number) => (jwk: JsonWebKey) => fromB64url(jwk.x, length);
  const nistPublic = (Npk: number) => (jwk: JsonWebKey) => {
    const half = (Npk - 1) / 2;
    const out = new Uint8Array(Npk);
    out[0] = 0x04;
    out.set(fromB64url(jwk.x, half), 1);
    out.set(fromB64url(jwk.y, half), 1 + half);
    return out;
  };

  function dhGroup(s: SubtleCrypto, kem: KemAlgorithm): DhGroup {
    const { Npk, Nsk } = KEMS[kem];
    const okp = OKP_KEMS[kem];
    const nist = NIST_KEMS[kem];
    const algorithm = okp ? { name: okp } : { name: "ECDH", namedCurve: nist! };
    const keys = keyStore(s, algorithm, (sk) => (okp ? okpPkcs8(okp, sk) : ecPkcs8(nist!, sk)), { private: ["deriveBits"], public: [] });
    const encodePublic = okp ? okpPublic(Npk) : nistPublic(Npk);
    const bits = okp ? Nsk * 8 : (Npk - 1) * 4;
    return {
      generateKeyPair: () => keys.generate(Nsk, encodePublic),
      publicKey: (sk) => keys.exportPublic(sk, encodePublic),
      async dh(sk, pk) {
        const [priv, pub] = await Promise.all([keys.privateKey(sk), keys.publicKey(pk)]);
        const z = await guardAsync("invalid-public-key", "key agreement failed", () => s.deriveBits({ name: algorithm.name, public: pub }, priv, bits));
        return new Uint8Array(z);
      },
    };
  }

  function eddsa(s: SubtleCrypto, curve: "Ed25519" | "Ed448"): Signer {
    const { Npk, Nsk } = SIGNATURES[curve];
    const keys = keyStore(s, { name: curve }, (sk) => okpPkcs8(curve, sk), { private: ["sign"], public: ["verify"] });
    const encodePublic = okpPublic(Npk);
    return {
      generateKeyPair: () => keys.generate(Nsk, encodePublic),
      publicKey: (sk) => keys.exportPublic(sk, encodePublic),
      sign: async (sk, message) => new Uint8Array(await s.sign(curve, await keys.privateKey(sk), src(message))),
      async verify(pk, message, signature) {
        const key = await keys.publicKey(pk);
        return falseOnError(() => s.verify(curve, key, src(signature), src(message)));
      },
    };
  }

  function ecdsa(s: SubtleCrypto, scheme: SignatureScheme, curve: NistCurve): Signer {
    const { Npk, Nsk, hash: h } = SIGNATURES[scheme];
    const keys = keyStore(s, { name: "ECDSA", namedCurve: curve }, (sk) => ecPkcs8(curve, sk), { private: ["sign"], public: ["verify"] });
    const encodePublic = nistPublic(Npk);
    const params = { name: "ECDSA", hash: h! };
    return {
      generateKeyPair: () => keys.generate(Nsk, encodePublic),
      publicKey: (sk) => keys.exportPublic(sk, encodePublic),
      sign: async (sk, message) => ecdsaRawToDer(new Uint8Array(await s.sign(params, await keys.privateKey(sk), src(message)))),
      async verify(pk, message, signature) {
        const key = await keys.publicKey(pk);
        const raw = ecdsaDerToRaw(signature, Nsk);
        return raw !== undefined && falseOnError(() => s.verify(params, key, src(raw), src(message)));
      },
    };
  }

  return {
    name: "webcrypto",
    hash: (alg) => (subtle ? hash(subtle, alg) : undefined),
    aead: (alg) => (subtle && alg !== "ChaCha20Poly1305" ? aesGcm(subtle) : undefined),
    async dh(kem) {
      const needs: WebAlgorithm = OKP_KEMS[kem] ?? "ECDH";
      return subtle && (await supports(needs)) ? dhGroup(subtle, kem) : undefined;
    },
    async signer(scheme) {
      const curve = ECDSA_CURVES[scheme];
      const needs: WebAlgorithm = curve ? "ECDSA" : (scheme as "Ed25519" | "Ed448");
      if (!subtle || !(await supports(needs))) return undefined;
      return curve ? ecdsa(subtle, scheme, curve) : eddsa(subtle, scheme as "Ed25519" | "Ed448");
    },
    randomBytes(length) {
      if (!crypto) throw new CryptoError("operation-failed", "no random source");
      const out = new Uint8Array(length);
      // getRandomValues fills at most 65536 bytes per call.
      for (let i = 0; i < length; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65536)));
      return out;
    },
  };
}
