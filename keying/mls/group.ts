/**
 * MlsGroup: one member's view of an RFC 9420 group, the state machine the delivery service, the browser
 * client, the interop server and the load test drive. Every method is async and serialised per group.
 *
 * API overview (details in /work/notes/group-api.md):
 *
 *   const identity = await MlsGroup.generateIdentity(utf8("alice/phone"), { cipherSuite: 1 });
 *   const alice = await MlsGroup.create({ identity, extensions: [externalSendersExtension([ds])] });
 *   const bobKp = await MlsGroup.generateKeyPackage(bobIdentity);          // { message, bundle }
 *   const { commit, welcome, groupInfo } = await alice.commit({ add: [bobKp.message] });
 *   // send `commit` to the DS; when the DS confirms (echoes it): await alice.mergePendingCommit()
 *   //   (or alice.processMessage(commit) merges it too); if another commit won: alice.clearPendingCommit()
 *   const bob = await MlsGroup.joinFromWelcome({ welcome: welcome!, keyPackage: bobKp.bundle });
 *   const r = await bob.processMessage(bytes);   // { kind: "application" | "proposal" | "commit" | "ignored", ... }
 *   const { message } = await alice.proposeRemove(1);   // proposals: add, update, remove, psk, gce, reinit
 *   const msg = await alice.encryptApplicationMessage(utf8("hi"));  // PrivateMessage
 *   const { group: carol, commit } = await MlsGroup.joinByExternalCommit({ groupInfo, ratchetTree, identity });
 *   await alice.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16); alice.epochAuthenticator;
 *   const bytes = alice.encode(); const again = await MlsGroup.decode(bytes);
 *
 * State changes are staged: a message or commit is checked against a new GroupState built beside the
 * current one, which replaces it only when every check passed. A rejected message throws (MlsDecodeError
 * for malformed bytes, MlsValidationError(code, detail) otherwise) and leaves `encode()` byte-identical.
 * A commit this member creates is pending until merged: creating it changes nothing but, for a
 * PrivateMessage commit, the handshake ratchet generation it used.
 */
import { bytesEqual } from "../codec/bytes.js";
import { decode, type Reader } from "../codec/reader.js";
import { Writer, encode } from "../codec/writer.js";
import type { CipherSuite, CryptoProvider } from "../crypto/cipher-suite.js";
import { getCipherSuite, isCipherSuiteId, type CipherSuiteId } from "../crypto/index.js";
import {
  createCommit,
  epochKeysOf,
  processCommit,
  protectContent,
  publicEpochOf,
  receiveProposal,
  resumptionPskOf,
  signContent,
  signedGroupInfo,
  type CommitOptions,
  type EpochChange,
  type HandshakeWireFormat,
  type LeafNodeChoice,
  type PskResolver,
} from "./commit.js";
import { MlsDecodeError, MlsValidationError } from "./errors.js";
import { createExternalCommit, treeFrom, type ExternalCommitOptions } from "./external.js";
import { confirmationTag as computeConfirmationTag, decryptSenderData, interimTranscriptHash, unprotectPrivateMessage, unprotectPublicMessage, type EpochView } from "./framing.js";
import { joinTree, verifyGroupInfoAndTree } from "./group-info.js";
import {
  decodeGroupState,
  decodeMember,
  encodeGroupState,
  encodeMember,
  memberOf,
  membersOf,
  type ExternalPsk,
  type GroupState,
  type Member,
} from "./group-state.js";
import {
  generateKeyPackage,
  generateSigningIdentity,
  type KeyPackageBundle,
  type KeyPackageOptions,
  type LeafNodeOptions,
  type SigningIdentity,
} from "./key-package.js";
import { deriveEpochSecrets, mlsExporter, zeroSecret } from "./key-schedule.js";
import { signLeafNode } from "./leaf-node.js";
import { checkLeafCapabilities, checkSupportedGroupExtensions } from "./leaf-validation.js";
import {
  ContentType,
  LeafNodeSource,
  PSKType,
  ProposalType,
  ProtocolVersion,
  ResumptionPSKUsage,
  SenderType,
  WireFormat,
  decodeMLSMessage,
  decodePreSharedKeyID,
  decodeReInit,
  encodeGroupContext,
  encodeGroupContextExtensions,
  encodeLeafNode,
  encodeMLSMessage,
  encodePreSharedKeyID,
  encodeReInit,
  type AuthenticatedContent,
  type Credential,
  type Extension,
  type GroupContext,
  type GroupInfo,
  type KeyPackage,
  type LeafNode,
  type PreSharedKeyID,
  type PrivateMessage,
  type Proposal,
  type PublicMessage,
  type ReInit,
  type Sender,
  type Welcome,
} from "./messages.js";
import { resolvePolicy, sameClient, type GroupPolicy, type ResolvedPolicy } from "./policy.js";
import { checkSenderContent, senderSignatureKey } from "./proposals.js";
import { RatchetTree, encodeTree } from "./ratchet-tree.js";
import { SecretTree, Serial } from "./secret-tree.js";
import { treeHash } from "./tree-hash.js";
import { commonAncestor, leafToNode } from "./tree-math.js";
import { TreePrivateState } from "./treekem.js";
import { decryptWelcome, welcomeEpoch } from "./welcome.js";
import { INSPECT, redacted } from "../redact.js";

export type { CommitOptions, EpochChange, HandshakeWireFormat, LeafNodeChoice } from "./commit.js";
export type { Member } from "./group-state.js";
export type { KeyPackageBundle, SigningIdentity } from "./key-package.js";

/** Options every way of obtaining an MlsGroup takes. */
export interface GroupOptions {
  /** Crypto provider (default nativeProvider). */
  readonly provider?: CryptoProvider;
  readonly policy?: GroupPolicy;
  /** Wire format of this member's proposals and commits (default "public", so the DS can vet them). */
  readonly handshakeWireFormat?: HandshakeWireFormat;
}

export interface CreateGroupOptions extends GroupOptions {
  readonly identity: SigningIdentity;
  /** Default 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519). */
  readonly cipherSuite?: CipherSuiteId;
  /** Default: KDF.Nh random bytes (§11). */
  readonly groupId?: Uint8Array;
  /** GroupContext extensions: external_senders, required_capabilities, application_id. */
  readonly extensions?: Extension[];
  /** Capabilities and extensions of the creator's leaf. */
  readonly leafNode?: LeafNodeOptions;
}

export interface JoinFromWelcomeOptions extends GroupOptions {
  /** The Welcome as MLSMessage bytes or decoded. */
  readonly welcome: Uint8Array | Welcome;
  /** The KeyPackage the Welcome is for, with its private keys. */
  readonly keyPackage: KeyPackageBundle;
  /** The ratchet tree when the Welcome's GroupInfo carries none (encoded `ratchet_tree` or a RatchetTree). */
  readonly ratchetTree?: Uint8Array | RatchetTree;
  /** External PSKs the Welcome may name; kept for later epochs. */
  readonly externalPsks?: readonly ExternalPsk[];
  /** The old group, when the Welcome starts a reinitialized group or a branch of it (§11.2, §11.3). */
  readonly resumption?: MlsGroup;
}

export interface ExternalJoinOptions extends GroupOptions, Omit<ExternalCommitOptions, "provider" | "policy"> {}

/** Where a proposal or commit goes on the wire, and what it authenticates alongside. */
export interface SendOptions {
  readonly wireFormat?: HandshakeWireFormat;
  readonly authenticatedData?: Uint8Array;
}

/** A commit request: CommitOptions plus shorthands for the common proposals, all included by value. */
export interface CommitRequest extends CommitOptions {
  /** KeyPackages to add: MLSMessage bytes, bare KeyPackage bytes are not accepted. */
  readonly add?: readonly (Uint8Array | KeyPackage)[];
  /** Leaf indices to remove. */
  readonly remove?: readonly number[];
}

export interface CommitOutput {
  /** The Commit as an MLSMessage, for the DS. */
  readonly commit: Uint8Array;
  /** The Welcome as an MLSMessage, when the commit adds members (deliver only once the commit is accepted). */
  readonly welcome?: Uint8Array;
  /** The new epoch's GroupInfo as an MLSMessage (signed by this member; external_pub by default). */
  readonly groupInfo?: Uint8Array;
  /** The new epoch's ratchet tree (encoded), when the Welcome does not carry it (`ratchetTreeInWelcome: false`). */
  readonly ratchetTree?: Uint8Array;
  /** What merging the commit will change. */
  readonly change: EpochChange;
}

export type ProcessedMessage =
  | { readonly kind: "application"; readonly epoch: bigint; readonly sender: number; readonly data: Uint8Array; readonly authenticatedData: Uint8Array }
  | {
      readonly kind: "proposal";
      readonly epoch: bigint;
      readonly sender: Sender;
      readonly ref: Uint8Array;
      readonly proposal: Proposal;
      readonly authenticatedData: Uint8Array;
      /** True when this is our own proposal echoed back (already cached when we sent it). */
      readonly own: boolean;
    }
  | (EpochChange & {
      readonly kind: "commit";
      readonly sender: Sender;
      /** True when this was our own pending commit, now merged. */
      readonly own: boolean;
      /** True when our own pending commit lost to this one and was dropped. */
      readonly pendingCommitDiscarded: boolean;
      /** True when the commit removed this member: the group is now inactive. */
      readonly removedSelf: boolean;
    })
  /** A message this member sent itself, echoed back (other than a pending commit): nothing to do. */
  | { readonly kind: "ignored"; readonly reason: "own-message" };

/** Options of reinitGroup and branch: the first commit of the new group adds these KeyPackages. */
export interface SuccessorOptions extends GroupOptions {
  readonly keyPackages: readonly (Uint8Array | KeyPackage)[];
  readonly leafNode?: LeafNodeOptions;
  /** Include a path in the first commit (default true). */
  readonly path?: boolean;
  /** Put the ratchet tree in the Welcome (default true); otherwise `ratchetTree` is returned. */
  readonly ratchetTreeInWelcome?: boolean;
}

export interface SuccessorGroup {
  /** The new group, already at epoch 1. */
  readonly group: MlsGroup;
  readonly welcome: Uint8Array;
  readonly ratchetTree?: Uint8Array;
}

export type PskReference = { readonly external: Uint8Array } | { readonly resumption: { readonly epoch: bigint } };

interface PendingCommit {
  readonly message: Uint8Array;
  readonly state: GroupState;
  readonly change: EpochChange;
}

function mlsMessage(wireFormat: typeof WireFormat.mlsWelcome, welcome: Welcome): Uint8Array;
function mlsMessage(wireFormat: typeof WireFormat.mlsGroupInfo, groupInfo: GroupInfo): Uint8Array;
function mlsMessage(wireFormat: typeof WireFormat.mlsKeyPackage, keyPackage: KeyPackage): Uint8Array;
function mlsMessage(wireFormat: number, body: Welcome | GroupInfo | KeyPackage): Uint8Array {
  const version = ProtocolVersion.mls10;
  switch (wireFormat) {
    case WireFormat.mlsWelcome:
      return encode(encodeMLSMessage, { version, wireFormat, welcome: body as Welcome });
    case WireFormat.mlsGroupInfo:
      return encode(encodeMLSMessage, { version, wireFormat, groupInfo: body as GroupInfo });
    default:
      return encode(encodeMLSMessage, { version, wireFormat: WireFormat.mlsKeyPackage, keyPackage: body as KeyPackage });
  }
}

/** A KeyPackage from MLSMessage bytes or as an object. */
export function keyPackageFrom(input: Uint8Array | KeyPackage): KeyPackage {
  if (!(input instanceof Uint8Array)) return input;
  const msg = decode(decodeMLSMessage, input);
  if (msg.wireFormat !== WireFormat.mlsKeyPackage) throw new MlsValidationError("invalid-wire-format", "expected an MLSMessage carrying a KeyPackage");
  return msg.keyPackage;
}

function suiteFor(id: number, provider: CryptoProvider | undefined): Promise<CipherSuite> {
  if (!isCipherSuiteId(id)) return Promise.reject(new MlsValidationError("wrong-cipher-suite", `unsupported cipher suite ${id}`));
  return getCipherSuite(id, provider);
}

export class MlsGroup {
  [INSPECT](): string {
    return redacted("MlsGroup", { epoch: this.state.context.epoch, leafIndex: this.state.privateState.leafIndex });
  }

  private state: GroupState;
  private pending: PendingCommit | undefined;
  private readonly policy: ResolvedPolicy;
  private readonly lock = new Serial();
  readonly handshakeWireFormat: HandshakeWireFormat;

  private constructor(state: GroupState, options: GroupOptions) {
    this.state = state;
    this.policy = resolvePolicy(options.policy);
    this.handshakeWireFormat = options.handshakeWireFormat ?? "public";
  }

  // -------------------------------------------------------------------------------------------------------
  // Identities and KeyPackages

  /** A fresh signature key pair for a suite under a basic credential (or the credential given). */
  static async generateIdentity(identity: Uint8Array | Credential, options: { cipherSuite?: CipherSuiteId; provider?: CryptoProvider } = {}): Promise<SigningIdentity> {
    return generateSigningIdentity(await getCipherSuite(options.cipherSuite ?? 1, options.provider), identity);
  }

  /**
   * A KeyPackage to publish (`message`, an MLSMessage) and the bundle with its private keys, kept to join
   * later (`lastResort: true` marks a last-resort KeyPackage).
   */
  static async generateKeyPackage(
    identity: SigningIdentity,
    options: KeyPackageOptions & { cipherSuite?: CipherSuiteId; provider?: CryptoProvider } = {},
  ): Promise<{ message: Uint8Array; bundle: KeyPackageBundle }> {
    const bundle = await generateKeyPackage(await getCipherSuite(options.cipherSuite ?? 1, options.provider), identity, options);
    return { message: mlsMessage(WireFormat.mlsKeyPackage, bundle.keyPackage), bundle };
  }

  // -------------------------------------------------------------------------------------------------------
  // Creating and joining

  /** §11: a one-member group at epoch 0. */
  static async create(options: CreateGroupOptions): Promise<MlsGroup> {
    const policy = resolvePolicy(options.policy);
    const suite = await getCipherSuite(options.cipherSuite ?? 1, options.provider);
    const extensions = options.extensions ?? [];
    checkSupportedGroupExtensions(extensions);
    const { keyPackage, encryptionPrivateKey } = await generateKeyPackage(suite, options.identity, options.leafNode ?? {});
    const leaf = keyPackage.leafNode;
    checkLeafCapabilities(extensions, leaf, "the creator's LeafNode");
    const tree = RatchetTree.withFirstLeaf(leaf);
    const context: GroupContext = {
      version: ProtocolVersion.mls10,
      cipherSuite: suite.id,
      groupId: options.groupId ?? suite.randomBytes(suite.params.Nh),
      epoch: 0n,
      treeHash: await treeHash(suite, tree),
      confirmedTranscriptHash: new Uint8Array(0),
      extensions,
    };
    const secrets = await deriveEpochSecrets(suite, {
      initSecret: suite.randomBytes(suite.params.Nh),
      commitSecret: zeroSecret(suite),
      groupContext: encode(encodeGroupContext, context),
    });
    const tag = await computeConfirmationTag(suite, secrets.confirmationKey, context.confirmedTranscriptHash);
    const state: GroupState = {
      suite,
      context,
      tree,
      privateState: TreePrivateState.forLeaf(0, { privateKey: encryptionPrivateKey, publicKey: leaf.encryptionKey }),
      signaturePrivateKey: options.identity.signaturePrivateKey,
      keys: epochKeysOf(secrets),
      secretTree: new SecretTree(suite, secrets.encryptionSecret, 1, policy.secretTreeLimits),
      interimTranscriptHash: await interimTranscriptHash(suite, context.confirmedTranscriptHash, tag),
      confirmationTag: tag,
      proposals: [],
      pastEpochs: [],
      resumptionPsks: [],
      externalPsks: [],
      active: true,
    };
    return new MlsGroup(state, options);
  }

  /** §12.4.3.1: join from a Welcome addressed to one of our KeyPackages. */
  static async joinFromWelcome(options: JoinFromWelcomeOptions): Promise<MlsGroup> {
    const policy = resolvePolicy(options.policy);
    const welcome = welcomeFrom(options.welcome);
    const suite = await suiteFor(welcome.cipherSuite, options.provider);
    const bundle = options.keyPackage;
    const externalPsks = options.externalPsks ?? [];
    const old = options.resumption?.state;
    const resolvePsk = async (id: PreSharedKeyID): Promise<Uint8Array | undefined> => {
      if (id.psktype === PSKType.external) return externalPsks.find((p) => bytesEqual(p.pskId, id.pskId))?.psk ?? (await policy.externalPsk(id));
      return old && resumptionPskOf(old, id.pskGroupId, id.pskEpoch);
    };
    const decrypted = await decryptWelcome(suite, welcome, { keyPackage: bundle.keyPackage, initPrivateKey: bundle.initPrivateKey }, resolvePsk);
    const { groupInfo, groupSecrets } = decrypted;
    const tree = joinTree(groupInfo, treeFrom(options.ratchetTree));
    await verifyGroupInfoAndTree(suite, policy, groupInfo, tree);

    const ownLeaf = bundle.keyPackage.leafNode;
    const me = tree.findLeafByEncryptionKey(ownLeaf.encryptionKey);
    if (me === undefined || !bytesEqual(encode(encodeLeafNode, tree.leafNode(me)!), encode(encodeLeafNode, ownLeaf))) {
      throw new MlsValidationError("not-in-tree", "the tree has no leaf identical to our KeyPackage's");
    }
    let privateState = TreePrivateState.forLeaf(me, { privateKey: bundle.encryptionPrivateKey, publicKey: ownLeaf.encryptionKey });
    if (groupSecrets.pathSecret) {
      if (groupInfo.signer === me) throw new MlsValidationError("invalid-welcome", "the GroupInfo signer is the joiner");
      privateState = await privateState.withPathSecret(suite, tree, commonAncestor(leafToNode(me), leafToNode(groupInfo.signer)), groupSecrets.pathSecret.pathSecret);
    }
    const { epochSecrets, interimTranscriptHash: interim } = await welcomeEpoch(suite, decrypted);
    checkResumption(policy, groupSecrets.psks, groupInfo.groupContext, tree, old);

    const state: GroupState = {
      suite,
      context: groupInfo.groupContext,
      tree,
      privateState,
      signaturePrivateKey: bundle.signaturePrivateKey,
      keys: epochKeysOf(epochSecrets),
      secretTree: new SecretTree(suite, epochSecrets.encryptionSecret, tree.leafCount, policy.secretTreeLimits),
      interimTranscriptHash: interim,
      confirmationTag: groupInfo.confirmationTag,
      proposals: [],
      pastEpochs: [],
      resumptionPsks: [],
      externalPsks: [...externalPsks],
      active: true,
    };
    return new MlsGroup(state, options);
  }

  /**
   * §12.4.3.2: join (or, with `resync`, rejoin) by external commit from a GroupInfo with external_pub.
   * The returned group is already in the new epoch: if the DS refuses the commit, drop it and retry with
   * the newer GroupInfo.
   */
  static async joinByExternalCommit(options: ExternalJoinOptions): Promise<{ group: MlsGroup; commit: Uint8Array; groupInfo?: Uint8Array; change: EpochChange }> {
    const created = await createExternalCommit(options);
    return {
      group: new MlsGroup(created.state, options),
      commit: created.message,
      ...(created.groupInfo ? { groupInfo: mlsMessage(WireFormat.mlsGroupInfo, created.groupInfo) } : {}),
      change: created.change,
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Persistence

  /** The whole state (current epoch, bounded past epochs, cached proposals, pending commit) in bytes. Secret. */
  encode(): Uint8Array {
    const w = new Writer(8192);
    w.opaque(encodeGroupState(this.state));
    w.optional(this.pending, (w2, p) => {
      w2.opaque(p.message).opaque(encodeGroupState(p.state));
      encodeEpochChange(w2, p.change);
    });
    w.u8(this.handshakeWireFormat === "private" ? 1 : 0);
    return w.finish();
  }

  /** Resume from `encode()` bytes. The policy is not stored: pass the same one. */
  static async decode(bytes: Uint8Array, options: Omit<GroupOptions, "handshakeWireFormat"> = {}): Promise<MlsGroup> {
    const policy = resolvePolicy(options.policy);
    const parts = decode((r) => {
      const state = r.opaque();
      const pending = r.optional((r2) => ({ message: r2.opaque(), state: r2.opaque(), change: decodeEpochChange(r2) }));
      const wire = r.u8();
      if (wire > 1) throw new MlsDecodeError("invalid-value", "handshake wire format flag");
      return { state, pending, wire };
    }, bytes);
    const load = (b: Uint8Array) => decodeGroupState(b, (id) => suiteFor(id, options.provider), policy.secretTreeLimits);
    const group = new MlsGroup(await load(parts.state), { ...options, handshakeWireFormat: parts.wire === 1 ? "private" : "public" });
    if (parts.pending) group.pending = { message: parts.pending.message, state: await load(parts.pending.state), change: parts.pending.change };
    return group;
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading the state

  get groupId(): Uint8Array {
    return this.state.context.groupId;
  }

  get epoch(): bigint {
    return this.state.context.epoch;
  }

  get cipherSuite(): CipherSuiteId {
    return this.state.suite.id;
  }

  get leafIndex(): number {
    return this.state.privateState.leafIndex;
  }

  get groupContext(): GroupContext {
    return this.state.context;
  }

  /** §8.7: the epoch_authenticator; equal on every member's screen when nobody sits in the middle. */
  get epochAuthenticator(): Uint8Array {
    return this.state.keys.epochAuthenticator;
  }

  /** False once a commit removed this member. */
  get active(): boolean {
    return this.state.active;
  }

  /** The ReInit that closed this group, if one did: create or join its successor (reinitGroup / joinFromWelcome). */
  get reinit(): ReInit | undefined {
    return this.state.reinit;
  }

  get hasPendingCommit(): boolean {
    return this.pending !== undefined;
  }

  members(): readonly Member[] {
    return membersOf(this.state.tree);
  }

  member(leafIndex: number): Member | undefined {
    const leaf = this.state.tree.leafNode(leafIndex);
    return leaf && memberOf(leafIndex, leaf);
  }

  /** Proposals received (or sent) in this epoch that the next commit will cover. */
  pendingProposals(): { readonly ref: Uint8Array; readonly proposal: Proposal; readonly sender: Sender }[] {
    return this.state.proposals.map(({ ref, proposal, sender }) => ({ ref, proposal, sender }));
  }

  /** §8.5 MLS-Exporter(label, context, length) of the current epoch. */
  exportSecret(label: string, context: Uint8Array, length: number): Promise<Uint8Array> {
    return mlsExporter(this.state.suite, this.state.keys.exporterSecret, label, context, length);
  }

  /** The public tree as an encoded `ratchet_tree` (what a joiner needs beside a GroupInfo without the tree). */
  ratchetTree(): Uint8Array {
    return encodedTree(this.state.tree);
  }

  /** A GroupInfo of the current epoch signed by this member (MLSMessage), with external_pub unless told not to. */
  async groupInfo(options: { ratchetTree?: boolean; externalPub?: boolean } = {}): Promise<Uint8Array> {
    const s = this.state;
    const gi = await signedGroupInfo(s.suite, {
      context: s.context,
      confirmationTag: s.confirmationTag,
      signer: s.privateState.leafIndex,
      signaturePrivateKey: s.signaturePrivateKey,
      tree: options.ratchetTree ? s.tree : undefined,
      externalSecret: options.externalPub === false ? undefined : s.keys.externalSecret,
    });
    return mlsMessage(WireFormat.mlsGroupInfo, gi);
  }

  /** Keep an external PSK (by psk_id) for proposals and commits of this group. */
  async storeExternalPsk(pskId: Uint8Array, psk: Uint8Array): Promise<void> {
    await this.lock.run(async () => {
      const others = this.state.externalPsks.filter((p) => !bytesEqual(p.pskId, pskId));
      this.state = { ...this.state, externalPsks: [...others, { pskId: pskId.slice(), psk: psk.slice() }] };
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // Proposals

  /**
   * Sends a proposal (cached here too, so our next commit covers it by reference). Updates go through
   * proposeUpdate, which keeps the new leaf's private key.
   */
  propose(proposal: Proposal, options: SendOptions = {}): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    if (proposal.proposalType === ProposalType.update) return Promise.reject(new MlsValidationError("invalid-proposal", "use proposeUpdate for an Update"));
    return this.lock.run(() => this.sendProposal(proposal, options));
  }

  proposeAdd(keyPackage: Uint8Array | KeyPackage, options?: SendOptions): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.propose({ proposalType: ProposalType.add, add: { keyPackage: keyPackageFrom(keyPackage) } }, options);
  }

  proposeRemove(leafIndex: number, options?: SendOptions): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.propose({ proposalType: ProposalType.remove, remove: { removed: leafIndex } }, options);
  }

  /** §12.1.2: a new leaf key (and optionally new capabilities/extensions) for this member, applied when committed. */
  proposeUpdate(choice: LeafNodeChoice = {}, options: SendOptions = {}): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.lock.run(async () => {
      const s = this.requireActive();
      const me = s.privateState.leafIndex;
      const current = s.tree.leafNode(me)!;
      const key = await s.suite.primitives.hpkeGenerateKeyPair();
      const leafNode = await signLeafNode(
        s.suite,
        {
          encryptionKey: key.publicKey,
          signatureKey: current.signatureKey,
          credential: current.credential,
          capabilities: choice.capabilities ?? current.capabilities,
          leafNodeSource: LeafNodeSource.update,
          extensions: choice.extensions ?? current.extensions,
        },
        s.signaturePrivateKey,
        { groupId: s.context.groupId, leafIndex: me },
      );
      return this.sendProposal({ proposalType: ProposalType.update, update: { leafNode } }, options, key);
    });
  }

  /** §12.1.4: inject an external PSK (held via storeExternalPsk or the policy) or a resumption PSK of this group. */
  proposePsk(psk: PskReference, options?: SendOptions): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.propose({ proposalType: ProposalType.psk, psk: { psk: this.pskId(psk) } }, options);
  }

  proposeGroupContextExtensions(extensions: Extension[], options?: SendOptions): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.propose({ proposalType: ProposalType.groupContextExtensions, groupContextExtensions: { extensions } }, options);
  }

  /** §12.1.5: reinitialize with a new group id, suite, version or extensions (defaults: a new random id, the rest unchanged). */
  proposeReInit(reinit: Partial<ReInit> = {}, options?: SendOptions): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    return this.propose({ proposalType: ProposalType.reinit, reinit: this.reinitOf(reinit) }, options);
  }

  /** A full ReInit from defaults: fresh group id, same version, suite and extensions. */
  reinitOf(reinit: Partial<ReInit> = {}): ReInit {
    const c = this.state.context;
    return {
      groupId: reinit.groupId ?? this.state.suite.randomBytes(this.state.suite.params.Nh),
      version: reinit.version ?? c.version,
      cipherSuite: reinit.cipherSuite ?? c.cipherSuite,
      extensions: reinit.extensions ?? c.extensions,
    };
  }

  /** The PreSharedKeyID (with a fresh nonce) for a PSK reference. */
  pskId(psk: PskReference): PreSharedKeyID {
    const s = this.state;
    const pskNonce = s.suite.randomBytes(s.suite.params.Nh);
    if ("external" in psk) return { psktype: PSKType.external, pskId: psk.external, pskNonce };
    return { psktype: PSKType.resumption, usage: ResumptionPSKUsage.application, pskGroupId: s.context.groupId, pskEpoch: psk.resumption.epoch, pskNonce };
  }

  private async sendProposal(proposal: Proposal, options: SendOptions, updateKey?: { privateKey: Uint8Array; publicKey: Uint8Array }): Promise<{ message: Uint8Array; ref: Uint8Array }> {
    const s = this.requireActive();
    const wireFormat = this.wireFormat(options.wireFormat);
    const authenticated = await signContent(s, { contentType: ContentType.proposal, proposal }, wireFormat, options.authenticatedData);
    const cached = await receiveProposal(publicEpochOf(s, this.policy), authenticated);
    const message = await protectContent(s, authenticated);
    this.state = { ...s, proposals: [...s.proposals, { ...cached, message, ...(updateKey ? { updateKey } : {}) }] };
    return { message, ref: cached.ref };
  }

  // -------------------------------------------------------------------------------------------------------
  // Commits

  /**
   * §12.4.1: a commit of the pending proposals (by reference) and `request`'s (by value), kept pending
   * until mergePendingCommit() (or processMessage of the same bytes echoed by the DS). A second commit()
   * replaces the pending one.
   */
  commit(request: CommitRequest = {}): Promise<CommitOutput> {
    return this.lock.run(async () => {
      const s = this.requireActive();
      const proposals: Proposal[] = [
        ...(request.add ?? []).map((kp): Proposal => ({ proposalType: ProposalType.add, add: { keyPackage: keyPackageFrom(kp) } })),
        ...(request.remove ?? []).map((removed): Proposal => ({ proposalType: ProposalType.remove, remove: { removed } })),
        ...(request.proposals ?? []),
      ];
      const created = await createCommit(s, this.policy, { ...request, proposals, wireFormat: request.wireFormat ?? this.handshakeWireFormat });
      this.pending = { message: created.message, state: created.state, change: created.change };
      return {
        commit: created.message,
        ...(created.welcome ? { welcome: mlsMessage(WireFormat.mlsWelcome, created.welcome) } : {}),
        ...(created.groupInfo ? { groupInfo: mlsMessage(WireFormat.mlsGroupInfo, created.groupInfo) } : {}),
        ...(request.ratchetTreeInWelcome === false ? { ratchetTree: encodedTree(created.state.tree) } : {}),
        change: created.change,
      };
    });
  }

  /** Adopt our pending commit's epoch (the DS accepted it). */
  mergePendingCommit(): Promise<EpochChange> {
    return this.lock.run(async () => this.mergePending());
  }

  /** Drop our pending commit (another commit won the epoch, or the DS refused it). */
  clearPendingCommit(): void {
    this.pending = undefined;
  }

  private mergePending(): EpochChange {
    const p = this.pending;
    if (!p) throw new MlsValidationError("no-pending-commit", "there is no pending commit to merge");
    this.state = p.state;
    this.pending = undefined;
    return p.change;
  }

  // -------------------------------------------------------------------------------------------------------
  // Application messages

  /** A PrivateMessage carrying application data in the current epoch. */
  encryptApplicationMessage(data: Uint8Array, options: { authenticatedData?: Uint8Array; paddingLength?: number } = {}): Promise<Uint8Array> {
    return this.lock.run(async () => {
      const s = this.requireActive();
      // §12.4: a member that has seen valid proposals commits before sending application data.
      if (s.proposals.length > 0) throw new MlsValidationError("pending-proposals", "commit the pending proposals before sending application data");
      const authenticated = await signContent(s, { contentType: ContentType.application, applicationData: data }, WireFormat.mlsPrivateMessage, options.authenticatedData);
      return protectContent(s, authenticated, options.paddingLength ?? 0);
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // Receiving

  /**
   * Any PublicMessage or PrivateMessage of this group. Handshake messages must be for the current epoch;
   * application messages may be for a retained past epoch. Throws on anything invalid, state unchanged.
   */
  processMessage(bytes: Uint8Array): Promise<ProcessedMessage> {
    return this.lock.run(async () => {
      const sender: Sender = { senderType: SenderType.member, leafIndex: this.leafIndex };
      if (this.pending && bytesEqual(bytes, this.pending.message)) {
        const change = this.mergePending();
        return { kind: "commit", ...change, sender, own: true, pendingCommitDiscarded: false, removedSelf: false };
      }
      const mine = this.state.proposals.find((c) => c.message && bytesEqual(c.message, bytes));
      if (mine) return { kind: "proposal", epoch: this.epoch, sender, ref: mine.ref, proposal: mine.proposal, authenticatedData: authenticatedDataOf(bytes), own: true };
      const msg = decode(decodeMLSMessage, bytes);
      if (msg.wireFormat === WireFormat.mlsPublicMessage) return this.processPublic(msg.publicMessage);
      if (msg.wireFormat === WireFormat.mlsPrivateMessage) return this.processPrivate(msg.privateMessage);
      throw new MlsValidationError("invalid-wire-format", "processMessage takes PublicMessage and PrivateMessage; use joinFromWelcome for a Welcome");
    });
  }

  private async processPublic(message: PublicMessage): Promise<ProcessedMessage> {
    const s = this.state;
    const { content } = message;
    checkGroupEpoch(s, content.groupId, content.epoch);
    if (content.sender.senderType === SenderType.member && content.sender.leafIndex === s.privateState.leafIndex) {
      if (content.contentType === ContentType.commit) throw new MlsValidationError("own-commit", "a commit of ours that is not pending: this member is out of sync");
      return { kind: "ignored", reason: "own-message" };
    }
    checkSenderContent(content, WireFormat.mlsPublicMessage);
    requireActiveState(s);
    const authenticated = await unprotectPublicMessage(s.suite, message, s.keys.membershipKey, currentView(s));
    const { next, result } = await this.stageHandshake(s, authenticated);
    this.adopt(next, result);
    return result;
  }

  private async processPrivate(message: PrivateMessage): Promise<ProcessedMessage> {
    const s = this.state;
    if (!bytesEqual(message.groupId, s.context.groupId)) throw new MlsValidationError("wrong-group", "message is for another group");
    const past = message.epoch === s.context.epoch ? undefined : s.pastEpochs.find((p) => p.context.epoch === message.epoch);
    if (message.epoch !== s.context.epoch && (!past || message.contentType !== ContentType.application)) {
      throw new MlsValidationError("wrong-epoch", `message epoch ${message.epoch}, current epoch ${s.context.epoch}`);
    }
    const keys = past ? { secretTree: past.secretTree, senderDataSecret: past.senderDataSecret } : { secretTree: s.secretTree, senderDataSecret: s.keys.senderDataSecret };
    const view: EpochView = past ? { context: past.context, signatureKeyOf: (c) => (c.sender.senderType === SenderType.member ? past.signatureKeys[c.sender.leafIndex] : undefined) } : currentView(s);
    const senderData = await decryptSenderData(s.suite, message, keys.senderDataSecret);
    if (senderData.leafIndex === s.privateState.leafIndex) return { kind: "ignored", reason: "own-message" };

    if (message.contentType === ContentType.application) {
      const authenticated = await unprotectPrivateMessage(s.suite, message, keys, view);
      const { content } = authenticated;
      if (content.contentType !== ContentType.application) throw new MlsValidationError("invalid-content-type", "content type differs from the PrivateMessage's");
      return { kind: "application", epoch: content.epoch, sender: senderData.leafIndex, data: content.applicationData, authenticatedData: content.authenticatedData };
    }
    requireActiveState(s);
    // The handshake is fully processed inside the ratchet's critical section: the key is used up only if it succeeds.
    const { next, result } = await unprotectPrivateMessage(s.suite, message, keys, view, async (authenticated) => {
      checkSenderContent(authenticated.content, WireFormat.mlsPrivateMessage);
      return this.stageHandshake(s, authenticated);
    });
    this.adopt(next, result);
    return result;
  }

  /** The state after a proposal or commit, not yet adopted. */
  private async stageHandshake(s: GroupState, authenticated: AuthenticatedContent): Promise<{ next: GroupState; result: ProcessedMessage }> {
    const { content } = authenticated;
    if (content.contentType === ContentType.proposal) {
      const cached = await receiveProposal(publicEpochOf(s, this.policy), authenticated);
      const known = s.proposals.some((c) => bytesEqual(c.ref, cached.ref));
      return {
        next: known ? s : { ...s, proposals: [...s.proposals, cached] },
        result: { kind: "proposal", epoch: content.epoch, sender: content.sender, ref: cached.ref, proposal: cached.proposal, authenticatedData: content.authenticatedData, own: false },
      };
    }
    if (content.contentType === ContentType.commit) {
      const { state, change, removedSelf } = await processCommit(s, this.policy, authenticated);
      return { next: state, result: { kind: "commit", ...change, sender: content.sender, own: false, pendingCommitDiscarded: this.pending !== undefined, removedSelf } };
    }
    throw new MlsValidationError("invalid-content-type", "application data in a PublicMessage");
  }

  private adopt(next: GroupState, result: ProcessedMessage): void {
    this.state = next;
    if (result.kind === "commit") this.pending = undefined;
  }

  // -------------------------------------------------------------------------------------------------------
  // Reinitialization and branching (§11.2, §11.3)

  /**
   * After a commit with a ReInit: create the successor group (the ReInit's id, suite, version and
   * extensions) with the other members' new KeyPackages, joined to this one by a `reinit` resumption PSK.
   * Returns the new group (already at epoch 1) and the Welcome for the others.
   */
  async reinitGroup(options: SuccessorOptions & { identity?: SigningIdentity }): Promise<SuccessorGroup> {
    const reinit = this.state.reinit;
    if (!reinit) throw new MlsValidationError("no-reinit", "this group was not closed by a ReInit");
    if (!isCipherSuiteId(reinit.cipherSuite)) throw new MlsValidationError("wrong-cipher-suite", `unsupported cipher suite ${reinit.cipherSuite}`);
    return this.successor({
      ...options,
      usage: ResumptionPSKUsage.reinit,
      groupId: reinit.groupId,
      cipherSuite: reinit.cipherSuite,
      extensions: reinit.extensions,
      identity: options.identity ?? this.ownIdentity(),
    });
  }

  /** §11.3: a subgroup of some members (their new KeyPackages) with this group's suite, tied to it by a `branch` PSK. */
  async branch(options: SuccessorOptions & { groupId?: Uint8Array; extensions?: Extension[] }): Promise<SuccessorGroup> {
    this.requireActive();
    return this.successor({
      ...options,
      usage: ResumptionPSKUsage.branch,
      groupId: options.groupId ?? this.state.suite.randomBytes(this.state.suite.params.Nh),
      cipherSuite: this.cipherSuite,
      extensions: options.extensions ?? this.state.context.extensions,
      identity: this.ownIdentity(),
    });
  }

  private ownIdentity(): SigningIdentity {
    const leaf = this.state.tree.leafNode(this.leafIndex)!;
    return { credential: leaf.credential, signaturePublicKey: leaf.signatureKey, signaturePrivateKey: this.state.signaturePrivateKey };
  }

  private async successor(
    o: SuccessorOptions & { usage: ResumptionPSKUsage; groupId: Uint8Array; cipherSuite: CipherSuiteId; extensions: Extension[]; identity: SigningIdentity },
  ): Promise<SuccessorGroup> {
    const old = this.state;
    const group = await MlsGroup.create({
      identity: o.identity,
      cipherSuite: o.cipherSuite,
      groupId: o.groupId,
      extensions: o.extensions,
      provider: o.provider,
      policy: o.policy ?? this.policy,
      handshakeWireFormat: o.handshakeWireFormat ?? this.handshakeWireFormat,
      ...(o.leafNode ? { leafNode: o.leafNode } : {}),
    });
    const psk: PreSharedKeyID = {
      psktype: PSKType.resumption,
      usage: o.usage,
      pskGroupId: old.context.groupId,
      pskEpoch: old.context.epoch,
      pskNonce: group.state.suite.randomBytes(group.state.suite.params.Nh),
    };
    const resolvePsk: PskResolver = async (id) => (id.psktype === PSKType.resumption ? resumptionPskOf(old, id.pskGroupId, id.pskEpoch) : undefined);
    const proposals: Proposal[] = [
      { proposalType: ProposalType.psk, psk: { psk } },
      ...o.keyPackages.map((kp): Proposal => ({ proposalType: ProposalType.add, add: { keyPackage: keyPackageFrom(kp) } })),
    ];
    const created = await createCommit(
      group.state,
      group.policy,
      { proposals, groupInfo: false, ...(o.path === undefined ? {} : { path: o.path }), ratchetTreeInWelcome: o.ratchetTreeInWelcome ?? true },
      { resumptionUsage: o.usage, resolvePsk },
    );
    group.state = created.state;
    if (!created.welcome) throw new MlsValidationError("invalid-commit", "a successor group needs at least one other member");
    return {
      group,
      welcome: mlsMessage(WireFormat.mlsWelcome, created.welcome),
      ...(o.ratchetTreeInWelcome === false ? { ratchetTree: encodedTree(created.state.tree) } : {}),
    };
  }

  // -------------------------------------------------------------------------------------------------------

  private requireActive(): GroupState {
    const s = this.state;
    requireActiveState(s);
    if (s.reinit) throw new MlsValidationError("group-reinitialized", "this group was closed by a ReInit; use its successor");
    return s;
  }

  private wireFormat(choice: HandshakeWireFormat | undefined): WireFormat {
    return (choice ?? this.handshakeWireFormat) === "private" ? WireFormat.mlsPrivateMessage : WireFormat.mlsPublicMessage;
  }
}

function requireActiveState(s: GroupState): void {
  if (!s.active) throw new MlsValidationError("group-inactive", "this member was removed from the group");
}

function checkGroupEpoch(s: GroupState, groupId: Uint8Array, epoch: bigint): void {
  if (!bytesEqual(groupId, s.context.groupId)) throw new MlsValidationError("wrong-group", "message is for another group");
  if (epoch !== s.context.epoch) throw new MlsValidationError("wrong-epoch", `message epoch ${epoch}, current epoch ${s.context.epoch}`);
}

function currentView(s: GroupState): EpochView {
  return { context: s.context, signatureKeyOf: (content) => senderSignatureKey(s.context, s.tree, content) };
}

/** The authenticated_data of a PublicMessage or PrivateMessage (clear in both). */
function authenticatedDataOf(bytes: Uint8Array): Uint8Array {
  const msg = decode(decodeMLSMessage, bytes);
  if (msg.wireFormat === WireFormat.mlsPublicMessage) return msg.publicMessage.content.authenticatedData;
  return msg.wireFormat === WireFormat.mlsPrivateMessage ? msg.privateMessage.authenticatedData : new Uint8Array(0);
}

function encodedTree(tree: RatchetTree): Uint8Array {
  const w = new Writer(16384);
  encodeTree(w, tree);
  return w.finish();
}

function welcomeFrom(input: Uint8Array | Welcome): Welcome {
  if (!(input instanceof Uint8Array)) return input;
  const msg = decode(decodeMLSMessage, input);
  if (msg.wireFormat !== WireFormat.mlsWelcome) throw new MlsValidationError("invalid-wire-format", "expected an MLSMessage carrying a Welcome");
  return msg.welcome;
}

/**
 * §12.4.3.1, last step: a Welcome with a reinit or branch resumption PSK starts epoch 1 of a successor of
 * the old group: for reinit, the one the old group's ReInit describes, with every old member; for a
 * branch, with the same version and suite and only members of the old group.
 */
function checkResumption(policy: ResolvedPolicy, psks: readonly PreSharedKeyID[], context: GroupContext, tree: RatchetTree, old: GroupState | undefined): void {
  const special = psks.find((p) => p.psktype === PSKType.resumption && p.usage !== ResumptionPSKUsage.application);
  if (!special || special.psktype !== PSKType.resumption) return;
  if (context.epoch !== 1n) throw new MlsValidationError("invalid-resumption", "a reinit or branch Welcome must start epoch 1");
  if (!old || !bytesEqual(special.pskGroupId, old.context.groupId)) throw new MlsValidationError("invalid-resumption", "the resumed group is not the one given");
  const oldLeaves = [...old.tree.leaves()].map(([, l]) => l);
  const newLeaves = [...tree.leaves()].map(([, l]) => l);
  const covers = (set: LeafNode[], leaf: LeafNode) => set.some((o) => sameClient(policy, o, leaf));
  if (special.usage === ResumptionPSKUsage.reinit) {
    const r = old.reinit;
    if (!r || special.pskEpoch !== old.context.epoch) throw new MlsValidationError("invalid-resumption", "the old group was not reinitialized at that epoch");
    const sameExtensions = (a: Extension[]) => encode(encodeGroupContextExtensions, { extensions: a });
    const same =
      bytesEqual(r.groupId, context.groupId) &&
      r.version === context.version &&
      r.cipherSuite === context.cipherSuite &&
      bytesEqual(sameExtensions(r.extensions), sameExtensions(context.extensions));
    if (!same) throw new MlsValidationError("invalid-resumption", "the new group does not match the ReInit");
    if (!oldLeaves.every((l) => covers(newLeaves, l))) throw new MlsValidationError("invalid-resumption", "a member of the old group is missing from the reinitialized group");
  } else {
    if (context.version !== old.context.version || context.cipherSuite !== old.context.cipherSuite) {
      throw new MlsValidationError("invalid-resumption", "a branch keeps the old group's version and cipher suite");
    }
    if (!newLeaves.every((l) => covers(oldLeaves, l))) throw new MlsValidationError("invalid-resumption", "a branch member is not a member of the old group");
  }
}

// EpochChange encoding, for a pending commit inside encode().
function encodeEpochChange(w: Writer, c: EpochChange): void {
  w.u64(c.epoch).u32(c.committer).u8(c.external ? 1 : 0);
  w.vector(c.added, encodeMember).vector(c.removed, encodeMember);
  w.vector(c.updated, (w2, v) => void w2.u32(v));
  w.vector(c.psks, encodePreSharedKeyID);
  w.u8(c.extensionsChanged ? 1 : 0);
  w.optional(c.reinit, encodeReInit);
}

function decodeEpochChange(r: Reader): EpochChange {
  const epoch = r.u64();
  const committer = r.u32();
  const external = r.u8() === 1;
  const added = r.vector(decodeMember);
  const removed = r.vector(decodeMember);
  const updated = r.vector((r2) => r2.u32());
  const psks = r.vector(decodePreSharedKeyID);
  const extensionsChanged = r.u8() === 1;
  const reinit = r.optional(decodeReInit);
  return { epoch, committer, external, added, removed, updated, psks, extensionsChanged, ...(reinit ? { reinit } : {}) };
}
