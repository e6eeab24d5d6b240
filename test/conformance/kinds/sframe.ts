import { concatBytes, fromHex } from "../../../keying/codec/bytes.js";
import {
  decodeHeader,
  deriveKeySalt,
  encodeHeader,
  nodeCryptoAead,
  SFrameContext,
  sframeKeyLabel,
  sframeNonce,
  sframeSaltLabel,
  sframeSuite,
  webCryptoAead,
  type AeadBackend,
  type SFrameSuite,
} from "../../../keying/sframe/index.js";
import { eachCase, expectBytes, expectEqual, type VectorFile, type VectorKind } from "../kind.js";

/**
 * RFC 9605 Appendix C vectors (sframe-wg test-vectors.json): header encoding, the AES-CTR+HMAC AEAD,
 * and full SFrame encryption, each through both AEAD backends. Recognised by content. KID and CTR
 * reach 2^64-1, so the text is re-read with those numbers quoted before JSON.parse.
 */

interface HeaderCase {
  kid: string;
  ctr: string;
  encoded: string;
}
interface AeadCase {
  cipher_suite: number;
  key: string;
  enc_key: string;
  auth_key: string;
  nonce: string;
  aad: string;
  pt: string;
  ct: string;
}
interface SFrameCase {
  cipher_suite: number;
  kid: string;
  ctr: string;
  base_key: string;
  sframe_key_label: string;
  sframe_salt_label: string;
  sframe_secret: string;
  sframe_key: string;
  sframe_salt: string;
  metadata: string;
  nonce: string;
  aad: string;
  pt: string;
  ct: string;
}
interface SFrameVectors {
  header: HeaderCase[];
  aes_ctr_hmac: AeadCase[];
  sframe: SFrameCase[];
}

type Case = { section: "header"; c: HeaderCase } | { section: "aes_ctr_hmac"; c: AeadCase } | { section: "sframe"; c: SFrameCase };

/** JSON.parse with every "kid"/"ctr" number kept as its decimal string. */
function parseExact(text: string): SFrameVectors {
  return JSON.parse(text.replace(/"(kid|ctr)"(\s*):(\s*)(\d+)/g, '"$1"$2:$3"$4"')) as SFrameVectors;
}

function isSFrameVectors(json: unknown): boolean {
  if (typeof json !== "object" || json === null) return false;
  const j = json as Partial<Record<keyof SFrameVectors, unknown>>;
  if (!Array.isArray(j.header) || !Array.isArray(j.aes_ctr_hmac) || !Array.isArray(j.sframe)) return false;
  const first = j.sframe[0] as Record<string, unknown> | undefined;
  return first !== undefined && "sframe_key_label" in first && "base_key" in first;
}

async function sframeSecret(suite: SFrameSuite, baseKey: Uint8Array): Promise<Uint8Array> {
  // HKDF-Extract("", ikm) = HMAC(Nh zero bytes, ikm); WebCrypto refuses empty HMAC keys.
  const s = globalThis.crypto.subtle;
  const key = await s.importKey("raw", new Uint8Array(suite.Nh), { name: "HMAC", hash: suite.hash }, false, ["sign"]);
  return new Uint8Array(await s.sign("HMAC", key, baseKey as Uint8Array<ArrayBuffer>));
}

async function checkAead(c: AeadCase, backend: AeadBackend): Promise<void> {
  const suite = sframeSuite(c.cipher_suite);
  const key = fromHex(c.key);
  expectBytes("enc_key", key.subarray(0, suite.Nka), c.enc_key);
  expectBytes("auth_key", key.subarray(suite.Nka), c.auth_key);
  const aeadKey = await backend.importKey(suite, key);
  const pt = fromHex(c.pt);
  const ct = new Uint8Array(pt.length + suite.Nt);
  await aeadKey.seal(fromHex(c.nonce), fromHex(c.aad), pt, ct, 0);
  expectBytes(`${backend.name} AEAD.Encrypt`, ct, c.ct);
  expectBytes(`${backend.name} AEAD.Decrypt`, await aeadKey.open(fromHex(c.nonce), fromHex(c.aad), fromHex(c.ct)), c.pt);
}

async function checkSFrame(c: SFrameCase, backend: AeadBackend): Promise<void> {
  const suite = sframeSuite(c.cipher_suite);
  const kid = BigInt(c.kid);
  const ctr = BigInt(c.ctr);
  const baseKey = fromHex(c.base_key);
  const metadata = fromHex(c.metadata);
  expectBytes("sframe_key_label", sframeKeyLabel(kid, suite), c.sframe_key_label);
  expectBytes("sframe_salt_label", sframeSaltLabel(kid, suite), c.sframe_salt_label);
  expectBytes("sframe_secret", await sframeSecret(suite, baseKey), c.sframe_secret);
  const { key, salt } = await deriveKeySalt(suite, kid, baseKey);
  expectBytes("sframe_key", key, c.sframe_key);
  expectBytes("sframe_salt", salt, c.sframe_salt);
  expectBytes("nonce", sframeNonce(salt, ctr), c.nonce);
  expectBytes("aad", concatBytes(encodeHeader(kid, ctr), metadata), c.aad);

  const sender = new SFrameContext(suite.id, { aead: backend });
  await sender.addSendKey(kid, baseKey, ctr);
  expectBytes(`${backend.name} encrypt`, await sender.encrypt(kid, fromHex(c.pt), metadata), c.ct);

  const receiver = new SFrameContext(suite.id, { aead: backend });
  await receiver.addReceiveKey(kid, baseKey);
  const out = await receiver.decrypt(fromHex(c.ct), metadata);
  expectBytes(`${backend.name} decrypt`, out.plaintext, c.pt);
  expectEqual(`${backend.name} decrypt KID`, out.kid, kid);
  expectEqual(`${backend.name} decrypt CTR`, out.ctr, ctr);
}

const kind: VectorKind = {
  kind: "sframe",
  usesProvider: false,
  matches: (f: VectorFile) => isSFrameVectors(f.json),
  async run(f) {
    const v = parseExact(f.text);
    const backends = [webCryptoAead, await nodeCryptoAead()];
    const cases: Case[] = [
      ...v.header.map((c) => ({ section: "header" as const, c })),
      ...v.aes_ctr_hmac.map((c) => ({ section: "aes_ctr_hmac" as const, c })),
      ...v.sframe.map((c) => ({ section: "sframe" as const, c })),
    ];
    return eachCase(cases, async (k) => {
      try {
        if (k.section === "header") {
          const kid = BigInt(k.c.kid);
          const ctr = BigInt(k.c.ctr);
          expectBytes("header encode", encodeHeader(kid, ctr), k.c.encoded);
          const h = decodeHeader(fromHex(k.c.encoded));
          expectEqual("header decode KID", h.kid, kid);
          expectEqual("header decode CTR", h.ctr, ctr);
          expectEqual("header decode length", h.length, k.c.encoded.length / 2);
        } else {
          for (const backend of backends) {
            if (k.section === "aes_ctr_hmac") await checkAead(k.c, backend);
            else await checkSFrame(k.c, backend);
          }
        }
      } catch (e) {
        throw new Error(`${k.section}: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  },
};

export default kind;
