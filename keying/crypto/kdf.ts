import { concatBytes } from "../codec/bytes.js";
import { CryptoError } from "./errors.js";
import type { HashFunctions, Kdf } from "./primitives.js";

const EMPTY = new Uint8Array(0);
const FIRST_BLOCK = Uint8Array.of(1);

/** HKDF (RFC 5869) over a backend's HMAC, so every backend shares one Extract/Expand. */
export function hkdf(h: HashFunctions): Kdf {
  return {
    Nh: h.Nh,
    // An empty salt and HashLen zero bytes are the same HMAC key (keys are zero-padded to the block size).
    extract: (salt, ikm) => h.hmac(salt, ikm),
    async expand(prk, info, length) {
      if (!Number.isInteger(length) || length < 0 || length > 255 * h.Nh) {
        throw new CryptoError("invalid-length", `HKDF-Expand length ${length} out of range`);
      }
      // Most expansions (HPKE keys and nonces, MLS secrets) are one block: T(1) = HMAC(PRK, info || 0x01).
      if (length > 0 && length <= h.Nh) {
        const t = await h.hmac(prk, concatBytes(info, FIRST_BLOCK));
        return t.length === length ? t : t.slice(0, length);
      }
      const out = new Uint8Array(length);
      let t: Uint8Array = EMPTY;
      for (let i = 1, offset = 0; offset < length; i++) {
        t = await h.hmac(prk, concatBytes(t, info, Uint8Array.of(i)));
        out.set(t.subarray(0, Math.min(t.length, length - offset)), offset);
        offset += t.length;
      }
      return out;
    },
  };
}
