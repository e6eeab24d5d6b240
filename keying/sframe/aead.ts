import { bytesEqual } from "../codec/bytes.js";
import { SFrameError } from "./errors.js";
import { bufferSource, subtle } from "./keys.js";
import type { SFrameSuite } from "./suites.js";

/**
 * The AEAD under an SFrame context, pluggable so one context code path runs on WebCrypto (browser,
 * worker, Node) or on node:crypto (Node servers and benchmarks, where it is synchronous and cheaper
 * per call). A key is imported once per KID and cached by the context.
 */
export interface AeadKey {
  /** Writes ciphertext || tag (plaintext.length + Nt bytes) into out at offset. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset: number): Promise<void> | void;
  /** The plaintext of ciphertext || tag, or an SFrameError "auth-failed". */
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> | Uint8Array;
}

export interface AeadBackend {
  readonly name: string;
  /** `key` is an sframe_key of the suite's Nk bytes. */
  importKey(suite: SFrameSuite, key: Uint8Array): Promise<AeadKey>;
  /**
   * Output buffers of `length` bytes, every one of which the caller overwrites, so they need not be
   * zeroed. Absent: `new Uint8Array(length)`, a buffer of its own, as a worker needs for frame.data.
   */
  allocate?(length: number): Uint8Array;
}

export function authFailed(): SFrameError {
  return new SFrameError("auth-failed", "SFrame ciphertext did not authenticate");
}

/** The part of §4.5.1 compute_tag's auth_data before the ciphertext: lengths, nonce, aad. */
export function ctrHmacAuthPrefix(nonce: Uint8Array, aad: Uint8Array, ctLength: number, Nt: number): Uint8Array {
  const out = new Uint8Array(24 + nonce.length + aad.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(aad.length));
  view.setBigUint64(8, BigInt(ctLength));
  view.setBigUint64(16, BigInt(Nt));
  out.set(nonce, 24);
  out.set(aad, 24 + nonce.length);
  return out;
}

/** initial_counter = nonce || 0x00000000: the AES-CTR block counter runs in the low 32 bits. */
export function ctrInitialCounter(nonce: Uint8Array): Uint8Array<ArrayBuffer> {
  const block = new Uint8Array(16);
  block.set(nonce);
  return block;
}

/** Splits an AEAD ciphertext into its body and its Nt-byte tag, rejecting one shorter than a tag. */
export function splitTag(ciphertext: Uint8Array, Nt: number): [Uint8Array, Uint8Array] {
  if (ciphertext.length < Nt) throw new SFrameError("truncated", `ciphertext shorter than the ${Nt}-byte tag`);
  const n = ciphertext.length - Nt;
  return [ciphertext.subarray(0, n), ciphertext.subarray(n)];
}

async function gcmKey(s: SubtleCrypto, key: Uint8Array): Promise<AeadKey> {
  const ck = await s.importKey("raw", bufferSource(key), "AES-GCM", false, ["encrypt", "decrypt"]);
  return {
    async seal(nonce, aad, plaintext, out, offset) {
      const ct = await s.encrypt({ name: "AES-GCM", iv: bufferSource(nonce), additionalData: bufferSource(aad) }, ck, bufferSource(plaintext));
      out.set(new Uint8Array(ct), offset);
    },
    async open(nonce, aad, ciphertext) {
      try {
        return new Uint8Array(await s.decrypt({ name: "AES-GCM", iv: bufferSource(nonce), additionalData: bufferSource(aad) }, ck, bufferSource(ciphertext)));
      } catch {
        throw authFailed();
      }
    },
  };
}

async function ctrHmacKey(s: SubtleCrypto, suite: SFrameSuite, key: Uint8Array): Promise<AeadKey> {
  // derive_subkeys: enc_key = key[..Nka], auth_key = key[Nka..]
  const [encKey, authKey] = await Promise.all([
    s.importKey("raw", bufferSource(key.subarray(0, suite.Nka)), "AES-CTR", false, ["encrypt"]),
    s.importKey("raw", bufferSource(key.subarray(suite.Nka)), { name: "HMAC", hash: suite.hash }, false, ["sign"]),
  ]);
  // AES-CTR is its own inverse, so one "encrypt" serves both directions.
  const ctr = async (nonce: Uint8Array, data: Uint8Array): Promise<Uint8Array> =>
    new Uint8Array(await s.encrypt({ name: "AES-CTR", counter: ctrInitialCounter(nonce), length: 32 }, encKey, bufferSource(data)));
  const tag = async (nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> => {
    const prefix = ctrHmacAuthPrefix(nonce, aad, ct.length, suite.Nt);
    const authData = new Uint8Array(prefix.length + ct.length);
    authData.set(prefix);
    authData.set(ct, prefix.length);
    return new Uint8Array(await s.sign("HMAC", authKey, authData), 0, suite.Nt);
  };
  return {
    async seal(nonce, aad, plaintext, out, offset) {
      const ct = await ctr(nonce, plaintext);
      out.set(ct, offset);
      out.set(await tag(nonce, aad, ct), offset + ct.length);
    },
    async open(nonce, aad, ciphertext) {
      const [ct, received] = splitTag(ciphertext, suite.Nt);
      if (!bytesEqual(await tag(nonce, aad, ct), received)) throw authFailed();
      return ctr(nonce, ct);
    },
  };
}

/** WebCrypto (globalThis.crypto.subtle): browsers, workers and Node 20. */
export const webCryptoAead: AeadBackend = {
  name: "webcrypto",
  async importKey(suite, key) {
    const s = subtle();
    return suite.aead === "aes-gcm" ? gcmKey(s, key) : ctrHmacKey(s, suite, key);
  },
};
