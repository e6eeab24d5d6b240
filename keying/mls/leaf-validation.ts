/**
 * RFC 9420 §7.3 Leaf Node Validation and the capability rules of §11.1 and §13.4, against the group a leaf
 * joins. The checks that depend on every other member (unique keys, credential types supported by all) ask
 * the tree's MemberIndex (member-index.ts), kept current as proposals apply, so validating k new leaves costs
 * O(k), not O(n · k).
 */
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { MlsValidationError } from "./errors.js";
import { verifyLeafNodeSignature } from "./leaf-node.js";
import type { MemberView } from "./member-index.js";
import {
  ExtensionType,
  LeafNodeSource,
  decodeRequiredCapabilities,
  findExtension,
  type Extension,
  type LeafNode,
} from "./messages.js";
import type { ResolvedPolicy } from "./policy.js";
import type { RatchetTree } from "./ratchet-tree.js";
import type { LeafIndex } from "./tree-math.js";

/** Extension types every client implements and so never lists in its capabilities (§7.2). */
const DEFAULT_EXTENSIONS: ReadonlySet<number> = new Set([1, 2, 3, 4, 5]);
/** Proposal types every client implements (§7.2). */
const DEFAULT_PROPOSALS: ReadonlySet<number> = new Set([1, 2, 3, 4, 5, 6, 7]);

export function isDefaultExtension(type: number): boolean {
  return DEFAULT_EXTENSIONS.has(type);
}

export function isDefaultProposal(type: number): boolean {
  return DEFAULT_PROPOSALS.has(type);
}

/** GroupContext extension types this implementation understands; a joiner refuses any other (§13.4). */
const SUPPORTED_GROUP_EXTENSIONS: ReadonlySet<number> = new Set([
  ExtensionType.applicationId,
  ExtensionType.requiredCapabilities,
  ExtensionType.externalSenders,
]);

/** Proposal types this implementation can apply. */
export const SUPPORTED_PROPOSALS: ReadonlySet<number> = DEFAULT_PROPOSALS;

/** §13.4: a list of extensions holds at most one of each type. */
export function checkUniqueExtensions(extensions: readonly Extension[], where: string): void {
  const seen = new Set<number>();
  for (const e of extensions) {
    if (seen.has(e.extensionType)) throw new MlsValidationError("duplicate-extension", `${where} lists extension ${e.extensionType} twice`);
    seen.add(e.extensionType);
  }
}

/** §13.4: a member must understand every GroupContext extension. */
export function checkSupportedGroupExtensions(extensions: readonly Extension[]): void {
  checkUniqueExtensions(extensions, "GroupContext");
  for (const e of extensions) {
    if (!SUPPORTED_GROUP_EXTENSIONS.has(e.extensionType)) throw new MlsValidationError("unsupported-extension", `GroupContext extension ${e.extensionType} is not supported`);
  }
}

/** The group a leaf is validated against. */
export interface LeafValidationContext {
  readonly suite: CipherSuite;
  readonly policy: ResolvedPolicy;
  readonly groupId: Uint8Array;
  /** The GroupContext extensions in force for this leaf (after any GroupContextExtensions of the same commit). */
  readonly extensions: readonly Extension[];
  readonly index: MemberView;
}

export interface LeafCheck {
  /** Where the leaf appears, which fixes the leaf_node_source it must have. */
  readonly source: LeafNodeSource;
  /** The leaf's position: signature context for update/commit leaves, and the leaf it replaces if any. */
  readonly leafIndex?: LeafIndex;
  /** The LeafNode it replaces (Update, commit path): its signature key may be kept, its encryption key may not. */
  readonly replaces?: LeafNode;
  /** True when the leaf comes from another client: lifetime checks then follow policy.checkReceivedLifetimes. */
  readonly received: boolean;
  /** False when the caller has already verified the signature (treekem does for commit leaves). */
  readonly verifySignature?: boolean;
}

/** Throws MlsValidationError naming the failed §7.3 check. */
export async function validateLeafNode(ctx: LeafValidationContext, leaf: LeafNode, check: LeafCheck): Promise<void> {
  const where = check.leafIndex === undefined ? "new LeafNode" : `LeafNode of leaf ${check.leafIndex}`;
  if (leaf.leafNodeSource !== check.source) throw new MlsValidationError("invalid-leaf-node", `${where} has source ${leaf.leafNodeSource}, expected ${check.source}`);
  checkLeafCapabilities(ctx.extensions, leaf, where);
  checkLeafAgainstMembers(ctx.index, leaf, check, where);
  if (leaf.leafNodeSource === LeafNodeSource.keyPackage && (!check.received || ctx.policy.checkReceivedLifetimes)) {
    const now = ctx.policy.now();
    const { notBefore, notAfter } = leaf.lifetime;
    if (now < notBefore || now > notAfter) throw new MlsValidationError("invalid-lifetime", `${where} is outside its lifetime`);
    if (notAfter - notBefore > ctx.policy.maxLifetimeSeconds) throw new MlsValidationError("invalid-lifetime", `${where} has a lifetime longer than policy allows`);
  }
  if (!(await ctx.policy.validateCredential(leaf.credential, leaf.signatureKey))) throw new MlsValidationError("invalid-credential", `${where}: credential refused`);
  if (check.verifySignature !== false) {
    const signatureContext = leaf.leafNodeSource === LeafNodeSource.keyPackage ? undefined : { groupId: ctx.groupId, leafIndex: check.leafIndex ?? -1 };
    const ok = await verifyLeafNodeSignature(ctx.suite, leaf, signatureContext).catch(() => false);
    if (!ok) throw new MlsValidationError("invalid-signature", `${where}: LeafNode signature does not verify`);
  }
}

/** The checks of a leaf against itself and the group's extensions: no member state needed. */
export function checkLeafCapabilities(groupExtensions: readonly Extension[], leaf: LeafNode, where: string): void {
  const caps = leaf.capabilities;
  checkUniqueExtensions(leaf.extensions, where);
  if (!caps.credentials.includes(leaf.credential.credentialType)) {
    throw new MlsValidationError("unsupported-capability", `${where} does not list its own credential type in its capabilities`);
  }
  for (const e of leaf.extensions) {
    if (!isDefaultExtension(e.extensionType) && !caps.extensions.includes(e.extensionType)) {
      throw new MlsValidationError("unsupported-capability", `${where} carries extension ${e.extensionType} it does not list in its capabilities`);
    }
  }
  for (const e of groupExtensions) {
    if (!isDefaultExtension(e.extensionType) && !caps.extensions.includes(e.extensionType)) {
      throw new MlsValidationError("unsupported-capability", `${where} does not support group extension ${e.extensionType}`);
    }
  }
  const required = findExtension(groupExtensions, ExtensionType.requiredCapabilities, decodeRequiredCapabilities);
  if (required) {
    for (const t of required.extensionTypes) {
      if (!isDefaultExtension(t) && !caps.extensions.includes(t)) throw new MlsValidationError("unsupported-capability", `${where} lacks required extension ${t}`);
    }
    for (const t of required.proposalTypes) {
      if (!isDefaultProposal(t) && !caps.proposals.includes(t)) throw new MlsValidationError("unsupported-capability", `${where} lacks required proposal type ${t}`);
    }
    for (const t of required.credentialTypes) {
      if (!caps.credentials.includes(t)) throw new MlsValidationError("unsupported-capability", `${where} lacks required credential type ${t}`);
    }
  }
}

function checkLeafAgainstMembers(index: MemberView, leaf: LeafNode, check: LeafCheck, where: string): void {
  const others = check.replaces;
  if (!index.credentialSupportedByAll(leaf.credential.credentialType, others)) {
    throw new MlsValidationError("unsupported-capability", `${where}: credential type ${leaf.credential.credentialType} is not supported by every member`);
  }
  for (const t of index.credentialTypesInUse(others)) {
    if (!leaf.capabilities.credentials.includes(t)) throw new MlsValidationError("unsupported-capability", `${where} does not support credential type ${t} in use in the group`);
  }
  const sigOwner = index.signatureKeyOwner(leaf.signatureKey);
  if (sigOwner !== undefined && !(others && sigOwner === check.leafIndex)) {
    throw new MlsValidationError("duplicate-key", `${where} reuses the signature key of leaf ${sigOwner}`);
  }
  const encOwner = index.encryptionKeyOwner(leaf.encryptionKey);
  if (encOwner !== undefined) throw new MlsValidationError("duplicate-key", `${where} reuses the encryption key of node ${encOwner}`);
}

/** §12.1.7: a required_capabilities extension must be met by every member that remains after the commit. */
export function checkRequiredCapabilitiesOfMembers(extensions: readonly Extension[], tree: RatchetTree): void {
  const required = findExtension(extensions, ExtensionType.requiredCapabilities, decodeRequiredCapabilities);
  for (const [leaf, node] of tree.leaves()) {
    const where = `member at leaf ${leaf}`;
    if (required) checkLeafCapabilities(extensions, node, where);
    else {
      for (const e of extensions) {
        if (!isDefaultExtension(e.extensionType) && !node.capabilities.extensions.includes(e.extensionType)) {
          throw new MlsValidationError("unsupported-capability", `${where} does not support group extension ${e.extensionType}`);
        }
      }
    }
  }
}

/** Proposal types a member lists or implies (the default ones). */
export function supportsProposal(leaf: LeafNode, type: number): boolean {
  return isDefaultProposal(type) || leaf.capabilities.proposals.includes(type);
}
