import type * as NodeCrypto from "node:crypto";
import type { KeyObject } from "node:crypto";
import type { KeyPair } from "./cipher-suite.js";
import { AEAD_TAG_LENGTH, HASHES, KEMS, SIGNATURES, leftPad } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import { falseOnError, guard } from "./guard.js";
import { PublicKeyCache, SecretKeyCache } from "./key-cache.js";
import type { Aead, Backend, DhGroup, HashFunctions, Signer } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/**
 * node:crypto, synchronous throughout. Raw keys are turned into KeyObjects through JWK, which
 * OpenSSL 3 imports an order of magnitude faster than DER (its decoder search is slow), and the
 * KeyObjects are cached. NIST-curve DH uses the ECDH class, which takes raw scalars and points.
 */

const HASH_NAMES: Record<HashAlgorithm, string> = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };
const CIPHER_NAMES: Record<AeadAlgorithm, NodeCrypto.CipherGCMTypes | NodeCrypto.CipherChaCha20Poly1305Types> = {
  "AES-128-GCM": "aes-128-gcm",
  "AES-256-GCM": "aes-256-gcm",
  ChaCha20Poly1305: "chacha20-poly1305",
};
const ECDH_CURVES: Partial<Record<KemAlgorithm, string>> = { "DHKEM-P256": "prime256v1", "DHKEM-P384": "secp384r1", "DHKEM-P521": "secp521r1" };
const OKP_KEMS: Partial<Record<KemAlgorithm, "X25519" | "X448">> = { "DHKEM-X25519": "X25519", "DHKEM-X448": "X448" };
const EDDSA: Partial<Record<SignatureScheme, "Ed25519" | "Ed448">> = { Ed25519: "Ed25519", Ed448: "Ed448" };
const ECDSA: Partial<Record<SignatureScheme, { jwkCurve: string; ecdhCurve: string }>> = {
  "ECDSA-P256-SHA256": { jwkCurve: "P-256", ecdhCurve: "prime256v1" },
  "ECDSA-P384-SHA384": { jwkCurve: "P-384", ecdhCurve: "secp384r1" },
  "ECDSA-P521-SHA512": { jwkCurve: "P-521", ecdhCurve: "secp521r1" },
};

/** A plain Uint8Array (Buffers may be views into Node's shared pool). */
function own(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

function fromB64url(s: string | undefined, length: number): Uint8Array {
  return leftPad(own(Buffer.from(s ?? "", "base64url")), length);
}

export function nodeBackend(nc: typeof NodeCrypto): Backend {
  function hash(alg: HashAlgorithm): HashFunctions {
    const name = HASH_NAMES[alg];
    return {
      Nh: HASHES[alg].Nh,
      digest: (data) => own(nc.createHash(name).update(data).digest()),
      hmac: (key, data) => own(nc.createHmac(name, key).update(data).digest()),
    };
  }

  function aead(alg: AeadAlgorithm): Aead {
    // Narrowed to the GCM names only to select the AEAD overload; chacha20-poly1305 takes the same options.
    const name = CIPHER_NAMES[alg] as NodeCrypto.CipherGCMTypes;
    return {
      seal(key, nonce, aad, plaintext) {
        const c = nc.createCipheriv(name, key, nonce, { authTagLength: AEAD_TAG_LENGTH });
        c.setAAD(aad);
        const out = new Uint8Array(plaintext.length + AEAD_TAG_LENGTH);
        const body = c.update(plaintext);
        out.set(body, 0);
        out.set(c.final(), body.length);
        out.set(c.getAuthTag(), plaintext.length);
        return out;
      },
      open(key, nonce, aad, ciphertext) {
        return guard("aead-open-failed", "AEAD ciphertext did not authenticate", () => {
          if (ciphertext.length < AEAD_TAG_LENGTH) throw new CryptoError("aead-open-failed", "ciphertext shorter than the tag");
          const split = ciphertext.length - AEAD_TAG_LENGTH;
          const d = nc.createDecipheriv(name, key, nonce, { authTagLength: AEAD_TAG_LENGTH });
          d.setAuthTag(ciphertext.subarray(split));
          d.setAAD(aad);
          const out = new Uint8Array(split);
          const body = d.update(ciphertext.subarray(0, split));
          out.set(body, 0);
          out.set(d.final(), body.length);
          return out;
        });
      },
    };
  }

  /** X25519/X448/Ed25519/Ed448 keys as KeyObjects; OpenSSL ignores `x` when importing a private JWK. */
  function okpKeys(crv: "X25519" | "X448" | "Ed25519" | "Ed448") {
    const secrets = new SecretKeyCache<KeyObject>();
    const publics = new PublicKeyCache<KeyObject>(4096);
    const privateKey = (sk: Uint8Array) =>
      secrets.obtain(sk, () =>
        guard("invalid-private-key", `unusable ${crv} private key`, () =>
          nc.createPrivateKey({ key: { kty: "OKP", crv, d: b64url(sk), x: "" }, format: "jwk" }),
        ),
      );
    const publicKey = (pk: Uint8Array) =>
      publics.obtain(pk, () =>
        guard("invalid-public-key", `unusable ${crv} public key`, () =>
          nc.createPublicKey({ key: { kty: "OKP", crv, x: b64url(pk) }, format: "jwk" }),
        ),
      );
    const rawPublic = (key: KeyObject, length: number) => fromB64url(nc.createPublicKey(key).export({ format: "jwk" }).x, length);
    const generate = (length: number): KeyPair => {
      const kp = nc.generateKeyPairSync(crv.toLowerCase() as "x25519");
      const jwk = kp.privateKey.export({ format: "jwk" });
      const sk = fromB64url(jwk.d, length);
      secrets.set(sk, kp.privateKey);
      return { privateKey: sk, publicKey: fromB64url(jwk.x, length) };
    };
    return { privateKey, publicKey, rawPublic, generate };
  }

  function dh(kem: KemAlgorithm): DhGroup {
    const { Npk, Nsk } = KEMS[kem];
    const okp = OKP_KEMS[kem];
    if (okp) {
      const keys = okpKeys(okp);
      return {
        generateKeyPair: () => keys.generate(Nsk),
        publicKey: (sk) => keys.rawPublic(keys.privateKey(sk), Npk),
        dh: (sk, pk) => {
          const priv = keys.privateKey(sk);
          const pub = keys.publicKey(pk);
          return own(guard("invalid-public-key", `${okp} key agreement failed`, () => nc.diffieHellman({ privateKey: priv, publicKey: pub })));
        },
      };
    }
    const curve = ECDH_CURVES[kem]!;
    // An ECDH object holds one private scalar; cached per scalar so encap's ephemeral key is set once.
    const secrets = new SecretKeyCache<NodeCrypto.ECDH>();
    const ecdh = (sk: Uint8Array) =>
      secrets.obtain(sk, () =>
        guard("invalid-private-key", `unusable ${curve} private key`, () => {
          const e = nc.createECDH(curve);
          e.setPrivateKey(sk);
          return e;
        }),
      );
    return {
      generateKeyPair() {
        const e = nc.createECDH(curve);
        e.generateKeys();
        const sk = leftPad(own(e.getPrivateKey()), Nsk);
        secrets.set(sk, e);
        return { privateKey: sk, publicKey: own(e.getPublicKey()) };
      },
      publicKey: (sk) => own(ecdh(sk).getPublicKey()),
      dh: (sk, pk) => {
        const e = ecdh(sk);
        return own(guard("invalid-public-key", `${curve} public key is not on the curve`, () => e.computeSecret(pk)));
      },
    };
  }

  function eddsa(crv: "Ed25519" | "Ed448"): Signer {
    const { Npk, Nsk } = SIGNATURES[crv];
    const keys = okpKeys(crv);
    return {
      generateKeyPair: () => keys.generate(Nsk),
      publicKey: (sk) => keys.rawPublic(keys.privateKey(sk), Npk),
      sign: (sk, message) => own(nc.sign(null, message, keys.privateKey(sk))),
      verify(pk, message, signature) {
        const key = keys.publicKey(pk);
        return falseOnError(() => nc.verify(null, message, key, signature));
      },
    };
  }

  function ecdsa(scheme: SignatureScheme, jwkCurve: string, ecdhCurve: string): Signer {
    const { Npk, Nsk, hash: h } = SIGNATURES[scheme];
    const digest = HASH_NAMES[h!];
    const half = (Npk - 1) / 2;
    const point = (x: string | undefined, y: string | undefined) => {
      const out = new Uint8Array(Npk);
      out[0] = 0x04;
      out.set(fromB64url(x, half), 1);
      out.set(fromB64url(y, half), 1 + half);
      return out;
    };
    const coordinates = (pk: Uint8Array) => ({ kty: "EC", crv: jwkCurve, x: b64url(pk.subarray(1, 1 + half)), y: b64url(pk.subarray(1 + half)) });
    const secrets = new SecretKeyCache<KeyObject>();
    const publics = new PublicKeyCache<KeyObject>(4096);
    const publicFromScalar = (sk: Uint8Array) =>
      guard("invalid-private-key", `unusable ${jwkCurve} private key`, () => {
        const e = nc.createECDH(ecdhCurve);
        e.setPrivateKey(sk);
        return own(e.getPublicKey());
      });
    const privateKey = (sk: Uint8Array) =>
      secrets.obtain(sk, () => {
        const pk = publicFromScalar(sk);
        return guard("invalid-private-key", `unusable ${jwkCurve} private key`, () =>
          nc.createPrivateKey({ key: { ...coordinates(pk), d: b64url(sk) }, format: "jwk" }),
        );
      });
    const publicKey = (pk: Uint8Array) =>
      publics.obtain(pk, () =>
        guard("invalid-public-key", `${jwkCurve} public key is not on the curve`, () =>
          nc.createPublicKey({ key: coordinates(pk), format: "jwk" }),
        ),
      );
    return {
      generateKeyPair() {
        const kp = nc.generateKeyPairSync("ec", { namedCurve: jwkCurve });
        const jwk = kp.privateKey.export({ format: "jwk" });
        const sk = fromB64url(jwk.d, Nsk);
        secrets.set(sk, kp.privateKey);
        return { privateKey: sk, publicKey: point(jwk.x, jwk.y) };
      },
      publicKey: publicFromScalar,
      sign: (sk, message) => own(nc.sign(digest, message, { key: privateKey(sk), dsaEncoding: "der" })),
      verify(pk, message, signature) {
        const key = publicKey(pk);
        return falseOnError(() => nc.verify(digest, message, { key, dsaEncoding: "der" }, signature));
      },
    };
  }

  return {
    name: "node:crypto",
    hash,
    aead,
    dh,
    signer(scheme) {
      const ed = EDDSA[scheme];
      if (ed) return eddsa(ed);
      const ec = ECDSA[scheme]!;
      return ecdsa(scheme, ec.jwkCurve, ec.ecdhCurve);
    },
    randomBytes: (length) => nc.randomFillSync(new Uint8Array(length)),
  };
}
