/**
 * TLS presentation-language encoder with RFC 9420 §2.1.2 variable-length vector headers.
 * Structures are written by functions `(w: Writer, value: T) => void`, which compose.
 */
export type Encoder<T> = (w: Writer, value: T) => void;

export const MAX_VARINT = 0x3fffffff;

export class Writer {
  private buf: Uint8Array;
  private len = 0;

  constructor(initialCapacity = 256) {
    this.buf = new Uint8Array(initialCapacity);
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    for (let s = 24; s >= 0; s -= 8) this.buf[this.len++] = (v >>> s) & 0xff;
    return this;
  }

  u64(v: bigint): this {
    if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError("u64 out of range");
    return this.u32(Number(v >> 32n)).u32(Number(v & 0xffffffffn));
  }

  /** RFC 9420 §2.1.2 variable-length integer, always in its minimal form. */
  varint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > MAX_VARINT) throw new RangeError(`varint out of range: ${v}`);
    if (v < 0x40) return this.u8(v);
    if (v < 0x4000) return this.u16(0x4000 | v);
    return this.u32((0x80000000 | v) >>> 0);
  }

  /** Raw bytes with no length prefix (fixed-size fields). */
  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** `opaque x<V>`: varint length then the bytes. */
  opaque(bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes);
  }

  /**
   * `T x<V>`: the items are encoded into the vector, whose length is their total byte size. They are written
   * in place behind room for the longest header, and moved back once the length, so the header's size, is known.
   */
  vector<T>(items: readonly T[], enc: Encoder<T>): this {
    this.reserve(4);
    const start = this.len;
    this.len += 4;
    for (const item of items) enc(this, item);
    const n = this.len - start - 4;
    if (n > MAX_VARINT) throw new RangeError(`vector of ${n} bytes is too long`);
    const header = n < 0x40 ? 1 : n < 0x4000 ? 2 : 4;
    if (header < 4) this.buf.copyWithin(start + header, start + 4, this.len);
    this.len = start;
    this.varint(n);
    this.len = start + header + n;
    return this;
  }

  /** `optional<T>`: a presence byte, then the value when present. */
  optional<T>(value: T | undefined | null, enc: Encoder<T>): this {
    if (value === undefined || value === null) return this.u8(0);
    this.u8(1);
    enc(this, value);
    return this;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Encode one value with its encoder. */
export function encode<T>(enc: Encoder<T>, value: T): Uint8Array {
  const w = new Writer();
  enc(w, value);
  return w.finish();
}
