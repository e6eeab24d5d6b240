import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { getCipherSuite, type CipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { ProtocolVersion, decodeUpdatePath, type GroupContext } from "../../../keying/mls/messages.js";
import { decodeTree, type RatchetTree } from "../../../keying/mls/ratchet-tree.js";
import { treeHash } from "../../../keying/mls/tree-hash.js";
import { TreePrivateState, applyUpdatePath, createUpdatePath, deriveNodeKeyPair } from "../../../keying/mls/treekem.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface LeafPrivate {
  index: number;
  encryption_priv: string;
  signature_priv: string;
  path_secrets: { node: number; path_secret: string }[];
}

interface TreeKemCase {
  cipher_suite: number;
  group_id: string;
  epoch: number;
  confirmed_transcript_hash: string;
  ratchet_tree: string;
  leaves_private: LeafPrivate[];
  update_paths: { sender: number; update_path: string; path_secrets: (string | null)[]; commit_secret: string; tree_hash_after: string }[];
}

/** leaf_private[j] of the procedure: the leaf key plus one key per listed path secret, checked against the tree. */
async function privateStates(suite: CipherSuite, tree: RatchetTree, leaves: LeafPrivate[]): Promise<Map<number, TreePrivateState>> {
  const states = new Map<number, TreePrivateState>();
  for (const l of leaves) {
    const leaf = tree.leafNode(l.index);
    if (!leaf) throw new Error(`leaves_private[${l.index}] is a blank leaf`);
    let state = TreePrivateState.forLeaf(l.index, { privateKey: fromHex(l.encryption_priv), publicKey: leaf.encryptionKey });
    for (const p of l.path_secrets) state = state.withNodeKey(p.node, await deriveNodeKeyPair(suite, fromHex(p.path_secret)));
    state.verifyAgainst(tree);
    states.set(l.index, state);
  }
  return states;
}

/**
 * §7.4-§7.6 as in test-vectors.md: every receiver decrypts each given UpdatePath to the same path and
 * commit secrets and tree hash; then each sender's own UpdatePath must be processed by every other leaf.
 */
const kind: VectorKind = {
  kind: "treekem",
  usesProvider: true,
  matches: (f) => f.name === "treekem.json",
  run: (f, provider) =>
    eachCase(f.json as TreeKemCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const tree = decode(decodeTree, fromHex(c.ratchet_tree));
      const states = await privateStates(suite, tree, c.leaves_private);
      const signatureKeys = new Map(c.leaves_private.map((l) => [l.index, fromHex(l.signature_priv)]));
      const groupContext: Omit<GroupContext, "treeHash"> = {
        version: ProtocolVersion.mls10,
        cipherSuite: c.cipher_suite,
        groupId: fromHex(c.group_id),
        epoch: BigInt(c.epoch),
        confirmedTranscriptHash: fromHex(c.confirmed_transcript_hash),
        extensions: [],
      };
      const receivers = [...tree.leaves()].map(([j]) => j);

      for (const u of c.update_paths) {
        const updatePath = decode(decodeUpdatePath, fromHex(u.update_path));
        const at = `update_paths[sender ${u.sender}]`;
        await Promise.all(
          receivers
            .filter((j) => j !== u.sender)
            .map(async (j) => {
              const applied = await applyUpdatePath({ suite, tree, senderLeafIndex: u.sender, updatePath, groupContext, privateState: states.get(j)! });
              expectBytes(`${at} path_secrets[${j}]`, applied.pathSecret, u.path_secrets[j]!);
              expectBytes(`${at} commit_secret at leaf ${j}`, applied.commitSecret, u.commit_secret);
              expectBytes(`${at} tree_hash_after at leaf ${j}`, await treeHash(suite, applied.tree), u.tree_hash_after);
            }),
        );

        const mine = await createUpdatePath({
          suite,
          tree,
          leafIndex: u.sender,
          leafNode: tree.leafNode(u.sender)!,
          signaturePrivateKey: signatureKeys.get(u.sender)!,
          groupContext,
        });
        const myTreeHash = await treeHash(suite, mine.tree);
        await Promise.all(
          receivers
            .filter((j) => j !== u.sender)
            .map(async (j) => {
              const applied = await applyUpdatePath({ suite, tree, senderLeafIndex: u.sender, updatePath: mine.updatePath, groupContext, privateState: states.get(j)! });
              expectBytes(`new path from ${u.sender}: commit secret at leaf ${j}`, applied.commitSecret, toHexString(mine.commitSecret));
              expectBytes(`new path from ${u.sender}: tree hash at leaf ${j}`, await treeHash(suite, applied.tree), toHexString(myTreeHash));
            }),
        );
      }
    }),
};

function toHexString(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export default kind;
