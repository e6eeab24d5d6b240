import { bytesEqual } from "../codec/bytes.js";

/**
 * A map keyed by public keys (or any byte strings). Entries are bucketed by a small integer read from the
 * first bytes and confirmed byte for byte, so building a map over a 1000-member tree allocates no strings
 * and hashes only small integers; keys chosen to share a prefix only lengthen a bucket, never confuse two keys.
 * Entries and collision buckets are never edited in place, so `clone()` is one native Map copy.
 */
export class KeyMap<V> {
  /** A bucket is one entry, or an array when keys share a bucket number. */
  private readonly buckets: Map<number, Entry<V> | Entry<V>[]>;
  private count: number;

  constructor(from?: KeyMap<V>) {
    this.buckets = new Map(from?.buckets);
    this.count = from?.count ?? 0;
  }

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

  clone(): KeyMap<V> {
    return new KeyMap(this);
  }

  set(key: Uint8Array, value: V): this {
    const b = KeyMap.bucketOf(key);
    const bucket = this.buckets.get(b);
    const entry = { key, value };
    if (bucket === undefined) {
      this.buckets.set(b, entry);
    } else if (!Array.isArray(bucket)) {
      if (bytesEqual(bucket.key, key)) {
        this.buckets.set(b, entry);
        return this;
      }
      this.buckets.set(b, [bucket, entry]);
    } else {
      const i = bucket.findIndex((e) => bytesEqual(e.key, key));
      this.buckets.set(b, i < 0 ? [...bucket, entry] : bucket.map((e, j) => (j === i ? entry : e)));
      if (i >= 0) return this;
    }
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
      const rest = bucket.filter((_, j) => j !== i);
      this.buckets.set(b, rest.length === 1 ? rest[0]! : rest);
    }
    this.count--;
    return true;
  }
}

interface Entry<V> {
  readonly key: Uint8Array;
  readonly value: V;
}
