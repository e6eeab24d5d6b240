import { concatBytes } from "../codec/bytes.js";

/**
 * The little DER that WebCrypto forces on us: PKCS#8 wrappers to import raw private keys, and
 * ECDSA signatures, which WebCrypto produces as r||s while MLS (like TLS) uses DER.
 */

function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return concatBytes(Uint8Array.of(tag, ...length), content);
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const OCTET_STRING = 0x04;
const OID = 0x06;

const OIDS = {
  X25519: [0x2b, 0x65, 0x6e],
  X448: [0x2b, 0x65, 0x6f],
  Ed25519: [0x2b, 0x65, 0x70],
  Ed448: [0x2b, 0x65, 0x71],
  ecPublicKey: [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
  "P-256": [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
  "P-384": [0x2b, 0x81, 0x04, 0x00, 0x22],
  "P-521": [0x2b, 0x81, 0x04, 0x00, 0x23],
} as const;

const VERSION_0 = tlv(INTEGER, Uint8Array.of(0));
const VERSION_1 = tlv(INTEGER, Uint8Array.of(1));

/** RFC 8410 PrivateKeyInfo for X25519/X448/Ed25519/Ed448: the raw key in an OCTET STRING. */
export function okpPkcs8(curve: "X25519" | "X448" | "Ed25519" | "Ed448", key: Uint8Array): Uint8Array {
  const algorithm = tlv(SEQUENCE, tlv(OID, Uint8Array.from(OIDS[curve])));
  return tlv(SEQUENCE, concatBytes(VERSION_0, algorithm, tlv(OCTET_STRING, tlv(OCTET_STRING, key))));
}

/** RFC 5915 ECPrivateKey inside PrivateKeyInfo; the optional public key is left out (importers derive it). */
export function ecPkcs8(curve: "P-256" | "P-384" | "P-521", scalar: Uint8Array): Uint8Array {
  const algorithm = tlv(SEQUENCE, concatBytes(tlv(OID, Uint8Array.from(OIDS.ecPublicKey)), tlv(OID, Uint8Array.from(OIDS[curve]))));
  const ecPrivateKey = tlv(SEQUENCE, concatBytes(VERSION_1, tlv(OCTET_STRING, scalar)));
  return tlv(SEQUENCE, concatBytes(VERSION_0, algorithm, tlv(OCTET_STRING, ecPrivateKey)));
}

function derInteger(unsigned: Uint8Array): Uint8Array {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  const v = unsigned.subarray(i);
  return tlv(INTEGER, v[0]! & 0x80 ? concatBytes(Uint8Array.of(0), v) : v);
}

/** r||s (each `size` bytes) to DER SEQUENCE { r INTEGER, s INTEGER }. */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  const size = raw.length / 2;
  return tlv(SEQUENCE, concatBytes(derInteger(raw.subarray(0, size)), derInteger(raw.subarray(size))));
}

/** Strict DER to r||s, or undefined when the encoding is malformed or a value does not fit `size` bytes. */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array | undefined {
  let pos = 0;
  const readLength = (): number | undefined => {
    const first = der[pos++];
    if (first === undefined) return undefined;
    if (first < 0x80) return first;
    if (first !== 0x81) return undefined; // signatures of suites 1-7 stay below 256 bytes
    const n = der[pos++];
    return n !== undefined && n >= 0x80 ? n : undefined;
  };
  const readInteger = (): Uint8Array | undefined => {
    if (der[pos++] !== INTEGER) return undefined;
    const n = readLength();
    if (n === undefined || n === 0 || pos + n > der.length) return undefined;
    const v = der.subarray(pos, pos + n);
    pos += n;
    if (v[0]! & 0x80) return undefined; // negative
    if (v[0] === 0 && v.length > 1 && !(v[1]! & 0x80)) return undefined; // non-minimal
    const magnitude = v[0] === 0 && v.length > 1 ? v.subarray(1) : v;
    return magnitude.length <= size ? magnitude : undefined;
  };
  if (der[pos++] !== SEQUENCE) return undefined;
  const seqLength = readLength();
  if (seqLength === undefined || pos + seqLength !== der.length) return undefined;
  const r = readInteger();
  const s = r && readInteger();
  if (!r || !s || pos !== der.length) return undefined;
  const out = new Uint8Array(2 * size);
  out.set(r, size - r.length);
  out.set(s, 2 * size - s.length);
  return out;
}
