import { bytesEqual } from "../codec/bytes.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite, KeyPair } from "../crypto/cipher-suite.js";
import { MlsValidationError } from "./errors.js";
import { KeyMap } from "./key-map.js";
import { signLeafNode, verifyLeafNodeSignature } from "./leaf-node.js";
import {
  LeafNodeSource,
  encodeGroupContext,
  type GroupContext,
  type HPKECiphertext,
  type LeafNodeContent,
  type UpdatePath,
  type UpdatePathNode,
} from "./messages.js";
import type { RatchetTree } from "./ratchet-tree.js";
import { setPathParentHashes, treeHash } from "./tree-hash.js";
import { directPath, leafInSubtree, leafToNode, type LeafIndex, type NodeIndex, type PathStep } from "./tree-math.js";
import { INSPECT, redacted } from "../redact.js";

/** node_priv, node_pub = DeriveKeyPair(DeriveSecret(path_secret, "node")) — §7.4. */
export async function deriveNodeKeyPair(suite: CipherSuite, pathSecret: Uint8Array): Promise<KeyPair> {
  return suite.deriveKeyPair(await suite.deriveSecret(pathSecret, "node"));
}

/** path_secret[n] = DeriveSecret(path_secret[n-1], "path") — §7.4. */
function nextPathSecret(suite: CipherSuite, pathSecret: Uint8Array): Promise<Uint8Array> {
  return suite.deriveSecret(pathSecret, "path");
}

/**
 * A member's private view of the ratchet tree (§4.2): the HPKE private keys it knows, for its own leaf
 * and for the parent nodes above it. Immutable: every change returns a new state, so a staged commit
 * never touches the current one. Each key is stored with its public key and is only handed out while
 * the tree node still carries that public key, so keys of replaced or blanked nodes are never used.
 */
export class TreePrivateState {
  [INSPECT](): string {
    return redacted("TreePrivateState", { leafIndex: this.leafIndex });
  }

  private constructor(
    readonly leafIndex: LeafIndex,
    private readonly keys: ReadonlyMap<NodeIndex, KeyPair>,
  ) {}

  /** The state of a member that knows only its own leaf's key pair. */
  static forLeaf(leafIndex: LeafIndex, leafKey: KeyPair): TreePrivateState {
    return new TreePrivateState(leafIndex, new Map([[leafToNode(leafIndex), leafKey]]));
  }

  /** The private key of node `x`, if known and still matching the node's public key in `tree`. */
  privateKey(tree: RatchetTree, x: NodeIndex): Uint8Array | undefined {
    const kp = this.keys.get(x);
    const pub = tree.encryptionKey(x);
    return kp && pub && bytesEqual(kp.publicKey, pub) ? kp.privateKey : undefined;
  }

  /** Node indices with a stored key, in increasing order. */
  get nodes(): NodeIndex[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  withNodeKey(x: NodeIndex, keyPair: KeyPair): TreePrivateState {
    const keys = new Map(this.keys);
    keys.set(x, keyPair);
    return new TreePrivateState(this.leafIndex, keys);
  }

  withLeafKey(keyPair: KeyPair): TreePrivateState {
    return this.withNodeKey(leafToNode(this.leafIndex), keyPair);
  }

  /** A copy without the keys of the given nodes (nodes an UpdatePath replaced or blanked). */
  without(nodes: Iterable<NodeIndex>): TreePrivateState {
    const keys = new Map(this.keys);
    for (const x of nodes) keys.delete(x);
    return new TreePrivateState(this.leafIndex, keys);
  }

  /** A copy keeping only the keys whose node in `tree` still carries the matching public key. */
  prunedTo(tree: RatchetTree): TreePrivateState {
    const keys = new Map<NodeIndex, KeyPair>();
    for (const [x, kp] of this.keys) if (this.privateKey(tree, x)) keys.set(x, kp);
    return new TreePrivateState(this.leafIndex, keys);
  }

  /**
   * Joining by Welcome (§12.4.3.1): the path secret of node `x` (the lowest common ancestor with the
   * committer) gives the key of `x` and, by "path" chaining, of every non-blank node above it. Each
   * derived public key must equal the tree's.
   */
  async withPathSecret(suite: CipherSuite, tree: RatchetTree, x: NodeIndex, pathSecret: Uint8Array): Promise<TreePrivateState> {
    const targets = [x, ...directPath(x, tree.leafCount)].filter((y) => !tree.isBlank(y));
    if (targets[0] !== x) throw new MlsValidationError("invalid-path-secret", `node ${x} is blank`);
    const secrets: Uint8Array[] = [pathSecret];
    for (let i = 1; i < targets.length; i++) secrets.push(await nextPathSecret(suite, secrets[i - 1]!));
    const keyPairs = await Promise.all(secrets.map((s) => deriveNodeKeyPair(suite, s)));
    const keys = new Map(this.keys);
    targets.forEach((y, i) => {
      const kp = keyPairs[i]!;
      if (!bytesEqual(kp.publicKey, tree.encryptionKey(y)!)) throw new MlsValidationError("invalid-path-secret", `path secret does not give the public key of node ${y}`);
      keys.set(y, kp);
    });
    return new TreePrivateState(this.leafIndex, keys);
  }

  /** Throws unless every stored key belongs to a non-blank node carrying its public key. */
  verifyAgainst(tree: RatchetTree): void {
    for (const x of this.keys.keys()) {
      if (!this.privateKey(tree, x)) throw new MlsValidationError("invalid-private-state", `private key of node ${x} does not match the tree`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Creating an UpdatePath (§7.4-§7.6)

export interface CreateUpdatePathInput {
  readonly suite: CipherSuite;
  /** The tree after the commit's proposals (and, for an external join, with the sender's leaf placed). Not modified. */
  readonly tree: RatchetTree;
  readonly leafIndex: LeafIndex;
  /** What the committer keeps in its new LeafNode; key, source, parent hash and signature are set here. */
  readonly leafNode: Pick<LeafNodeContent, "signatureKey" | "credential" | "capabilities" | "extensions">;
  readonly signaturePrivateKey: Uint8Array;
  /** The provisional GroupContext (new epoch, old confirmed transcript hash, new extensions) without its tree hash. */
  readonly groupContext: Omit<GroupContext, "treeHash">;
  /** Leaves added by this commit: they get their path secret from the Welcome, not the UpdatePath (§7.6). */
  readonly joiners?: readonly LeafIndex[];
  /** The fresh leaf secret; random unless a test fixes it. */
  readonly leafSecret?: Uint8Array;
}

export interface UpdatePathResult {
  /** The tree with the path merged. */
  readonly tree: RatchetTree;
  /** The provisional GroupContext, with the merged tree's hash. */
  readonly groupContext: GroupContext;
  readonly commitSecret: Uint8Array;
  readonly privateState: TreePrivateState;
}

export interface CreatedUpdatePath extends UpdatePathResult {
  readonly updatePath: UpdatePath;
  /** Path secret of each filtered-direct-path node: a joiner's Welcome carries the one of its common ancestor with the committer. */
  readonly pathSecrets: ReadonlyMap<NodeIndex, Uint8Array>;
}

/**
 * The committer's side: new leaf key pair and path secrets from a fresh leaf secret, new keys on the
 * filtered direct path, parent hashes, the re-signed leaf (source commit), then each path secret
 * encrypted to the resolution of its copath child. The HPKE seals are independent and run concurrently.
 */
export async function createUpdatePath(input: CreateUpdatePathInput): Promise<CreatedUpdatePath> {
  const { suite, leafIndex, groupContext } = input;
  const tree = input.tree.clone();
  tree.blankDirectPath(leafIndex);
  const steps = tree.filteredDirectPath(leafIndex);

  const leafSecret = input.leafSecret ?? suite.randomBytes(suite.params.Nh);
  // leaf_secret -> leaf key pair, and leaf_secret -> path_secret[0] -> ... -> commit_secret (§7.4 figure).
  const chain: Uint8Array[] = [];
  let secret = leafSecret;
  for (let i = 0; i <= steps.length; i++) chain.push((secret = await nextPathSecret(suite, secret)));
  const commitSecret = chain[steps.length]!;
  const [leafKey, ...nodeKeys] = await Promise.all([deriveNodeKeyPair(suite, leafSecret), ...chain.slice(0, steps.length).map((s) => deriveNodeKeyPair(suite, s))]);

  steps.forEach((s, i) => tree.setParent(s.node, { encryptionKey: nodeKeys[i]!.publicKey, parentHash: new Uint8Array(0), unmergedLeaves: [] }));
  const leafParentHash = await setPathParentHashes(suite, tree, leafIndex);
  const leafNode = await signLeafNode(
    suite,
    {
      encryptionKey: leafKey!.publicKey,
      signatureKey: input.leafNode.signatureKey,
      credential: input.leafNode.credential,
      capabilities: input.leafNode.capabilities,
      leafNodeSource: LeafNodeSource.commit,
      parentHash: leafParentHash,
      extensions: input.leafNode.extensions,
    },
    input.signaturePrivateKey,
    { groupId: groupContext.groupId, leafIndex },
  );
  tree.setLeaf(leafIndex, leafNode);

  const provisional: GroupContext = { ...groupContext, treeHash: await treeHash(suite, tree) };
  const context = encode(encodeGroupContext, provisional);
  const joiners = new Set(input.joiners ?? []);
  const nodes: UpdatePathNode[] = await Promise.all(
    steps.map(async (s, i): Promise<UpdatePathNode> => {
      const recipients = tree.resolution(s.copathChild, joiners);
      const encryptedPathSecret: HPKECiphertext[] = await Promise.all(
        recipients.map((r) => suite.encryptWithLabel(tree.encryptionKey(r)!, "UpdatePathNode", context, chain[i]!)),
      );
      return { encryptionKey: nodeKeys[i]!.publicKey, encryptedPathSecret };
    }),
  );

  let privateState = TreePrivateState.forLeaf(leafIndex, leafKey!);
  steps.forEach((s, i) => (privateState = privateState.withNodeKey(s.node, nodeKeys[i]!)));
  return {
    tree,
    groupContext: provisional,
    commitSecret,
    privateState,
    updatePath: { leafNode, nodes },
    pathSecrets: new Map(steps.map((s, i) => [s.node, chain[i]!])),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Applying a received UpdatePath (§7.5, §12.4.2)

export interface ApplyUpdatePathInput {
  readonly suite: CipherSuite;
  /** The tree after the commit's proposals. Not modified. */
  readonly tree: RatchetTree;
  readonly senderLeafIndex: LeafIndex;
  readonly updatePath: UpdatePath;
  /** The provisional GroupContext without its tree hash, as for createUpdatePath. */
  readonly groupContext: Omit<GroupContext, "treeHash">;
  /** The receiver's private keys (its leaf index says where it sits). */
  readonly privateState: TreePrivateState;
  /** Leaves added by this commit, left out of the resolutions the path secrets were encrypted to. */
  readonly joiners?: readonly LeafIndex[];
}

export interface AppliedUpdatePath extends UpdatePathResult {
  /** The path secret the receiver decrypted (for the lowest filtered-direct-path node above it). */
  readonly pathSecret: Uint8Array;
}

/**
 * The receiver's side: check the UpdatePath's shape, keys, leaf signature and parent hash while merging
 * it into a copy of the tree, then decrypt the one path secret meant for this member (at the node where
 * its subtree meets the sender's path), derive the rest of the path, check every derived public key
 * against the UpdatePath, and return the commit secret with the new private state.
 */
export async function applyUpdatePath(input: ApplyUpdatePathInput): Promise<AppliedUpdatePath> {
  const { suite, senderLeafIndex: sender, updatePath } = input;
  const me = input.privateState.leafIndex;
  if (me === sender) throw new MlsValidationError("invalid-commit", "a member cannot process its own UpdatePath");
  const { tree, groupContext: provisional, steps } = await mergeChecked(input);

  const at = steps.findIndex((s) => leafInSubtree(me, s.copathChild));
  if (at < 0) throw new MlsValidationError("invalid-commit", `leaf ${me} is under no node of the sender's filtered direct path`);
  const recipients = input.tree.resolution(steps[at]!.copathChild, new Set(input.joiners ?? []));
  const ciphertexts = updatePath.nodes[at]!.encryptedPathSecret;
  if (ciphertexts.length !== recipients.length) {
    throw new MlsValidationError("invalid-commit", `UpdatePath node ${steps[at]!.node} has ${ciphertexts.length} ciphertexts for ${recipients.length} resolution nodes`);
  }
  const k = recipients.findIndex((r) => input.privateState.privateKey(input.tree, r) !== undefined);
  if (k < 0) throw new MlsValidationError("decrypt-failed", `leaf ${me} holds no private key of the resolution of node ${steps[at]!.copathChild}`);
  const context = encode(encodeGroupContext, provisional);
  const ct = ciphertexts[k]!;
  let pathSecret: Uint8Array;
  try {
    pathSecret = await suite.decryptWithLabel(input.privateState.privateKey(input.tree, recipients[k]!)!, "UpdatePathNode", context, ct.kemOutput, ct.ciphertext);
  } catch {
    throw new MlsValidationError("decrypt-failed", `path secret for node ${steps[at]!.node} does not decrypt`);
  }

  const chain: Uint8Array[] = [pathSecret];
  for (let i = at + 1; i <= steps.length; i++) chain.push(await nextPathSecret(suite, chain[chain.length - 1]!));
  const keyPairs = await Promise.all(chain.slice(0, steps.length - at).map((s) => deriveNodeKeyPair(suite, s)));
  let privateState = input.privateState.without(directPath(leafToNode(sender), input.tree.leafCount));
  keyPairs.forEach((kp, j) => {
    const step = steps[at + j]!;
    if (!bytesEqual(kp.publicKey, updatePath.nodes[at + j]!.encryptionKey)) {
      throw new MlsValidationError("invalid-commit", `path secret does not give the public key the UpdatePath sets at node ${step.node}`);
    }
    privateState = privateState.withNodeKey(step.node, kp);
  });
  return { tree, groupContext: provisional, commitSecret: chain[chain.length - 1]!, privateState, pathSecret };
}

export interface MergeUpdatePathInput {
  readonly suite: CipherSuite;
  /** The tree after the commit's proposals. Not modified. */
  readonly tree: RatchetTree;
  readonly senderLeafIndex: LeafIndex;
  readonly updatePath: UpdatePath;
  /** The provisional GroupContext without its tree hash. */
  readonly groupContext: Omit<GroupContext, "treeHash">;
}

/**
 * The public half of applyUpdatePath, for a party that holds no private key on the path: a public observer,
 * or a member the same commit removes. Every check of the path's shape, keys, leaf and parent hashes runs.
 */
export async function mergeReceivedUpdatePath(input: MergeUpdatePathInput): Promise<Omit<UpdatePathResult, "commitSecret" | "privateState">> {
  const { tree, groupContext } = await mergeChecked(input);
  return { tree, groupContext };
}

async function mergeChecked(input: MergeUpdatePathInput): Promise<{ tree: RatchetTree; groupContext: GroupContext; steps: PathStep[] }> {
  const { suite, senderLeafIndex: sender, updatePath, groupContext } = input;
  const steps = input.tree.filteredDirectPath(sender);
  if (updatePath.nodes.length !== steps.length) {
    throw new MlsValidationError("invalid-commit", `UpdatePath has ${updatePath.nodes.length} nodes, the sender's filtered direct path ${steps.length}`);
  }
  checkFreshKeys(input.tree, updatePath);
  const tree = await mergeUpdatePath(suite, input.tree, sender, updatePath, steps, groupContext.groupId);
  return { tree, groupContext: { ...groupContext, treeHash: await treeHash(suite, tree) }, steps };
}

/** §12.4.2: no public key of the UpdatePath may already be in the tree, nor appear twice in the path. */
function checkFreshKeys(tree: RatchetTree, updatePath: UpdatePath): void {
  const keys = [updatePath.leafNode.encryptionKey, ...updatePath.nodes.map((n) => n.encryptionKey)];
  const fresh = new KeyMap<true>();
  for (const key of keys) {
    if (fresh.has(key)) throw new MlsValidationError("duplicate-key", "an encryption key appears twice in the UpdatePath");
    fresh.set(key, true);
  }
  const members = tree.memberIndex();
  for (const key of keys) {
    const x = members.encryptionKeyOwner(key);
    if (x !== undefined) throw new MlsValidationError("duplicate-key", `UpdatePath reuses the encryption key of node ${x}`);
  }
}

/**
 * "Merge UpdatePath into the tree" (§7.5): blank the sender's direct path, set the new keys with empty
 * unmerged lists on its filtered direct path, compute parent hashes from the root down, and check the
 * leaf: source commit, parent hash of its first filtered-direct-path node, signature bound to the group
 * and leaf index.
 */
async function mergeUpdatePath(
  suite: CipherSuite,
  base: RatchetTree,
  sender: LeafIndex,
  updatePath: UpdatePath,
  steps: readonly PathStep[],
  groupId: Uint8Array,
): Promise<RatchetTree> {
  const leaf = updatePath.leafNode;
  if (leaf.leafNodeSource !== LeafNodeSource.commit) throw new MlsValidationError("invalid-leaf-node", `UpdatePath leaf of ${sender} does not have source commit`);
  const tree = base.clone();
  tree.blankDirectPath(sender);
  steps.forEach((s, i) => tree.setParent(s.node, { encryptionKey: updatePath.nodes[i]!.encryptionKey, parentHash: new Uint8Array(0), unmergedLeaves: [] }));
  const [expected, signed] = await Promise.all([
    setPathParentHashes(suite, tree, sender),
    verifyLeafNodeSignature(suite, leaf, { groupId, leafIndex: sender }).catch(() => false),
  ]);
  if (!bytesEqual(leaf.parentHash, expected)) throw new MlsValidationError("invalid-parent-hash", `UpdatePath leaf of ${sender} has the wrong parent hash`);
  if (!signed) throw new MlsValidationError("invalid-signature", `UpdatePath leaf of ${sender}: LeafNode signature does not verify`);
  tree.setLeaf(sender, leaf);
  return tree;
}
