import { bytesEqual } from "../codec/bytes.js";
import { Writer } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { MlsValidationError } from "./errors.js";
import { KeyMap } from "./key-map.js";
import { verifyLeafNodeSignature } from "./leaf-node.js";
import { LeafNodeSource, NodeType, encodeLeafNode, encodeParentNode, type LeafNode, type ParentNode } from "./messages.js";
import type { RatchetTree } from "./ratchet-tree.js";
import { isLeafNode, leafInSubtree, leafRange, leafToNode, left, nodeToLeaf, parent, right, type LeafIndex, type NodeIndex } from "./tree-math.js";

// ---------------------------------------------------------------------------------------------------------
// Tree hashes (§7.8)

/** Hash(TreeHashInput) of a leaf: `leaf(1) || uint32 leaf_index || optional<LeafNode>`. */
function leafHash(suite: CipherSuite, leaf: LeafIndex, node: LeafNode | undefined): Promise<Uint8Array> {
  const w = new Writer().u8(NodeType.leaf).u32(leaf).optional(node, encodeLeafNode);
  return suite.hash(w.finish());
}

/** Hash(TreeHashInput) of a parent: `parent(2) || optional<ParentNode> || left_hash<V> || right_hash<V>`. */
function parentHashInputHash(suite: CipherSuite, node: ParentNode | undefined, leftHash: Uint8Array, rightHash: Uint8Array): Promise<Uint8Array> {
  const w = new Writer().u8(NodeType.parent).optional(node, encodeParentNode).opaque(leftHash).opaque(rightHash);
  return suite.hash(w.finish());
}

/**
 * The tree hash of node `x` (the root by default). Hashes are cached in the tree per node and dropped
 * when the node or a descendant changes, so after a commit only the changed paths are rehashed.
 */
export async function treeHash(suite: CipherSuite, tree: RatchetTree, x: NodeIndex = tree.root): Promise<Uint8Array> {
  const cached = tree.cachedTreeHash(suite.id, x);
  if (cached) return cached;
  let h: Uint8Array;
  if (isLeafNode(x)) {
    h = await leafHash(suite, nodeToLeaf(x), tree.leafNode(nodeToLeaf(x)));
  } else {
    const [l, r] = await Promise.all([treeHash(suite, tree, left(x)), treeHash(suite, tree, right(x))]);
    h = await parentHashInputHash(suite, tree.parentNode(x), l, r);
  }
  tree.storeTreeHash(suite.id, x, h);
  return h;
}

/**
 * The tree hash of `x` in the tree where every leaf of `removed` is blanked and dropped from every
 * unmerged_leaves list: the `original_sibling_tree_hash` of §7.9. Subtrees untouched by the removal
 * reuse the cached hashes, so this costs O(|removed| · depth) hashes.
 */
async function treeHashWithout(suite: CipherSuite, tree: RatchetTree, x: NodeIndex, removed: readonly LeafIndex[]): Promise<Uint8Array> {
  const inside = removed.filter((l) => leafInSubtree(l, x));
  if (inside.length === 0) return treeHash(suite, tree, x);
  if (isLeafNode(x)) return leafHash(suite, nodeToLeaf(x), undefined);
  const node = tree.parentNode(x);
  const kept = node && { ...node, unmergedLeaves: node.unmergedLeaves.filter((u) => !inside.includes(u)) };
  const [l, r] = await Promise.all([treeHashWithout(suite, tree, left(x), inside), treeHashWithout(suite, tree, right(x), inside)]);
  return parentHashInputHash(suite, kept, l, r);
}

// ---------------------------------------------------------------------------------------------------------
// Parent hashes (§7.9)

/** Hash(ParentHashInput): the parent hash of a node with the given key and parent_hash over copath child S. */
export function parentHash(suite: CipherSuite, encryptionKey: Uint8Array, parentHashOfNode: Uint8Array, originalSiblingTreeHash: Uint8Array): Promise<Uint8Array> {
  const w = new Writer().opaque(encryptionKey).opaque(parentHashOfNode).opaque(originalSiblingTreeHash);
  return suite.hash(w.finish());
}

/**
 * Sets parent_hash on every node of a leaf's filtered direct path (which must already hold its new
 * keys and empty unmerged lists, §7.5) from the root down, and returns the parent hash the leaf must
 * carry. The copath subtrees are untouched by a path update, so their current hashes are the original ones.
 */
export async function setPathParentHashes(suite: CipherSuite, tree: RatchetTree, leaf: LeafIndex): Promise<Uint8Array> {
  const steps = tree.filteredDirectPath(leaf);
  const siblingHashes = await Promise.all(steps.map((s) => treeHash(suite, tree, s.copathChild)));
  let above: Uint8Array = new Uint8Array(0);
  for (let i = steps.length - 1; i >= 0; i--) {
    const { node: x } = steps[i]!;
    const node = tree.parentNode(x);
    if (!node) throw new TypeError(`filtered direct path node ${x} is blank`);
    tree.setParent(x, { ...node, parentHash: above });
    above = await parentHash(suite, node.encryptionKey, above, siblingHashes[i]!);
  }
  return above;
}

/** The parent_hash field of a node, if it has one (parents, and leaves whose source is commit). */
function parentHashField(tree: RatchetTree, x: NodeIndex): Uint8Array | undefined {
  if (!isLeafNode(x)) return tree.parentNode(x)?.parentHash;
  const leaf = tree.leafNode(nodeToLeaf(x));
  return leaf?.leafNodeSource === LeafNodeSource.commit ? leaf.parentHash : undefined;
}

/**
 * §7.9.2, top down: every non-blank parent P must have exactly one descendant D whose parent hash is
 * valid with respect to P (D is in the resolution of a child C of P, D.parent_hash is P's parent hash
 * over the other child, and P's unmerged leaves under C are exactly C's resolution without D). Since
 * D is lower than P, induction chains every parent down to a leaf.
 */
export async function verifyParentHashes(suite: CipherSuite, tree: RatchetTree): Promise<void> {
  const checks: Promise<void>[] = [];
  for (const [p, node] of tree.parents()) checks.push(verifyParentHashOf(suite, tree, p, node));
  await Promise.all(checks);
}

async function verifyParentHashOf(suite: CipherSuite, tree: RatchetTree, p: NodeIndex, node: ParentNode): Promise<void> {
  let matches = 0;
  for (const [c, s] of [
    [left(p), right(p)],
    [right(p), left(p)],
  ] as const) {
    const expected = await parentHash(suite, node.encryptionKey, node.parentHash, await treeHashWithout(suite, tree, s, node.unmergedLeaves));
    const resolution = tree.resolution(c);
    const unmergedUnderC = new Set(node.unmergedLeaves.filter((u) => leafInSubtree(u, c)).map(leafToNode));
    for (const d of resolution) {
      const field = parentHashField(tree, d);
      if (!field || !bytesEqual(field, expected)) continue;
      const rest = new Set(resolution.filter((y) => y !== d));
      if (rest.size === unmergedUnderC.size && [...rest].every((y) => unmergedUnderC.has(y))) matches++;
    }
  }
  if (matches !== 1) throw new MlsValidationError("invalid-parent-hash", `parent node ${p} is ${matches === 0 ? "not parent-hash valid" : "claimed by several descendants"}`);
}

// ---------------------------------------------------------------------------------------------------------
// Validation of a received tree (§7.9.2, §12.4.3.1)

/**
 * Every check RFC 9420 asks of a ratchet tree received when joining (besides comparing its root hash
 * with the GroupInfo's tree_hash and checking each LeafNode's credential, capabilities and lifetime,
 * which need group policy): unmerged leaves, unique keys, parent hashes and leaf signatures.
 * Throws MlsValidationError naming the node and the check.
 */
export async function validateRatchetTree(suite: CipherSuite, tree: RatchetTree, groupId: Uint8Array): Promise<void> {
  checkUnmergedLeaves(tree);
  checkUniqueKeys(tree);
  await verifyParentHashes(suite, tree);
  await verifyLeafSignatures(suite, tree, groupId);
}

/**
 * Each unmerged leaf of a parent P is listed once in increasing order, is a non-blank leaf under P, and
 * is unmerged at every non-blank parent between it and P.
 */
function checkUnmergedLeaves(tree: RatchetTree): void {
  for (const [p, node] of tree.parents()) {
    const { first, end } = leafRange(p);
    let previous = -1;
    for (const u of node.unmergedLeaves) {
      if (u <= previous) throw new MlsValidationError("invalid-unmerged-leaves", `parent node ${p}: unmerged leaves not strictly increasing`);
      previous = u;
      if (u < first || u >= end) throw new MlsValidationError("invalid-unmerged-leaves", `parent node ${p}: unmerged leaf ${u} is not a descendant`);
      if (!tree.leafNode(u)) throw new MlsValidationError("invalid-unmerged-leaves", `parent node ${p}: unmerged leaf ${u} is blank`);
      for (let x = parent(leafToNode(u), tree.leafCount); x !== p; x = parent(x, tree.leafCount)) {
        const between = tree.parentNode(x);
        if (between && !between.unmergedLeaves.includes(u)) {
          throw new MlsValidationError("invalid-unmerged-leaves", `leaf ${u} is unmerged at node ${p} but not at node ${x} below it`);
        }
      }
    }
  }
}

/** §7.3, §12.4.3.1: encryption keys are unique over all nodes, signature keys over all leaves. */
function checkUniqueKeys(tree: RatchetTree): void {
  const encryptionKeys = new KeyMap<NodeIndex>();
  const signatureKeys = new KeyMap<LeafIndex>();
  const noteEncryptionKey = (x: NodeIndex, key: Uint8Array): void => {
    const other = encryptionKeys.get(key);
    if (other !== undefined) throw new MlsValidationError("duplicate-key", `nodes ${other} and ${x} share an encryption key`);
    encryptionKeys.set(key, x);
  };
  for (const [l, leaf] of tree.leaves()) {
    noteEncryptionKey(leafToNode(l), leaf.encryptionKey);
    const other = signatureKeys.get(leaf.signatureKey);
    if (other !== undefined) throw new MlsValidationError("duplicate-key", `leaves ${other} and ${l} share a signature key`);
    signatureKeys.set(leaf.signatureKey, l);
  }
  for (const [p, node] of tree.parents()) noteEncryptionKey(p, node.encryptionKey);
}

async function verifyLeafSignatures(suite: CipherSuite, tree: RatchetTree, groupId: Uint8Array): Promise<void> {
  const checks: Promise<void>[] = [];
  for (const [leafIndex, leaf] of tree.leaves()) {
    checks.push(
      verifyLeafNodeSignature(suite, leaf, { groupId, leafIndex }).then(
        (ok) => {
          if (!ok) throw new MlsValidationError("invalid-signature", `leaf ${leafIndex}: LeafNode signature does not verify`);
        },
        () => {
          throw new MlsValidationError("invalid-signature", `leaf ${leafIndex}: unusable signature key`);
        },
      ),
    );
  }
  await Promise.all(checks);
}
