/**
 * RFC 9420 §12.4: creating and processing Commits, and the proposals they cover (§12.1-§12.3 via
 * proposals.ts). Every function here is a pure transition: it reads a GroupState (or the public view of
 * an epoch) and returns a new one, never touching its input, so a rejected commit leaves the group as it
 * was and a created commit stays pending until the caller merges it.
 *
 * The public half of processing (proposal list, tree, path merge, transcript hashes, new GroupContext) is
 * shared with the public observer; members add the path decryption, key schedule and confirmation tag.
 */
import { bytesEqual, toHex } from "../codec/bytes.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { MlsValidationError } from "./errors.js";
import {
  confirmationTag as computeConfirmationTag,
  confirmedTranscriptHash,
  interimTranscriptHash,
  protectPrivateMessage,
  protectPublicMessage,
  signFramedContent,
  verifyConfirmationTag,
} from "./framing.js";
import { signGroupInfo } from "./group-info.js";
import {
  memberOf,
  signatureKeysOf,
  type CachedProposal,
  type EpochKeys,
  type GroupState,
  type Member,
  type PastEpoch,
} from "./group-state.js";
import { deriveEpochSecrets, externalInitReceiver, externalKeyPair, zeroSecret, type EpochSecrets } from "./key-schedule.js";
import { validateLeafNode } from "./leaf-validation.js";
import {
  ContentType,
  LeafNodeSource,
  PSKType,
  ProposalOrRefType,
  ProposalType,
  ProtocolVersion,
  ResumptionPSKUsage,
  SenderType,
  WireFormat,
  encodeAuthenticatedContent,
  encodeGroupContext,
  encodeMLSMessage,
  encodePreSharedKeyID,
  makeProposalRef,
  type AuthenticatedContent,
  type Capabilities,
  type Commit,
  type Extension,
  type FramedContent,
  type FramedContentBody,
  type GroupContext,
  type GroupInfo,
  type LeafNode,
  type PreSharedKeyID,
  type Proposal,
  type ProposalOrRef,
  type ReInit,
  type Sender,
  type Welcome,
} from "./messages.js";
import type { ResolvedPolicy } from "./policy.js";
import { applyProposalList, checkProposal, type AppliedProposals, type Committer, type ProposalWithSender } from "./proposals.js";
import { computePskSecret, type PskWithSecret } from "./psk.js";
import type { RatchetTree } from "./ratchet-tree.js";
import { SecretTree } from "./secret-tree.js";
import { treeHash } from "./tree-hash.js";
import { commonAncestor, leafToNode, type LeafIndex } from "./tree-math.js";
import { applyUpdatePath, createUpdatePath, mergeReceivedUpdatePath, type TreePrivateState } from "./treekem.js";
import { createWelcome } from "./welcome.js";

/** What everyone who follows a group knows of its current epoch, secrets aside. */
export interface PublicEpoch {
  readonly suite: CipherSuite;
  readonly policy: ResolvedPolicy;
  readonly context: GroupContext;
  readonly tree: RatchetTree;
  readonly interimTranscriptHash: Uint8Array;
}

/** How one epoch changed into the next, as the API reports it. */
export interface EpochChange {
  /** The new epoch. */
  readonly epoch: bigint;
  /** The committer's leaf in the new epoch (for an external commit, the joiner's new leaf). */
  readonly committer: LeafIndex;
  /** True for an external commit (a join or a resync). */
  readonly external: boolean;
  readonly added: Member[];
  readonly removed: Member[];
  /** Leaves whose Update proposals the commit covered (the committer's own path is not listed). */
  readonly updated: LeafIndex[];
  /** The PSKs injected into the new epoch, in commit order. */
  readonly psks: PreSharedKeyID[];
  /** Whether a GroupContextExtensions proposal replaced the group's extensions. */
  readonly extensionsChanged: boolean;
  /** Set when the commit covered a ReInit: the group is now closed and waits for the new group's Welcome. */
  readonly reinit?: ReInit;
}

export type HandshakeWireFormat = "public" | "private";

function wireFormatOf(f: HandshakeWireFormat | undefined): typeof WireFormat.mlsPublicMessage | typeof WireFormat.mlsPrivateMessage {
  return f === "private" ? WireFormat.mlsPrivateMessage : WireFormat.mlsPublicMessage;
}

export function publicEpochOf(state: GroupState, policy: ResolvedPolicy): PublicEpoch {
  return { suite: state.suite, policy, context: state.context, tree: state.tree, interimTranscriptHash: state.interimTranscriptHash };
}

// ---------------------------------------------------------------------------------------------------------
// Sending: signing and protecting content of this member

/** FramedContent of this member in the current epoch, signed for `wireFormat`. */
export async function signContent(
  state: GroupState,
  body: FramedContentBody,
  wireFormat: WireFormat,
  authenticatedData: Uint8Array = new Uint8Array(0),
): Promise<AuthenticatedContent> {
  const content: FramedContent = {
    groupId: state.context.groupId,
    epoch: state.context.epoch,
    sender: { senderType: SenderType.member, leafIndex: state.privateState.leafIndex },
    authenticatedData,
    ...body,
  };
  const signature = await signFramedContent(state.suite, state.signaturePrivateKey, wireFormat, content, state.context);
  return { wireFormat, content, auth: { signature } };
}

/** AuthenticatedContent -> MLSMessage bytes, under the current epoch's membership key or secret tree. */
export async function protectContent(state: GroupState, authenticated: AuthenticatedContent, paddingLength = 0): Promise<Uint8Array> {
  if (authenticated.wireFormat === WireFormat.mlsPrivateMessage) {
    const privateMessage = await protectPrivateMessage(
      state.suite,
      authenticated,
      { secretTree: state.secretTree, senderDataSecret: state.keys.senderDataSecret },
      { paddingLength },
    );
    return encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPrivateMessage, privateMessage });
  }
  const publicMessage = await protectPublicMessage(state.suite, authenticated, state.keys.membershipKey, state.context);
  return encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPublicMessage, publicMessage });
}

// ---------------------------------------------------------------------------------------------------------
// Proposals

/** A proposal as it arrives: checked against the epoch (proposals.ts checkProposal) and given its ProposalRef. */
export async function receiveProposal(epoch: PublicEpoch, authenticated: AuthenticatedContent): Promise<CachedProposal> {
  const { content } = authenticated;
  if (content.contentType !== ContentType.proposal) throw new MlsValidationError("invalid-content-type", "not a proposal");
  const entry = { proposal: content.proposal, sender: content.sender };
  await checkProposal({ suite: epoch.suite, policy: epoch.policy, context: epoch.context, tree: epoch.tree }, entry);
  const ref = await makeProposalRef(epoch.suite, encode(encodeAuthenticatedContent, authenticated));
  return { ref, ...entry };
}

/**
 * The proposals a Commit covers, with their senders: by value from the committer, by reference from the
 * cache. An external commit may not refer to proposals (§12.4.3.2).
 */
export function resolveProposals(cache: readonly CachedProposal[], commit: Commit, sender: Sender): ProposalWithSender[] {
  return commit.proposals.map((p): ProposalWithSender => {
    if (p.type === ProposalOrRefType.proposal) return { proposal: p.proposal, sender };
    if (sender.senderType === SenderType.newMemberCommit) throw new MlsValidationError("invalid-commit", "an external commit cannot include proposals by reference");
    const hit = cache.find((c) => bytesEqual(c.ref, p.reference));
    if (!hit) throw new MlsValidationError("unknown-proposal", "the commit references a proposal this client has not received in this epoch");
    return { proposal: hit.proposal, sender: hit.sender, ref: hit.ref };
  });
}

// ---------------------------------------------------------------------------------------------------------
// Processing a received commit

/** The public outcome of a commit: what an observer keeps, and what a member builds its new epoch on. */
export interface StagedCommit {
  readonly applied: AppliedProposals;
  readonly committer: LeafIndex;
  readonly external: boolean;
  readonly tree: RatchetTree;
  readonly context: GroupContext;
  readonly interimTranscriptHash: Uint8Array;
  readonly confirmationTag: Uint8Array;
  /** For a member that stays and a commit with a path: the decrypted commit secret and new private keys. */
  readonly path?: { readonly commitSecret: Uint8Array; readonly privateState: TreePrivateState };
  /** True when the receiver's own leaf is removed by this commit. */
  readonly removedSelf: boolean;
}

/**
 * §12.4.2 up to the key schedule, for a commit whose signature (and, for members, membership tag or
 * decryption) has been checked: the proposal list, the path (merged; decrypted too when `privateState` is
 * given and its owner stays), the new GroupContext and transcript hashes.
 */
export async function stageReceivedCommit(
  epoch: PublicEpoch,
  proposals: readonly ProposalWithSender[],
  authenticated: AuthenticatedContent,
  privateState?: TreePrivateState,
): Promise<StagedCommit> {
  const { suite, policy, context } = epoch;
  const { content } = authenticated;
  if (content.contentType !== ContentType.commit) throw new MlsValidationError("invalid-content-type", "not a commit");
  const confirmationTag = authenticated.auth.confirmationTag;
  if (!confirmationTag) throw new MlsValidationError("invalid-commit", "commit without confirmation tag");
  const { path } = content.commit;
  const sender = content.sender;
  let committer: Committer;
  if (sender.senderType === SenderType.member) {
    if (privateState && sender.leafIndex === privateState.leafIndex) throw new MlsValidationError("own-commit", "a member does not process its own commit; merge the pending commit instead");
    committer = { type: "member", leafIndex: sender.leafIndex };
  } else if (sender.senderType === SenderType.newMemberCommit) {
    if (!policy.allowExternalCommit) throw new MlsValidationError("external-commit-refused", "this group does not accept external commits");
    if (!path) throw new MlsValidationError("invalid-commit", "an external commit needs a path");
    committer = { type: "external", leafNode: path.leafNode };
  } else {
    throw new MlsValidationError("invalid-sender", "only members and new members can commit");
  }

  const applied = await applyProposalList({ suite, policy, context, tree: epoch.tree, committer, proposals, sending: false });
  if ((applied.pathRequired || committer.type === "external") && !path) throw new MlsValidationError("invalid-commit", "this commit needs a path");

  let tree = applied.tree;
  // An external joiner takes the leftmost blank leaf of the tree after the proposals (§12.4.2); the
  // UpdatePath merge then blanks and rebuilds its whole direct path, so it need not be added first.
  const committerLeaf = committer.type === "member" ? committer.leafIndex : tree.leftmostBlankLeaf();
  const removedSelf = privateState !== undefined && applied.removed.some((r) => r.leaf === privateState.leafIndex);
  const base = { ...context, epoch: context.epoch + 1n, extensions: applied.extensions };
  let decrypted: StagedCommit["path"];
  if (path) {
    await validateLeafNode(
      { suite, policy, groupId: context.groupId, extensions: applied.extensions, index: tree.memberIndex() },
      path.leafNode,
      {
        source: LeafNodeSource.commit,
        leafIndex: committerLeaf,
        ...(committer.type === "member" ? { replaces: tree.leafNode(committerLeaf) } : {}),
        received: true,
        verifySignature: false,
      },
    );
    const input = { suite, tree, senderLeafIndex: committerLeaf, updatePath: path, groupContext: base };
    if (privateState && !removedSelf) {
      const r = await applyUpdatePath({ ...input, privateState, joiners: applied.added.map((a) => a.leaf) });
      tree = r.tree;
      decrypted = { commitSecret: r.commitSecret, privateState: r.privateState };
    } else {
      tree = (await mergeReceivedUpdatePath(input)).tree;
    }
  }
  const confirmed = await confirmedTranscriptHash(suite, epoch.interimTranscriptHash, { wireFormat: authenticated.wireFormat, content, signature: authenticated.auth.signature });
  const newContext: GroupContext = { ...base, treeHash: await treeHash(suite, tree), confirmedTranscriptHash: confirmed };
  return {
    applied,
    committer: committerLeaf,
    external: committer.type === "external",
    tree,
    context: newContext,
    interimTranscriptHash: await interimTranscriptHash(suite, confirmed, confirmationTag),
    confirmationTag,
    ...(decrypted ? { path: decrypted } : {}),
    removedSelf,
  };
}

export function epochChangeOf(staged: Pick<StagedCommit, "applied" | "committer" | "external" | "context">, psks: PreSharedKeyID[]): EpochChange {
  const { applied } = staged;
  return {
    epoch: staged.context.epoch,
    committer: staged.committer,
    external: staged.external,
    added: applied.added.map((a) => memberOf(a.leaf, a.keyPackage.leafNode)),
    removed: applied.removed.map((r) => memberOf(r.leaf, r.leafNode)),
    updated: applied.updated,
    psks,
    extensionsChanged: applied.extensionsChanged,
    ...(applied.reinit ? { reinit: applied.reinit } : {}),
  };
}

/** The PSKs of a commit: the group's own resumption PSKs, its external PSKs, then the policy's. */
export type PskResolver = (id: PreSharedKeyID) => Promise<Uint8Array | undefined>;

export function memberPskResolver(state: GroupState, policy: ResolvedPolicy): PskResolver {
  return async (id) => {
    if (id.psktype === PSKType.external) {
      return state.externalPsks.find((p) => bytesEqual(p.pskId, id.pskId))?.psk ?? (await policy.externalPsk(id));
    }
    return resumptionPskOf(state, id.pskGroupId, id.pskEpoch);
  };
}

/** resumption_psk of an epoch of this group (the current one or a retained earlier one). */
export function resumptionPskOf(state: GroupState, groupId: Uint8Array, epoch: bigint): Uint8Array | undefined {
  if (!bytesEqual(groupId, state.context.groupId)) return undefined;
  if (epoch === state.context.epoch) return state.keys.resumptionPsk;
  return state.resumptionPsks.find((p) => p.epoch === epoch)?.psk;
}

export async function pskSecretOf(suite: CipherSuite, ids: readonly PreSharedKeyID[], resolve: PskResolver): Promise<Uint8Array> {
  const psks: PskWithSecret[] = [];
  for (const id of ids) {
    const psk = await resolve(id);
    if (!psk) throw new MlsValidationError("missing-psk", `the commit injects a ${id.psktype === PSKType.external ? "external" : "resumption"} PSK this client does not hold`);
    psks.push({ id, psk });
  }
  return computePskSecret(suite, psks);
}

/** The state of the epoch a commit starts, with the current epoch moved to the bounded past. */
export function nextEpochState(
  state: GroupState,
  policy: ResolvedPolicy,
  next: {
    readonly context: GroupContext;
    readonly tree: RatchetTree;
    readonly privateState: TreePrivateState;
    readonly secrets: EpochSecrets;
    readonly interimTranscriptHash: Uint8Array;
    readonly confirmationTag: Uint8Array;
    readonly reinit?: ReInit;
  },
): GroupState {
  const tree = state.tree;
  // Kept for the signature keys of late messages only: its member index would cost far more than they do.
  tree.releaseCaches();
  const past: PastEpoch = {
    context: state.context,
    senderDataSecret: state.keys.senderDataSecret,
    secretTree: state.secretTree,
    // Read only if a late message of that epoch arrives: not worth an O(n) copy per commit.
    get signatureKeys() {
      return signatureKeysOf(tree);
    },
  };
  return {
    suite: state.suite,
    context: next.context,
    tree: next.tree,
    privateState: next.privateState,
    signaturePrivateKey: state.signaturePrivateKey,
    keys: epochKeysOf(next.secrets),
    secretTree: new SecretTree(state.suite, next.secrets.encryptionSecret, next.tree.leafCount, policy.secretTreeLimits),
    interimTranscriptHash: next.interimTranscriptHash,
    confirmationTag: next.confirmationTag,
    proposals: [],
    pastEpochs: keepLast([...state.pastEpochs, past], policy.maxPastEpochs),
    resumptionPsks: keepLast([...state.resumptionPsks, { epoch: state.context.epoch, psk: state.keys.resumptionPsk }], policy.maxResumptionPsks),
    externalPsks: state.externalPsks,
    ...(next.reinit ? { reinit: next.reinit } : {}),
    active: true,
  };
}

function keepLast<T>(list: T[], n: number): T[] {
  return n <= 0 ? [] : list.slice(Math.max(0, list.length - n));
}

export function epochKeysOf(s: EpochSecrets): EpochKeys {
  return {
    senderDataSecret: s.senderDataSecret,
    exporterSecret: s.exporterSecret,
    externalSecret: s.externalSecret,
    confirmationKey: s.confirmationKey,
    membershipKey: s.membershipKey,
    resumptionPsk: s.resumptionPsk,
    epochAuthenticator: s.epochAuthenticator,
    initSecret: s.initSecret,
  };
}

/** A member processing an authenticated commit (§12.4.2): the new state and what changed. */
export async function processCommit(
  state: GroupState,
  policy: ResolvedPolicy,
  authenticated: AuthenticatedContent,
): Promise<{ state: GroupState; change: EpochChange; removedSelf: boolean }> {
  const { suite } = state;
  const { content } = authenticated;
  if (content.contentType !== ContentType.commit) throw new MlsValidationError("invalid-content-type", "not a commit");
  const proposals = resolveProposals(state.proposals, content.commit, content.sender);

  // An Update of ours that the commit covers replaces our leaf: its key must be in place before the path
  // secret (encrypted to the new leaf) is decrypted.
  let privateState = state.privateState;
  for (const p of proposals) {
    if (p.proposal.proposalType !== ProposalType.update || p.sender.senderType !== SenderType.member || p.sender.leafIndex !== privateState.leafIndex) continue;
    const key = state.proposals.find((c) => p.ref && bytesEqual(c.ref, p.ref))?.updateKey;
    if (!key) throw new MlsValidationError("invalid-commit", "the commit covers an Update of this member that it does not know");
    privateState = privateState.withLeafKey(key);
  }

  const staged = await stageReceivedCommit(publicEpochOf(state, policy), proposals, authenticated, privateState);
  const change = epochChangeOf(staged, staged.applied.psks);
  if (staged.removedSelf) return { state: { ...state, active: false }, change, removedSelf: true };

  const pskSecret = await pskSecretOf(suite, staged.applied.psks, memberPskResolver(state, policy));
  const externalInit = staged.applied.externalInit;
  const initSecret = externalInit
    ? await externalInitReceiver(suite, (await externalKeyPair(suite, state.keys.externalSecret)).privateKey, externalInit.kemOutput)
    : state.keys.initSecret;
  const secrets = await deriveEpochSecrets(suite, {
    initSecret,
    commitSecret: staged.path?.commitSecret ?? zeroSecret(suite),
    pskSecret,
    groupContext: encode(encodeGroupContext, staged.context),
  });
  await verifyConfirmationTag(suite, secrets.confirmationKey, staged.context.confirmedTranscriptHash, staged.confirmationTag);

  const next = nextEpochState(state, policy, {
    context: staged.context,
    tree: staged.tree,
    privateState: (staged.path?.privateState ?? privateState).prunedTo(staged.tree),
    secrets,
    interimTranscriptHash: staged.interimTranscriptHash,
    confirmationTag: staged.confirmationTag,
    ...(staged.applied.reinit ? { reinit: staged.applied.reinit } : {}),
  });
  return { state: next, change, removedSelf: false };
}

// ---------------------------------------------------------------------------------------------------------
// Creating a commit

/** What the committer's new LeafNode carries besides keys (default: what its current leaf carries). */
export interface LeafNodeChoice {
  readonly capabilities?: Capabilities;
  readonly extensions?: Extension[];
}

/** Which GroupInfo to sign for the new epoch: false for none. */
export type GroupInfoChoice = false | { readonly ratchetTree?: boolean; readonly externalPub?: boolean };

export interface CommitOptions {
  /** New proposals to include by value. */
  readonly proposals?: readonly Proposal[];
  /** Include the valid proposals received in this epoch, by reference (default true). */
  readonly includePending?: boolean;
  /**
   * Commit exactly these received proposals by reference, in this order, instead of the automatic choice
   * (they must form a valid list with `proposals`).
   */
  readonly proposalRefs?: readonly Uint8Array[];
  /**
   * Include an UpdatePath (default true). False omits it when the RFC allows (only Add, PreSharedKey and
   * ReInit proposals, and at least one); a path is sent anyway when required.
   */
  readonly path?: boolean;
  /** Handshake wire format (default the group's, itself "public" by default). */
  readonly wireFormat?: HandshakeWireFormat;
  readonly authenticatedData?: Uint8Array;
  /** Put the ratchet tree in the Welcome's GroupInfo (default true); otherwise joiners need it out of band. */
  readonly ratchetTreeInWelcome?: boolean;
  /** The GroupInfo returned for the delivery service (default external_pub, no ratchet tree). */
  readonly groupInfo?: GroupInfoChoice;
  readonly leafNode?: LeafNodeChoice;
}

export interface CreatedCommit {
  /** The Commit as an MLSMessage. */
  readonly message: Uint8Array;
  readonly welcome?: Welcome;
  readonly groupInfo?: GroupInfo;
  /** The state of the new epoch, to adopt once the delivery service confirms the commit. */
  readonly state: GroupState;
  readonly change: EpochChange;
}

/** Internal knobs of createCommit for the first commit of a reinitialized or branched group (§11.2, §11.3). */
export interface CommitInternals {
  readonly resumptionUsage?: ResumptionPSKUsage;
  readonly resolvePsk?: PskResolver;
}

/**
 * The proposals received this epoch that this member will commit, in the RFC's preference (§12.2): not its
 * own Update nor a Remove of itself, one Remove (else the latest Update) per leaf, one Add per client
 * key, one PreSharedKey per id, the last GroupContextExtensions, and a ReInit only when nothing else is.
 */
function selectPending(state: GroupState, byValue: readonly Proposal[]): CachedProposal[] {
  const me = state.privateState.leafIndex;
  const valueTypes = new Set(byValue.map((p) => p.proposalType));
  const valueRemoves = new Set(byValue.flatMap((p) => (p.proposalType === ProposalType.remove ? [p.remove.removed] : [])));
  const removed = new Set<number>(valueRemoves);
  for (const c of state.proposals) if (c.proposal.proposalType === ProposalType.remove) removed.add(c.proposal.remove.removed);
  const seenLeaf = new Set<number>(valueRemoves);
  const seenKey = new Set<string>();
  const seenPsk = new Set<string>();
  for (const p of byValue) {
    if (p.proposalType === ProposalType.add) seenKey.add(toHex(p.add.keyPackage.leafNode.signatureKey));
    if (p.proposalType === ProposalType.psk) seenPsk.add(pskKey(p.psk.psk));
  }
  const lastGce = valueTypes.has(ProposalType.groupContextExtensions)
    ? undefined
    : [...state.proposals].reverse().find((c) => c.proposal.proposalType === ProposalType.groupContextExtensions);
  const out: CachedProposal[] = [];
  // Newest first, so the latest Update of a leaf wins; the list is reversed back at the end.
  for (const c of [...state.proposals].reverse()) {
    const p = c.proposal;
    switch (p.proposalType) {
      case ProposalType.update: {
        const leaf = c.sender.senderType === SenderType.member ? c.sender.leafIndex : -1;
        if (leaf === me || removed.has(leaf) || seenLeaf.has(leaf)) continue;
        seenLeaf.add(leaf);
        break;
      }
      case ProposalType.remove:
        if (p.remove.removed === me || seenLeaf.has(p.remove.removed)) continue;
        seenLeaf.add(p.remove.removed);
        break;
      case ProposalType.add: {
        const key = toHex(p.add.keyPackage.leafNode.signatureKey);
        if (seenKey.has(key)) continue;
        seenKey.add(key);
        break;
      }
      case ProposalType.psk: {
        const key = pskKey(p.psk.psk);
        if (seenPsk.has(key)) continue;
        seenPsk.add(key);
        break;
      }
      case ProposalType.groupContextExtensions:
        if (c !== lastGce) continue;
        break;
      default:
        break;
    }
    out.push(c);
  }
  out.reverse();
  const reinits = out.filter((c) => c.proposal.proposalType === ProposalType.reinit);
  if (reinits.length === 0) return out;
  // §12.2: other proposals are preferred over a ReInit, which can be sent again next epoch.
  const others = out.length - reinits.length + byValue.length;
  return others > 0 ? out.filter((c) => c.proposal.proposalType !== ProposalType.reinit) : [reinits[reinits.length - 1]!];
}

function pskKey(id: PreSharedKeyID): string {
  return toHex(encode(encodePreSharedKeyID, id));
}

/**
 * §12.4.1 for a member: the proposal list (pending ones that remain valid, then `options.proposals`), the
 * path, the signed and protected Commit, the new epoch's state, the Welcome for added members and a
 * GroupInfo. `state` is not changed, except that a PrivateMessage commit uses up a handshake key.
 */
export async function createCommit(state: GroupState, policy: ResolvedPolicy, options: CommitOptions = {}, internals: CommitInternals = {}): Promise<CreatedCommit> {
  const { suite, context } = state;
  const me = state.privateState.leafIndex;
  const own: Sender = { senderType: SenderType.member, leafIndex: me };
  const byValue = options.proposals ?? [];
  const chosen = options.proposalRefs?.map((ref) => {
    const hit = state.proposals.find((c) => bytesEqual(c.ref, ref));
    if (!hit) throw new MlsValidationError("unknown-proposal", "no proposal with that reference in this epoch");
    return hit;
  });
  let pending = chosen ?? (options.includePending === false ? [] : selectPending(state, byValue));
  const listOf = (cached: readonly CachedProposal[]): ProposalWithSender[] => [
    ...cached.map((c) => ({ proposal: c.proposal, sender: c.sender, ref: c.ref })),
    ...byValue.map((proposal) => ({ proposal, sender: own })),
  ];
  const input = { suite, policy, context, tree: state.tree, committer: { type: "member", leafIndex: me } as const, sending: true, resumptionUsage: internals.resumptionUsage };
  let applied: AppliedProposals;
  try {
    applied = await applyProposalList({ ...input, proposals: listOf(pending) });
  } catch (e) {
    if (!(e instanceof MlsValidationError) || pending.length === 0 || chosen) throw e;
    // A pending proposal that no longer holds (a KeyPackage that expired since it arrived, a conflict the
    // selection missed) is left out rather than blocking every commit of the epoch.
    const kept: CachedProposal[] = [];
    for (const c of pending) {
      const ok = await applyProposalList({ ...input, proposals: listOf([...kept, c]) }).then(
        () => true,
        () => false,
      );
      if (ok) kept.push(c);
    }
    pending = kept;
    applied = await applyProposalList({ ...input, proposals: listOf(pending) });
  }
  const proposals = listOf(pending);
  const proposalOrRefs: ProposalOrRef[] = proposals.map((p) =>
    p.ref ? { type: ProposalOrRefType.reference, reference: p.ref } : { type: ProposalOrRefType.proposal, proposal: p.proposal },
  );
  const ownLeaf = state.tree.leafNode(me)!;
  const withPath = options.path !== false || applied.pathRequired;
  const wireFormat = wireFormatOf(options.wireFormat);

  const built = await buildCommit({
    epoch: publicEpochOf(state, policy),
    applied,
    proposalOrRefs,
    committerLeaf: me,
    sender: own,
    withPath,
    leafNode: {
      signatureKey: ownLeaf.signatureKey,
      credential: ownLeaf.credential,
      capabilities: options.leafNode?.capabilities ?? ownLeaf.capabilities,
      extensions: options.leafNode?.extensions ?? ownLeaf.extensions,
    },
    signaturePrivateKey: state.signaturePrivateKey,
    initSecret: state.keys.initSecret,
    resolvePsk: internals.resolvePsk ?? memberPskResolver(state, policy),
    wireFormat,
    authenticatedData: options.authenticatedData,
  });
  const message = await protectContent(state, built.authenticated);
  const next = nextEpochState(state, policy, {
    context: built.context,
    tree: built.tree,
    privateState: (built.privateState ?? state.privateState).prunedTo(built.tree),
    secrets: built.secrets,
    interimTranscriptHash: built.interimTranscriptHash,
    confirmationTag: built.confirmationTag,
    ...(applied.reinit ? { reinit: applied.reinit } : {}),
  });
  const extras = await welcomeAndGroupInfo(suite, built, {
    signer: me,
    signaturePrivateKey: state.signaturePrivateKey,
    ratchetTreeInWelcome: options.ratchetTreeInWelcome ?? true,
    groupInfo: options.groupInfo ?? { externalPub: true },
  });
  return { message, ...extras, state: next, change: epochChangeOf({ ...built, applied, external: false }, applied.psks) };
}

export interface BuildCommitInput {
  readonly epoch: PublicEpoch;
  readonly applied: AppliedProposals;
  readonly proposalOrRefs: ProposalOrRef[];
  readonly committerLeaf: LeafIndex;
  readonly sender: Sender;
  readonly withPath: boolean;
  readonly leafNode: Pick<LeafNode, "signatureKey" | "credential" | "capabilities" | "extensions">;
  readonly signaturePrivateKey: Uint8Array;
  readonly initSecret: Uint8Array;
  readonly resolvePsk: PskResolver;
  readonly wireFormat: WireFormat;
  readonly authenticatedData: Uint8Array | undefined;
}

export interface BuiltCommit {
  readonly authenticated: AuthenticatedContent;
  readonly committer: LeafIndex;
  readonly tree: RatchetTree;
  readonly context: GroupContext;
  readonly secrets: EpochSecrets;
  readonly pskSecret: Uint8Array;
  readonly interimTranscriptHash: Uint8Array;
  readonly confirmationTag: Uint8Array;
  /** The committer's new private keys when the commit has a path. */
  readonly privateState?: TreePrivateState;
  /** Path secrets by node, for the Welcome (§12.4.3.1). */
  readonly pathSecrets?: ReadonlyMap<number, Uint8Array>;
  readonly applied: AppliedProposals;
}

/**
 * The part of §12.4.1 shared by member and external commits: path, PSKs, signature, transcript hashes,
 * key schedule, confirmation tag. The caller protects the content (membership tag or encryption).
 */
export async function buildCommit(input: BuildCommitInput): Promise<BuiltCommit> {
  const { epoch, applied, committerLeaf } = input;
  const { suite, context } = epoch;
  const base = { ...context, epoch: context.epoch + 1n, extensions: applied.extensions };
  let tree = applied.tree;
  let commitSecret = zeroSecret(suite);
  let privateState: TreePrivateState | undefined;
  let pathSecrets: ReadonlyMap<number, Uint8Array> | undefined;
  let path: Commit["path"];
  const [pskSecret] = await Promise.all([
    pskSecretOf(suite, applied.psks, input.resolvePsk),
    (async () => {
      if (!input.withPath) return;
      const created = await createUpdatePath({
        suite,
        tree,
        leafIndex: committerLeaf,
        leafNode: input.leafNode,
        signaturePrivateKey: input.signaturePrivateKey,
        groupContext: base,
        joiners: applied.added.map((a) => a.leaf),
      });
      tree = created.tree;
      commitSecret = created.commitSecret;
      privateState = created.privateState;
      pathSecrets = created.pathSecrets;
      path = created.updatePath;
    })(),
  ]);
  const content: FramedContent = {
    groupId: context.groupId,
    epoch: context.epoch,
    sender: input.sender,
    authenticatedData: input.authenticatedData ?? new Uint8Array(0),
    contentType: ContentType.commit,
    commit: path ? { proposals: input.proposalOrRefs, path } : { proposals: input.proposalOrRefs },
  };
  const signature = await signFramedContent(suite, input.signaturePrivateKey, input.wireFormat, content, context);
  const confirmed = await confirmedTranscriptHash(suite, epoch.interimTranscriptHash, { wireFormat: input.wireFormat, content, signature });
  const newContext: GroupContext = { ...base, treeHash: await treeHash(suite, tree), confirmedTranscriptHash: confirmed };
  const secrets = await deriveEpochSecrets(suite, {
    initSecret: input.initSecret,
    commitSecret,
    pskSecret,
    groupContext: encode(encodeGroupContext, newContext),
  });
  const confirmationTag = await computeConfirmationTag(suite, secrets.confirmationKey, confirmed);
  return {
    authenticated: { wireFormat: input.wireFormat, content, auth: { signature, confirmationTag } },
    committer: committerLeaf,
    tree,
    context: newContext,
    secrets,
    pskSecret,
    interimTranscriptHash: await interimTranscriptHash(suite, confirmed, confirmationTag),
    confirmationTag,
    ...(privateState ? { privateState } : {}),
    ...(pathSecrets ? { pathSecrets } : {}),
    applied,
  };
}

/** The Welcome for the commit's new members (if any) and the GroupInfo the caller asked for. */
export async function welcomeAndGroupInfo(
  suite: CipherSuite,
  built: BuiltCommit,
  options: { signer: LeafIndex; signaturePrivateKey: Uint8Array; ratchetTreeInWelcome: boolean; groupInfo: GroupInfoChoice },
): Promise<{ welcome?: Welcome; groupInfo?: GroupInfo }> {
  const sign = (ratchetTree: boolean, externalPub: boolean): Promise<GroupInfo> =>
    signedGroupInfo(suite, {
      context: built.context,
      confirmationTag: built.confirmationTag,
      signer: options.signer,
      signaturePrivateKey: options.signaturePrivateKey,
      tree: ratchetTree ? built.tree : undefined,
      externalSecret: externalPub ? built.secrets.externalSecret : undefined,
    });
  const { added } = built.applied;
  const [welcome, groupInfo] = await Promise.all([
    added.length === 0
      ? undefined
      : sign(options.ratchetTreeInWelcome, false).then((gi) =>
          createWelcome(suite, {
            groupInfo: gi,
            joinerSecret: built.secrets.joinerSecret,
            psks: built.applied.psks,
            pskSecret: built.pskSecret,
            recipients: added.map((a) => {
              const pathSecret = built.pathSecrets?.get(commonAncestor(leafToNode(built.committer), leafToNode(a.leaf)));
              return pathSecret ? { keyPackage: a.keyPackage, pathSecret: { pathSecret } } : { keyPackage: a.keyPackage };
            }),
          }),
        ),
    options.groupInfo === false ? undefined : sign(options.groupInfo.ratchetTree ?? false, options.groupInfo.externalPub ?? true),
  ]);
  return { ...(welcome ? { welcome } : {}), ...(groupInfo ? { groupInfo } : {}) };
}

/** A GroupInfo for an epoch, signed by the member at `signer`, with external_pub and ratchet_tree when given. */
export async function signedGroupInfo(
  suite: CipherSuite,
  input: {
    context: GroupContext;
    confirmationTag: Uint8Array;
    signer: LeafIndex;
    signaturePrivateKey: Uint8Array;
    tree?: RatchetTree | undefined;
    externalSecret?: Uint8Array | undefined;
  },
): Promise<GroupInfo> {
  const externalPub = input.externalSecret ? (await externalKeyPair(suite, input.externalSecret)).publicKey : undefined;
  return signGroupInfo(suite, {
    context: input.context,
    confirmationTag: input.confirmationTag,
    signer: input.signer,
    signaturePrivateKey: input.signaturePrivateKey,
    ...(input.tree ? { ratchetTree: input.tree } : {}),
    ...(externalPub ? { externalPub } : {}),
  });
}
