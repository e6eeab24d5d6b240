import { fromHex } from "../../../keying/codec/bytes.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { senderDataKeyNonce } from "../../../keying/mls/framing.js";
import { SecretTree, type RatchetType } from "../../../keying/mls/secret-tree.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface GenerationCase {
  generation: number;
  handshake_key: string;
  handshake_nonce: string;
  application_key: string;
  application_nonce: string;
}

interface SecretTreeCase {
  cipher_suite: number;
  sender_data: { sender_data_secret: string; ciphertext: string; key: string; nonce: string };
  encryption_secret: string;
  leaves: GenerationCase[][];
}

/** §6.3.2 sender data key/nonce and §9 the per-leaf ratchets, read as a receiver would. */
const kind: VectorKind = {
  kind: "secret-tree",
  usesProvider: true,
  matches: (f) => f.name === "secret-tree.json",
  run: (f, provider) =>
    eachCase(f.json as SecretTreeCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const sd = c.sender_data;
      const sender = await senderDataKeyNonce(suite, fromHex(sd.sender_data_secret), fromHex(sd.ciphertext));
      expectBytes("sender_data.key", sender.key, sd.key);
      expectBytes("sender_data.nonce", sender.nonce, sd.nonce);

      const tree = new SecretTree(suite, fromHex(c.encryption_secret), c.leaves.length);
      for (const [leaf, generations] of c.leaves.entries()) {
        for (const g of generations) {
          for (const type of ["handshake", "application"] as RatchetType[]) {
            const k = await tree.withKey(leaf, type, g.generation, async (key) => key);
            expectBytes(`leaf ${leaf} gen ${g.generation} ${type}_key`, k.key, type === "handshake" ? g.handshake_key : g.application_key);
            expectBytes(`leaf ${leaf} gen ${g.generation} ${type}_nonce`, k.nonce, type === "handshake" ? g.handshake_nonce : g.application_nonce);
          }
        }
      }
    }),
};

export default kind;
