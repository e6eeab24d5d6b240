/**
 * The DS's public view of one group (BRIEF decisions 2 and 4): the MLS engine's PublicObserver, run on
 * public data only, plus the two rules that are the DS's own: the DS must stay among the group's
 * external_senders (or it could no longer remove leavers), and every handshake is attributed to the
 * member identity ("user/device") that sent it. Everything the sequencer knows about MLS goes through here.
 *
 * The observer changes its state when a message passes, so a message that passes here but is then not
 * stored (a store conflict or failure) leaves this view ahead of the log: the sequencer then discards the
 * view and rebuilds it from the store, which is the authority.
 */
import { bytesEqual } from "../../keying/codec/bytes.js";
import { isCipherSuiteId, type CipherSuiteId } from "../../keying/crypto/index.js";
import { MlsValidationError } from "../../keying/mls/errors.js";
import { groupInfoFrom } from "../../keying/mls/external.js";
import { SenderType } from "../../keying/mls/messages.js";
import { PublicObserver, type ObservedMessage } from "../../keying/mls/observer.js";
import { externalSenders } from "../../keying/mls/proposals.js";
import type { ExternalSenderIdentity } from "./external-sender.js";

export interface Member {
  readonly leafIndex: number;
  /** The basic credential's identity as UTF-8 ("user/device"); undefined when it is not valid UTF-8. */
  readonly identity: string | undefined;
  readonly signatureKey: Uint8Array;
}

export type Observed = ObservedMessage & {
  /** Identity of the sending leaf; for a commit, of the committer's leaf in the new epoch. */
  readonly senderIdentity: string | undefined;
};

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

function identityString(identity: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(identity);
  } catch {
    return undefined;
  }
}

export class GroupView {
  /** The tree changes only with the epoch, so the member list is computed once per epoch. */
  private cachedMembers: { readonly epoch: bigint; readonly members: Member[] } | undefined;

  private constructor(
    private readonly observer: PublicObserver,
    private readonly sender: ExternalSenderIdentity,
    private senderIndex: number,
  ) {}

  /**
   * A new group from its creator's GroupInfo (with external_pub) and tree: the observer's joiner checks,
   * then the DS's own rule that it is one of the group's external senders.
   */
  static async create(senderFor: (suite: CipherSuiteId) => Promise<ExternalSenderIdentity>, groupInfo: Uint8Array, tree: Uint8Array | undefined): Promise<GroupView> {
    const suite = groupInfoFrom(groupInfo).groupContext.cipherSuite;
    if (!isCipherSuiteId(suite)) throw new MlsValidationError("wrong-cipher-suite", `unsupported cipher suite ${suite}`);
    const sender = await senderFor(suite);
    return GroupView.open(sender, groupInfo, tree);
  }

  /** The view of a stored epoch (the sequencer then replays that epoch's proposals through `process`). */
  static async restore(sender: ExternalSenderIdentity, groupInfo: Uint8Array, tree: Uint8Array): Promise<GroupView> {
    return GroupView.open(sender, groupInfo, tree);
  }

  private static async open(sender: ExternalSenderIdentity, groupInfo: Uint8Array, tree: Uint8Array | undefined): Promise<GroupView> {
    const observer = await PublicObserver.fromGroupInfo(groupInfo, { provider: sender.provider, ratchetTree: tree });
    if (!observer.groupInfo()) throw new MlsValidationError("missing-external-pub", "the GroupInfo has no external_pub: nobody could join");
    if (observer.groupContext.cipherSuite !== sender.suite.id) throw new MlsValidationError("wrong-cipher-suite", "the GroupInfo's suite differs from the stored one");
    return new GroupView(observer, sender, dsSenderIndex(observer, sender));
  }

  get groupId(): Uint8Array {
    return this.observer.groupId;
  }

  get suite(): CipherSuiteId {
    return this.sender.suite.id;
  }

  get epoch(): number {
    return Number(this.observer.epoch);
  }

  /** This DS's index in the group's external_senders list (the sender_index of its proposals). */
  get externalSenderIndex(): number {
    return this.senderIndex;
  }

  members(): readonly Member[] {
    const epoch = this.observer.epoch;
    if (this.cachedMembers?.epoch !== epoch) {
      const members = this.observer.members().map((m) => ({ leafIndex: m.leafIndex, identity: identityString(m.identity), signatureKey: m.signatureKey }));
      this.cachedMembers = { epoch, members };
    }
    return this.cachedMembers.members;
  }

  /** The current epoch's GroupInfo (MLSMessage, with external_pub) and tree, as served to joiners. */
  groupInfo(): Uint8Array {
    return this.observer.groupInfo()!;
  }

  ratchetTree(): Uint8Array {
    return this.observer.ratchetTree();
  }

  /**
   * Vets a handshake PublicMessage and follows it. A commit must come with the GroupInfo of the epoch it
   * starts. Throws MlsValidationError / MlsDecodeError with the observer unchanged, except for the DS's own
   * rule on external_senders, checked after the commit is followed: then this view is spoiled and must be
   * discarded (the message is refused either way).
   */
  async process(message: Uint8Array, groupInfo: Uint8Array | undefined): Promise<Observed> {
    const observed = await this.observer.processMessage(message, groupInfo ? { groupInfo } : {});
    if (observed.kind === "application") throw new MlsValidationError("invalid-content-type", "expected a handshake message");
    if (observed.kind === "commit") {
      if (!this.observer.groupInfo()) throw new MlsValidationError("invalid-group-info", "a commit needs the GroupInfo of its new epoch");
      this.senderIndex = dsSenderIndex(this.observer, this.sender);
      return { ...observed, senderIdentity: this.members().find((m) => m.leafIndex === observed.committer)?.identity };
    }
    const sender = observed.sender;
    const leaf = sender.senderType === SenderType.member ? this.members().find((m) => m.leafIndex === sender.leafIndex) : undefined;
    return { ...observed, senderIdentity: leaf?.identity };
  }
}

function dsSenderIndex(observer: PublicObserver, sender: ExternalSenderIdentity): number {
  const index = externalSenders(observer.groupContext).findIndex((s) => bytesEqual(s.signatureKey, sender.sender.signatureKey));
  if (index < 0) throw new MlsValidationError("missing-external-sender", "the DS must be one of the group's external senders");
  return index;
}
