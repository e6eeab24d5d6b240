import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { encode } from "../../../keying/codec/writer.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { ProposalType, decodeProposal } from "../../../keying/mls/messages.js";
import { decodeTree, encodeTree, type RatchetTree } from "../../../keying/mls/ratchet-tree.js";
import { treeHash } from "../../../keying/mls/tree-hash.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface TreeOperationsCase {
  cipher_suite: number;
  tree_before: string;
  proposal: string;
  proposal_sender: number;
  tree_hash_before: string;
  tree_after: string;
  tree_hash_after: string;
}

function apply(tree: RatchetTree, proposalHex: string, sender: number): void {
  const proposal = decode(decodeProposal, fromHex(proposalHex));
  switch (proposal.proposalType) {
    case ProposalType.add:
      tree.addLeaf(proposal.add.keyPackage.leafNode);
      return;
    case ProposalType.update:
      tree.updateLeaf(sender, proposal.update.leafNode);
      return;
    case ProposalType.remove:
      tree.removeLeaf(proposal.remove.removed);
      return;
    default:
      throw new Error(`unexpected proposal type ${proposal.proposalType}`);
  }
}

/** §12.1.1-3: Add, Update and Remove applied to a tree; the staged copy must leave the original intact. */
const kind: VectorKind = {
  kind: "tree-operations",
  usesProvider: true,
  matches: (f) => f.name === "tree-operations.json",
  run: (f, provider) =>
    eachCase(f.json as TreeOperationsCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const before = decode(decodeTree, fromHex(c.tree_before));
      expectBytes("tree_hash_before", await treeHash(suite, before), c.tree_hash_before);
      const after = before.clone();
      apply(after, c.proposal, c.proposal_sender);
      expectBytes("tree_after", encode(encodeTree, after), c.tree_after);
      expectBytes("tree_hash_after", await treeHash(suite, after), c.tree_hash_after);
      expectBytes("tree_before unchanged", encode(encodeTree, before), c.tree_before);
      expectBytes("tree_hash_before unchanged", await treeHash(suite, before), c.tree_hash_before);
    }),
};
export default kind;
