import type * as NodeCrypto from "node:crypto";
import { bytesEqual } from "../codec/bytes.js";
import { authFailed, ctrHmacAuthPrefix, splitTag, type AeadBackend, type AeadKey } from "./aead.js";
import type { SFrameSuite } from "./suites.js";

/**
 * node:crypto AEAD: synchronous, so a frame costs no promise round trip inside the AEAD. Loaded by a
 * dynamic import so keying/ still bundles for browsers (which take webCryptoAead).
 */

/** A plain Uint8Array view (no copy): Buffer's slice() shares memory, which callers may not expect. */
function plain(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/*
 * A fresh nonce is a small Uint8Array, which V8 keeps on its heap and must move off it the first time
 * native code reads it: that costs more than the HMAC of a small frame. So each key passes its IVs
 * through one off-heap buffer of its own; node:crypto copies the IV before createCipheriv returns, and
 * the backend is synchronous, so calls cannot interleave on it.
 */

function gcmKey(nc: typeof NodeCrypto, suite: SFrameSuite, key: Uint8Array): AeadKey {
  const algorithm = suite.Nk === 16 ? "aes-128-gcm" : "aes-256-gcm";
  const secret = nc.createSecretKey(key);
  const iv = Buffer.alloc(suite.Nn);
  // Both GCM suites have Nt = 16, GCM's default tag length: no options object to parse on every frame.
  return {
    seal(nonce, aad, plaintext, out, offset) {
      iv.set(nonce);
      const c = nc.createCipheriv(algorithm, secret, iv);
      c.setAAD(aad);
      out.set(c.update(plaintext), offset);
      c.final();
      out.set(c.getAuthTag(), offset + plaintext.length);
    },
    open(nonce, aad, ciphertext) {
      const [ct, tag] = splitTag(ciphertext, suite.Nt);
      iv.set(nonce);
      const d = nc.createDecipheriv(algorithm, secret, iv);
      d.setAAD(aad);
      d.setAuthTag(tag);
      const pt = d.update(ct);
      try {
        d.final();
      } catch {
        throw authFailed();
      }
      return plain(pt);
    },
  };
}

function ctrHmacKey(nc: typeof NodeCrypto, suite: SFrameSuite, key: Uint8Array): AeadKey {
  const encKey = nc.createSecretKey(key.subarray(0, suite.Nka));
  const authKey = nc.createSecretKey(key.subarray(suite.Nka));
  const hash = suite.hash === "SHA-256" ? "sha256" : "sha512";
  const counter = Buffer.alloc(16); // initial_counter = nonce || 0x00000000: set() below never touches the last 4
  const ctr = (nonce: Uint8Array, data: Uint8Array): Buffer => {
    counter.set(nonce);
    const c = nc.createCipheriv("aes-128-ctr", encKey, counter);
    const head = c.update(data);
    const tail = c.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  };
  const tag = (nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array =>
    nc.createHmac(hash, authKey).update(ctrHmacAuthPrefix(nonce, aad, ct.length, suite.Nt)).update(ct).digest().subarray(0, suite.Nt);
  return {
    seal(nonce, aad, plaintext, out, offset) {
      const ct = ctr(nonce, plaintext);
      out.set(ct, offset);
      out.set(tag(nonce, aad, ct), offset + ct.length);
    },
    open(nonce, aad, ciphertext) {
      const [ct, received] = splitTag(ciphertext, suite.Nt);
      if (!bytesEqual(tag(nonce, aad, ct), received)) throw authFailed();
      return plain(ctr(nonce, ct));
    },
  };
}

/** The node:crypto backend; rejects where node:crypto cannot be imported (browsers). */
export async function nodeCryptoAead(): Promise<AeadBackend> {
  const nc: typeof NodeCrypto = await import("node:crypto");
  return {
    name: "node:crypto",
    importKey(suite, key) {
      return Promise.resolve(suite.aead === "aes-gcm" ? gcmKey(nc, suite, key) : ctrHmacKey(nc, suite, key));
    },
    // A zero-filled typed array costs more than AES-GCM on a small frame; Buffer's pool (small sizes) and
    // unzeroed allocation (large ones) do not. The view may share Node's pool buffer, as Buffers do.
    allocate: (length) => plain(Buffer.allocUnsafe(length)),
  };
}
