/**
 * PublicObserver: follows an MLS group with no secret at all, from a GroupInfo and its ratchet tree, then
 * from the PublicMessage proposals and commits alone. The delivery service runs one per group to vet
 * handshake messages before it sequences them and to serve external joiners.
 *
 * What it checks on every handshake PublicMessage: group id and epoch, the sender (a non-blank leaf, an
 * index in external_senders, a new member's own key) and the content it may send, the signature, every
 * rule of the proposal list and commit (§12.2, §12.4.2), the UpdatePath (shape, fresh keys, parent hash,
 * leaf signature) and every new LeafNode and KeyPackage (§7.3, §10.1). What it keeps: the public tree,
 * the epoch's GroupContext, the interim transcript hash, the proposals of the epoch, and the epoch's
 * latest verified GroupInfo.
 *
 * What it cannot check, for want of secrets:
 * - membership_tag (needs membership_key): a PublicMessage from a member is accepted on its signature alone;
 *   members still verify the tag. (External-sender proposals and new-member commits carry no tag anyway.)
 * - confirmation_tag and the UpdatePath ciphertexts: a member could get a commit accepted that other
 *   members then reject; the commit is signed, so the culprit is known.
 * - PrivateMessages: handshake PrivateMessages are refused ("unreadable"; the group's handshakes must be
 *   PublicMessage), application PrivateMessages are only checked for group and epoch.
 *
 * GroupInfo: an observer cannot sign one, nor derive external_pub. So a committer sends, with its commit,
 * the GroupInfo of the epoch the commit starts (MlsGroup.commit returns it as `groupInfo`: signed by the
 * committer, with external_pub, without the tree). The DS passes both at once:
 * `processMessage(commit, { groupInfo })`; the observer adopts the commit only if that GroupInfo describes
 * exactly the resulting epoch (same GroupContext, the commit's confirmation tag, a valid signature by a
 * member, an external_pub). External joiners then get `groupInfo()` plus `ratchetTree()`. A later member
 * can refresh the GroupInfo with acceptGroupInfo(). An external commit carries the joiner's GroupInfo the
 * same way.
 */
import { bytesEqual } from "../codec/bytes.js";
import { decode } from "../codec/reader.js";
import { Writer, encode } from "../codec/writer.js";
import type { CipherSuite, CryptoProvider } from "../crypto/cipher-suite.js";
import { getCipherSuite, isCipherSuiteId } from "../crypto/index.js";
import { epochChangeOf, receiveProposal, resolveProposals, stageReceivedCommit, type EpochChange, type PublicEpoch } from "./commit.js";
import { MlsValidationError } from "./errors.js";
import { groupInfoFrom, suiteOfGroupInfo, treeFrom } from "./external.js";
import { interimTranscriptHash, verifyFramedContentSignature } from "./framing.js";
import { externalPubOf, joinTree, verifyGroupInfoAndTree } from "./group-info.js";
import { decodeCachedProposal, encodeCachedProposal, membersOf, type CachedProposal, type Member } from "./group-state.js";
import {
  ContentType,
  ExtensionType,
  ProtocolVersion,
  WireFormat,
  decodeGroupContext,
  decodeMLSMessage,
  decodeReInit,
  encodeGroupContext,
  encodeMLSMessage,
  encodeRatchetTree,
  encodeReInit,
  type AuthenticatedContent,
  type GroupContext,
  type GroupInfo,
  type Proposal,
  type ReInit,
  type Sender,
} from "./messages.js";
import { resolvePolicy, type GroupPolicy, type ResolvedPolicy } from "./policy.js";
import { checkSenderContent, senderSignatureKey } from "./proposals.js";
import { RatchetTree, decodeTree, encodeTree } from "./ratchet-tree.js";
import { Serial } from "./secret-tree.js";
import { verifyGroupInfoSignature } from "./welcome.js";

export interface ObserverOptions {
  readonly provider?: CryptoProvider;
  readonly policy?: GroupPolicy;
}

export type ObservedMessage =
  | { readonly kind: "proposal"; readonly epoch: bigint; readonly sender: Sender; readonly ref: Uint8Array; readonly proposal: Proposal }
  | (EpochChange & { readonly kind: "commit"; readonly sender: Sender; readonly groupInfoAccepted: boolean })
  /** An application PrivateMessage of the current epoch: unreadable, forwarded as is. */
  | { readonly kind: "application"; readonly epoch: bigint };

interface ObserverState {
  readonly suite: CipherSuite;
  readonly context: GroupContext;
  readonly tree: RatchetTree;
  readonly interimTranscriptHash: Uint8Array;
  readonly confirmationTag: Uint8Array;
  readonly proposals: readonly CachedProposal[];
  /** The latest verified GroupInfo of this epoch (MLSMessage bytes), if one arrived. */
  readonly groupInfo?: Uint8Array;
  readonly reinit?: ReInit;
}

const OBSERVER_FORMAT = 1;

export class PublicObserver {
  private state: ObserverState;
  private readonly policy: ResolvedPolicy;
  private readonly lock = new Serial();

  private constructor(state: ObserverState, policy: ResolvedPolicy) {
    this.state = state;
    this.policy = policy;
  }

  /**
   * Starts following from a GroupInfo (MLSMessage bytes or decoded) and the ratchet tree (its extension, or
   * `ratchetTree`), after the checks a joiner runs (§12.4.3.1, tree validity and every leaf).
   */
  static async fromGroupInfo(groupInfo: Uint8Array | GroupInfo, options: ObserverOptions & { ratchetTree?: Uint8Array | RatchetTree } = {}): Promise<PublicObserver> {
    const policy = resolvePolicy(options.policy);
    const gi = groupInfoFrom(groupInfo);
    const suite = await suiteOfGroupInfo(gi, options.provider);
    const tree = joinTree(gi, treeFrom(options.ratchetTree));
    await verifyGroupInfoAndTree(suite, policy, gi, tree);
    const context = gi.groupContext;
    return new PublicObserver(
      {
        suite,
        context,
        tree,
        interimTranscriptHash: await interimTranscriptHash(suite, context.confirmedTranscriptHash, gi.confirmationTag),
        confirmationTag: gi.confirmationTag,
        proposals: [],
        ...(externalPubOf(gi) ? { groupInfo: groupInfoMessage(gi) } : {}),
      },
      policy,
    );
  }

  get groupId(): Uint8Array {
    return this.state.context.groupId;
  }

  get epoch(): bigint {
    return this.state.context.epoch;
  }

  get groupContext(): GroupContext {
    return this.state.context;
  }

  /** Set once a commit covered a ReInit: the group takes no more handshakes. */
  get reinit(): ReInit | undefined {
    return this.state.reinit;
  }

  members(): readonly Member[] {
    return membersOf(this.state.tree);
  }

  /** The leaf of a member by signature key (e.g. to map a connection to its leaf). */
  leafOfSignatureKey(signatureKey: Uint8Array): number | undefined {
    return this.state.tree.findLeafBySignatureKey(signatureKey);
  }

  /** The public tree as an encoded `ratchet_tree`, to serve beside groupInfo(). */
  ratchetTree(): Uint8Array {
    const w = new Writer(16384);
    encodeTree(w, this.state.tree);
    return w.finish();
  }

  /** The current epoch's GroupInfo (MLSMessage bytes, with external_pub), or undefined until one is accepted. */
  groupInfo(): Uint8Array | undefined {
    return this.state.groupInfo;
  }

  pendingProposals(): { readonly ref: Uint8Array; readonly proposal: Proposal; readonly sender: Sender }[] {
    return this.state.proposals.map(({ ref, proposal, sender }) => ({ ref, proposal, sender }));
  }

  /**
   * Vets and follows one message. Throws (state unchanged) when a member would refuse it, or when the
   * observer cannot follow it. With `groupInfo`, a commit is adopted only if that GroupInfo matches the new
   * epoch (see the file comment); without it the new epoch has no GroupInfo until acceptGroupInfo().
   */
  processMessage(bytes: Uint8Array, options: { groupInfo?: Uint8Array } = {}): Promise<ObservedMessage> {
    return this.lock.run(async () => {
      const s = this.state;
      const msg = decode(decodeMLSMessage, bytes);
      if (msg.wireFormat === WireFormat.mlsPrivateMessage) {
        const pm = msg.privateMessage;
        checkGroupAndEpoch(s.context, pm.groupId, pm.epoch);
        if (pm.contentType !== ContentType.application) throw new MlsValidationError("unreadable", "a handshake PrivateMessage cannot be followed without the group's secrets");
        return { kind: "application", epoch: pm.epoch };
      }
      if (msg.wireFormat !== WireFormat.mlsPublicMessage) throw new MlsValidationError("invalid-wire-format", "expected a PublicMessage or PrivateMessage");
      const { content, auth } = msg.publicMessage;
      checkGroupAndEpoch(s.context, content.groupId, content.epoch);
      if (s.reinit) throw new MlsValidationError("group-reinitialized", "the group was closed by a ReInit");
      checkSenderContent(content, WireFormat.mlsPublicMessage);
      if (content.contentType === ContentType.application) throw new MlsValidationError("invalid-content-type", "application data in a PublicMessage");
      const key = senderSignatureKey(s.context, s.tree, content);
      if (!key) throw new MlsValidationError("unknown-sender", "the sender has no signature key in this epoch");
      const authenticated: AuthenticatedContent = { wireFormat: WireFormat.mlsPublicMessage, content, auth };
      await verifyFramedContentSignature(s.suite, key, authenticated, s.context);

      if (content.contentType === ContentType.proposal) {
        const cached = await receiveProposal(this.publicEpoch(s), authenticated);
        if (!s.proposals.some((c) => bytesEqual(c.ref, cached.ref))) this.state = { ...s, proposals: [...s.proposals, cached] };
        return { kind: "proposal", epoch: content.epoch, sender: content.sender, ref: cached.ref, proposal: cached.proposal };
      }
      const proposals = resolveProposals(s.proposals, content.commit, content.sender);
      const staged = await stageReceivedCommit(this.publicEpoch(s), proposals, authenticated);
      let next: ObserverState = {
        suite: s.suite,
        context: staged.context,
        tree: staged.tree,
        interimTranscriptHash: staged.interimTranscriptHash,
        confirmationTag: staged.confirmationTag,
        proposals: [],
        ...(staged.applied.reinit ? { reinit: staged.applied.reinit } : {}),
      };
      if (options.groupInfo) next = await withGroupInfo(next, options.groupInfo);
      this.state = next;
      return { kind: "commit", ...epochChangeOf(staged, staged.applied.psks), sender: content.sender, groupInfoAccepted: options.groupInfo !== undefined };
    });
  }

  /** Verifies a GroupInfo of the current epoch (e.g. one a member refreshed) and serves it from now on. */
  acceptGroupInfo(bytes: Uint8Array): Promise<void> {
    return this.lock.run(async () => {
      this.state = await withGroupInfo(this.state, bytes);
    });
  }

  encode(): Uint8Array {
    const s = this.state;
    const w = new Writer(8192);
    w.u8(OBSERVER_FORMAT).u16(s.suite.id);
    encodeGroupContext(w, s.context);
    encodeTree(w, s.tree);
    w.opaque(s.interimTranscriptHash).opaque(s.confirmationTag);
    w.vector(s.proposals, encodeCachedProposal);
    w.optional(s.groupInfo, (w2, gi) => void w2.opaque(gi));
    w.optional(s.reinit, encodeReInit);
    return w.finish();
  }

  static async decode(bytes: Uint8Array, options: ObserverOptions = {}): Promise<PublicObserver> {
    const d = decode((r) => {
      const format = r.u8();
      if (format !== OBSERVER_FORMAT) throw new MlsValidationError("unknown-format", `observer state format ${format}`);
      const suiteId = r.u16();
      const context = decodeGroupContext(r);
      const tree = decodeTree(r);
      const interim = r.opaque();
      const confirmationTag = r.opaque();
      const proposals = r.vector(decodeCachedProposal);
      const groupInfo = r.optional((r2) => r2.opaque());
      const reinit = r.optional(decodeReInit);
      return { suiteId, context, tree, interim, confirmationTag, proposals, groupInfo, reinit };
    }, bytes);
    if (!isCipherSuiteId(d.suiteId)) throw new MlsValidationError("wrong-cipher-suite", `unsupported cipher suite ${d.suiteId}`);
    const suite = await getCipherSuite(d.suiteId, options.provider);
    return new PublicObserver(
      {
        suite,
        context: d.context,
        tree: d.tree,
        interimTranscriptHash: d.interim,
        confirmationTag: d.confirmationTag,
        proposals: d.proposals,
        ...(d.groupInfo ? { groupInfo: d.groupInfo } : {}),
        ...(d.reinit ? { reinit: d.reinit } : {}),
      },
      resolvePolicy(options.policy),
    );
  }

  private publicEpoch(s: ObserverState): PublicEpoch {
    return { suite: s.suite, policy: this.policy, context: s.context, tree: s.tree, interimTranscriptHash: s.interimTranscriptHash };
  }
}

function checkGroupAndEpoch(context: GroupContext, groupId: Uint8Array, epoch: bigint): void {
  if (!bytesEqual(groupId, context.groupId)) throw new MlsValidationError("wrong-group", "message is for another group");
  if (epoch !== context.epoch) throw new MlsValidationError("wrong-epoch", `message epoch ${epoch}, current epoch ${context.epoch}`);
}

function groupInfoMessage(gi: GroupInfo): Uint8Array {
  return encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsGroupInfo, groupInfo: gi });
}

/**
 * The state with `bytes` as its GroupInfo, once it is shown to describe exactly this epoch: same
 * GroupContext, same confirmation tag, signed by a member, carrying external_pub, and any ratchet_tree
 * extension equal to the observer's tree.
 */
async function withGroupInfo(s: ObserverState, bytes: Uint8Array): Promise<ObserverState> {
  const gi = groupInfoFrom(bytes);
  if (!bytesEqual(encode(encodeGroupContext, gi.groupContext), encode(encodeGroupContext, s.context))) {
    throw new MlsValidationError("invalid-group-info", "the GroupInfo does not describe the current epoch");
  }
  if (!bytesEqual(gi.confirmationTag, s.confirmationTag)) throw new MlsValidationError("invalid-group-info", "the GroupInfo carries another confirmation tag");
  if (!externalPubOf(gi)) throw new MlsValidationError("missing-external-pub", "the GroupInfo has no external_pub extension");
  const tree = gi.extensions.find((e) => e.extensionType === ExtensionType.ratchetTree);
  if (tree && !bytesEqual(tree.extensionData, encode(encodeRatchetTree, s.tree.toNodes()))) {
    throw new MlsValidationError("invalid-group-info", "the GroupInfo's ratchet_tree is not the group's tree");
  }
  const signer = s.tree.leafNode(gi.signer);
  if (!signer) throw new MlsValidationError("unknown-sender", `GroupInfo signer leaf ${gi.signer} is blank`);
  await verifyGroupInfoSignature(s.suite, gi, signer.signatureKey);
  return { ...s, groupInfo: bytes.slice() };
}
