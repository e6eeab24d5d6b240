import { MlsDecodeError } from "./errors.js";

/**
 * Total decoder for the TLS presentation language with RFC 9420 §2.1.2 vector headers. Every read
 * checks bounds first, so a length taken from the input can never allocate more than the input holds.
 */
export type Decoder<T> = (r: Reader) => T;

export class Reader {
  private pos: number;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly start = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (n > this.end - this.pos) throw new MlsDecodeError("truncated", `need ${n} bytes, have ${this.end - this.pos}`, this.pos);
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = (this.bytes[this.pos]! << 8) | this.bytes[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
  }

  u64(): bigint {
    const hi = this.u32();
    const lo = this.u32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  varint(): number {
    const at = this.pos;
    this.need(1);
    const prefix = this.bytes[this.pos]! >> 6;
    if (prefix === 3) throw new MlsDecodeError("invalid-length", "varint prefix 0b11 is reserved", at);
    let v: number;
    if (prefix === 0) v = this.u8() & 0x3f;
    else if (prefix === 1) v = this.u16() & 0x3fff;
    else v = this.u32() & 0x3fffffff;
    const minimal = prefix === 0 || (prefix === 1 ? v >= 0x40 : v >= 0x4000);
    if (!minimal) throw new MlsDecodeError("non-minimal-length", `varint ${v} not minimally encoded`, at);
    return v;
  }

  /** Fixed-size bytes; a view into the input, copied so callers may keep it. */
  raw(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  opaque(): Uint8Array {
    return this.raw(this.varint());
  }

  /** `T x<V>`: decodes items until the vector's bytes are used up exactly. */
  vector<T>(dec: Decoder<T>): T[] {
    const len = this.varint();
    this.need(len);
    const sub = new Reader(this.bytes, this.pos, this.pos + len);
    const items: T[] = [];
    while (sub.remaining > 0) {
      const before = sub.offset;
      items.push(dec(sub));
      // An item that consumes nothing would repeat forever; no MLS struct is zero bytes long.
      if (sub.offset === before) throw new MlsDecodeError("invalid-value", "empty vector item", before);
    }
    this.pos += len;
    return items;
  }

  optional<T>(dec: Decoder<T>): T | undefined {
    const at = this.pos;
    const present = this.u8();
    if (present === 0) return undefined;
    if (present !== 1) throw new MlsDecodeError("invalid-value", `optional presence byte ${present}`, at);
    return dec(this);
  }

  /** Asserts the structure consumed every byte. */
  done(): void {
    if (this.pos !== this.end) throw new MlsDecodeError("trailing-bytes", `${this.end - this.pos} bytes left over`, this.pos);
  }
}

/**
 * Decode a whole buffer: trailing bytes are an error, and any non-MlsDecodeError escaping a decoder
 * (a bug, never expected) is still surfaced as a typed error so callers need one catch.
 */
export function decode<T>(dec: Decoder<T>, bytes: Uint8Array): T {
  const r = new Reader(bytes);
  let value: T;
  try {
    value = dec(r);
  } catch (e) {
    if (e instanceof MlsDecodeError) throw e;
    throw new MlsDecodeError("invalid-value", e instanceof Error ? e.message : String(e));
  }
  r.done();
  return value;
}
