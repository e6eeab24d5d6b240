import { bytesEqual } from "../codec/bytes.js";

/**
 * A map keyed by public keys (or any byte strings). Entries are bucketed by a small integer read from the
 * first bytes and confirmed byte for byte, so building a map over a 1000-member tree allocates no strings
 * and hashes only small integers; keys chosen to share a prefix only lengthen a bucket, never confuse two keys.
 */
export class KeyMap<V> {
  /** A bucket is one entry, or an array when keys share a bucket number. */
  private readonly buckets = new Map<number, Entry<V> | Entry<V>[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** 30 bits, so the number stays a small integer for the Map's hashing. */
  private static bucketOf(key: Uint8Array): number {
    return ((key[0] ?? 0) | ((key[1] ?? 0) << 8) | ((key[2] ?? 0) << 16) | (((key[3] ?? 0) & 0x3f) << 24)) ^ key.length;
  }

  private find(key: Uint8Array): Entry<V> | undefined {
    const bucket = this.buckets.get(KeyMap.bucketOf(key));
    if (bucket === undefined) return undefined;
    if (!Array.isArray(bucket)) return bytesEqual(bucket.key, key) ? bucket : undefined;
    return bucket.find((e) => bytesEqual(e.key, key));
  }

  get(key: Uint8Array): V | undefined {
    return this.find(key)?.value;
  }

  has(key: Uint8Array): boolean {
    return this.find(key) !== undefined;
  }

  set(key: Uint8Array, value: V): this {
    const existing = this.find(key);
    if (existing) {
      existing.value = value;
      return this;
    }
    const b = KeyMap.bucketOf(key);
    const bucket = this.buckets.get(b);
    const entry = { key, value };
    if (bucket === undefined) this.buckets.set(b, entry);
    else if (Array.isArray(bucket)) bucket.push(entry);
    else this.buckets.set(b, [bucket, entry]);
    this.count++;
    return this;
  }

  delete(key: Uint8Array): boolean {
    const b = KeyMap.bucketOf(key);
    const bucket = this.buckets.get(b);
    if (bucket === undefined) return false;
    if (!Array.isArray(bucket)) {
      if (!bytesEqual(bucket.key, key)) return false;
      this.buckets.delete(b);
    } else {
      const i = bucket.findIndex((e) => bytesEqual(e.key, key));
      if (i < 0) return false;
      bucket.splice(i, 1);
      if (bucket.length === 1) this.buckets.set(b, bucket[0]!);
    }
    this.count--;
    return true;
  }
}

interface Entry<V> {
  readonly key: Uint8Array;
  value: V;
}
