import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { describe, expect, it } from "vitest";
import { bytesEqual, fromHex, utf8 } from "../../keying/codec/bytes.js";
import { KEMS } from "../../keying/crypto/algorithms.js";
import { ecdsaDerToRaw, ecdsaRawToDer } from "../../keying/crypto/der.js";
import {
  CipherSuite,
  CryptoError,
  SUITES,
  SUITE_IDS,
  getCipherSuite,
  nativeProvider,
  portableProvider,
  type CipherSuiteId,
  type CryptoProvider,
} from "../../keying/crypto/index.js";
import { createNativeProvider } from "../../keying/crypto/native.js";

/** The browser path of the native provider, run on Node's WebCrypto: once as is, once with every optional algorithm "missing". */
const webProvider = createNativeProvider({ runtime: "web" });
const webFallbackProvider = createNativeProvider({ runtime: "web", webUnavailable: ["X25519", "X448", "Ed25519", "Ed448", "ECDH", "ECDSA"] });

const PROVIDERS: readonly [string, CryptoProvider][] = [
  ["native/node", nativeProvider],
  ["native/webcrypto", webProvider],
  ["native/web+noble", webFallbackProvider],
];
/** Every native variant is checked against the portable provider (an independent implementation) in both directions. */
const PAIRS = PROVIDERS.flatMap(([name, p]) => [
  [`${name} -> portable`, p, portableProvider] as const,
  [`portable -> ${name}`, portableProvider, p] as const,
]);
const ALL: readonly [string, CryptoProvider][] = [...PROVIDERS, ["portable", portableProvider]];

const suiteOf = (id: CipherSuiteId, p: CryptoProvider) => p.primitives(id).then((prim) => new CipherSuite(prim));

function flipBit(b: Uint8Array, index = b.length >> 1): Uint8Array {
  const out = b.slice();
  out[index]! ^= 0x01;
  return out;
}

async function rejectsWith(p: Promise<unknown>, code?: string): Promise<CryptoError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CryptoError);
  if (code) expect((e as CryptoError).code).toBe(code);
  return e as CryptoError;
}

const info = utf8("info");
const aad = utf8("aad");
const plaintext = utf8("the plaintext of the test");

describe.each(SUITE_IDS.map((id) => [id, SUITES[id].name] as const))("suite %i (%s)", (id) => {
  describe.each(PAIRS)("%s", (_, a, b) => {
    it("HPKE seals with one provider and opens with the other", async () => {
      const [sa, sb] = await Promise.all([suiteOf(id, a), suiteOf(id, b)]);
      const kp = await sb.primitives.hpkeGenerateKeyPair();
      const sealed = await sa.primitives.hpkeSeal(kp.publicKey, info, aad, plaintext);
      expect(sealed.kemOutput.length).toBe(KEMS[SUITES[id].kem].Npk);
      expect(await sb.primitives.hpkeOpen(kp.privateKey, sealed.kemOutput, info, aad, sealed.ciphertext)).toEqual(plaintext);
      await rejectsWith(sb.primitives.hpkeOpen(kp.privateKey, sealed.kemOutput, utf8("other info"), aad, sealed.ciphertext));
    });

    it("HPKE export: sender and receiver agree", async () => {
      const [sa, sb] = await Promise.all([suiteOf(id, a), suiteOf(id, b)]);
      const kp = await sb.primitives.hpkeGenerateKeyPair();
      const ctx = utf8("exporter context");
      const sent = await sa.primitives.hpkeExportSender(kp.publicKey, info, ctx, 42);
      expect(sent.secret.length).toBe(42);
      expect(await sb.primitives.hpkeExportReceiver(kp.privateKey, sent.kemOutput, info, ctx, 42)).toEqual(sent.secret);
      expect(await sb.primitives.hpkeExportReceiver(kp.privateKey, sent.kemOutput, info, utf8("other"), 42)).not.toEqual(sent.secret);
    });

    it("DeriveKeyPair is deterministic and the same in both providers", async () => {
      const [sa, sb] = await Promise.all([suiteOf(id, a), suiteOf(id, b)]);
      const ikm = fromHex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
      const ka = await sa.deriveKeyPair(ikm);
      expect(await sa.deriveKeyPair(ikm)).toEqual(ka);
      expect(await sb.deriveKeyPair(ikm)).toEqual(ka);
      expect(ka.privateKey.length).toBe(KEMS[SUITES[id].kem].Nsk);
      expect(await sb.deriveKeyPair(utf8("another ikm"))).not.toEqual(ka);
      // the derived pair is usable
      const sealed = await sa.encryptWithLabel(ka.publicKey, "Test", info, plaintext);
      expect(await sb.decryptWithLabel(ka.privateKey, "Test", info, sealed.kemOutput, sealed.ciphertext)).toEqual(plaintext);
    });

    it("signatures verify across providers, keys agree", async () => {
      const [sa, sb] = await Promise.all([suiteOf(id, a), suiteOf(id, b)]);
      const kp = await sa.primitives.signatureGenerateKeyPair();
      expect(await sb.primitives.signaturePublicKey(kp.privateKey)).toEqual(kp.publicKey);
      const sig = await sa.signWithLabel(kp.privateKey, "Test", plaintext);
      expect(await sb.verifyWithLabel(kp.publicKey, "Test", plaintext, sig)).toBe(true);
      expect(await sb.verifyWithLabel(kp.publicKey, "Other", plaintext, sig)).toBe(false);
    });

    it("AEAD output of one provider opens with the other", async () => {
      const [sa, sb] = await Promise.all([suiteOf(id, a), suiteOf(id, b)]);
      const { Nk, Nn } = SUITES[id];
      const key = sa.randomBytes(Nk);
      const nonce = sa.randomBytes(Nn);
      const ct = await sa.aeadSeal(key, nonce, aad, plaintext);
      expect(ct.length).toBe(plaintext.length + 16);
      expect(await sb.aeadOpen(key, nonce, aad, ct)).toEqual(plaintext);
    });
  });

  describe.each(ALL)("%s", (_, provider) => {
    it("rejects a flipped bit in an HPKE ciphertext or kem_output", async () => {
      const s = await suiteOf(id, provider);
      const kp = await s.primitives.hpkeGenerateKeyPair();
      const sealed = await s.encryptWithLabel(kp.publicKey, "Test", info, plaintext);
      await rejectsWith(s.decryptWithLabel(kp.privateKey, "Test", info, sealed.kemOutput, flipBit(sealed.ciphertext)), "hpke-open-failed");
      await rejectsWith(s.decryptWithLabel(kp.privateKey, "Test", info, sealed.kemOutput, flipBit(sealed.ciphertext, 0)), "hpke-open-failed");
      // A flipped kem_output is either off the curve (NIST) or a different point (X25519/X448): both must fail.
      await rejectsWith(s.decryptWithLabel(kp.privateKey, "Test", info, flipBit(sealed.kemOutput), sealed.ciphertext));
      await rejectsWith(s.decryptWithLabel(kp.privateKey, "Test", info, sealed.kemOutput, sealed.ciphertext.subarray(0, 10)), "hpke-open-failed");
    });

    it("a flipped bit in a signature or message does not verify", async () => {
      const s = await suiteOf(id, provider);
      const kp = await s.primitives.signatureGenerateKeyPair();
      const sig = await s.signWithLabel(kp.privateKey, "Test", plaintext);
      expect(await s.verifyWithLabel(kp.publicKey, "Test", plaintext, sig)).toBe(true);
      for (const i of [0, 1, sig.length >> 1, sig.length - 1]) {
        expect(await s.verifyWithLabel(kp.publicKey, "Test", plaintext, flipBit(sig, i))).toBe(false);
      }
      expect(await s.verifyWithLabel(kp.publicKey, "Test", flipBit(plaintext), sig)).toBe(false);
      expect(await s.verifyWithLabel(kp.publicKey, "Test", plaintext, sig.subarray(0, sig.length - 1))).toBe(false);
      expect(await s.verifyWithLabel(kp.publicKey, "Test", plaintext, new Uint8Array(0))).toBe(false);
    });

    it("garbage public keys give CryptoError", async () => {
      const s = await suiteOf(id, provider);
      const { Npk } = KEMS[SUITES[id].kem];
      const hpkeKey = (await s.primitives.hpkeGenerateKeyPair()).publicKey;
      await rejectsWith(s.encryptWithLabel(hpkeKey.subarray(1), "Test", info, plaintext), "invalid-public-key");
      await rejectsWith(s.encryptWithLabel(new Uint8Array(0), "Test", info, plaintext), "invalid-public-key");
      await rejectsWith(s.primitives.hpkeExportSender(new Uint8Array(Npk + 1), info, info, 32), "invalid-public-key");
      // Wrong-length, and for the NIST curves off-curve or non-uncompressed points; for X25519/X448 the
      // all-zero key (small order) must be refused rather than give an all-zero shared secret.
      if (KEMS[SUITES[id].kem].order !== undefined) {
        const offCurve = new Uint8Array(Npk).fill(0x01);
        offCurve[0] = 0x04;
        await rejectsWith(s.encryptWithLabel(offCurve, "Test", info, plaintext), "invalid-public-key");
        await rejectsWith(s.encryptWithLabel(hpkeKey.map((b, i) => (i === 0 ? 0x06 : b)), "Test", info, plaintext), "invalid-public-key");
      }
      await rejectsWith(s.encryptWithLabel(new Uint8Array(Npk), "Test", info, plaintext), "invalid-public-key");

      const sigKey = (await s.primitives.signatureGenerateKeyPair()).publicKey;
      await rejectsWith(s.verifyWithLabel(sigKey.subarray(1), "Test", plaintext, new Uint8Array(64)), "invalid-public-key");
      await rejectsWith(s.verifyWithLabel(new Uint8Array(0), "Test", plaintext, new Uint8Array(64)), "invalid-public-key");
      if (SUITES[id].signature.startsWith("ECDSA")) {
        const bad = new Uint8Array(sigKey.length).fill(0x01);
        bad[0] = 0x04;
        await rejectsWith(s.verifyWithLabel(bad, "Test", plaintext, new Uint8Array(64)), "invalid-public-key");
        const compressed = sigKey.slice();
        compressed[0] = 0x06; // hybrid encoding: same length, not allowed
        await rejectsWith(s.verifyWithLabel(compressed, "Test", plaintext, new Uint8Array(64)), "invalid-public-key");
      }
    });

    it("garbage private keys give CryptoError", async () => {
      const s = await suiteOf(id, provider);
      const kp = await s.primitives.hpkeGenerateKeyPair();
      const sealed = await s.encryptWithLabel(kp.publicKey, "Test", info, plaintext);
      await rejectsWith(s.decryptWithLabel(kp.privateKey.subarray(1), "Test", info, sealed.kemOutput, sealed.ciphertext));
      await rejectsWith(s.signWithLabel(new Uint8Array(0), "Test", plaintext), "invalid-private-key");
      await rejectsWith(s.signWithLabel(new Uint8Array(200), "Test", plaintext), "invalid-private-key");
      if (SUITES[id].signature.startsWith("ECDSA")) {
        // zero and the all-ones scalar (>= the group order) are not private keys
        await rejectsWith(s.signWithLabel(new Uint8Array(kp.privateKey.length), "Test", plaintext), "invalid-private-key");
        await rejectsWith(s.signWithLabel(new Uint8Array(kp.privateKey.length).fill(0xff), "Test", plaintext), "invalid-private-key");
      }
    });

    it("wrong-length AEAD keys and nonces give CryptoError; tampering is detected", async () => {
      const s = await suiteOf(id, provider);
      const { Nk, Nn } = SUITES[id];
      const key = s.randomBytes(Nk);
      const nonce = s.randomBytes(Nn);
      for (const bad of [Nk - 1, Nk + 1, Nk === 16 ? 32 : 16, 0]) {
        await rejectsWith(s.aeadSeal(new Uint8Array(bad), nonce, aad, plaintext), "invalid-length");
        await rejectsWith(s.aeadOpen(new Uint8Array(bad), nonce, aad, new Uint8Array(32)), "invalid-length");
      }
      await rejectsWith(s.aeadSeal(key, new Uint8Array(Nn + 1), aad, plaintext), "invalid-length");
      const ct = await s.aeadSeal(key, nonce, aad, plaintext);
      await rejectsWith(s.aeadOpen(key, nonce, aad, flipBit(ct)), "aead-open-failed");
      await rejectsWith(s.aeadOpen(key, nonce, flipBit(aad), ct), "aead-open-failed");
      await rejectsWith(s.aeadOpen(key, nonce, aad, ct.subarray(0, 15)), "aead-open-failed");
      expect(await s.aeadOpen(key, nonce, aad, await s.aeadSeal(key, nonce, aad, new Uint8Array(0)))).toEqual(new Uint8Array(0));
    });

    it("HKDF: extract with an empty salt, expand bounds", async () => {
      const s = await suiteOf(id, provider);
      const { Nh } = SUITES[id];
      const prk = await s.extract(new Uint8Array(0), utf8("ikm"));
      expect(prk).toEqual(await s.extract(new Uint8Array(Nh), utf8("ikm")));
      expect((await s.primitives.kdfExpand(prk, info, 255 * Nh)).length).toBe(255 * Nh);
      await rejectsWith(s.primitives.kdfExpand(prk, info, 255 * Nh + 1), "invalid-length");
      expect(await s.mac(new Uint8Array(0), info)).toEqual(await s.mac(new Uint8Array(1), info));
    });
  });
});

describe("cross-provider agreement on deterministic functions", () => {
  it.each(SUITE_IDS)("suite %i: hash, mac, expand agree", async (id) => {
    const results = await Promise.all(
      ALL.map(async ([, p]) => {
        const s = await suiteOf(id, p);
        return [await s.hash(plaintext), await s.mac(info, plaintext), await s.expandWithLabel(info, "label", aad, 100)];
      }),
    );
    for (const r of results) expect(r).toEqual(results[0]);
  });
});

describe("ECDSA signatures", () => {
  const curves = { 2: p256, 5: p521, 7: p384 } as const;
  it.each([2, 5, 7] as const)("suite %i: high-S signatures from other implementations verify in every provider", async (id) => {
    const curve = curves[id];
    const n = curve.Point.CURVE().n;
    const { Nsk } = KEMS[SUITES[id].kem];
    const s0 = await suiteOf(id, portableProvider);
    const kp = await s0.primitives.signatureGenerateKeyPair();
    const message = utf8("message");
    const raw = ecdsaDerToRaw(await s0.primitives.sign(kp.privateKey, message), Nsk)!;
    let sValue = 0n;
    for (const b of raw.subarray(Nsk)) sValue = (sValue << 8n) | BigInt(b);
    const flipped = n - sValue;
    const highS = raw.slice();
    for (let i = 2 * Nsk - 1, v = flipped; i >= Nsk; i--, v >>= 8n) highS[i] = Number(v & 0xffn);
    const der = ecdsaRawToDer(highS);
    for (const [, p] of ALL) expect(await (await suiteOf(id, p)).primitives.verify(kp.publicKey, message, der)).toBe(true);
  });

  it("DER conversion round-trips and refuses malformed encodings", () => {
    const raw = fromHex("00".repeat(31) + "01" + "80" + "11".repeat(31));
    const der = ecdsaRawToDer(raw);
    expect(der).toEqual(fromHex("3026020101022100" + "80" + "11".repeat(31)));
    expect(ecdsaDerToRaw(der, 32)).toEqual(raw);
    expect(ecdsaDerToRaw(der, 31)).toBeUndefined();
    expect(ecdsaDerToRaw(der.subarray(0, der.length - 1), 32)).toBeUndefined();
    expect(ecdsaDerToRaw(fromHex("3006020200010201" + "01"), 32)).toBeUndefined(); // non-minimal integer
    expect(ecdsaDerToRaw(fromHex("30060201ff020101"), 32)).toBeUndefined(); // negative
    expect(ecdsaDerToRaw(fromHex("3007020101020101" + "00"), 32)).toBeUndefined(); // trailing byte
    expect(ecdsaDerToRaw(new Uint8Array(0), 32)).toBeUndefined();
  });
});

describe("getCipherSuite", () => {
  it("caches one CipherSuite per provider and suite", async () => {
    const a = await getCipherSuite(1);
    expect(await getCipherSuite(1, nativeProvider)).toBe(a);
    expect(await getCipherSuite(1, portableProvider)).not.toBe(a);
    expect(a.id).toBe(1);
  });

  it("rejects unknown suites with CryptoError", async () => {
    await rejectsWith(getCipherSuite(8 as CipherSuiteId), "unsupported-suite");
    await rejectsWith(getCipherSuite(0 as CipherSuiteId, portableProvider), "unsupported-suite");
  });

  it("private key cache notices a key rewritten in place", async () => {
    const s = await getCipherSuite(1);
    const a = await s.primitives.signatureGenerateKeyPair();
    const b = await s.primitives.signatureGenerateKeyPair();
    const key = a.privateKey.slice();
    expect(await s.primitives.signaturePublicKey(key)).toEqual(a.publicKey);
    key.set(b.privateKey);
    expect(await s.primitives.signaturePublicKey(key)).toEqual(b.publicKey);
    expect(bytesEqual(a.publicKey, b.publicKey)).toBe(false);
  });
});

describe("keying/crypto stays bundleable", () => {
  it("no module imports node: at run time (only `import type`)", () => {
    const dir = fileURLToPath(new URL("../../keying/crypto/", import.meta.url));
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".ts"))) {
      const src = readFileSync(dir + name, "utf8");
      expect(src, name).not.toMatch(/^import(?!\s+type)[^;]*from\s+["']node:/m);
      expect(src, name).not.toMatch(/import\(\s*["']node:/);
    }
  });
});
