import type * as NodeCrypto from "node:crypto";
import type { KeyObject } from "node:crypto";
import type * as NodeWorkerThreads from "node:worker_threads";
import type { KeyPair } from "./cipher-suite.js";
import { AEAD_TAG_LENGTH, HASHES, KEMS, SIGNATURES, leftPad } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import { falseOnError, guard } from "./guard.js";
import { PublicKeyCache, SecretKeyCache } from "./key-cache.js";
import { EphemeralDhPool, type EphemeralCurve, type Encapsulated } from "./node-dh-pool.js";
import type { Aead, Backend, DhGroup, HashFunctions, Signer } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm, SignatureScheme } from "./suites.js";

/**
 * node:crypto, synchronous except for batches of HPKE encapsulations, which a worker thread helps with
 * (node-dh-pool.ts). Raw keys are turned into KeyObjects through JWK, which OpenSSL 3 imports an order
 * of magnitude faster than DER (its decoder search is slow), and the KeyObjects are cached. Scalars
 * become public points through the ECDH class; which DH is faster depends on the curve (see dh()).
 *
 * A KeyObject that came out of generateKeyPairSync is never exported: in Node 20, ExportJWK holds the
 * key's mutex while it allocates, and a garbage collection at that moment runs the finished key
 * generation job's destructor, which takes the same mutex, and the process hangs. Generated keys are
 * therefore encoded by the generation itself (JWK), or, for HPKE's ephemeral key, only used.
 */

const HASH_NAMES: Record<HashAlgorithm, string> = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };
const CIPHER_NAMES: Record<AeadAlgorithm, NodeCrypto.CipherGCMTypes | NodeCrypto.CipherChaCha20Poly1305Types> = {
  "AES-128-GCM": "aes-128-gcm",
  "AES-256-GCM": "aes-256-gcm",
  ChaCha20Poly1305: "chacha20-poly1305",
};
type NistCurve = "P-256" | "P-384" | "P-521";
/** OpenSSL's names, for the ECDH class. */
const ECDH_NAMES: Record<NistCurve, string> = { "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1" };
const NIST_KEMS: Partial<Record<KemAlgorithm, NistCurve>> = { "DHKEM-P256": "P-256", "DHKEM-P384": "P-384", "DHKEM-P521": "P-521" };
const OKP_KEMS: Partial<Record<KemAlgorithm, "X25519" | "X448">> = { "DHKEM-X25519": "X25519", "DHKEM-X448": "X448" };
const EDDSA: Partial<Record<SignatureScheme, "Ed25519" | "Ed448">> = { Ed25519: "Ed25519", Ed448: "Ed448" };
const ECDSA: Partial<Record<SignatureScheme, NistCurve>> = { "ECDSA-P256-SHA256": "P-256", "ECDSA-P384-SHA384": "P-384", "ECDSA-P521-SHA512": "P-521" };

/**
 * A plain Uint8Array: Buffers may be views into Node's shared pool, so they are copied, unless the
 * Buffer owns its whole ArrayBuffer (digests, DH outputs), which is only re-wrapped.
 */
function own(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? new Uint8Array(b.buffer, 0, b.byteLength) : new Uint8Array(b);
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

function fromB64url(s: string | undefined, length: number): Uint8Array {
  return leftPad(own(Buffer.from(s ?? "", "base64url")), length);
}

type JwkPair = { readonly publicKey: NodeCrypto.JsonWebKey; readonly privateKey: NodeCrypto.JsonWebKey };

// @types/node lists no JWK overloads of generateKeyPairSync, though Node 20 takes the format.
function generateJwk(nc: typeof NodeCrypto, type: "x25519" | "x448" | "ed25519" | "ed448"): JwkPair {
  const generate = nc.generateKeyPairSync as unknown as (type: string, options: object) => JwkPair;
  return generate(type, { publicKeyEncoding: { format: "jwk" }, privateKeyEncoding: { format: "jwk" } });
}

/** A key pair whose private half stays a KeyObject (never exported) and whose public half is a JWK. */
function generateEphemeral(nc: typeof NodeCrypto, type: "x25519" | "x448" | "ec", options: { namedCurve?: string } = {}): { publicKey: NodeCrypto.JsonWebKey; privateKey: KeyObject } {
  const generate = nc.generateKeyPairSync as unknown as (type: string, options: object) => { publicKey: NodeCrypto.JsonWebKey; privateKey: KeyObject };
  return generate(type, { ...options, publicKeyEncoding: { format: "jwk" } });
}

/**
 * `workerThreads`, when given, lets large batches of HPKE encapsulations (an UpdatePath's seals) share
 * the work with a worker thread (node-dh-pool.ts).
 */
export function nodeBackend(nc: typeof NodeCrypto, workerThreads?: typeof NodeWorkerThreads): Backend {
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
    const type = crv.toLowerCase() as "x25519" | "x448" | "ed25519" | "ed448";
    const generate = (length: number): KeyPair => {
      const jwk = generateJwk(nc, type);
      return { privateKey: fromB64url(jwk.privateKey.d, length), publicKey: fromB64url(jwk.publicKey.x, length) };
    };
    return { privateKey, publicKey, rawPublic, generate };
  }

  /** One DH group per curve, so suites sharing a KEM share its key caches. */
  type OkpGroup = DhGroup & { encapsulate(pk: Uint8Array): Encapsulated };
  const okpGroups = new Map<"X25519" | "X448", OkpGroup>();
  let pool: EphemeralDhPool | undefined;
  const sharedPool = (): EphemeralDhPool | undefined =>
    (pool ??= workerThreads && new EphemeralDhPool(workerThreads, (curve, pk) => okpGroup(curve === "x25519" ? "X25519" : "X448").encapsulate(pk)));

  function okpGroup(okp: "X25519" | "X448"): OkpGroup {
    const known = okpGroups.get(okp);
    if (known) return known;
    const { Npk, Nsk } = KEMS[okp === "X25519" ? "DHKEM-X25519" : "DHKEM-X448"];
    const curve: EphemeralCurve = okp === "X25519" ? "x25519" : "x448";
    const keys = okpKeys(okp);
    const agree = (privateKey: KeyObject, pk: Uint8Array) => {
      const publicKey = keys.publicKey(pk);
      return own(guard("invalid-public-key", `${okp} key agreement failed`, () => nc.diffieHellman({ privateKey, publicKey })));
    };
    const group: OkpGroup = {
      generateKeyPair: () => keys.generate(Nsk),
      publicKey: (sk: Uint8Array) => keys.rawPublic(keys.privateKey(sk), Npk),
      dh: (sk: Uint8Array, pk: Uint8Array) => agree(keys.privateKey(sk), pk),
      encapsulate(pk: Uint8Array): Encapsulated {
        const e = generateEphemeral(nc, curve);
        return { publicKey: fromB64url(e.publicKey.x, Npk), dh: agree(e.privateKey, pk) };
      },
      ephemeralDh(pk: Uint8Array): Encapsulated | Promise<Encapsulated> {
        const p = sharedPool();
        return p ? p.encapsulate(curve, pk) : group.encapsulate(pk);
      },
    };
    okpGroups.set(okp, group);
    return group;
  }

  function dh(kem: KemAlgorithm): DhGroup {
    const { Npk, Nsk } = KEMS[kem];
    const okp = OKP_KEMS[kem];
    if (okp) return okpGroup(okp);
    const curve = NIST_KEMS[kem]!;
    const keys = ecKeys(curve, Npk, Nsk);
    // ECDH.computeSecret against diffieHellman on KeyObjects, CPU per operation: P-256 126 µs vs 120 µs, P-384
    // 3.3 vs 2.1 ms, P-521 6.9 vs 4.0 ms. A KeyObject import checks the point with a scalar multiplication (P-256
    // 87 µs, P-384 0.6 ms, P-521 1.4 ms) that the ECDH class skips, so only the larger curves gain from KeyObjects.
    if (curve === "P-256") {
      return {
        generateKeyPair: keys.generate,
        publicKey: keys.publicFromScalar,
        dh: (sk, pk) => own(guard("invalid-public-key", `${curve} public key is not on the curve`, () => keys.ecdh(sk).computeSecret(pk))),
      };
    }
    const agree = (privateKey: KeyObject, pk: Uint8Array) => own(guard("invalid-public-key", `${curve} key agreement failed`, () => nc.diffieHellman({ privateKey, publicKey: keys.publicKey(pk) })));
    return {
      generateKeyPair: keys.generate,
      publicKey: keys.publicFromScalar,
      dh: (sk, pk) => agree(keys.privateKey(sk), pk),
      ephemeralDh(pk) {
        const e = generateEphemeral(nc, "ec", { namedCurve: curve });
        return { publicKey: keys.point(e.publicKey), dh: agree(e.privateKey, pk) };
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

  /**
   * Keys on a NIST curve: raw scalars and uncompressed points to KeyObjects (through JWK, whose EC import
   * checks that the point is on the curve), and a scalar's public point through the ECDH class.
   */
  function ecKeys(curve: NistCurve, Npk: number, Nsk: number) {
    const half = (Npk - 1) / 2;
    const point = (jwk: NodeCrypto.JsonWebKey) => {
      const out = new Uint8Array(Npk);
      out[0] = 0x04;
      out.set(fromB64url(jwk.x, half), 1);
      out.set(fromB64url(jwk.y, half), 1 + half);
      return out;
    };
    const coordinates = (pk: Uint8Array) => ({ kty: "EC", crv: curve, x: b64url(pk.subarray(1, 1 + half)), y: b64url(pk.subarray(1 + half)) });
    const scalars = new SecretKeyCache<NodeCrypto.ECDH>();
    const secrets = new SecretKeyCache<KeyObject>();
    const publics = new PublicKeyCache<KeyObject>(4096);
    const ecdh = (sk: Uint8Array) =>
      scalars.obtain(sk, () =>
        guard("invalid-private-key", `unusable ${curve} private key`, () => {
          const e = nc.createECDH(ECDH_NAMES[curve]);
          e.setPrivateKey(sk);
          return e;
        }),
      );
    const publicFromScalar = (sk: Uint8Array) => own(ecdh(sk).getPublicKey());
    const privateKey = (sk: Uint8Array) =>
      secrets.obtain(sk, () => {
        const pk = publicFromScalar(sk);
        return guard("invalid-private-key", `unusable ${curve} private key`, () => nc.createPrivateKey({ key: { ...coordinates(pk), d: b64url(sk) }, format: "jwk" }));
      });
    const publicKey = (pk: Uint8Array) =>
      publics.obtain(pk, () => guard("invalid-public-key", `${curve} public key is not on the curve`, () => nc.createPublicKey({ key: coordinates(pk), format: "jwk" })));
    // The ECDH class generates keys faster than generateKeyPairSync and needs no export afterwards.
    const generate = (): KeyPair => {
      const e = nc.createECDH(ECDH_NAMES[curve]);
      e.generateKeys();
      const privateKey = leftPad(own(e.getPrivateKey()), Nsk);
      scalars.set(privateKey, e);
      return { privateKey, publicKey: own(e.getPublicKey()) };
    };
    return { point, ecdh, publicFromScalar, privateKey, publicKey, generate };
  }

  function ecdsa(scheme: SignatureScheme, curve: NistCurve): Signer {
    const { Npk, Nsk, hash: h } = SIGNATURES[scheme];
    const digest = HASH_NAMES[h!];
    const keys = ecKeys(curve, Npk, Nsk);
    return {
      generateKeyPair: keys.generate,
      publicKey: keys.publicFromScalar,
      sign: (sk, message) => own(nc.sign(digest, message, { key: keys.privateKey(sk), dsaEncoding: "der" })),
      verify(pk, message, signature) {
        const key = keys.publicKey(pk);
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
      return ecdsa(scheme, ECDSA[scheme]!);
    },
    randomBytes: (length) => nc.randomFillSync(new Uint8Array(length)),
  };
}
