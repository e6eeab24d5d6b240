/**
 * The state of one member in one epoch (what MlsGroup swaps wholesale on every accepted change) and its
 * byte encoding for persistence. Everything here is a value: a staged commit builds a new GroupState beside
 * the current one, and the only mutable part, the epoch's SecretTree, changes solely when a message
 * authenticates (secret-tree.ts consumes a key only after its user succeeded).
 *
 * The encoding is a private format (version byte first), not an RFC structure. It holds secrets: store it
 * like a private key.
 */
import { MlsDecodeError } from "../codec/errors.js";
import { Reader, decode, type Decoder } from "../codec/reader.js";
import { Writer, type Encoder } from "../codec/writer.js";
import type { CipherSuite, KeyPair } from "../crypto/cipher-suite.js";
import type { EpochSecrets } from "./key-schedule.js";
import {
  CredentialType,
  decodeCredential,
  decodeGroupContext,
  decodeProposal,
  decodeReInit,
  decodeSender,
  encodeCredential,
  encodeGroupContext,
  encodeProposal,
  encodeReInit,
  encodeSender,
  type Credential,
  type GroupContext,
  type LeafNode,
  type Proposal,
  type ProposalRef,
  type ReInit,
  type Sender,
} from "./messages.js";
import { RatchetTree, decodeTree, encodeTree } from "./ratchet-tree.js";
import { SecretTree, type HashRatchetState, type SecretTreeLimits, type SecretTreeState } from "./secret-tree.js";
import { TreePrivateState } from "./treekem.js";
import type { LeafIndex } from "./tree-math.js";

/** A proposal received (or sent) in the current epoch, retrievable by reference from a Commit. */
export interface CachedProposal {
  readonly ref: ProposalRef;
  readonly proposal: Proposal;
  readonly sender: Sender;
  /** For an Update this client proposed: its new leaf's key pair, installed if a Commit covers the Update. */
  readonly updateKey?: KeyPair;
  /** For a proposal this client sent: the MLSMessage, to recognise it when the DS echoes it back. */
  readonly message?: Uint8Array;
}

/** The secrets an epoch keeps after its start (§9.2: encryption_secret lives on only in the secret tree). */
export type EpochKeys = Omit<EpochSecrets, "joinerSecret" | "welcomeSecret" | "encryptionSecret">;

/** What an earlier epoch keeps for late application messages (§15.3): bounded by policy.maxPastEpochs. */
export interface PastEpoch {
  readonly context: GroupContext;
  readonly senderDataSecret: Uint8Array;
  readonly secretTree: SecretTree;
  /** Signature key of each leaf in that epoch (undefined for blank leaves), to verify late senders. */
  readonly signatureKeys: readonly (Uint8Array | undefined)[];
}

export interface ResumptionPsk {
  readonly epoch: bigint;
  readonly psk: Uint8Array;
}

export interface ExternalPsk {
  readonly pskId: Uint8Array;
  readonly psk: Uint8Array;
}

export interface GroupState {
  readonly suite: CipherSuite;
  readonly context: GroupContext;
  readonly tree: RatchetTree;
  readonly privateState: TreePrivateState;
  readonly signaturePrivateKey: Uint8Array;
  readonly keys: EpochKeys;
  readonly secretTree: SecretTree;
  readonly interimTranscriptHash: Uint8Array;
  /** The confirmation tag that started this epoch: GroupInfo carries it. */
  readonly confirmationTag: Uint8Array;
  readonly proposals: readonly CachedProposal[];
  /** Oldest first. */
  readonly pastEpochs: readonly PastEpoch[];
  /** resumption_psk of earlier epochs of this group, oldest first (the current one is keys.resumptionPsk). */
  readonly resumptionPsks: readonly ResumptionPsk[];
  readonly externalPsks: readonly ExternalPsk[];
  /** Set once a Commit with a ReInit proposal started this epoch: the group is closed (§11.2). */
  readonly reinit?: ReInit;
  /** False once a Commit removed this member: the state is kept only to read late messages of that epoch. */
  readonly active: boolean;
}

/** A member as the API shows it. */
export interface Member {
  readonly leafIndex: LeafIndex;
  readonly credential: Credential;
  /** The basic credential's identity; for X.509 the end-entity certificate. */
  readonly identity: Uint8Array;
  readonly signatureKey: Uint8Array;
}

function identityOf(credential: Credential): Uint8Array {
  return credential.credentialType === CredentialType.basic ? credential.identity : (credential.certificates[0] ?? new Uint8Array(0));
}

/** LeafNodes are immutable values shared by the trees of successive epochs, and so are their Members. */
const memberObjects = new WeakMap<LeafNode, Member>();

export function memberOf(leafIndex: LeafIndex, leaf: LeafNode): Member {
  const known = memberObjects.get(leaf);
  if (known?.leafIndex === leafIndex) return known;
  const member: Member = { leafIndex, credential: leaf.credential, identity: identityOf(leaf.credential), signatureKey: leaf.signatureKey };
  memberObjects.set(leaf, member);
  return member;
}

const MEMBERS = Symbol("members");

/** The members of a tree in leaf order, computed once per tree version. */
export function membersOf(tree: RatchetTree): readonly Member[] {
  return tree.derived(MEMBERS, (t) => {
    const out: Member[] = [];
    for (const [i, leaf] of t.leaves()) out.push(memberOf(i, leaf));
    return Object.freeze(out);
  });
}

const SIGNATURE_KEYS = Symbol("signature keys");

/** The signature keys of a tree's leaves by index, kept for an epoch once it is past. */
export function signatureKeysOf(tree: RatchetTree): readonly (Uint8Array | undefined)[] {
  return tree.derived(SIGNATURE_KEYS, (t) => {
    const keys: (Uint8Array | undefined)[] = new Array(t.leafCount).fill(undefined);
    for (const [i, leaf] of t.leaves()) keys[i] = leaf.signatureKey;
    return Object.freeze(keys);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

const STATE_FORMAT = 1;

const writeOpaque: Encoder<Uint8Array> = (w, v) => void w.opaque(v);
const readOpaque: Decoder<Uint8Array> = (r) => r.opaque();

function encodeKeyPair(w: Writer, kp: KeyPair): void {
  w.opaque(kp.privateKey).opaque(kp.publicKey);
}
function decodeKeyPair(r: Reader): KeyPair {
  return { privateKey: r.opaque(), publicKey: r.opaque() };
}

const EPOCH_KEY_NAMES = [
  "senderDataSecret",
  "exporterSecret",
  "externalSecret",
  "confirmationKey",
  "membershipKey",
  "resumptionPsk",
  "epochAuthenticator",
  "initSecret",
] as const satisfies readonly (keyof EpochKeys)[];

function encodeEpochKeys(w: Writer, keys: EpochKeys): void {
  for (const name of EPOCH_KEY_NAMES) w.opaque(keys[name]);
}
function decodeEpochKeys(r: Reader): EpochKeys {
  const out: Partial<Record<keyof EpochKeys, Uint8Array>> = {};
  for (const name of EPOCH_KEY_NAMES) out[name] = r.opaque();
  return out as EpochKeys;
}

function encodeRatchetState(w: Writer, s: HashRatchetState): void {
  w.u32(s.next).optional(s.secret, writeOpaque);
  w.vector(s.retained, (w2, [g, k]) => void w2.u32(g).opaque(k.key).opaque(k.nonce));
}
function decodeRatchetState(r: Reader): HashRatchetState {
  const next = r.u32();
  const secret = r.optional(readOpaque);
  const retained = r.vector((r2) => [r2.u32(), { key: r2.opaque(), nonce: r2.opaque() }] as const);
  return { next, secret, retained };
}

function encodeSecretTree(w: Writer, tree: SecretTree): void {
  const s = tree.exportState();
  w.u32(s.leafCount);
  w.vector(s.nodes, (w2, [x, secret]) => void w2.u32(x).opaque(secret));
  w.vector(s.ratchets, (w2, rt) => {
    w2.u32(rt.leaf);
    encodeRatchetState(w2, rt.handshake);
    encodeRatchetState(w2, rt.application);
  });
}
function decodeSecretTreeState(r: Reader): SecretTreeState {
  const leafCount = r.u32();
  const nodes = r.vector((r2) => [r2.u32(), r2.opaque()] as const);
  const ratchets = r.vector((r2) => ({ leaf: r2.u32(), handshake: decodeRatchetState(r2), application: decodeRatchetState(r2) }));
  if (leafCount < 1 || leafCount > 0x40000000) throw new MlsDecodeError("invalid-value", `secret tree of ${leafCount} leaves`);
  return { leafCount, nodes, ratchets };
}

function encodePrivateState(w: Writer, tree: RatchetTree, ps: TreePrivateState): void {
  w.u32(ps.leafIndex);
  const entries: [number, Uint8Array, Uint8Array][] = [];
  for (const x of ps.nodes) {
    const priv = ps.privateKey(tree, x);
    if (priv) entries.push([x, priv, tree.encryptionKey(x)!]);
  }
  w.vector(entries, (w2, [x, priv, pub]) => void w2.u32(x).opaque(priv).opaque(pub));
}
function decodePrivateState(r: Reader): TreePrivateState {
  const leafIndex = r.u32();
  const entries = r.vector((r2) => ({ node: r2.u32(), keyPair: { privateKey: r2.opaque(), publicKey: r2.opaque() } }));
  const leafEntry = entries.find((e) => e.node === leafIndex * 2);
  if (!leafEntry) throw new MlsDecodeError("invalid-value", "group state lacks the private key of its own leaf");
  let ps = TreePrivateState.forLeaf(leafIndex, leafEntry.keyPair);
  for (const e of entries) if (e !== leafEntry) ps = ps.withNodeKey(e.node, e.keyPair);
  return ps;
}

export function encodeCachedProposal(w: Writer, p: CachedProposal): void {
  w.opaque(p.ref);
  encodeProposal(w, p.proposal);
  encodeSender(w, p.sender);
  w.optional(p.updateKey, encodeKeyPair);
  w.optional(p.message, writeOpaque);
}
export function decodeCachedProposal(r: Reader): CachedProposal {
  const ref = r.opaque();
  const proposal = decodeProposal(r);
  const sender = decodeSender(r);
  const updateKey = r.optional(decodeKeyPair);
  const message = r.optional(readOpaque);
  return { ref, proposal, sender, ...(updateKey ? { updateKey } : {}), ...(message ? { message } : {}) };
}

interface EncodedPastEpoch {
  readonly context: GroupContext;
  readonly senderDataSecret: Uint8Array;
  readonly secretTree: SecretTreeState;
  readonly signatureKeys: (Uint8Array | undefined)[];
}

/** A GroupState in bytes; decodeGroupState reverses it. */
export function encodeGroupState(state: GroupState): Uint8Array {
  const w = new Writer(4096);
  w.u8(STATE_FORMAT).u16(state.suite.id);
  encodeGroupContext(w, state.context);
  encodeTree(w, state.tree);
  encodePrivateState(w, state.tree, state.privateState);
  w.opaque(state.signaturePrivateKey);
  encodeEpochKeys(w, state.keys);
  encodeSecretTree(w, state.secretTree);
  w.opaque(state.interimTranscriptHash).opaque(state.confirmationTag);
  w.vector(state.proposals, encodeCachedProposal);
  w.vector(state.pastEpochs, (w2, p) => {
    encodeGroupContext(w2, p.context);
    w2.opaque(p.senderDataSecret);
    encodeSecretTree(w2, p.secretTree);
    w2.vector(p.signatureKeys, (w3, k) => void w3.optional(k, writeOpaque));
  });
  w.vector(state.resumptionPsks, (w2, p) => void w2.u64(p.epoch).opaque(p.psk));
  w.vector(state.externalPsks, (w2, p) => void w2.opaque(p.pskId).opaque(p.psk));
  w.optional(state.reinit, encodeReInit);
  w.u8(state.active ? 1 : 0);
  return w.finish();
}

/** The parts of an encoded state that need no CipherSuite; the suite is looked up from `suiteId`. */
interface DecodedState extends Omit<GroupState, "suite" | "secretTree" | "pastEpochs"> {
  readonly suiteId: number;
  readonly secretTree: SecretTreeState;
  readonly pastEpochs: EncodedPastEpoch[];
}

const decodeStateBody: Decoder<DecodedState> = (r) => {
  const format = r.u8();
  if (format !== STATE_FORMAT) throw new MlsDecodeError("unknown-value", `group state format ${format}`);
  const suiteId = r.u16();
  const context = decodeGroupContext(r);
  const tree = decodeTree(r);
  const privateState = decodePrivateState(r);
  const signaturePrivateKey = r.opaque();
  const keys = decodeEpochKeys(r);
  const secretTree = decodeSecretTreeState(r);
  const interimTranscriptHash = r.opaque();
  const confirmationTag = r.opaque();
  const proposals = r.vector(decodeCachedProposal);
  const pastEpochs = r.vector((r2) => ({
    context: decodeGroupContext(r2),
    senderDataSecret: r2.opaque(),
    secretTree: decodeSecretTreeState(r2),
    signatureKeys: r2.vector((r3) => r3.optional(readOpaque)),
  }));
  const resumptionPsks = r.vector((r2) => ({ epoch: r2.u64(), psk: r2.opaque() }));
  const externalPsks = r.vector((r2) => ({ pskId: r2.opaque(), psk: r2.opaque() }));
  const reinit = r.optional(decodeReInit);
  const active = r.u8();
  if (active > 1) throw new MlsDecodeError("invalid-value", "group state active flag");
  return {
    suiteId,
    context,
    tree,
    privateState,
    signaturePrivateKey,
    keys,
    secretTree,
    interimTranscriptHash,
    confirmationTag,
    proposals,
    pastEpochs,
    resumptionPsks,
    externalPsks,
    ...(reinit ? { reinit } : {}),
    active: active === 1,
  };
};

/**
 * Bytes -> GroupState. `suiteFor` supplies the CipherSuite of the encoded suite id (the provider is the
 * caller's choice, not part of the state). Malformed bytes are MlsDecodeError; a state whose private keys
 * do not match its tree is refused too (MlsValidationError from TreePrivateState.verifyAgainst).
 */
export async function decodeGroupState(
  bytes: Uint8Array,
  suiteFor: (id: number) => Promise<CipherSuite>,
  limits: Partial<SecretTreeLimits> = {},
): Promise<GroupState> {
  const d = decode(decodeStateBody, bytes);
  const suite = await suiteFor(d.suiteId);
  if (d.context.cipherSuite !== suite.id) throw new MlsDecodeError("invalid-value", "group state suite differs from its GroupContext's");
  d.privateState.verifyAgainst(d.tree);
  const { suiteId: _suiteId, ...rest } = d;
  return {
    ...rest,
    suite,
    secretTree: SecretTree.fromState(suite, d.secretTree, limits),
    pastEpochs: d.pastEpochs.map((p) => ({ ...p, secretTree: SecretTree.fromState(suite, p.secretTree, limits) })),
  };
}

/** Encoder for a bare Member list (pending-commit summaries). */
export const encodeMember: Encoder<Member> = (w, m) => {
  w.u32(m.leafIndex);
  encodeCredential(w, m.credential);
  w.opaque(m.signatureKey);
};
export const decodeMember: Decoder<Member> = (r) => {
  const leafIndex = r.u32();
  const credential = decodeCredential(r);
  return { leafIndex, credential, identity: identityOf(credential), signatureKey: r.opaque() };
};
