import { fromHex } from "../../../keying/codec/bytes.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { PSKType } from "../../../keying/mls/messages.js";
import { computePskSecret } from "../../../keying/mls/psk.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface PskSecretCase {
  cipher_suite: number;
  psks: { psk_id: string; psk: string; psk_nonce: string }[];
  psk_secret: string;
}

/** §8.4: psk_secret chained over external PSKs. */
const kind: VectorKind = {
  kind: "psk_secret",
  usesProvider: true,
  matches: (f) => f.name === "psk_secret.json",
  run: (f, provider) =>
    eachCase(f.json as PskSecretCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const psks = c.psks.map((p) => ({
        id: { psktype: PSKType.external, pskId: fromHex(p.psk_id), pskNonce: fromHex(p.psk_nonce) },
        psk: fromHex(p.psk),
      }));
      expectBytes("psk_secret", await computePskSecret(suite, psks), c.psk_secret);
    }),
};

export default kind;
