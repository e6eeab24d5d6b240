import { KeyMap } from "./key-map.js";
import type { LeafNode, ParentNode } from "./messages.js";
import { isLeafNode, nodeToLeaf, type LeafIndex, type NodeIndex } from "./tree-math.js";

/** What leaf validation asks of the members (§7.3 key uniqueness, §13.4 credential support). */
export interface MemberView {
  readonly memberCount: number;
  signatureKeyOwner(key: Uint8Array): LeafIndex | undefined;
  encryptionKeyOwner(key: Uint8Array): NodeIndex | undefined;
  /** Whether every member other than `except` lists `type` among its supported credentials. */
  credentialSupportedByAll(type: number, except?: LeafNode): boolean;
  /** Credential types used by members other than `except`. */
  credentialTypesInUse(except?: LeafNode): number[];
}

/**
 * Who holds which key and which credential types the members support: the per-member facts of a ratchet
 * tree. A RatchetTree keeps one current through every node change and shares it copy-on-write with its
 * clones, so a commit at 1000 members validates its leaves without re-reading the 1000 others.
 */
export class MemberIndex implements MemberView {
  private readonly signatureKeys: KeyMap<LeafIndex>;
  private readonly encryptionKeys: KeyMap<NodeIndex>;
  /** Credential type -> number of members using it. */
  private readonly inUse: Map<number, number>;
  /** Credential type -> number of members listing it in their capabilities. */
  private readonly supported: Map<number, number>;
  private members: number;

  constructor(from?: MemberIndex) {
    this.signatureKeys = new KeyMap(from?.signatureKeys);
    this.encryptionKeys = new KeyMap(from?.encryptionKeys);
    this.inUse = new Map(from?.inUse);
    this.supported = new Map(from?.supported);
    this.members = from?.members ?? 0;
  }

  /** The index of a node array in the layout of RFC 9420 Appendix C. */
  static of(nodes: readonly (LeafNode | ParentNode | undefined)[]): MemberIndex {
    const index = new MemberIndex();
    for (let x = 0; x < nodes.length; x++) index.replaceNode(x, undefined, nodes[x]);
    return index;
  }

  clone(): MemberIndex {
    return new MemberIndex(this);
  }

  get memberCount(): number {
    return this.members;
  }

  signatureKeyOwner(key: Uint8Array): LeafIndex | undefined {
    return this.signatureKeys.get(key);
  }

  encryptionKeyOwner(key: Uint8Array): NodeIndex | undefined {
    return this.encryptionKeys.get(key);
  }

  credentialSupportedByAll(type: number, except?: LeafNode): boolean {
    const own = except && except.capabilities.credentials.includes(type) ? 1 : 0;
    return (this.supported.get(type) ?? 0) - own === this.members - (except ? 1 : 0);
  }

  credentialTypesInUse(except?: LeafNode): number[] {
    const out: number[] = [];
    for (const [type, count] of this.inUse) if (count - (except?.credential.credentialType === type ? 1 : 0) > 0) out.push(type);
    return out;
  }

  /** Node `x` changes from `before` to `after` (either may be blank). */
  replaceNode(x: NodeIndex, before: LeafNode | ParentNode | undefined, after: LeafNode | ParentNode | undefined): void {
    if (before === after) return;
    // A key is forgotten only if this node is the one it is filed under: a tree whose keys are not unique
    // (rejected on import, but the index must not be the thing that hides it) keeps the other holder.
    if (before && this.encryptionKeys.get(before.encryptionKey) === x) this.encryptionKeys.delete(before.encryptionKey);
    if (after) this.encryptionKeys.set(after.encryptionKey, x);
    if (!isLeafNode(x)) return;
    if (before) this.countLeaf(nodeToLeaf(x), before as LeafNode, -1);
    if (after) this.countLeaf(nodeToLeaf(x), after as LeafNode, 1);
  }

  private countLeaf(leaf: LeafIndex, node: LeafNode, by: 1 | -1): void {
    if (by > 0) this.signatureKeys.set(node.signatureKey, leaf);
    else if (this.signatureKeys.get(node.signatureKey) === leaf) this.signatureKeys.delete(node.signatureKey);
    bump(this.inUse, node.credential.credentialType, by);
    eachDistinct(node.capabilities.credentials, (t) => bump(this.supported, t, by));
    this.members += by;
  }
}

/** Calls `f` once per distinct value (capability lists are short; a Set per leaf would cost more). */
function eachDistinct(values: readonly number[], f: (v: number) => void): void {
  for (let i = 0; i < values.length; i++) if (values.indexOf(values[i]!) === i) f(values[i]!);
}

function bump(map: Map<number, number>, key: number, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n === 0) map.delete(key);
  else map.set(key, n);
}
