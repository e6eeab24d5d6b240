/**
 * RFC 9420 §12.4.3: GroupInfo — signing it with the extensions joiners need (external_pub, ratchet_tree),
 * reading those back, and the checks a joiner or an observer runs on a GroupInfo and the tree it comes with
 * (§12.4.3.1: signature by the signer leaf, tree hash, tree validity, every leaf valid for the group).
 */
import { bytesEqual } from "../codec/bytes.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { MlsDecodeError } from "../codec/errors.js";
import { MlsValidationError } from "./errors.js";
import { checkLeafCapabilities, checkSupportedGroupExtensions, checkUniqueExtensions } from "./leaf-validation.js";
import {
  ExtensionType,
  LeafNodeSource,
  ProtocolVersion,
  decodeExternalPub,
  decodeRatchetTree,
  encodeExternalPub,
  encodeGroupInfoTBS,
  encodeRatchetTree,
  findExtension,
  makeExtension,
  type Extension,
  type GroupContext,
  type GroupInfo,
} from "./messages.js";
import type { ResolvedPolicy } from "./policy.js";
import { RatchetTree } from "./ratchet-tree.js";
import { treeHash, validateRatchetTree } from "./tree-hash.js";
import { verifyGroupInfoSignature } from "./welcome.js";

export interface GroupInfoInput {
  readonly context: GroupContext;
  readonly confirmationTag: Uint8Array;
  readonly signer: number;
  readonly signaturePrivateKey: Uint8Array;
  /** Put the whole public tree in a ratchet_tree extension (§12.4.3.3). */
  readonly ratchetTree?: RatchetTree;
  /** The epoch's external_pub (§12.4.3.2), so non-members can join by external commit. */
  readonly externalPub?: Uint8Array;
  /** Further GroupInfo extensions chosen by the application. */
  readonly extensions?: readonly Extension[];
}

/** SignWithLabel(., "GroupInfoTBS", GroupInfoTBS). */
export async function signGroupInfo(suite: CipherSuite, input: GroupInfoInput): Promise<GroupInfo> {
  const extensions: Extension[] = [...(input.extensions ?? [])];
  if (input.externalPub) extensions.push(makeExtension(ExtensionType.externalPub, encodeExternalPub, { externalPub: input.externalPub }));
  if (input.ratchetTree) extensions.push(makeExtension(ExtensionType.ratchetTree, encodeRatchetTree, input.ratchetTree.toNodes()));
  checkUniqueExtensions(extensions, "GroupInfo");
  const tbs = { groupContext: input.context, extensions, confirmationTag: input.confirmationTag, signer: input.signer };
  const signature = await suite.signWithLabel(input.signaturePrivateKey, "GroupInfoTBS", encode(encodeGroupInfoTBS, tbs));
  return { ...tbs, signature };
}

/** The tree carried in a ratchet_tree extension, or undefined. Malformed trees are MlsDecodeError. */
export function ratchetTreeOf(groupInfo: GroupInfo): RatchetTree | undefined {
  const nodes = findExtension(groupInfo.extensions, ExtensionType.ratchetTree, decodeRatchetTree);
  return nodes && RatchetTree.fromNodes(nodes);
}

/** The external_pub of a GroupInfo, or undefined. */
export function externalPubOf(groupInfo: GroupInfo): Uint8Array | undefined {
  return findExtension(groupInfo.extensions, ExtensionType.externalPub, decodeExternalPub)?.externalPub;
}

/**
 * The tree a joiner uses: the one supplied out of band, else the GroupInfo's ratchet_tree extension
 * (MlsValidationError "missing-ratchet-tree" when neither exists).
 */
export function joinTree(groupInfo: GroupInfo, supplied: RatchetTree | undefined): RatchetTree {
  let tree: RatchetTree | undefined;
  try {
    tree = supplied?.clone() ?? ratchetTreeOf(groupInfo);
  } catch (e) {
    if (e instanceof MlsDecodeError) throw new MlsValidationError("invalid-ratchet-tree", `ratchet_tree extension: ${e.message}`);
    throw e;
  }
  if (!tree) throw new MlsValidationError("missing-ratchet-tree", "no ratchet tree supplied and none in the GroupInfo");
  return tree;
}

/**
 * Every check on a GroupInfo and its tree before anyone relies on them: version, suite, GroupContext
 * extensions this implementation supports, the tree hash, the signer's signature, tree validity
 * (parent hashes, unmerged leaves, unique keys, leaf signatures) and each leaf against the group (§7.3).
 */
export async function verifyGroupInfoAndTree(suite: CipherSuite, policy: ResolvedPolicy, groupInfo: GroupInfo, tree: RatchetTree): Promise<void> {
  const ctx = groupInfo.groupContext;
  if (ctx.version !== ProtocolVersion.mls10) throw new MlsValidationError("wrong-version", `GroupInfo version ${ctx.version}`);
  if (ctx.cipherSuite !== suite.id) throw new MlsValidationError("wrong-cipher-suite", `GroupInfo suite ${ctx.cipherSuite}, expected ${suite.id}`);
  checkSupportedGroupExtensions(ctx.extensions);
  checkUniqueExtensions(groupInfo.extensions, "GroupInfo");
  if (!bytesEqual(await treeHash(suite, tree), ctx.treeHash)) throw new MlsValidationError("invalid-tree-hash", "the ratchet tree does not match the GroupInfo's tree_hash");
  const signer = tree.leafNode(groupInfo.signer);
  if (!signer) throw new MlsValidationError("unknown-sender", `GroupInfo signer leaf ${groupInfo.signer} is blank`);
  await verifyGroupInfoSignature(suite, groupInfo, signer.signatureKey);
  await validateRatchetTree(suite, tree, ctx.groupId);
  await checkTreeLeaves(policy, ctx.extensions, tree);
}

/** §7.3 for every leaf of a received tree, beyond what validateRatchetTree covers. */
async function checkTreeLeaves(policy: ResolvedPolicy, extensions: readonly Extension[], tree: RatchetTree): Promise<void> {
  const inUse = new Set<number>();
  for (const [, leaf] of tree.leaves()) inUse.add(leaf.credential.credentialType);
  const now = policy.checkReceivedLifetimes ? policy.now() : undefined;
  const checks: Promise<void>[] = [];
  for (const [i, leaf] of tree.leaves()) {
    const where = `tree leaf ${i}`;
    checkLeafCapabilities(extensions, leaf, where);
    for (const t of inUse) {
      if (!leaf.capabilities.credentials.includes(t)) throw new MlsValidationError("unsupported-capability", `${where} does not support credential type ${t} in use in the group`);
    }
    if (now !== undefined && leaf.leafNodeSource === LeafNodeSource.keyPackage) {
      const { notBefore, notAfter } = leaf.lifetime;
      if (now < notBefore || now > notAfter || notAfter - notBefore > policy.maxLifetimeSeconds) throw new MlsValidationError("invalid-lifetime", `${where} is outside its lifetime`);
    }
    checks.push(
      Promise.resolve(policy.validateCredential(leaf.credential, leaf.signatureKey)).then((ok) => {
        if (!ok) throw new MlsValidationError("invalid-credential", `${where}: credential refused`);
      }),
    );
  }
  await Promise.all(checks);
}
