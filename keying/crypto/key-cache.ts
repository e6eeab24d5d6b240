import { bytesEqual } from "../codec/bytes.js";

/**
 * Imported key handles (KeyObject, CryptoKey) are expensive to build from raw bytes, and MLS
 * reuses the same keys many times (a member's signature key, the HKDF PRK across blocks, an
 * ephemeral HPKE key right after it was generated). These caches let a backend import once.
 */

/**
 * Keyed by the caller's array itself, so a secret is never turned into a lookup key and the entry
 * dies with the array. The copy detects a caller that rewrote (e.g. zeroised) the array in place.
 */
export class SecretKeyCache<T> {
  private readonly entries = new WeakMap<Uint8Array, { readonly bytes: Uint8Array; readonly handle: T }>();

  get(secret: Uint8Array): T | undefined {
    const e = this.entries.get(secret);
    return e && bytesEqual(e.bytes, secret) ? e.handle : undefined;
  }

  set(secret: Uint8Array, handle: T): T {
    this.entries.set(secret, { bytes: secret.slice(), handle });
    return handle;
  }

  obtain(secret: Uint8Array, make: () => T): T {
    return this.get(secret) ?? this.set(secret, make());
  }
}

/** One char per byte: a Map key built in one allocation (hex costs a string concatenation per byte). */
function byteString(b: Uint8Array): string {
  return String.fromCharCode.apply(null, b as unknown as number[]);
}

/** Public keys arrive in fresh arrays (decoded from messages), so they are cached by value, LRU-bounded. */
export class PublicKeyCache<T> {
  private readonly entries = new Map<string, T>();

  constructor(private readonly capacity = 512) {}

  get(publicKey: Uint8Array): T | undefined {
    const k = byteString(publicKey);
    const handle = this.entries.get(k);
    if (handle !== undefined) {
      this.entries.delete(k);
      this.entries.set(k, handle);
    }
    return handle;
  }

  set(publicKey: Uint8Array, handle: T): T {
    const k = byteString(publicKey);
    this.entries.delete(k);
    this.entries.set(k, handle);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return handle;
  }

  obtain(publicKey: Uint8Array, make: () => T): T {
    return this.get(publicKey) ?? this.set(publicKey, make());
  }
}
