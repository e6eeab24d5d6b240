/**
 * RFC 9420 §12.1-§12.3: proposals — who may send which, the validity of each, the rules on a committed
 * list (§12.2, regular and external commits) and applying the list to a copy of the tree and the
 * GroupContext extensions (§12.3). Validation and application walk the list together, in the RFC's order,
 * so every proposal is checked against exactly the state it will change.
 */
import { decode } from "../codec/reader.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { MlsValidationError } from "./errors.js";
import { KeyMap } from "./key-map.js";
import { validateKeyPackage } from "./key-package.js";
import {
  checkRequiredCapabilitiesOfMembers,
  checkSupportedGroupExtensions,
  validateLeafNode,
  type LeafValidationContext,
} from "./leaf-validation.js";
import {
  ContentType,
  ExtensionType,
  LeafNodeSource,
  PSKType,
  ProposalType,
  ResumptionPSKUsage,
  SenderType,
  WireFormat,
  decodeExternalSenders,
  encodePreSharedKeyID,
  type Extension,
  type ExternalInit,
  type ExternalSender,
  type FramedContent,
  type GroupContext,
  type KeyPackage,
  type LeafNode,
  type PreSharedKeyID,
  type Proposal,
  type ProposalRef,
  type ReInit,
  type Sender,
} from "./messages.js";
import { sameClient, type ResolvedPolicy } from "./policy.js";
import type { RatchetTree } from "./ratchet-tree.js";
import type { LeafIndex } from "./tree-math.js";

/** A proposal as a commit covers it: with its sender and, when included by reference, its ProposalRef. */
export interface ProposalWithSender {
  readonly proposal: Proposal;
  readonly sender: Sender;
  readonly ref?: ProposalRef;
}

/**
 * Who commits: a member at a leaf, or a new member joining by external commit (with the LeafNode of its
 * path, which a resync's Remove must name the same client as, §12.2).
 */
export type Committer = { readonly type: "member"; readonly leafIndex: LeafIndex } | { readonly type: "external"; readonly leafNode: LeafNode };

/** §12.1.8: the only proposal types an `external` sender may send. */
const EXTERNAL_SENDER_PROPOSALS: ReadonlySet<number> = new Set([
  ProposalType.add,
  ProposalType.remove,
  ProposalType.psk,
  ProposalType.reinit,
  ProposalType.groupContextExtensions,
]);

/** §12.4: proposal types whose commit must carry an UpdatePath. */
const PATH_REQUIRED: ReadonlySet<number> = new Set([ProposalType.update, ProposalType.remove, ProposalType.externalInit, ProposalType.groupContextExtensions]);

export function pathRequired(proposals: readonly { readonly proposal: Proposal }[]): boolean {
  return proposals.length === 0 || proposals.some((p) => PATH_REQUIRED.has(p.proposal.proposalType));
}

/**
 * Whether this sender may send this proposal at all (§6.1, §12.1.8). Failing it makes the message
 * malformed, so it is checked when a proposal arrives, not only when it is committed.
 */
export function checkProposalSender(proposal: Proposal, sender: Sender): void {
  const type = proposal.proposalType;
  switch (sender.senderType) {
    case SenderType.member:
      if (type === ProposalType.externalInit) throw new MlsValidationError("invalid-proposal", "a member cannot send ExternalInit");
      return;
    case SenderType.external:
      if (!EXTERNAL_SENDER_PROPOSALS.has(type)) throw new MlsValidationError("invalid-proposal", `an external sender cannot send proposal type ${type}`);
      return;
    case SenderType.newMemberProposal:
      if (type !== ProposalType.add) throw new MlsValidationError("invalid-proposal", "a new_member_proposal sender can only send Add");
      return;
    case SenderType.newMemberCommit:
      if (type !== ProposalType.externalInit && type !== ProposalType.remove && type !== ProposalType.psk) {
        throw new MlsValidationError("invalid-proposal", `an external commit cannot carry proposal type ${type}`);
      }
      return;
  }
}

/** The external senders of a GroupContext (§12.1.8.1); an empty list when the extension is absent. */
export function externalSenders(context: GroupContext): ExternalSender[] {
  return decodeOrInvalid(() => findExternalSenders(context.extensions) ?? [], "external_senders");
}

function findExternalSenders(extensions: readonly Extension[]) {
  const ext = extensions.find((e) => e.extensionType === ExtensionType.externalSenders);
  return ext && decode(decodeExternalSenders, ext.extensionData);
}

function decodeOrInvalid<T>(f: () => T, what: string): T {
  try {
    return f();
  } catch {
    throw new MlsValidationError("invalid-extension", `${what} extension does not decode`);
  }
}

export interface ProposalListInput {
  readonly suite: CipherSuite;
  readonly policy: ResolvedPolicy;
  /** The GroupContext of the epoch being committed. */
  readonly context: GroupContext;
  /** The tree of that epoch; not modified. */
  readonly tree: RatchetTree;
  /** Absent when checking proposals as they arrive, before anyone commits them (see checkProposal). */
  readonly committer?: Committer;
  readonly proposals: readonly ProposalWithSender[];
  /** True when this client builds the commit: the KeyPackages it adds must be within their lifetime. */
  readonly sending: boolean;
  /** The resumption PSK usage this commit may carry: branch or reinit only when creating such a group (§11.2, §11.3). */
  readonly resumptionUsage?: ResumptionPSKUsage;
}

export interface AppliedProposals {
  /** The tree after every proposal, a copy of the input's. */
  readonly tree: RatchetTree;
  /** The GroupContext extensions of the new epoch. */
  readonly extensions: Extension[];
  /** Whether a GroupContextExtensions proposal set them. */
  readonly extensionsChanged: boolean;
  readonly added: { readonly leaf: LeafIndex; readonly keyPackage: KeyPackage }[];
  readonly removed: { readonly leaf: LeafIndex; readonly leafNode: LeafNode }[];
  readonly updated: LeafIndex[];
  /** PreSharedKey proposals in list order: the order of psk_secret (§8.4). */
  readonly psks: PreSharedKeyID[];
  readonly externalInit?: ExternalInit;
  readonly reinit?: ReInit;
  readonly pathRequired: boolean;
}

type Of<T extends Proposal["proposalType"]> = Extract<Proposal, { proposalType: T }>;
interface Sent<P extends Proposal> {
  readonly proposal: P;
  readonly sender: Sender;
}

/**
 * §12.2 and §12.3 together: throws MlsValidationError naming the broken rule, or returns the new tree and
 * extensions with what changed.
 */
export async function applyProposalList(input: ProposalListInput): Promise<AppliedProposals> {
  const { suite, policy, context, committer } = input;
  const list = input.proposals;
  for (const p of list) checkProposalSender(p.proposal, p.sender);

  const byType = <T extends Proposal["proposalType"]>(t: T): Sent<Of<T>>[] => list.filter((p): p is Sent<Of<T>> => p.proposal.proposalType === t);
  const adds = byType(ProposalType.add);
  const updates = byType(ProposalType.update);
  const removes = byType(ProposalType.remove);
  const psks = byType(ProposalType.psk);
  const reinits = byType(ProposalType.reinit);
  const externalInits = byType(ProposalType.externalInit);
  const gces = byType(ProposalType.groupContextExtensions);
  for (const p of list) {
    if (p.proposal.proposalType === ProposalType.selfRemove) throw new MlsValidationError("unsupported-proposal", "SelfRemove proposals are not supported");
  }

  if (committer?.type === "external") {
    if (externalInits.length !== 1) throw new MlsValidationError("invalid-proposal-list", "an external commit needs exactly one ExternalInit");
    if (removes.length > 1) throw new MlsValidationError("invalid-proposal-list", "an external commit may remove at most one leaf");
    if (list.length !== externalInits.length + removes.length + psks.length) {
      throw new MlsValidationError("invalid-proposal-list", "an external commit may carry only ExternalInit, Remove and PreSharedKey");
    }
    const resynced = removes[0] && input.tree.leafNode(removes[0].proposal.remove.removed);
    if (resynced && !sameClient(policy, resynced, committer.leafNode)) {
      throw new MlsValidationError("invalid-proposal-list", "an external commit may only remove an earlier appearance of the joiner");
    }
  } else {
    if (externalInits.length > 0) throw new MlsValidationError("invalid-proposal-list", "a member commit cannot carry ExternalInit");
    if (gces.length > 1) throw new MlsValidationError("invalid-proposal-list", "more than one GroupContextExtensions");
    if (reinits.length > 0 && list.length > 1) throw new MlsValidationError("invalid-proposal-list", "ReInit must be the only proposal");
    for (const u of updates) {
      if (u.sender.senderType !== SenderType.member) throw new MlsValidationError("invalid-proposal", "Update from a non-member");
      if (u.sender.leafIndex === committer?.leafIndex) throw new MlsValidationError("invalid-proposal-list", "the committer cannot commit its own Update");
    }
    for (const r of removes) {
      if (r.proposal.remove.removed === committer?.leafIndex) throw new MlsValidationError("invalid-proposal-list", "the committer cannot remove itself");
    }
  }
  const touched = new Set<LeafIndex>();
  for (const leaf of [...updates.map((u) => (u.sender as { leafIndex: number }).leafIndex), ...removes.map((r) => r.proposal.remove.removed)]) {
    if (touched.has(leaf)) throw new MlsValidationError("invalid-proposal-list", `several Update/Remove proposals for leaf ${leaf}`);
    touched.add(leaf);
  }
  const pskIds = new KeyMap<true>();
  for (const p of psks) {
    checkPskProposal(suite, p.proposal.psk.psk, input.resumptionUsage);
    const id = encode(encodePreSharedKeyID, p.proposal.psk.psk);
    if (pskIds.has(id)) throw new MlsValidationError("invalid-proposal-list", "the same PreSharedKeyID twice");
    pskIds.set(id, true);
  }
  for (const r of reinits) {
    if (r.proposal.reinit.version < context.version) throw new MlsValidationError("invalid-proposal", "ReInit to an older protocol version");
    decodeOrInvalid(() => checkSupportedGroupExtensions(r.proposal.reinit.extensions), "ReInit");
  }

  // §12.3 order: GroupContextExtensions, Updates, Removes, Adds.
  let extensions = context.extensions;
  const gce = gces[0];
  if (gce) {
    extensions = gce.proposal.groupContextExtensions.extensions;
    checkSupportedGroupExtensions(extensions);
    decodeOrInvalid(() => findExternalSenders(extensions), "external_senders");
  }

  const tree = input.tree.clone();
  // Each leaf is checked against the members as the proposals before it left them.
  const leafCtx: LeafValidationContext = {
    suite,
    policy,
    groupId: context.groupId,
    extensions,
    get index() {
      return tree.memberIndex();
    },
  };
  const clients = policy.clientId && adds.length > 0 ? clientIndex(tree, policy.clientId) : undefined;

  const updated: LeafIndex[] = [];
  for (const u of updates) {
    const leaf = (u.sender as { leafIndex: number }).leafIndex;
    const before = tree.leafNode(leaf);
    if (!before) throw new MlsValidationError("invalid-proposal", `Update from blank leaf ${leaf}`);
    const after = u.proposal.update.leafNode;
    await validateLeafNode(leafCtx, after, { source: LeafNodeSource.update, leafIndex: leaf, replaces: before, received: true });
    tree.updateLeaf(leaf, after);
    updated.push(leaf);
  }

  const removed: { leaf: LeafIndex; leafNode: LeafNode }[] = [];
  for (const r of removes) {
    const leaf = r.proposal.remove.removed;
    const node = tree.leafNode(leaf);
    if (!node) throw new MlsValidationError("invalid-proposal", `Remove of blank or absent leaf ${leaf}`);
    tree.removeLeaf(leaf);
    clients?.delete(policy.clientId!(node));
    removed.push({ leaf, leafNode: node });
  }

  const added: { leaf: LeafIndex; keyPackage: KeyPackage }[] = [];
  for (const a of adds) {
    const kp = a.proposal.add.keyPackage;
    await validateKeyPackage(leafCtx, kp, !input.sending);
    if (clients) {
      const id = policy.clientId!(kp.leafNode);
      if (clients.has(id)) throw new MlsValidationError("invalid-proposal-list", `Add of a client already in the group (leaf ${clients.get(id)})`);
    }
    const leaf = tree.addLeaf(kp.leafNode);
    clients?.set(policy.clientId!(kp.leafNode), leaf);
    added.push({ leaf, keyPackage: kp });
  }

  if (gce) checkRequiredCapabilitiesOfMembers(extensions, tree);

  return {
    tree,
    extensions,
    extensionsChanged: gce !== undefined,
    added,
    removed,
    updated,
    psks: psks.map((p) => p.proposal.psk.psk),
    ...(externalInits[0] ? { externalInit: externalInits[0].proposal.externalInit } : {}),
    ...(reinits[0] ? { reinit: reinits[0].proposal.reinit } : {}),
    pathRequired: pathRequired(list),
  };
}

function clientIndex(tree: RatchetTree, clientId: (leaf: LeafNode) => string): Map<string, LeafIndex> {
  const out = new Map<string, LeafIndex>();
  for (const [leaf, node] of tree.leaves()) out.set(clientId(node), leaf);
  return out;
}

/** §12.1.4: nonce length, and reinit/branch resumption PSKs only where those processes allow them. */
export function checkPskProposal(suite: CipherSuite, id: PreSharedKeyID, allowedUsage?: ResumptionPSKUsage): void {
  if (id.pskNonce.length !== suite.params.Nh) throw new MlsValidationError("invalid-proposal", `psk_nonce of ${id.pskNonce.length} bytes, expected ${suite.params.Nh}`);
  if (id.psktype === PSKType.resumption && id.usage !== ResumptionPSKUsage.application && id.usage !== allowedUsage) {
    throw new MlsValidationError("invalid-proposal", `resumption PSK with usage ${id.usage} outside its process`);
  }
}

/**
 * The checks a proposal passes when it arrives (§12.1): its sender may send it, and it is valid on its own
 * against the current epoch, as the only proposal of a list nobody commits yet. Whether it fits with the
 * other proposals of a commit is decided when one covers it.
 */
export async function checkProposal(input: Omit<ProposalListInput, "committer" | "proposals" | "sending">, proposal: ProposalWithSender): Promise<void> {
  await applyProposalList({ ...input, proposals: [proposal], sending: false });
}

/** §6: the content each sender type may carry, and non-members only in a PublicMessage. */
export function checkSenderContent(content: FramedContent, wireFormat: WireFormat): void {
  const sender = content.sender;
  if (sender.senderType !== SenderType.member && wireFormat !== WireFormat.mlsPublicMessage) {
    throw new MlsValidationError("invalid-sender", "a non-member can only send a PublicMessage");
  }
  switch (sender.senderType) {
    case SenderType.member:
      return;
    case SenderType.external:
      if (content.contentType !== ContentType.proposal) throw new MlsValidationError("invalid-sender", "an external sender can only send proposals");
      return;
    case SenderType.newMemberProposal:
      if (content.contentType !== ContentType.proposal || content.proposal.proposalType !== ProposalType.add) {
        throw new MlsValidationError("invalid-sender", "a new_member_proposal sender can only send an Add");
      }
      return;
    case SenderType.newMemberCommit:
      if (content.contentType !== ContentType.commit || !content.commit.path) {
        throw new MlsValidationError("invalid-sender", "a new_member_commit sender must send a Commit with a path");
      }
      return;
  }
}

/**
 * The key `content` must be signed with in an epoch with this context and tree (§6.1): the sender's leaf,
 * its entry in external_senders, the Add's KeyPackage, or the external Commit's path leaf. Undefined when
 * there is none (a blank leaf, an index past the list).
 */
export function senderSignatureKey(context: GroupContext, tree: RatchetTree, content: FramedContent): Uint8Array | undefined {
  const sender = content.sender;
  switch (sender.senderType) {
    case SenderType.member:
      return tree.leafNode(sender.leafIndex)?.signatureKey;
    case SenderType.external:
      return externalSenders(context)[sender.senderIndex]?.signatureKey;
    case SenderType.newMemberProposal:
      return content.contentType === ContentType.proposal && content.proposal.proposalType === ProposalType.add
        ? content.proposal.add.keyPackage.leafNode.signatureKey
        : undefined;
    case SenderType.newMemberCommit:
      return content.contentType === ContentType.commit ? content.commit.path?.leafNode.signatureKey : undefined;
  }
}
