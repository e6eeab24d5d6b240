/**
 * RFC 9420 Appendix C: array-based tree math. Leaves sit at even node indices (leaf L at node 2L),
 * parents at odd ones. Every function takes and returns *node* indices unless its name or parameter
 * says "leaf"; the two index spaces are never mixed implicitly.
 *
 * Trees are perfect (the leaf count is a power of two, §4.1). Indices stay below 2^31 so that 32-bit
 * bit operations are exact: a tree that large could never be decoded or built here.
 */

/** Index of a node in the array representation (leaves and parents). */
export type NodeIndex = number;
/** Index of a leaf among the leaves (0 .. leafCount-1). */
export type LeafIndex = number;

export function leafToNode(leaf: LeafIndex): NodeIndex {
  return leaf * 2;
}

/** The leaf index of a leaf node; callers must pass a leaf node index (even). */
export function nodeToLeaf(node: NodeIndex): LeafIndex {
  return node >>> 1;
}

export function isLeafNode(x: NodeIndex): boolean {
  return (x & 1) === 0;
}

/** The level of a node: leaves are 0, their parents 1, and so on. */
export function level(x: NodeIndex): number {
  if ((x & 1) === 0) return 0;
  let k = 0;
  while (((x >>> k) & 1) === 1) k++;
  return k;
}

/** Number of nodes in a tree with `leafCount` leaves. */
export function nodeWidth(leafCount: number): number {
  return leafCount === 0 ? 0 : 2 * (leafCount - 1) + 1;
}

/** Number of leaves in a tree of `nodeCount` nodes (inverse of nodeWidth). */
export function leafWidth(nodeCount: number): number {
  return nodeCount === 0 ? 0 : (nodeCount >>> 1) + 1;
}

/** Floor of log2, with log2(0) = 0 as in the RFC's code. */
function log2(x: number): number {
  return x === 0 ? 0 : 31 - Math.clz32(x);
}

export function root(leafCount: number): NodeIndex {
  return (1 << log2(nodeWidth(leafCount))) - 1;
}

export function left(x: NodeIndex): NodeIndex {
  const k = level(x);
  if (k === 0) throw new RangeError(`node ${x} is a leaf and has no children`);
  return x ^ (1 << (k - 1));
}

export function right(x: NodeIndex): NodeIndex {
  const k = level(x);
  if (k === 0) throw new RangeError(`node ${x} is a leaf and has no children`);
  return x ^ (3 << (k - 1));
}

export function parent(x: NodeIndex, leafCount: number): NodeIndex {
  if (x === root(leafCount)) throw new RangeError(`node ${x} is the root and has no parent`);
  const k = level(x);
  const b = (x >>> (k + 1)) & 1;
  return (x | (1 << k)) ^ (b << (k + 1));
}

export function sibling(x: NodeIndex, leafCount: number): NodeIndex {
  const p = parent(x, leafCount);
  return x < p ? right(p) : left(p);
}

/** Ancestors of `x` from its parent up to the root (empty for the root). */
export function directPath(x: NodeIndex, leafCount: number): NodeIndex[] {
  const r = root(leafCount);
  const path: NodeIndex[] = [];
  while (x !== r) {
    x = parent(x, leafCount);
    path.push(x);
  }
  return path;
}

/** Siblings of `x` and of each node of its direct path except the root, from the leaf up. */
export function copath(x: NodeIndex, leafCount: number): NodeIndex[] {
  const r = root(leafCount);
  const out: NodeIndex[] = [];
  while (x !== r) {
    out.push(sibling(x, leafCount));
    x = parent(x, leafCount);
  }
  return out;
}

/** One step of a direct path: the ancestor and its child that is on the copath of the start node. */
export interface PathStep {
  readonly node: NodeIndex;
  readonly copathChild: NodeIndex;
}

/**
 * The direct path of `x` paired with the copath child of each ancestor: the raw material of a
 * filtered direct path (§4.1.2), which drops the steps whose copath child has an empty resolution.
 */
export function directPathSteps(x: NodeIndex, leafCount: number): PathStep[] {
  const r = root(leafCount);
  const steps: PathStep[] = [];
  while (x !== r) {
    const p = parent(x, leafCount);
    steps.push({ node: p, copathChild: x < p ? right(p) : left(p) });
    x = p;
  }
  return steps;
}

/** First and one-past-last leaf index of the subtree headed by `x`. */
export function leafRange(x: NodeIndex): { readonly first: LeafIndex; readonly end: LeafIndex } {
  const k = level(x);
  const first = (x >>> (k + 1)) << k;
  return { first, end: first + (1 << k) };
}

/** Whether node `x` is `ancestor` itself or lies in the subtree under it. */
export function inSubtree(x: NodeIndex, ancestor: NodeIndex): boolean {
  const k = level(ancestor);
  // A subtree of level k spans node indices [ancestor - (2^k - 1), ancestor + (2^k - 1)].
  const half = (1 << k) - 1;
  return x >= ancestor - half && x <= ancestor + half;
}

export function leafInSubtree(leaf: LeafIndex, ancestor: NodeIndex): boolean {
  return inSubtree(leafToNode(leaf), ancestor);
}

/** The lowest node that is `x` or `y` or an ancestor of both. */
export function commonAncestor(x: NodeIndex, y: NodeIndex): NodeIndex {
  const lx = level(x) + 1;
  const ly = level(y) + 1;
  if (lx <= ly && x >>> ly === y >>> ly) return y;
  if (ly <= lx && x >>> lx === y >>> lx) return x;
  let xn = x;
  let yn = y;
  let k = 0;
  while (xn !== yn) {
    xn >>>= 1;
    yn >>>= 1;
    k++;
  }
  return (xn << k) + (1 << (k - 1)) - 1;
}
