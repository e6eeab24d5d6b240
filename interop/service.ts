/**
 * The MLS interop client behind the gRPC server: the state tables of one server (group states, pending
 * KeyPackages = "transactions", external signers, pending ReInits) and one handler per RPC of
 * mls_client.proto, each a thin translation onto the keying/mls group API (MlsGroup, external.ts).
 *
 * State, transaction, signer and reinit ids come from one counter, so StorePSK's `state_or_transaction_id`
 * is never ambiguous. A state id stays the same across commits (the group object advances in place); a
 * reinitialized group or a branch gets a new id.
 */
import * as grpc from "@grpc/grpc-js";
import { bytesEqual } from "../keying/codec/bytes.js";
import { decode } from "../keying/codec/reader.js";
import { encode } from "../keying/codec/writer.js";
import { getCipherSuite, isCipherSuiteId, nativeProvider, SUITE_IDS, type CipherSuite, type CryptoProvider } from "../keying/crypto/index.js";
import { createExternalProposal, createNewMemberAddProposal, externalSenderOf, externalSendersExtension, groupInfoFrom, treeFrom } from "../keying/mls/external.js";
import { ratchetTreeOf } from "../keying/mls/group-info.js";
import { MlsGroup, type JoinFromWelcomeOptions, type KeyPackageBundle, type SigningIdentity, type SuccessorGroup } from "../keying/mls/group.js";
import type { GroupPolicy } from "../keying/mls/policy.js";
import {
  CredentialType,
  ExtensionType,
  PSKType,
  ProposalType,
  ProtocolVersion,
  ResumptionPSKUsage,
  WireFormat,
  decodeExternalSender,
  decodeExternalSenders,
  decodeKeyPackage,
  decodeMLSMessage,
  encodeExternalSender,
  findExtension,
  type Credential,
  type Extension,
  type ExternalSender,
  type KeyPackage,
  type Proposal,
} from "../keying/mls/messages.js";
import type { RatchetTree } from "../keying/mls/ratchet-tree.js";
import type { ExtensionMsg, MlsMethod, MlsRequests, MlsResponses, ProposalDescriptionMsg } from "./proto.js";

export interface InteropServiceOptions {
  /** Crypto provider for every group of this server (default native). */
  readonly provider?: CryptoProvider;
  /** What rpc Name answers. */
  readonly name?: string;
  /** Most states, transactions, signers and reinits held at once (default 100000); beyond, RESOURCE_EXHAUSTED until Free. */
  readonly maxEntries?: number;
}

/** An error with the gRPC status it should produce. */
export class InteropError extends Error {
  override readonly name = "InteropError";
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

const notFound = (what: string, id: number): InteropError => new InteropError(grpc.status.NOT_FOUND, `no ${what} with id ${id}`);
const invalid = (message: string): InteropError => new InteropError(grpc.status.INVALID_ARGUMENT, message);
const failedPrecondition = (message: string): InteropError => new InteropError(grpc.status.FAILED_PRECONDITION, message);

/**
 * Other implementations publish KeyPackages valid for years or forever (not_after = 2^64-1); the harness
 * accepts any lifetime window as long as it contains the current time.
 */
const INTEROP_POLICY: GroupPolicy = { maxLifetimeSeconds: (1n << 64n) - 1n };

interface MemberState {
  group: MlsGroup;
}

/** A KeyPackage this server published and may join with; PSKs stored before joining wait here. */
interface Transaction {
  readonly bundle: KeyPackageBundle;
  readonly psks: { pskId: Uint8Array; psk: Uint8Array }[];
}

interface ExternalSigner {
  readonly suite: CipherSuite;
  readonly identity: SigningIdentity;
}

/** A member whose group a ReInit commit closed: its KeyPackage for the successor and the closed group. */
interface PendingReinit {
  readonly old: MlsGroup;
  readonly bundle: KeyPackageBundle;
  readonly identity: SigningIdentity;
}

type Handler<M extends MlsMethod> = (request: MlsRequests[M]) => Promise<MlsResponses[M]>;
type Handlers = { [M in MlsMethod]: Handler<M> };

const EMPTY = new Uint8Array(0);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A KeyPackage as an MLSMessage (what this server sends) or bare (what some implementations send). */
function keyPackageOf(bytes: Uint8Array): KeyPackage {
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === ProtocolVersion.mls10 && bytes[2] === 0 && bytes[3] === WireFormat.mlsKeyPackage) {
    const msg = decode(decodeMLSMessage, bytes);
    if (msg.wireFormat === WireFormat.mlsKeyPackage) return msg.keyPackage;
  }
  return decode(decodeKeyPackage, bytes);
}

function extensionsOf(list: readonly ExtensionMsg[]): Extension[] {
  return list.map((e) => {
    if (!Number.isInteger(e.extensionType) || e.extensionType < 0 || e.extensionType > 0xffff) throw invalid(`extension type ${e.extensionType} is not a uint16`);
    return { extensionType: e.extensionType, extensionData: Uint8Array.from(e.extensionData) };
  });
}

function epochOf(v: string | number): bigint {
  try {
    const n = BigInt(v);
    if (n < 0n || n >= 1n << 64n) throw new RangeError();
    return n;
  } catch {
    throw invalid(`epoch id ${String(v)} is not a uint64`);
  }
}

/** The leaf whose basic credential carries `identity` (how the harness names members). */
function leafOfIdentity(leaves: Iterable<readonly [number, { readonly credential: Credential }]>, identity: Uint8Array): number {
  for (const [i, { credential: c }] of leaves) {
    if (c.credentialType === CredentialType.basic && bytesEqual(c.identity, identity)) return i;
  }
  throw invalid(`no member with identity "${text(identity)}"`);
}

export class InteropService {
  readonly name: string;
  readonly provider: CryptoProvider;
  private nextId = 1;
  private readonly states = new Map<number, MemberState>();
  private readonly transactions = new Map<number, Transaction>();
  private readonly signers = new Map<number, ExternalSigner>();
  private readonly reinits = new Map<number, PendingReinit>();
  private readonly handlers: Handlers;
  private readonly maxEntries: number;

  constructor(options: InteropServiceOptions = {}) {
    this.provider = options.provider ?? nativeProvider;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.name = options.name ?? `Conclave (${this.provider.name})`;
    this.handlers = {
      Name: async () => ({ name: this.name }),
      SupportedCiphersuites: async () => ({ ciphersuites: [...SUITE_IDS] }),
      CreateGroup: (r) => this.createGroup(r),
      CreateKeyPackage: (r) => this.createKeyPackage(r),
      JoinGroup: (r) => this.joinGroup(r),
      ExternalJoin: (r) => this.externalJoin(r),
      GroupInfo: (r) => this.groupInfo(r),
      StateAuth: async (r) => ({ stateAuthSecret: this.group(r.stateId).epochAuthenticator }),
      Export: async (r) => ({ exportedSecret: await this.group(r.stateId).exportSecret(r.label, r.context, r.keyLength) }),
      Protect: async (r) => ({ ciphertext: await this.group(r.stateId).encryptApplicationMessage(r.plaintext, { authenticatedData: r.authenticatedData }) }),
      Unprotect: (r) => this.unprotect(r),
      StorePSK: (r) => this.storePsk(r),
      AddProposal: async (r) => this.proposal(this.group(r.stateId).proposeAdd(keyPackageOf(r.keyPackage))),
      UpdateProposal: async (r) => this.proposal(this.group(r.stateId).proposeUpdate()),
      RemoveProposal: async (r) => {
        const g = this.group(r.stateId);
        return this.proposal(g.proposeRemove(this.memberLeaf(g, r.removedId)));
      },
      ExternalPSKProposal: async (r) => this.proposal(this.group(r.stateId).proposePsk({ external: r.pskId })),
      ResumptionPSKProposal: async (r) => this.proposal(this.group(r.stateId).proposePsk({ resumption: { epoch: epochOf(r.epochId) } })),
      GroupContextExtensionsProposal: async (r) => this.proposal(this.group(r.stateId).proposeGroupContextExtensions(extensionsOf(r.extensions))),
      Commit: (r) => this.commit(r),
      HandleCommit: (r) => this.handleCommit(r),
      HandlePendingCommit: (r) => this.handlePendingCommit(r),
      ReInitProposal: async (r) => {
        if (!isCipherSuiteId(r.cipherSuite)) throw invalid(`unsupported cipher suite ${r.cipherSuite}`);
        return this.proposal(this.group(r.stateId).proposeReInit({ groupId: r.groupId, cipherSuite: r.cipherSuite, extensions: extensionsOf(r.extensions) }));
      },
      ReInitCommit: (r) => this.commit(r),
      HandlePendingReInitCommit: async (r) => {
        await this.handlePendingCommit(r);
        return this.startReinit(r.stateId);
      },
      HandleReInitCommit: async (r) => {
        await this.handleCommit(r);
        return this.startReinit(r.stateId);
      },
      ReInitWelcome: (r) => this.reinitWelcome(r),
      HandleReInitWelcome: (r) => this.handleReinitWelcome(r),
      CreateBranch: (r) => this.createBranch(r),
      HandleBranch: (r) => this.handleBranch(r),
      NewMemberAddProposal: (r) => this.newMemberAddProposal(r),
      CreateExternalSigner: (r) => this.createExternalSigner(r),
      AddExternalSigner: (r) => this.addExternalSigner(r),
      ExternalSignerProposal: (r) => this.externalSignerProposal(r),
      Free: async (r) => {
        for (const table of [this.states, this.transactions, this.signers, this.reinits]) table.delete(r.stateId);
        return {};
      },
    };
  }

  /** Dispatches one RPC; rejects with InteropError (or a keying error) on failure. */
  handle(method: string, request: unknown): Promise<unknown> {
    const h = (this.handlers as Record<string, ((r: unknown) => Promise<unknown>) | undefined>)[method];
    if (!h) return Promise.reject(new InteropError(grpc.status.UNIMPLEMENTED, `${method} is not supported by this client`));
    return h(request);
  }

  /** Number of live entries across all tables (for tests of Free). */
  get size(): number {
    return this.states.size + this.transactions.size + this.signers.size + this.reinits.size;
  }

  // -------------------------------------------------------------------------------------------------------
  // Tables

  private allocate(): number {
    if (this.size >= this.maxEntries) throw new InteropError(grpc.status.RESOURCE_EXHAUSTED, `${this.maxEntries} entries held: Free some`);
    return this.nextId++;
  }

  private addState(group: MlsGroup): number {
    const id = this.allocate();
    this.states.set(id, { group });
    return id;
  }

  /** A group that became a new state: its id and epoch authenticator (what a join answers). */
  private newState(group: MlsGroup): { stateId: number; epochAuthenticator: Uint8Array } {
    return { stateId: this.addState(group), epochAuthenticator: group.epochAuthenticator };
  }

  private group(stateId: number): MlsGroup {
    const s = this.states.get(stateId);
    if (!s) throw notFound("state", stateId);
    return s.group;
  }

  private take<T>(table: Map<number, T>, id: number, what: string): T {
    const v = table.get(id);
    if (!v) throw notFound(what, id);
    return v;
  }

  private async suite(id: number): Promise<CipherSuite> {
    if (!isCipherSuiteId(id)) throw invalid(`unsupported cipher suite ${id}`);
    return getCipherSuite(id, this.provider);
  }

  private groupOptions(encryptHandshake: boolean) {
    return { provider: this.provider, policy: INTEROP_POLICY, handshakeWireFormat: encryptHandshake ? ("private" as const) : ("public" as const) };
  }

  private memberLeaf(group: MlsGroup, identity: Uint8Array): number {
    return leafOfIdentity(
      group.members().map((m) => [m.leafIndex, m] as const),
      identity,
    );
  }

  private async proposal(p: Promise<{ message: Uint8Array }>): Promise<{ proposal: Uint8Array }> {
    return { proposal: (await p).message };
  }

  /** A new signature key pair with a basic credential naming `identity` (how the harness names members). */
  private identity(suite: CipherSuite, identity: Uint8Array): Promise<SigningIdentity> {
    return MlsGroup.generateIdentity(Uint8Array.from(identity), { cipherSuite: suite.id, provider: this.provider });
  }

  private async newKeyPackage(cipherSuite: number, identityBytes: Uint8Array): Promise<{ message: Uint8Array; bundle: KeyPackageBundle; identity: SigningIdentity }> {
    const suite = await this.suite(cipherSuite);
    const identity = await this.identity(suite, identityBytes);
    const { message, bundle } = await MlsGroup.generateKeyPackage(identity, { cipherSuite: suite.id, provider: this.provider });
    return { message, bundle, identity };
  }

  // -------------------------------------------------------------------------------------------------------
  // Becoming a member

  private async createGroup(r: MlsRequests["CreateGroup"]): Promise<MlsResponses["CreateGroup"]> {
    const suite = await this.suite(r.cipherSuite);
    const identity = await this.identity(suite, r.identity);
    const group = await MlsGroup.create({ identity, cipherSuite: suite.id, groupId: Uint8Array.from(r.groupId), ...this.groupOptions(r.encryptHandshake) });
    return { stateId: this.addState(group) };
  }

  private async createKeyPackage(r: MlsRequests["CreateKeyPackage"]): Promise<MlsResponses["CreateKeyPackage"]> {
    const { message, bundle } = await this.newKeyPackage(r.cipherSuite, r.identity);
    const transactionId = this.allocate();
    this.transactions.set(transactionId, { bundle, psks: [] });
    return {
      transactionId,
      keyPackage: message,
      initPriv: bundle.initPrivateKey,
      encryptionPriv: bundle.encryptionPrivateKey,
      signaturePriv: bundle.signaturePrivateKey,
    };
  }

  /** Joins by a Welcome for one of our KeyPackages; a non-empty `ratchetTree` is the tree sent beside it. */
  private joinFromWelcome(
    r: { welcome: Uint8Array; ratchetTree: Uint8Array },
    keyPackage: KeyPackageBundle,
    options: Omit<JoinFromWelcomeOptions, "welcome" | "keyPackage" | "ratchetTree">,
  ): Promise<MlsGroup> {
    return MlsGroup.joinFromWelcome({
      welcome: Uint8Array.from(r.welcome),
      keyPackage,
      ...(r.ratchetTree.length > 0 ? { ratchetTree: Uint8Array.from(r.ratchetTree) } : {}),
      ...options,
    });
  }

  private async joinGroup(r: MlsRequests["JoinGroup"]): Promise<MlsResponses["JoinGroup"]> {
    const tx = this.take(this.transactions, r.transactionId, "transaction");
    const group = await this.joinFromWelcome(r, tx.bundle, { externalPsks: tx.psks, ...this.groupOptions(r.encryptHandshake) });
    this.transactions.delete(r.transactionId);
    return this.newState(group);
  }

  private async externalJoin(r: MlsRequests["ExternalJoin"]): Promise<MlsResponses["ExternalJoin"]> {
    const groupInfo = groupInfoFrom(Uint8Array.from(r.groupInfo));
    const suite = await this.suite(groupInfo.groupContext.cipherSuite);
    const identity = await this.identity(suite, r.identity);
    const { group, commit } = await MlsGroup.joinByExternalCommit({
      groupInfo,
      ...(r.ratchetTree.length > 0 ? { ratchetTree: Uint8Array.from(r.ratchetTree) } : {}),
      identity,
      resync: r.removePrior,
      psks: r.psks.map((p) => ({ pskId: Uint8Array.from(p.pskId), psk: Uint8Array.from(p.pskSecret) })),
      ...this.groupOptions(r.encryptHandshake),
    });
    return { ...this.newState(group), commit };
  }

  // -------------------------------------------------------------------------------------------------------
  // Group operations

  private async groupInfo(r: MlsRequests["GroupInfo"]): Promise<MlsResponses["GroupInfo"]> {
    const g = this.group(r.stateId);
    const groupInfo = await g.groupInfo({ ratchetTree: !r.externalTree, externalPub: true });
    return { groupInfo, ratchetTree: r.externalTree ? g.ratchetTree() : EMPTY };
  }

  private async unprotect(r: MlsRequests["Unprotect"]): Promise<MlsResponses["Unprotect"]> {
    const m = await this.group(r.stateId).processMessage(Uint8Array.from(r.ciphertext));
    if (m.kind !== "application") throw invalid(`the ciphertext is not application data (${m.kind})`);
    return { authenticatedData: m.authenticatedData, plaintext: m.data };
  }

  private async storePsk(r: MlsRequests["StorePSK"]): Promise<MlsResponses["StorePSK"]> {
    if (r.pskId.length === 0) throw invalid("empty psk_id");
    const pskId = Uint8Array.from(r.pskId);
    const psk = Uint8Array.from(r.pskSecret);
    const state = this.states.get(r.stateOrTransactionId);
    if (state) {
      await state.group.storeExternalPsk(pskId, psk);
      return {};
    }
    const tx = this.transactions.get(r.stateOrTransactionId);
    if (!tx) throw notFound("state or transaction", r.stateOrTransactionId);
    const i = tx.psks.findIndex((p) => bytesEqual(p.pskId, pskId));
    if (i >= 0) tx.psks.splice(i, 1);
    tx.psks.push({ pskId, psk });
    return {};
  }

  /**
   * Proposals a commit covers by reference, handed over before the commit: each is processed (our own come
   * back as "ignored"), so the group's proposal cache holds them when the commit is built or checked.
   */
  private async receiveProposals(group: MlsGroup, proposals: readonly Uint8Array[]): Promise<void> {
    for (const [i, bytes] of proposals.entries()) {
      const m = await group.processMessage(Uint8Array.from(bytes));
      if (m.kind !== "proposal" && m.kind !== "ignored") throw invalid(`by-reference message ${i} is not a proposal (${m.kind})`);
    }
  }

  private proposalFrom(group: MlsGroup, d: ProposalDescriptionMsg): Proposal {
    const type = text(d.proposalType);
    switch (type) {
      case "add":
        return { proposalType: ProposalType.add, add: { keyPackage: keyPackageOf(d.keyPackage) } };
      case "remove":
        return { proposalType: ProposalType.remove, remove: { removed: this.memberLeaf(group, d.removedId) } };
      case "externalPSK":
        return { proposalType: ProposalType.psk, psk: { psk: group.pskId({ external: Uint8Array.from(d.pskId) }) } };
      case "resumptionPSK":
        return { proposalType: ProposalType.psk, psk: { psk: group.pskId({ resumption: { epoch: epochOf(d.epochId) } }) } };
      case "groupContextExtensions":
        return { proposalType: ProposalType.groupContextExtensions, groupContextExtensions: { extensions: extensionsOf(d.extensions) } };
      case "reinit":
        if (!isCipherSuiteId(d.cipherSuite)) throw invalid(`unsupported cipher suite ${d.cipherSuite}`);
        return { proposalType: ProposalType.reinit, reinit: group.reinitOf({ groupId: Uint8Array.from(d.groupId), cipherSuite: d.cipherSuite, extensions: extensionsOf(d.extensions) }) };
      default:
        throw invalid(`unknown proposal type "${type}"`);
    }
  }

  private async commit(r: MlsRequests["Commit"]): Promise<MlsResponses["Commit"]> {
    const g = this.group(r.stateId);
    await this.receiveProposals(g, r.byReference);
    const proposals = r.byValue.map((d) => this.proposalFrom(g, d));
    // With external_tree the commit output carries the new epoch's tree, to travel beside the Welcome.
    const out = await g.commit({ proposals, path: r.forcePath, ratchetTreeInWelcome: !r.externalTree, groupInfo: false });
    return { commit: out.commit, welcome: out.welcome ?? EMPTY, ratchetTree: out.ratchetTree ?? EMPTY };
  }

  private async handleCommit(r: MlsRequests["HandleCommit"]): Promise<MlsResponses["HandleCommit"]> {
    const g = this.group(r.stateId);
    await this.receiveProposals(g, r.proposal);
    const m = await g.processMessage(Uint8Array.from(r.commit));
    if (m.kind !== "commit") throw invalid(`the message is not a commit (${m.kind})`);
    return { stateId: r.stateId, epochAuthenticator: g.epochAuthenticator };
  }

  private async handlePendingCommit(r: MlsRequests["HandlePendingCommit"]): Promise<MlsResponses["HandlePendingCommit"]> {
    const g = this.group(r.stateId);
    if (!g.hasPendingCommit) throw failedPrecondition(`state ${r.stateId} has no pending commit`);
    await g.mergePendingCommit();
    return { stateId: r.stateId, epochAuthenticator: g.epochAuthenticator };
  }

  // -------------------------------------------------------------------------------------------------------
  // Reinitialization and branches

  /** After the ReInit commit: a KeyPackage for the successor group (in its suite) and a reinit id. */
  private async startReinit(stateId: number): Promise<MlsResponses["HandleReInitCommit"]> {
    const old = this.group(stateId);
    const reinit = old.reinit;
    if (!reinit) throw failedPrecondition("the commit did not cover a ReInit proposal");
    const me = old.member(old.leafIndex);
    if (!me) throw new InteropError(grpc.status.INTERNAL, "own leaf missing");
    const { message, bundle, identity } = await this.newKeyPackage(reinit.cipherSuite, me.identity);
    const reinitId = this.allocate();
    this.reinits.set(reinitId, { old, bundle, identity });
    return { reinitId, keyPackage: message, epochAuthenticator: old.epochAuthenticator };
  }

  /** A reinitialized group or a branch keeps the old group's handshake wire format. */
  private successorGroupOptions(old: MlsGroup) {
    return this.groupOptions(old.handshakeWireFormat === "private");
  }

  /** The successor's first commit has a path only when asked for (or required), and the tree goes beside the Welcome when asked. */
  private successorOptions(r: { forcePath: boolean; externalTree: boolean }, old: MlsGroup) {
    return { path: r.forcePath, ratchetTreeInWelcome: !r.externalTree, ...this.successorGroupOptions(old) };
  }

  private successorState({ group, welcome, ratchetTree }: SuccessorGroup): MlsResponses["CreateBranch"] {
    return { ...this.newState(group), welcome, ratchetTree: ratchetTree ?? EMPTY };
  }

  private async reinitWelcome(r: MlsRequests["ReInitWelcome"]): Promise<MlsResponses["ReInitWelcome"]> {
    const pending = this.take(this.reinits, r.reinitId, "reinit");
    const successor = await pending.old.reinitGroup({
      keyPackages: r.keyPackage.map((kp) => keyPackageOf(kp)),
      identity: pending.identity,
      ...this.successorOptions(r, pending.old),
    });
    this.reinits.delete(r.reinitId);
    return this.successorState(successor);
  }

  private async handleReinitWelcome(r: MlsRequests["HandleReInitWelcome"]): Promise<MlsResponses["HandleReInitWelcome"]> {
    const pending = this.take(this.reinits, r.reinitId, "reinit");
    const group = await this.joinFromWelcome(r, pending.bundle, { resumption: pending.old, ...this.successorGroupOptions(pending.old) });
    this.reinits.delete(r.reinitId);
    return this.newState(group);
  }

  private async createBranch(r: MlsRequests["CreateBranch"]): Promise<MlsResponses["CreateBranch"]> {
    const old = this.group(r.stateId);
    const successor = await old.branch({
      keyPackages: r.keyPackages.map((kp) => keyPackageOf(kp)),
      groupId: Uint8Array.from(r.groupId),
      extensions: extensionsOf(r.extensions),
      ...this.successorOptions(r, old),
    });
    return this.successorState(successor);
  }

  private async handleBranch(r: MlsRequests["HandleBranch"]): Promise<MlsResponses["HandleBranch"]> {
    const old = this.group(r.stateId);
    const tx = this.take(this.transactions, r.transactionId, "transaction");
    const group = await this.joinFromWelcome(r, tx.bundle, { externalPsks: tx.psks, resumption: old, ...this.successorGroupOptions(old) });
    this.transactions.delete(r.transactionId);
    return this.newState(group);
  }

  // -------------------------------------------------------------------------------------------------------
  // External proposals

  private async newMemberAddProposal(r: MlsRequests["NewMemberAddProposal"]): Promise<MlsResponses["NewMemberAddProposal"]> {
    const groupInfo = groupInfoFrom(Uint8Array.from(r.groupInfo));
    const ctx = groupInfo.groupContext;
    const { bundle } = await this.newKeyPackage(ctx.cipherSuite, r.identity);
    const suite = await this.suite(ctx.cipherSuite);
    const proposal = await createNewMemberAddProposal(suite, { groupId: ctx.groupId, epoch: ctx.epoch, keyPackage: bundle });
    const transactionId = this.allocate();
    this.transactions.set(transactionId, { bundle, psks: [] });
    return { transactionId, proposal, initPriv: bundle.initPrivateKey, encryptionPriv: bundle.encryptionPrivateKey, signaturePriv: bundle.signaturePrivateKey };
  }

  private async createExternalSigner(r: MlsRequests["CreateExternalSigner"]): Promise<MlsResponses["CreateExternalSigner"]> {
    const suite = await this.suite(r.cipherSuite);
    const identity = await this.identity(suite, r.identity);
    const signerId = this.allocate();
    this.signers.set(signerId, { suite, identity });
    return { signerId, externalSender: encode(encodeExternalSender, externalSenderOf(identity)) };
  }

  /** A GroupContextExtensions proposal appending the signer to external_senders (keeping the other extensions). */
  private async addExternalSigner(r: MlsRequests["AddExternalSigner"]): Promise<MlsResponses["AddExternalSigner"]> {
    const g = this.group(r.stateId);
    const sender = decode(decodeExternalSender, Uint8Array.from(r.externalSender));
    const current = g.groupContext.extensions;
    const senders: ExternalSender[] = findExtension(current, ExtensionType.externalSenders, decodeExternalSenders) ?? [];
    const others = current.filter((e) => e.extensionType !== ExtensionType.externalSenders);
    return this.proposal(g.proposeGroupContextExtensions([...others, externalSendersExtension([...senders, sender])]));
  }

  private async externalSignerProposal(r: MlsRequests["ExternalSignerProposal"]): Promise<MlsResponses["ExternalSignerProposal"]> {
    const signer = this.take(this.signers, r.signerId, "external signer");
    const groupInfo = groupInfoFrom(Uint8Array.from(r.groupInfo));
    const ctx = groupInfo.groupContext;
    if (ctx.cipherSuite !== signer.suite.id) throw invalid(`the signer is for suite ${signer.suite.id}, the group uses ${ctx.cipherSuite}`);
    // The runner does not know the signer's position in external_senders: find it by key, else trust the index.
    const senders = findExtension(ctx.extensions, ExtensionType.externalSenders, decodeExternalSenders) ?? [];
    const byKey = senders.findIndex((s) => bytesEqual(s.signatureKey, signer.identity.signaturePublicKey));
    const senderIndex = byKey >= 0 ? byKey : r.signerIndex;
    if (senderIndex >= senders.length) throw failedPrecondition("the signer is not among the group's external senders");

    const d = r.description;
    const type = text(d.proposalType);
    const suite = signer.suite;
    let proposal: Proposal;
    switch (type) {
      case "add":
        proposal = { proposalType: ProposalType.add, add: { keyPackage: keyPackageOf(d.keyPackage) } };
        break;
      case "remove": {
        const tree: RatchetTree | undefined = r.ratchetTree.length > 0 ? treeFrom(Uint8Array.from(r.ratchetTree)) : ratchetTreeOf(groupInfo);
        if (!tree) throw invalid("a remove needs the ratchet tree (none given, none in the GroupInfo)");
        proposal = { proposalType: ProposalType.remove, remove: { removed: leafOfIdentity(tree.leaves(), d.removedId) } };
        break;
      }
      case "externalPSK":
        proposal = { proposalType: ProposalType.psk, psk: { psk: { psktype: PSKType.external, pskId: Uint8Array.from(d.pskId), pskNonce: suite.randomBytes(suite.params.Nh) } } };
        break;
      case "resumptionPSK":
        proposal = {
          proposalType: ProposalType.psk,
          psk: {
            psk: { psktype: PSKType.resumption, usage: ResumptionPSKUsage.application, pskGroupId: ctx.groupId, pskEpoch: epochOf(d.epochId), pskNonce: suite.randomBytes(suite.params.Nh) },
          },
        };
        break;
      case "groupContextExtensions":
        proposal = { proposalType: ProposalType.groupContextExtensions, groupContextExtensions: { extensions: extensionsOf(d.extensions) } };
        break;
      case "reinit":
        proposal = {
          proposalType: ProposalType.reinit,
          reinit: { groupId: Uint8Array.from(d.groupId), version: ProtocolVersion.mls10, cipherSuite: d.cipherSuite, extensions: extensionsOf(d.extensions) },
        };
        break;
      default:
        throw invalid(`unknown proposal type "${type}"`);
    }
    const message = await createExternalProposal(suite, { groupId: ctx.groupId, epoch: ctx.epoch, senderIndex, signaturePrivateKey: signer.identity.signaturePrivateKey, proposal });
    return { proposal: message };
  }
}
