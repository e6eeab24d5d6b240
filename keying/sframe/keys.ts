import { utf8 } from "../codec/bytes.js";
import { SFrameError } from "./errors.js";
import { writeUint } from "./header.js";
import type { SFrameSuite } from "./suites.js";

/**
 * RFC 9605 §4.4.2 key schedule: sframe_secret = HKDF-Extract("", base_key), then sframe_key and
 * sframe_salt are HKDF-Expand outputs under labels that bind the KID (8 bytes) and the suite (2 bytes),
 * so one base_key yields unrelated keys per KID: that is what makes one MLS epoch secret safe for
 * every sender (§5.2). Runs on WebCrypto, which Node 20, browsers and workers all have.
 */

export interface SFrameKeyMaterial {
  readonly key: Uint8Array;
  readonly salt: Uint8Array;
}

const KEY_LABEL = utf8("SFrame 1.0 Secret key ");
const SALT_LABEL = utf8("SFrame 1.0 Secret salt ");

function label(prefix: Uint8Array, kid: bigint, suite: number): Uint8Array {
  const out = new Uint8Array(prefix.length + 10);
  out.set(prefix);
  const view = new DataView(out.buffer);
  view.setBigUint64(prefix.length, kid);
  view.setUint16(prefix.length + 8, suite);
  return out;
}

export function sframeKeyLabel(kid: bigint, suite: SFrameSuite): Uint8Array {
  return label(KEY_LABEL, kid, suite.id);
}

export function sframeSaltLabel(kid: bigint, suite: SFrameSuite): Uint8Array {
  return label(SALT_LABEL, kid, suite.id);
}

/** WebCrypto's BufferSource excludes views over SharedArrayBuffer; ours never are. */
export function bufferSource(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b as Uint8Array<ArrayBuffer>;
}

export function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new SFrameError("unsupported-suite", "WebCrypto (crypto.subtle) is not available here");
  return s;
}

const EMPTY = new Uint8Array(0);

/** derive_key_salt(KID, base_key): WebCrypto's HKDF is Extract-then-Expand, exactly the §4.4.2 shape. */
export async function deriveKeySalt(suite: SFrameSuite, kid: bigint, baseKey: Uint8Array): Promise<SFrameKeyMaterial> {
  if (kid < 0n || kid >= 1n << 64n) throw new SFrameError("invalid-argument", "KID outside 0..2^64-1");
  if (baseKey.length === 0) throw new SFrameError("invalid-argument", "empty base_key", kid);
  const s = subtle();
  const ikm = await s.importKey("raw", bufferSource(baseKey), "HKDF", false, ["deriveBits"]);
  const expand = async (info: Uint8Array, length: number): Promise<Uint8Array> =>
    new Uint8Array(await s.deriveBits({ name: "HKDF", hash: suite.hash, salt: EMPTY, info: bufferSource(info) }, ikm, length * 8));
  const [key, salt] = await Promise.all([expand(sframeKeyLabel(kid, suite), suite.Nk), expand(sframeSaltLabel(kid, suite), suite.Nn)]);
  return { key, salt };
}

/** nonce = sframe_salt XOR CTR, the CTR big-endian in the last 8 of the Nn bytes. */
export function sframeNonce(salt: Uint8Array, ctr: bigint): Uint8Array {
  const n = salt.length;
  const nonce = new Uint8Array(n);
  writeUint(nonce, n - 8, ctr, 8);
  for (let i = 0; i < n; i++) nonce[i]! ^= salt[i]!;
  return nonce;
}

/** aad = header || metadata; without metadata the header itself, uncopied. */
export function sframeAad(header: Uint8Array, metadata: Uint8Array): Uint8Array {
  if (metadata.length === 0) return header;
  const aad = new Uint8Array(header.length + metadata.length);
  aad.set(header);
  aad.set(metadata, header.length);
  return aad;
}

/**
 * A bounded map from KID to derived, imported keys. When full, the entry used least recently goes:
 * recency is a counter stamped on each hit, so a hit costs no map reshuffle and only an insertion
 * into a full cache scans.
 */
export class KeyCache<T> {
  private readonly entries = new Map<bigint, { value: T; used: number }>();
  private clock = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new SFrameError("invalid-argument", "key cache capacity must be a positive integer");
  }

  get size(): number {
    return this.entries.size;
  }

  get(kid: bigint): T | undefined {
    const e = this.entries.get(kid);
    if (!e) return undefined;
    e.used = ++this.clock;
    return e.value;
  }

  set(kid: bigint, value: T): void {
    if (!this.entries.has(kid) && this.entries.size >= this.capacity) this.evictOldest();
    this.entries.set(kid, { value, used: ++this.clock });
  }

  delete(kid: bigint): boolean {
    return this.entries.delete(kid);
  }

  deleteWhere(pred: (kid: bigint) => boolean): void {
    for (const kid of [...this.entries.keys()]) if (pred(kid)) this.entries.delete(kid);
  }

  private evictOldest(): void {
    let oldest: bigint | undefined;
    let min = Infinity;
    for (const [kid, e] of this.entries) {
      if (e.used < min) {
        min = e.used;
        oldest = kid;
      }
    }
    if (oldest !== undefined) this.entries.delete(oldest);
  }
}
