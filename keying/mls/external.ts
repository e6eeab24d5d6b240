/**
 * RFC 9420 for parties outside the group: joining by external commit (§12.4.3.2, a join or a resync that
 * removes the joiner's earlier leaf), external senders (§12.1.8.1; the delivery service signs Remove
 * proposals as one), and new members proposing their own Add (new_member_proposal).
 *
 * Each of these messages is a PublicMessage without a membership tag: the sender has no group secret.
 */
import { bytesEqual } from "../codec/bytes.js";
import { decode } from "../codec/reader.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { getCipherSuite, isCipherSuiteId, type CryptoProvider } from "../crypto/index.js";
import { buildCommit, epochChangeOf, epochKeysOf, welcomeAndGroupInfo, type EpochChange, type GroupInfoChoice } from "./commit.js";
import { MlsValidationError } from "./errors.js";
import { interimTranscriptHash, signFramedContent } from "./framing.js";
import { externalPubOf, joinTree, verifyGroupInfoAndTree } from "./group-info.js";
import type { ExternalPsk, GroupState } from "./group-state.js";
import { externalInitSender } from "./key-schedule.js";
import { defaultCapabilities, type KeyPackageBundle, type LeafNodeOptions, type SigningIdentity } from "./key-package.js";
import {
  ContentType,
  ExtensionType,
  LeafNodeSource,
  PSKType,
  ProposalOrRefType,
  ProposalType,
  ProtocolVersion,
  SenderType,
  WireFormat,
  decodeMLSMessage,
  encodeExternalSenders,
  encodeMLSMessage,
  makeExtension,
  type Extension,
  type ExternalSender,
  type FramedContent,
  type GroupInfo,
  type LeafNode,
  type PreSharedKeyID,
  type Proposal,
  type Sender,
} from "./messages.js";
import { resolvePolicy, sameClient, type GroupPolicy } from "./policy.js";
import { applyProposalList, checkProposalSender, type ProposalWithSender } from "./proposals.js";
import { RatchetTree, decodeTree } from "./ratchet-tree.js";
import { SecretTree } from "./secret-tree.js";

/** The external_senders GroupContext extension (§12.1.8.1): a list, indexed by Sender.sender_index. */
export function externalSendersExtension(senders: readonly ExternalSender[]): Extension {
  return makeExtension(ExtensionType.externalSenders, encodeExternalSenders, senders);
}

/** The ExternalSender entry of a signing identity (e.g. the delivery service's). */
export function externalSenderOf(identity: SigningIdentity): ExternalSender {
  return { signatureKey: identity.signaturePublicKey, credential: identity.credential };
}

/** Which epoch of which group a message from outside is for. */
export interface GroupEpochRef {
  readonly groupId: Uint8Array;
  readonly epoch: bigint;
}

/** A PublicMessage as an MLSMessage, for senders without a membership tag. */
async function signedPublicMessage(suite: CipherSuite, signaturePrivateKey: Uint8Array, content: FramedContent): Promise<Uint8Array> {
  const signature = await signFramedContent(suite, signaturePrivateKey, WireFormat.mlsPublicMessage, content, undefined);
  return encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPublicMessage, publicMessage: { content, auth: { signature } } });
}

/**
 * A proposal from the external sender at `senderIndex` of the group's external_senders list (Add, Remove,
 * PreSharedKey, ReInit, GroupContextExtensions; §12.1.8), signed with that sender's key. The delivery
 * service sends `{ proposalType: ProposalType.remove, remove: { removed: leaf } }` when a member leaves.
 */
export async function createExternalProposal(
  suite: CipherSuite,
  input: GroupEpochRef & { senderIndex: number; signaturePrivateKey: Uint8Array; proposal: Proposal; authenticatedData?: Uint8Array },
): Promise<Uint8Array> {
  const sender: Sender = { senderType: SenderType.external, senderIndex: input.senderIndex };
  checkProposalSender(input.proposal, sender);
  return signedPublicMessage(suite, input.signaturePrivateKey, {
    groupId: input.groupId,
    epoch: input.epoch,
    sender,
    authenticatedData: input.authenticatedData ?? new Uint8Array(0),
    contentType: ContentType.proposal,
    proposal: input.proposal,
  });
}

/** A would-be member's Add of itself (new_member_proposal), signed with its KeyPackage's key. */
export async function createNewMemberAddProposal(suite: CipherSuite, input: GroupEpochRef & { keyPackage: KeyPackageBundle; authenticatedData?: Uint8Array }): Promise<Uint8Array> {
  return signedPublicMessage(suite, input.keyPackage.signaturePrivateKey, {
    groupId: input.groupId,
    epoch: input.epoch,
    sender: { senderType: SenderType.newMemberProposal },
    authenticatedData: input.authenticatedData ?? new Uint8Array(0),
    contentType: ContentType.proposal,
    proposal: { proposalType: ProposalType.add, add: { keyPackage: input.keyPackage.keyPackage } },
  });
}

// ---------------------------------------------------------------------------------------------------------
// External commit

export interface ExternalCommitOptions {
  /** The group's GroupInfo (MLSMessage bytes or decoded), with an external_pub extension. */
  readonly groupInfo: Uint8Array | GroupInfo;
  /** The ratchet tree when the GroupInfo has no ratchet_tree extension: encoded `ratchet_tree` or a RatchetTree. */
  readonly ratchetTree?: Uint8Array | RatchetTree;
  readonly identity: SigningIdentity;
  readonly provider?: CryptoProvider;
  readonly policy?: GroupPolicy;
  readonly leafNode?: LeafNodeOptions;
  /**
   * Resync: remove this client's earlier leaf in the same commit. `true` finds it (the leaf of the same
   * client under the policy: same signature key or credential by default); a number names the leaf.
   */
  readonly resync?: boolean | number;
  /** External PSKs to inject (and to keep for later epochs). */
  readonly psks?: readonly ExternalPsk[];
  readonly authenticatedData?: Uint8Array;
  /** The GroupInfo returned for the delivery service (default external_pub, no ratchet tree). */
  readonly groupInfoChoice?: GroupInfoChoice;
}

export interface CreatedExternalCommit {
  readonly message: Uint8Array;
  readonly groupInfo?: GroupInfo;
  /** The joiner's state in the new epoch: valid once the delivery service accepts the commit. */
  readonly state: GroupState;
  readonly change: EpochChange;
}

export function groupInfoFrom(input: Uint8Array | GroupInfo): GroupInfo {
  if (!(input instanceof Uint8Array)) return input;
  const msg = decode(decodeMLSMessage, input);
  if (msg.wireFormat !== WireFormat.mlsGroupInfo) throw new MlsValidationError("invalid-wire-format", "expected an MLSMessage carrying a GroupInfo");
  return msg.groupInfo;
}

export function suiteOfGroupInfo(groupInfo: GroupInfo, provider: CryptoProvider | undefined): Promise<CipherSuite> {
  const id = groupInfo.groupContext.cipherSuite;
  if (!isCipherSuiteId(id)) throw new MlsValidationError("wrong-cipher-suite", `unsupported cipher suite ${id}`);
  return getCipherSuite(id, provider);
}

export function treeFrom(input: Uint8Array | RatchetTree | undefined): RatchetTree | undefined {
  return input instanceof Uint8Array ? decode(decodeTree, input) : input;
}

/**
 * §12.4.3.2, the joiner's side: checks the GroupInfo and tree as a Welcome joiner would, takes the leftmost
 * blank leaf, and builds the external commit (ExternalInit, optional Remove of its old leaf, PSKs; always a
 * path) with the init secret exported to external_pub. Nothing is sent: the caller submits `message`.
 */
export async function createExternalCommit(options: ExternalCommitOptions): Promise<CreatedExternalCommit> {
  const policy = resolvePolicy(options.policy);
  const groupInfo = groupInfoFrom(options.groupInfo);
  const suite = await suiteOfGroupInfo(groupInfo, options.provider);
  const context = groupInfo.groupContext;
  const tree = joinTree(groupInfo, treeFrom(options.ratchetTree));
  await verifyGroupInfoAndTree(suite, policy, groupInfo, tree);
  const externalPub = externalPubOf(groupInfo);
  if (!externalPub) throw new MlsValidationError("missing-external-pub", "the GroupInfo has no external_pub extension");

  const { identity } = options;
  const ownLeaf = identityLeafTemplate(identity, options.leafNode);
  const sender: Sender = { senderType: SenderType.newMemberCommit };
  const { kemOutput, initSecret } = await externalInitSender(suite, externalPub);
  const proposals: Proposal[] = [{ proposalType: ProposalType.externalInit, externalInit: { kemOutput } }];
  if (options.resync !== undefined && options.resync !== false) {
    const removed = options.resync === true ? findOwnLeaf(tree, policy, ownLeaf) : options.resync;
    if (removed === undefined) throw new MlsValidationError("resync-leaf-not-found", "no earlier leaf of this client in the group");
    proposals.push({ proposalType: ProposalType.remove, remove: { removed } });
  }
  const externalPsks = options.psks ?? [];
  for (const p of externalPsks) {
    const psk: PreSharedKeyID = { psktype: PSKType.external, pskId: p.pskId, pskNonce: suite.randomBytes(suite.params.Nh) };
    proposals.push({ proposalType: ProposalType.psk, psk: { psk } });
  }
  const list: ProposalWithSender[] = proposals.map((proposal) => ({ proposal, sender }));
  const applied = await applyProposalList({ suite, policy, context, tree, committer: { type: "external", leafNode: ownLeaf }, proposals: list, sending: true });
  const committerLeaf = applied.tree.leftmostBlankLeaf();

  const built = await buildCommit({
    epoch: { suite, policy, context, tree, interimTranscriptHash: await interimTranscriptHash(suite, context.confirmedTranscriptHash, groupInfo.confirmationTag) },
    applied,
    proposalOrRefs: proposals.map((proposal) => ({ type: ProposalOrRefType.proposal, proposal })),
    committerLeaf,
    sender,
    withPath: true,
    leafNode: ownLeaf,
    signaturePrivateKey: identity.signaturePrivateKey,
    initSecret,
    resolvePsk: async (id) => (id.psktype === PSKType.external ? externalPsks.find((p) => bytesEqual(p.pskId, id.pskId))?.psk : undefined),
    wireFormat: WireFormat.mlsPublicMessage,
    authenticatedData: options.authenticatedData,
  });
  const { content, auth } = built.authenticated;
  const message = encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPublicMessage, publicMessage: { content, auth } });
  const state: GroupState = {
    suite,
    context: built.context,
    tree: built.tree,
    privateState: built.privateState!,
    signaturePrivateKey: identity.signaturePrivateKey,
    keys: epochKeysOf(built.secrets),
    secretTree: new SecretTree(suite, built.secrets.encryptionSecret, built.tree.leafCount, policy.secretTreeLimits),
    interimTranscriptHash: built.interimTranscriptHash,
    confirmationTag: built.confirmationTag,
    proposals: [],
    pastEpochs: [],
    resumptionPsks: [],
    externalPsks: [...externalPsks],
    active: true,
  };
  const { groupInfo: newGroupInfo } = await welcomeAndGroupInfo(suite, built, {
    signer: committerLeaf,
    signaturePrivateKey: identity.signaturePrivateKey,
    ratchetTreeInWelcome: false,
    groupInfo: options.groupInfoChoice ?? { externalPub: true },
  });
  return {
    message,
    ...(newGroupInfo ? { groupInfo: newGroupInfo } : {}),
    state,
    change: epochChangeOf({ applied, committer: committerLeaf, external: true, context: built.context }, applied.psks),
  };
}

/**
 * The LeafNode fields a joiner will commit with, as a LeafNode value for the policy's same-client test
 * (keys, source and signature are filled in by the UpdatePath).
 */
function identityLeafTemplate(identity: SigningIdentity, choice: LeafNodeOptions | undefined): LeafNode {
  return {
    encryptionKey: new Uint8Array(0),
    signatureKey: identity.signaturePublicKey,
    credential: identity.credential,
    capabilities: choice?.capabilities ?? defaultCapabilities(),
    leafNodeSource: LeafNodeSource.commit,
    parentHash: new Uint8Array(0),
    extensions: choice?.extensions ?? [],
    signature: new Uint8Array(0),
  };
}

function findOwnLeaf(tree: RatchetTree, policy: ReturnType<typeof resolvePolicy>, leaf: LeafNode): number | undefined {
  for (const [i, node] of tree.leaves()) if (sameClient(policy, node, leaf)) return i;
  return undefined;
}
