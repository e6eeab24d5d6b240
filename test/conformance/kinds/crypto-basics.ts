import { fromHex } from "../../../keying/codec/bytes.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { eachCase, expectBytes, expectEqual, type VectorKind } from "../kind.js";

interface CryptoBasicsCase {
  cipher_suite: number;
  ref_hash: { label: string; value: string; out: string };
  expand_with_label: { secret: string; label: string; context: string; length: number; out: string };
  derive_secret: { secret: string; label: string; out: string };
  derive_tree_secret: { secret: string; label: string; generation: number; length: number; out: string };
  sign_with_label: { priv: string; pub: string; content: string; label: string; signature: string };
  encrypt_with_label: { priv: string; pub: string; label: string; context: string; plaintext: string; kem_output: string; ciphertext: string };
}

/** §5 of RFC 9420: the labeled functions every other kind builds on. */
const kind: VectorKind = {
  kind: "crypto-basics",
  usesProvider: true,
  matches: (f) => f.name === "crypto-basics.json",
  run: (f, provider) =>
    eachCase(f.json as CryptoBasicsCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);

      const rh = c.ref_hash;
      expectBytes("ref_hash", await suite.refHash(rh.label, fromHex(rh.value)), rh.out);

      const ewl = c.expand_with_label;
      expectBytes("expand_with_label", await suite.expandWithLabel(fromHex(ewl.secret), ewl.label, fromHex(ewl.context), ewl.length), ewl.out);

      const ds = c.derive_secret;
      expectBytes("derive_secret", await suite.deriveSecret(fromHex(ds.secret), ds.label), ds.out);

      const dts = c.derive_tree_secret;
      expectBytes("derive_tree_secret", await suite.deriveTreeSecret(fromHex(dts.secret), dts.label, dts.generation, dts.length), dts.out);

      const s = c.sign_with_label;
      const pub = fromHex(s.pub);
      const content = fromHex(s.content);
      expectEqual("sign_with_label: given signature verifies", await suite.verifyWithLabel(pub, s.label, content, fromHex(s.signature)), true);
      const own = await suite.signWithLabel(fromHex(s.priv), s.label, content);
      expectEqual("sign_with_label: own signature verifies", await suite.verifyWithLabel(pub, s.label, content, own), true);
      expectBytes("sign_with_label: public key from private", await suite.primitives.signaturePublicKey(fromHex(s.priv)), s.pub);

      const e = c.encrypt_with_label;
      const priv = fromHex(e.priv);
      const ctx = fromHex(e.context);
      const given = await suite.decryptWithLabel(priv, e.label, ctx, fromHex(e.kem_output), fromHex(e.ciphertext));
      expectBytes("encrypt_with_label: decrypt given", given, e.plaintext);
      const sealed = await suite.encryptWithLabel(fromHex(e.pub), e.label, ctx, fromHex(e.plaintext));
      const opened = await suite.decryptWithLabel(priv, e.label, ctx, sealed.kemOutput, sealed.ciphertext);
      expectBytes("encrypt_with_label: round trip", opened, e.plaintext);
    }),
};

export default kind;
