import { MlsDecodeError } from "../codec/errors.js";
import type { Reader } from "../codec/reader.js";
import type { Writer } from "../codec/writer.js";
import {
  NodeType,
  decodeRatchetTree as decodeNodeList,
  encodeRatchetTree as encodeNodeList,
  type LeafNode,
  type Node,
  type ParentNode,
} from "./messages.js";
import { MemberIndex, type MemberView } from "./member-index.js";
import {
  directPath,
  directPathSteps,
  isLeafNode,
  leafToNode,
  leafWidth,
  left,
  nodeToLeaf,
  right,
  root,
  type LeafIndex,
  type NodeIndex,
  type PathStep,
} from "./tree-math.js";

/**
 * The public state of a ratchet tree (RFC 9420 §4, §7) in the array representation of Appendix C.
 *
 * Nodes are immutable values: a change replaces a node object, never edits it, so `clone()` is a
 * shallow array copy (a few microseconds at 1000 members) and a staged tree shares every unchanged
 * node with the current one. Methods that change the tree mutate *this* tree; the group state
 * machine clones before staging and swaps the clone in only once every check passed.
 *
 * Each node also carries a cached tree hash (filled by tree-hash.ts), dropped for the changed node
 * and its ancestors on every change, so rehashing after a commit costs O(changed path), not O(tree).
 */
export class RatchetTree {
  /** Even indices hold LeafNode, odd ones ParentNode; undefined is a blank node. */
  private nodes: (LeafNode | ParentNode | undefined)[];
  private hashes: (Uint8Array | undefined)[];
  /** The suite the cached hashes were computed with; another suite starts from an empty cache. */
  private hashSuite: number | undefined;
  /** Built on first use, then kept current by replace(); shared with clones until either side changes a node. */
  private index: MemberIndex | undefined;
  private indexShared = false;
  /** Values computed from the nodes (see derived()), dropped on any change. */
  private readonly derivedValues = new Map<symbol, unknown>();

  private constructor(nodes: (LeafNode | ParentNode | undefined)[], hashes: (Uint8Array | undefined)[], hashSuite: number | undefined) {
    this.nodes = nodes;
    this.hashes = hashes;
    this.hashSuite = hashSuite;
  }

  /** The one-member tree of a group's creator (§11). */
  static withFirstLeaf(leaf: LeafNode): RatchetTree {
    return new RatchetTree([leaf], [undefined], undefined);
  }

  clone(): RatchetTree {
    const copy = new RatchetTree(this.nodes.slice(), this.hashes.slice(), this.hashSuite);
    if (this.index) {
      copy.index = this.index;
      copy.indexShared = this.indexShared = true;
    }
    return copy;
  }

  /**
   * A value computed from the tree by `compute`, kept until a node changes: a tree is read far more often
   * than changed (every message of an epoch reads the same roster).
   */
  derived<T>(key: symbol, compute: (tree: RatchetTree) => T): T {
    if (this.derivedValues.has(key)) return this.derivedValues.get(key) as T;
    const value = compute(this);
    this.derivedValues.set(key, value);
    return value;
  }

  /** Drops the index and derived values (rebuilt on demand): for a tree kept only to answer about a past epoch. */
  releaseCaches(): void {
    this.index = undefined;
    this.indexShared = false;
    this.derivedValues.clear();
  }

  /** Who holds which key, and the members' credential types (§7.3 checks), for this tree as it is now. */
  memberIndex(): MemberView {
    this.index ??= MemberIndex.of(this.nodes);
    return this.index;
  }

  get leafCount(): number {
    return leafWidth(this.nodes.length);
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  get root(): NodeIndex {
    return root(this.leafCount);
  }

  isBlank(x: NodeIndex): boolean {
    return this.nodes[x] === undefined;
  }

  /** The LeafNode at a leaf index, or undefined when blank or outside the tree. */
  leafNode(leaf: LeafIndex): LeafNode | undefined {
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount) return undefined;
    return this.nodes[leafToNode(leaf)] as LeafNode | undefined;
  }

  /** The ParentNode at a parent node index, or undefined when blank, a leaf, or outside the tree. */
  parentNode(x: NodeIndex): ParentNode | undefined {
    if (isLeafNode(x)) return undefined;
    return this.nodes[x] as ParentNode | undefined;
  }

  /** The HPKE public key of a non-blank node. */
  encryptionKey(x: NodeIndex): Uint8Array | undefined {
    return this.nodes[x]?.encryptionKey;
  }

  /** Non-blank leaves in index order. */
  *leaves(): IterableIterator<[LeafIndex, LeafNode]> {
    for (let x = 0; x < this.nodes.length; x += 2) {
      const n = this.nodes[x] as LeafNode | undefined;
      if (n) yield [nodeToLeaf(x), n];
    }
  }

  /** Non-blank parents in index order. */
  *parents(): IterableIterator<[NodeIndex, ParentNode]> {
    for (let x = 1; x < this.nodes.length; x += 2) {
      const n = this.nodes[x] as ParentNode | undefined;
      if (n) yield [x, n];
    }
  }

  get memberCount(): number {
    let n = 0;
    for (let x = 0; x < this.nodes.length; x += 2) if (this.nodes[x]) n++;
    return n;
  }

  findLeafBySignatureKey(signatureKey: Uint8Array): LeafIndex | undefined {
    return this.memberIndex().signatureKeyOwner(signatureKey);
  }

  findLeafByEncryptionKey(encryptionKey: Uint8Array): LeafIndex | undefined {
    const x = this.memberIndex().encryptionKeyOwner(encryptionKey);
    return x !== undefined && isLeafNode(x) ? nodeToLeaf(x) : undefined;
  }

  setLeaf(leaf: LeafIndex, value: LeafNode | undefined): void {
    this.checkLeaf(leaf);
    this.replace(leafToNode(leaf), value);
  }

  setParent(x: NodeIndex, value: ParentNode | undefined): void {
    if (isLeafNode(x) || x >= this.nodes.length) throw new RangeError(`node ${x} is not a parent node of this tree`);
    this.replace(x, value);
  }

  /** Blank every parent on the direct path of a leaf (§7.7 step 1, Update and Remove in §12.1). */
  blankDirectPath(leaf: LeafIndex): void {
    this.checkLeaf(leaf);
    for (const x of directPath(leafToNode(leaf), this.leafCount)) if (this.nodes[x] !== undefined) this.replace(x, undefined);
  }

  /**
   * §12.1.1 Add: the new member takes the leftmost blank leaf (extending the tree when there is none)
   * and becomes unmerged at every non-blank parent above it.
   */
  addLeaf(value: LeafNode): LeafIndex {
    const leaf = this.leftmostBlankLeaf();
    const x = leafToNode(leaf);
    for (const p of directPath(x, this.leafCount)) {
      const node = this.nodes[p] as ParentNode | undefined;
      if (node) this.replace(p, { ...node, unmergedLeaves: insertSorted(node.unmergedLeaves, leaf) });
    }
    this.replace(x, value);
    return leaf;
  }

  /** The leaf an Add or an external join takes: the leftmost blank one, after extending if needed. */
  leftmostBlankLeaf(): LeafIndex {
    for (let x = 0; x < this.nodes.length; x += 2) if (this.nodes[x] === undefined) return nodeToLeaf(x);
    const leaf = this.leafCount;
    this.extend();
    return leaf;
  }

  /** §12.1.2 Update: replace the sender's leaf and blank its direct path. */
  updateLeaf(leaf: LeafIndex, value: LeafNode): void {
    this.checkLeaf(leaf);
    this.replace(leafToNode(leaf), value);
    this.blankDirectPath(leaf);
  }

  /** §12.1.3 Remove: blank the leaf and its direct path, then drop all-blank right halves. */
  removeLeaf(leaf: LeafIndex): void {
    this.checkLeaf(leaf);
    this.replace(leafToNode(leaf), undefined);
    this.blankDirectPath(leaf);
    this.truncate();
  }

  /**
   * The resolution of a node (§4.1.1): the nearest non-blank nodes covering its subtree, each
   * non-blank parent followed by its unmerged leaves. `exclude` leaves out leaves (the members added
   * by the commit whose path secrets are being encrypted, §7.6).
   */
  resolution(x: NodeIndex, exclude?: ReadonlySet<LeafIndex>): NodeIndex[] {
    const out: NodeIndex[] = [];
    this.resolveInto(x, out, exclude);
    return out;
  }

  private resolveInto(x: NodeIndex, out: NodeIndex[], exclude: ReadonlySet<LeafIndex> | undefined): void {
    const node = this.nodes[x];
    if (isLeafNode(x)) {
      if (node !== undefined && !exclude?.has(nodeToLeaf(x))) out.push(x);
      return;
    }
    if (node !== undefined) {
      out.push(x);
      for (const u of (node as ParentNode).unmergedLeaves) if (!exclude?.has(u)) out.push(leafToNode(u));
      return;
    }
    this.resolveInto(left(x), out, exclude);
    this.resolveInto(right(x), out, exclude);
  }

  /** Whether the subtree under `x` has any non-blank node, without building the resolution. */
  private hasNonBlank(x: NodeIndex): boolean {
    if (this.nodes[x] !== undefined) return true;
    if (isLeafNode(x)) return false;
    return this.hasNonBlank(left(x)) || this.hasNonBlank(right(x));
  }

  /**
   * The filtered direct path of a leaf (§4.1.2), each step with its copath child: the direct path
   * without the nodes whose copath child has an empty resolution.
   */
  filteredDirectPath(leaf: LeafIndex): PathStep[] {
    this.checkLeaf(leaf);
    return directPathSteps(leafToNode(leaf), this.leafCount).filter((s) => this.hasNonBlank(s.copathChild));
  }

  /** Double the tree: a blank root over the old tree and a blank right subtree (§7.8). */
  private extend(): void {
    const added = this.nodes.length + 1;
    for (let i = 0; i < added; i++) {
      this.nodes.push(undefined);
      this.hashes.push(undefined);
    }
    this.derivedValues.clear();
  }

  /** Halve the tree while its right half holds no member (§7.8); never below one leaf. */
  truncate(): void {
    while (this.leafCount > 1) {
      const half = (this.nodes.length - 1) / 2;
      let blank = true;
      for (let x = half + 1; x < this.nodes.length && blank; x += 2) if (this.nodes[x] !== undefined) blank = false;
      if (!blank) return;
      this.nodes.length = half;
      this.hashes.length = half;
      this.derivedValues.clear();
    }
  }

  private checkLeaf(leaf: LeafIndex): void {
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leafCount) throw new RangeError(`leaf ${leaf} is outside a tree of ${this.leafCount} leaves`);
  }

  /** Every change goes through here: the tree-hash cache of the node and its ancestors is dropped, the index follows. */
  private replace(x: NodeIndex, value: LeafNode | ParentNode | undefined): void {
    if (this.index) {
      if (this.indexShared) {
        this.index = this.index.clone();
        this.indexShared = false;
      }
      this.index.replaceNode(x, this.nodes[x], value);
    }
    this.derivedValues.clear();
    this.nodes[x] = value;
    this.hashes[x] = undefined;
    for (const p of directPath(x, this.leafCount)) this.hashes[p] = undefined;
  }

  /** Cached tree hash of a node for `suite` (used by tree-hash.ts only). */
  cachedTreeHash(suite: number, x: NodeIndex): Uint8Array | undefined {
    return this.hashSuite === suite ? this.hashes[x] : undefined;
  }

  storeTreeHash(suite: number, x: NodeIndex, hash: Uint8Array): void {
    if (this.hashSuite !== suite) {
      this.hashes = this.nodes.map(() => undefined);
      this.hashSuite = suite;
    }
    this.hashes[x] = hash;
  }

  /** The `optional<Node> ratchet_tree<V>` form (§12.4.3.3): trailing blank nodes are not sent. */
  toNodes(): (Node | undefined)[] {
    let end = this.nodes.length;
    while (end > 0 && this.nodes[end - 1] === undefined) end--;
    const out: (Node | undefined)[] = [];
    for (let x = 0; x < end; x++) out.push(toWireNode(x, this.nodes[x]));
    return out;
  }

  /**
   * Builds a tree from the wire node list: the last node must be non-blank, leaves and parents must
   * sit at their positions, and the list is padded with blanks to a full tree.
   */
  static fromNodes(list: readonly (Node | undefined)[]): RatchetTree {
    if (list.length === 0) throw new MlsDecodeError("invalid-value", "ratchet_tree is empty");
    if (list[list.length - 1] === undefined) throw new MlsDecodeError("invalid-value", "ratchet_tree ends with a blank node");
    const nodes: (LeafNode | ParentNode | undefined)[] = [];
    for (let x = 0; x < list.length; x++) {
      const n = list[x];
      if (n === undefined) {
        nodes.push(undefined);
        continue;
      }
      if (n.nodeType === NodeType.leaf) {
        if (!isLeafNode(x)) throw new MlsDecodeError("invalid-value", `ratchet_tree has a leaf at parent position ${x}`);
        nodes.push(n.leafNode);
      } else {
        if (isLeafNode(x)) throw new MlsDecodeError("invalid-value", `ratchet_tree has a parent at leaf position ${x}`);
        nodes.push(n.parentNode);
      }
    }
    // Smallest full tree (2^(d+1) - 1 nodes) holding the list.
    let width = 1;
    while (width < nodes.length) width = 2 * width + 1;
    while (nodes.length < width) nodes.push(undefined);
    return new RatchetTree(nodes, nodes.map(() => undefined), undefined);
  }
}

function toWireNode(x: NodeIndex, value: LeafNode | ParentNode | undefined): Node | undefined {
  if (value === undefined) return undefined;
  return isLeafNode(x) ? { nodeType: NodeType.leaf, leafNode: value as LeafNode } : { nodeType: NodeType.parent, parentNode: value as ParentNode };
}

function insertSorted(list: readonly number[], value: number): number[] {
  const out = list.slice();
  let i = out.length;
  while (i > 0 && out[i - 1]! > value) i--;
  if (out[i - 1] !== value) out.splice(i, 0, value);
  return out;
}

/**
 * A ratchet tree in its `optional<Node> ratchet_tree<V>` form (§12.4.3.3). Named apart from
 * messages.ts's encodeRatchetTree/decodeRatchetTree, which handle the bare node list.
 */
export function encodeTree(w: Writer, tree: RatchetTree): void {
  encodeNodeList(w, tree.toNodes());
}

export function decodeTree(r: Reader): RatchetTree {
  return RatchetTree.fromNodes(decodeNodeList(r));
}
