/**
 * RFC 9420 wire structures with their encoders and decoders. Decoders are total: malformed bytes give an
 * MlsDecodeError. An enum that selects what follows (sender type, content type, wire format, ...) is
 * rejected when unknown, because the bytes after it cannot be read; values the RFC keeps extensible
 * (extension types, capability lists, cipher suites, versions inside capabilities) are carried as numbers
 * and left to the validating layer.
 */
import { MlsDecodeError } from "../codec/errors.js";
import { Reader, decode, type Decoder } from "../codec/reader.js";
import { Writer, encode, type Encoder } from "../codec/writer.js";
import type { CipherSuite, HpkeCiphertext } from "../crypto/cipher-suite.js";

// ---------------------------------------------------------------------------------------------------------
// Enumerations (§6, §7, §12, §17 registries). Numeric, so unknown values of extensible ones fit in `number`.

type ValueOf<T> = T[keyof T];

export const ProtocolVersion = { mls10: 1 } as const;
export type ProtocolVersion = number;

/** Wire value of a cipher suite (uint16); suites 1-7 are in keying/crypto/suites.ts. */
export type CipherSuiteValue = number;

export const ContentType = { application: 1, proposal: 2, commit: 3 } as const;
export type ContentType = ValueOf<typeof ContentType>;

export const SenderType = { member: 1, external: 2, newMemberProposal: 3, newMemberCommit: 4 } as const;
export type SenderType = ValueOf<typeof SenderType>;

export const WireFormat = {
  mlsPublicMessage: 1,
  mlsPrivateMessage: 2,
  mlsWelcome: 3,
  mlsGroupInfo: 4,
  mlsKeyPackage: 5,
} as const;
export type WireFormat = ValueOf<typeof WireFormat>;

export const LeafNodeSource = { keyPackage: 1, update: 2, commit: 3 } as const;
export type LeafNodeSource = ValueOf<typeof LeafNodeSource>;

export const NodeType = { leaf: 1, parent: 2 } as const;
export type NodeType = ValueOf<typeof NodeType>;

export const CredentialType = { basic: 1, x509: 2 } as const;
export type CredentialType = ValueOf<typeof CredentialType>;

/** RFC 9420 §17.3; `lastResort` is draft-ietf-mls-extensions' last_resort KeyPackage marker (0x000a, empty). */
export const ExtensionType = {
  applicationId: 1,
  ratchetTree: 2,
  requiredCapabilities: 3,
  externalPub: 4,
  externalSenders: 5,
  lastResort: 0x000a,
} as const;
/** Any uint16: unknown (and GREASE) extension types are carried with their opaque data. */
export type ExtensionType = number;

/** RFC 9420 §17.4; `selfRemove` is draft-ietf-mls-extensions' SelfRemove (0x000a, empty body). */
export const ProposalType = {
  add: 1,
  update: 2,
  remove: 3,
  psk: 4,
  reinit: 5,
  externalInit: 6,
  groupContextExtensions: 7,
  selfRemove: 0x000a,
} as const;
export type ProposalType = ValueOf<typeof ProposalType>;

export const PSKType = { external: 1, resumption: 2 } as const;
export type PSKType = ValueOf<typeof PSKType>;

export const ResumptionPSKUsage = { application: 1, reinit: 2, branch: 3 } as const;
export type ResumptionPSKUsage = ValueOf<typeof ResumptionPSKUsage>;

export const ProposalOrRefType = { proposal: 1, reference: 2 } as const;
export type ProposalOrRefType = ValueOf<typeof ProposalOrRefType>;

function knownValue<T extends number>(table: Record<string, T>, what: string, at: number, v: number): T {
  for (const k in table) if (table[k] === v) return v as T;
  throw new MlsDecodeError("unknown-value", `${what} ${v}`, at);
}

function readEnum8<T extends number>(r: Reader, table: Record<string, T>, what: string): T {
  const at = r.offset;
  return knownValue(table, what, at, r.u8());
}

function readEnum16<T extends number>(r: Reader, table: Record<string, T>, what: string): T {
  const at = r.offset;
  return knownValue(table, what, at, r.u16());
}

function unreachable(what: string, v: never): never {
  throw new TypeError(`cannot encode ${what} ${String(v)}`);
}

const readOpaque: Decoder<Uint8Array> = (r) => r.opaque();
const writeOpaque: Encoder<Uint8Array> = (w, v) => void w.opaque(v);
const readU16: Decoder<number> = (r) => r.u16();
const writeU16: Encoder<number> = (w, v) => void w.u16(v);
const readU32: Decoder<number> = (r) => r.u32();
const writeU32: Encoder<number> = (w, v) => void w.u32(v);

// ---------------------------------------------------------------------------------------------------------
// Basic types (§5, §7)

export type HPKEPublicKey = Uint8Array;
export type SignaturePublicKey = Uint8Array;
export type KeyPackageRef = Uint8Array;
export type ProposalRef = Uint8Array;

export type HPKECiphertext = HpkeCiphertext;

export const encodeHPKECiphertext: Encoder<HPKECiphertext> = (w, v) => {
  w.opaque(v.kemOutput).opaque(v.ciphertext);
};
export const decodeHPKECiphertext: Decoder<HPKECiphertext> = (r) => ({ kemOutput: r.opaque(), ciphertext: r.opaque() });

// ---------------------------------------------------------------------------------------------------------
// Extensions (§13) and their typed payloads

export interface Extension {
  extensionType: ExtensionType;
  extensionData: Uint8Array;
}

export const encodeExtension: Encoder<Extension> = (w, v) => {
  w.u16(v.extensionType).opaque(v.extensionData);
};
export const decodeExtension: Decoder<Extension> = (r) => ({ extensionType: r.u16(), extensionData: r.opaque() });

const encodeExtensions: Encoder<readonly Extension[]> = (w, v) => void w.vector(v, encodeExtension);
const decodeExtensions: Decoder<Extension[]> = (r) => r.vector(decodeExtension);

/** Wraps a typed payload as an Extension. */
export function makeExtension<T>(extensionType: ExtensionType, enc: Encoder<T>, value: T): Extension {
  return { extensionType, extensionData: encode(enc, value) };
}

/** The decoded payload of the first extension of this type, or undefined when absent. */
export function findExtension<T>(extensions: readonly Extension[], extensionType: ExtensionType, dec: Decoder<T>): T | undefined {
  const ext = extensions.find((e) => e.extensionType === extensionType);
  return ext && decode(dec, ext.extensionData);
}

/** application_id: `opaque application_id<V>` */
export const encodeApplicationId: Encoder<Uint8Array> = writeOpaque;
export const decodeApplicationId: Decoder<Uint8Array> = readOpaque;

export interface RequiredCapabilities {
  extensionTypes: ExtensionType[];
  proposalTypes: number[];
  credentialTypes: number[];
}
export const encodeRequiredCapabilities: Encoder<RequiredCapabilities> = (w, v) => {
  w.vector(v.extensionTypes, writeU16).vector(v.proposalTypes, writeU16).vector(v.credentialTypes, writeU16);
};
export const decodeRequiredCapabilities: Decoder<RequiredCapabilities> = (r) => ({
  extensionTypes: r.vector(readU16),
  proposalTypes: r.vector(readU16),
  credentialTypes: r.vector(readU16),
});

export interface ExternalPub {
  externalPub: HPKEPublicKey;
}
export const encodeExternalPub: Encoder<ExternalPub> = (w, v) => void w.opaque(v.externalPub);
export const decodeExternalPub: Decoder<ExternalPub> = (r) => ({ externalPub: r.opaque() });

export interface ExternalSender {
  signatureKey: SignaturePublicKey;
  credential: Credential;
}
export const encodeExternalSender: Encoder<ExternalSender> = (w, v) => {
  w.opaque(v.signatureKey);
  encodeCredential(w, v.credential);
};
export const decodeExternalSender: Decoder<ExternalSender> = (r) => ({ signatureKey: r.opaque(), credential: decodeCredential(r) });

/** external_senders: `ExternalSender external_senders<V>` */
export const encodeExternalSenders: Encoder<readonly ExternalSender[]> = (w, v) => void w.vector(v, encodeExternalSender);
export const decodeExternalSenders: Decoder<ExternalSender[]> = (r) => r.vector(decodeExternalSender);

/** last_resort: an empty payload. */
export const encodeLastResort: Encoder<Record<string, never>> = () => {};
export const decodeLastResort: Decoder<Record<string, never>> = () => ({});

// ---------------------------------------------------------------------------------------------------------
// Credentials (§5.3)

export type Credential =
  | { credentialType: typeof CredentialType.basic; identity: Uint8Array }
  /** DER certificates, end-entity first, carried as opaque bytes. */
  | { credentialType: typeof CredentialType.x509; certificates: Uint8Array[] };

export const encodeCredential: Encoder<Credential> = (w, v) => {
  w.u16(v.credentialType);
  switch (v.credentialType) {
    case CredentialType.basic:
      w.opaque(v.identity);
      return;
    case CredentialType.x509:
      w.vector(v.certificates, writeOpaque);
      return;
    default:
      unreachable("credential type", v);
  }
};

/**
 * A credential type outside basic/x509 is refused: its body has no length of its own, GREASE values are
 * forbidden here (§13.5), and every member must support a member's credential type anyway.
 */
export const decodeCredential: Decoder<Credential> = (r) => {
  const credentialType = readEnum16(r, CredentialType, "credential type");
  switch (credentialType) {
    case CredentialType.basic:
      return { credentialType, identity: r.opaque() };
    case CredentialType.x509:
      return { credentialType, certificates: r.vector(readOpaque) };
  }
};

// ---------------------------------------------------------------------------------------------------------
// Leaf and parent nodes (§7)

export interface Capabilities {
  versions: ProtocolVersion[];
  cipherSuites: CipherSuiteValue[];
  extensions: ExtensionType[];
  proposals: number[];
  credentials: number[];
}
export const encodeCapabilities: Encoder<Capabilities> = (w, v) => {
  w.vector(v.versions, writeU16)
    .vector(v.cipherSuites, writeU16)
    .vector(v.extensions, writeU16)
    .vector(v.proposals, writeU16)
    .vector(v.credentials, writeU16);
};
/**
 * Decoded Capabilities, shared (frozen) between every LeafNode that lists the same ones: the members of a call
 * nearly all run one client, and a 1000-member tree otherwise holds 1000 copies of five arrays.
 */
const knownCapabilities = new Map<string, Capabilities>();
const MAX_KNOWN_CAPABILITIES = 256;

export const decodeCapabilities: Decoder<Capabilities> = (r) => {
  const lists = [r.vector(readU16), r.vector(readU16), r.vector(readU16), r.vector(readU16), r.vector(readU16)] as const;
  const key = lists.map((l) => l.join(",")).join("|");
  let known = knownCapabilities.get(key);
  if (!known) {
    if (knownCapabilities.size >= MAX_KNOWN_CAPABILITIES) knownCapabilities.clear();
    const [versions, cipherSuites, extensions, proposals, credentials] = lists.map((l) => Object.freeze(l));
    known = Object.freeze({ versions, cipherSuites, extensions, proposals, credentials }) as Capabilities;
    knownCapabilities.set(key, known);
  }
  return known;
};

export interface Lifetime {
  notBefore: bigint;
  notAfter: bigint;
}
export const encodeLifetime: Encoder<Lifetime> = (w, v) => void w.u64(v.notBefore).u64(v.notAfter);
export const decodeLifetime: Decoder<Lifetime> = (r) => ({ notBefore: r.u64(), notAfter: r.u64() });

/** The `leaf_node_source` select of LeafNode and LeafNodeTBS. */
export type LeafNodeSourceData =
  | { leafNodeSource: typeof LeafNodeSource.keyPackage; lifetime: Lifetime }
  | { leafNodeSource: typeof LeafNodeSource.update }
  | { leafNodeSource: typeof LeafNodeSource.commit; parentHash: Uint8Array };

/** A LeafNode without its signature: what LeafNodeTBS covers. */
export type LeafNodeContent = {
  encryptionKey: HPKEPublicKey;
  signatureKey: SignaturePublicKey;
  credential: Credential;
  capabilities: Capabilities;
  extensions: Extension[];
} & LeafNodeSourceData;

export type LeafNode = LeafNodeContent & { signature: Uint8Array };

function encodeLeafNodeContent(w: Writer, v: LeafNodeContent): void {
  w.opaque(v.encryptionKey).opaque(v.signatureKey);
  encodeCredential(w, v.credential);
  encodeCapabilities(w, v.capabilities);
  w.u8(v.leafNodeSource);
  switch (v.leafNodeSource) {
    case LeafNodeSource.keyPackage:
      encodeLifetime(w, v.lifetime);
      break;
    case LeafNodeSource.update:
      break;
    case LeafNodeSource.commit:
      w.opaque(v.parentHash);
      break;
    default:
      unreachable("leaf node source", v);
  }
  encodeExtensions(w, v.extensions);
}

function decodeLeafNodeContent(r: Reader): LeafNodeContent {
  const encryptionKey = r.opaque();
  const signatureKey = r.opaque();
  const credential = decodeCredential(r);
  const capabilities = decodeCapabilities(r);
  const leafNodeSource = readEnum8(r, LeafNodeSource, "leaf node source");
  let source: LeafNodeSourceData;
  switch (leafNodeSource) {
    case LeafNodeSource.keyPackage:
      source = { leafNodeSource, lifetime: decodeLifetime(r) };
      break;
    case LeafNodeSource.update:
      source = { leafNodeSource };
      break;
    case LeafNodeSource.commit:
      source = { leafNodeSource, parentHash: r.opaque() };
      break;
  }
  return { encryptionKey, signatureKey, credential, capabilities, ...source, extensions: decodeExtensions(r) };
}

export const encodeLeafNode: Encoder<LeafNode> = (w, v) => {
  encodeLeafNodeContent(w, v);
  w.opaque(v.signature);
};
export const decodeLeafNode: Decoder<LeafNode> = (r) => {
  const content = decodeLeafNodeContent(r);
  return { ...content, signature: r.opaque() };
};

/**
 * LeafNodeTBS (§7.2): the leaf's content, plus group_id and leaf_index when the source is update or
 * commit (they bind the leaf to its position in one group); absent for key_package.
 */
export interface LeafNodeTBS {
  leafNode: LeafNodeContent;
  groupId?: Uint8Array;
  leafIndex?: number;
}
export const encodeLeafNodeTBS: Encoder<LeafNodeTBS> = (w, v) => {
  encodeLeafNodeContent(w, v.leafNode);
  if (v.leafNode.leafNodeSource === LeafNodeSource.keyPackage) return;
  if (v.groupId === undefined || v.leafIndex === undefined) throw new TypeError("LeafNodeTBS for update/commit needs groupId and leafIndex");
  w.opaque(v.groupId).u32(v.leafIndex);
};
export const decodeLeafNodeTBS: Decoder<LeafNodeTBS> = (r) => {
  const leafNode = decodeLeafNodeContent(r);
  if (leafNode.leafNodeSource === LeafNodeSource.keyPackage) return { leafNode };
  return { leafNode, groupId: r.opaque(), leafIndex: r.u32() };
};

export interface ParentNode {
  encryptionKey: HPKEPublicKey;
  parentHash: Uint8Array;
  unmergedLeaves: number[];
}
export const encodeParentNode: Encoder<ParentNode> = (w, v) => {
  w.opaque(v.encryptionKey).opaque(v.parentHash).vector(v.unmergedLeaves, writeU32);
};
export const decodeParentNode: Decoder<ParentNode> = (r) => ({
  encryptionKey: r.opaque(),
  parentHash: r.opaque(),
  unmergedLeaves: r.vector(readU32),
});

export type Node =
  | { nodeType: typeof NodeType.leaf; leafNode: LeafNode }
  | { nodeType: typeof NodeType.parent; parentNode: ParentNode };

export const encodeNode: Encoder<Node> = (w, v) => {
  w.u8(v.nodeType);
  switch (v.nodeType) {
    case NodeType.leaf:
      encodeLeafNode(w, v.leafNode);
      return;
    case NodeType.parent:
      encodeParentNode(w, v.parentNode);
      return;
    default:
      unreachable("node type", v);
  }
};
export const decodeNode: Decoder<Node> = (r) => {
  const nodeType = readEnum8(r, NodeType, "node type");
  switch (nodeType) {
    case NodeType.leaf:
      return { nodeType, leafNode: decodeLeafNode(r) };
    case NodeType.parent:
      return { nodeType, parentNode: decodeParentNode(r) };
  }
};

/**
 * The ratchet_tree extension payload, `optional<Node> ratchet_tree<V>`: the wire node list, blank nodes
 * undefined. The in-memory tree built from it is ratchet-tree.ts's RatchetTree.
 */
export type RatchetTreeNodes = (Node | undefined)[];
const encodeOptionalNode: Encoder<Node | undefined> = (w, v) => void w.optional(v, encodeNode);
const decodeOptionalNode: Decoder<Node | undefined> = (r) => r.optional(decodeNode);
export const encodeRatchetTree: Encoder<RatchetTreeNodes> = (w, v) => void w.vector(v, encodeOptionalNode);
export const decodeRatchetTree: Decoder<RatchetTreeNodes> = (r) => r.vector(decodeOptionalNode);

// ---------------------------------------------------------------------------------------------------------
// UpdatePath (§7.6)

export interface UpdatePathNode {
  encryptionKey: HPKEPublicKey;
  encryptedPathSecret: HPKECiphertext[];
}
export const encodeUpdatePathNode: Encoder<UpdatePathNode> = (w, v) => {
  w.opaque(v.encryptionKey).vector(v.encryptedPathSecret, encodeHPKECiphertext);
};
export const decodeUpdatePathNode: Decoder<UpdatePathNode> = (r) => ({
  encryptionKey: r.opaque(),
  encryptedPathSecret: r.vector(decodeHPKECiphertext),
});

export interface UpdatePath {
  leafNode: LeafNode;
  nodes: UpdatePathNode[];
}
export const encodeUpdatePath: Encoder<UpdatePath> = (w, v) => {
  encodeLeafNode(w, v.leafNode);
  w.vector(v.nodes, encodeUpdatePathNode);
};
export const decodeUpdatePath: Decoder<UpdatePath> = (r) => ({ leafNode: decodeLeafNode(r), nodes: r.vector(decodeUpdatePathNode) });

// ---------------------------------------------------------------------------------------------------------
// KeyPackage (§10)

export interface KeyPackageTBS {
  version: ProtocolVersion;
  cipherSuite: CipherSuiteValue;
  initKey: HPKEPublicKey;
  leafNode: LeafNode;
  extensions: Extension[];
}
export interface KeyPackage extends KeyPackageTBS {
  signature: Uint8Array;
}
export const encodeKeyPackageTBS: Encoder<KeyPackageTBS> = (w, v) => {
  w.u16(v.version).u16(v.cipherSuite).opaque(v.initKey);
  encodeLeafNode(w, v.leafNode);
  encodeExtensions(w, v.extensions);
};
export const decodeKeyPackageTBS: Decoder<KeyPackageTBS> = (r) => ({
  version: r.u16(),
  cipherSuite: r.u16(),
  initKey: r.opaque(),
  leafNode: decodeLeafNode(r),
  extensions: decodeExtensions(r),
});
export const encodeKeyPackage: Encoder<KeyPackage> = (w, v) => {
  encodeKeyPackageTBS(w, v);
  w.opaque(v.signature);
};
export const decodeKeyPackage: Decoder<KeyPackage> = (r) => {
  const tbs = decodeKeyPackageTBS(r);
  return { ...tbs, signature: r.opaque() };
};

// ---------------------------------------------------------------------------------------------------------
// Proposals (§12.1)

export interface Add {
  keyPackage: KeyPackage;
}
export const encodeAdd: Encoder<Add> = (w, v) => encodeKeyPackage(w, v.keyPackage);
export const decodeAdd: Decoder<Add> = (r) => ({ keyPackage: decodeKeyPackage(r) });

export interface Update {
  leafNode: LeafNode;
}
export const encodeUpdate: Encoder<Update> = (w, v) => encodeLeafNode(w, v.leafNode);
export const decodeUpdate: Decoder<Update> = (r) => ({ leafNode: decodeLeafNode(r) });

export interface Remove {
  removed: number;
}
export const encodeRemove: Encoder<Remove> = (w, v) => void w.u32(v.removed);
export const decodeRemove: Decoder<Remove> = (r) => ({ removed: r.u32() });

export type PreSharedKeyID = (
  | { psktype: typeof PSKType.external; pskId: Uint8Array }
  | { psktype: typeof PSKType.resumption; usage: ResumptionPSKUsage; pskGroupId: Uint8Array; pskEpoch: bigint }
) & { pskNonce: Uint8Array };

export const encodePreSharedKeyID: Encoder<PreSharedKeyID> = (w, v) => {
  w.u8(v.psktype);
  switch (v.psktype) {
    case PSKType.external:
      w.opaque(v.pskId);
      break;
    case PSKType.resumption:
      w.u8(v.usage).opaque(v.pskGroupId).u64(v.pskEpoch);
      break;
    default:
      unreachable("psk type", v);
  }
  w.opaque(v.pskNonce);
};
export const decodePreSharedKeyID: Decoder<PreSharedKeyID> = (r) => {
  const psktype = readEnum8(r, PSKType, "psk type");
  switch (psktype) {
    case PSKType.external: {
      const pskId = r.opaque();
      return { psktype, pskId, pskNonce: r.opaque() };
    }
    case PSKType.resumption: {
      const usage = readEnum8(r, ResumptionPSKUsage, "resumption psk usage");
      const pskGroupId = r.opaque();
      const pskEpoch = r.u64();
      return { psktype, usage, pskGroupId, pskEpoch, pskNonce: r.opaque() };
    }
  }
};

export interface PreSharedKey {
  psk: PreSharedKeyID;
}
export const encodePreSharedKey: Encoder<PreSharedKey> = (w, v) => encodePreSharedKeyID(w, v.psk);
export const decodePreSharedKey: Decoder<PreSharedKey> = (r) => ({ psk: decodePreSharedKeyID(r) });

export interface ReInit {
  groupId: Uint8Array;
  version: ProtocolVersion;
  cipherSuite: CipherSuiteValue;
  extensions: Extension[];
}
export const encodeReInit: Encoder<ReInit> = (w, v) => {
  w.opaque(v.groupId).u16(v.version).u16(v.cipherSuite);
  encodeExtensions(w, v.extensions);
};
export const decodeReInit: Decoder<ReInit> = (r) => ({
  groupId: r.opaque(),
  version: r.u16(),
  cipherSuite: r.u16(),
  extensions: decodeExtensions(r),
});

export interface ExternalInit {
  kemOutput: Uint8Array;
}
export const encodeExternalInit: Encoder<ExternalInit> = (w, v) => void w.opaque(v.kemOutput);
export const decodeExternalInit: Decoder<ExternalInit> = (r) => ({ kemOutput: r.opaque() });

export interface GroupContextExtensions {
  extensions: Extension[];
}
export const encodeGroupContextExtensions: Encoder<GroupContextExtensions> = (w, v) => encodeExtensions(w, v.extensions);
export const decodeGroupContextExtensions: Decoder<GroupContextExtensions> = (r) => ({ extensions: decodeExtensions(r) });

/**
 * Proposal types without a case here are refused when decoding: a Proposal body carries no length, so an
 * unknown one cannot be skipped, and GREASE values are forbidden in proposal_type (§13.5).
 */
export type Proposal =
  | { proposalType: typeof ProposalType.add; add: Add }
  | { proposalType: typeof ProposalType.update; update: Update }
  | { proposalType: typeof ProposalType.remove; remove: Remove }
  | { proposalType: typeof ProposalType.psk; psk: PreSharedKey }
  | { proposalType: typeof ProposalType.reinit; reinit: ReInit }
  | { proposalType: typeof ProposalType.externalInit; externalInit: ExternalInit }
  | { proposalType: typeof ProposalType.groupContextExtensions; groupContextExtensions: GroupContextExtensions }
  | { proposalType: typeof ProposalType.selfRemove };

export const encodeProposal: Encoder<Proposal> = (w, v) => {
  w.u16(v.proposalType);
  switch (v.proposalType) {
    case ProposalType.add:
      return encodeAdd(w, v.add);
    case ProposalType.update:
      return encodeUpdate(w, v.update);
    case ProposalType.remove:
      return encodeRemove(w, v.remove);
    case ProposalType.psk:
      return encodePreSharedKey(w, v.psk);
    case ProposalType.reinit:
      return encodeReInit(w, v.reinit);
    case ProposalType.externalInit:
      return encodeExternalInit(w, v.externalInit);
    case ProposalType.groupContextExtensions:
      return encodeGroupContextExtensions(w, v.groupContextExtensions);
    case ProposalType.selfRemove:
      return;
    default:
      unreachable("proposal type", v);
  }
};
export const decodeProposal: Decoder<Proposal> = (r) => {
  const proposalType = readEnum16(r, ProposalType, "proposal type");
  switch (proposalType) {
    case ProposalType.add:
      return { proposalType, add: decodeAdd(r) };
    case ProposalType.update:
      return { proposalType, update: decodeUpdate(r) };
    case ProposalType.remove:
      return { proposalType, remove: decodeRemove(r) };
    case ProposalType.psk:
      return { proposalType, psk: decodePreSharedKey(r) };
    case ProposalType.reinit:
      return { proposalType, reinit: decodeReInit(r) };
    case ProposalType.externalInit:
      return { proposalType, externalInit: decodeExternalInit(r) };
    case ProposalType.groupContextExtensions:
      return { proposalType, groupContextExtensions: decodeGroupContextExtensions(r) };
    case ProposalType.selfRemove:
      return { proposalType };
  }
};

export type ProposalOrRef =
  | { type: typeof ProposalOrRefType.proposal; proposal: Proposal }
  | { type: typeof ProposalOrRefType.reference; reference: ProposalRef };

export const encodeProposalOrRef: Encoder<ProposalOrRef> = (w, v) => {
  w.u8(v.type);
  switch (v.type) {
    case ProposalOrRefType.proposal:
      return encodeProposal(w, v.proposal);
    case ProposalOrRefType.reference:
      w.opaque(v.reference);
      return;
    default:
      unreachable("proposal-or-ref type", v);
  }
};
export const decodeProposalOrRef: Decoder<ProposalOrRef> = (r) => {
  const type = readEnum8(r, ProposalOrRefType, "proposal-or-ref type");
  switch (type) {
    case ProposalOrRefType.proposal:
      return { type, proposal: decodeProposal(r) };
    case ProposalOrRefType.reference:
      return { type, reference: r.opaque() };
  }
};

export interface Commit {
  proposals: ProposalOrRef[];
  path?: UpdatePath;
}
export const encodeCommit: Encoder<Commit> = (w, v) => {
  w.vector(v.proposals, encodeProposalOrRef).optional(v.path, encodeUpdatePath);
};
export const decodeCommit: Decoder<Commit> = (r) => {
  const proposals = r.vector(decodeProposalOrRef);
  const path = r.optional(decodeUpdatePath);
  return path === undefined ? { proposals } : { proposals, path };
};

// ---------------------------------------------------------------------------------------------------------
// Group context, GroupInfo, Welcome (§8.1, §12.4.3)

export interface GroupContext {
  version: ProtocolVersion;
  cipherSuite: CipherSuiteValue;
  groupId: Uint8Array;
  epoch: bigint;
  treeHash: Uint8Array;
  confirmedTranscriptHash: Uint8Array;
  extensions: Extension[];
}
export const encodeGroupContext: Encoder<GroupContext> = (w, v) => {
  w.u16(v.version).u16(v.cipherSuite).opaque(v.groupId).u64(v.epoch).opaque(v.treeHash).opaque(v.confirmedTranscriptHash);
  encodeExtensions(w, v.extensions);
};
export const decodeGroupContext: Decoder<GroupContext> = (r) => ({
  version: r.u16(),
  cipherSuite: r.u16(),
  groupId: r.opaque(),
  epoch: r.u64(),
  treeHash: r.opaque(),
  confirmedTranscriptHash: r.opaque(),
  extensions: decodeExtensions(r),
});

export interface GroupInfoTBS {
  groupContext: GroupContext;
  extensions: Extension[];
  confirmationTag: Uint8Array;
  signer: number;
}
export interface GroupInfo extends GroupInfoTBS {
  signature: Uint8Array;
}
export const encodeGroupInfoTBS: Encoder<GroupInfoTBS> = (w, v) => {
  encodeGroupContext(w, v.groupContext);
  encodeExtensions(w, v.extensions);
  w.opaque(v.confirmationTag).u32(v.signer);
};
export const decodeGroupInfoTBS: Decoder<GroupInfoTBS> = (r) => ({
  groupContext: decodeGroupContext(r),
  extensions: decodeExtensions(r),
  confirmationTag: r.opaque(),
  signer: r.u32(),
});
export const encodeGroupInfo: Encoder<GroupInfo> = (w, v) => {
  encodeGroupInfoTBS(w, v);
  w.opaque(v.signature);
};
export const decodeGroupInfo: Decoder<GroupInfo> = (r) => {
  const tbs = decodeGroupInfoTBS(r);
  return { ...tbs, signature: r.opaque() };
};

export interface PathSecret {
  pathSecret: Uint8Array;
}
export const encodePathSecret: Encoder<PathSecret> = (w, v) => void w.opaque(v.pathSecret);
export const decodePathSecret: Decoder<PathSecret> = (r) => ({ pathSecret: r.opaque() });

export interface GroupSecrets {
  joinerSecret: Uint8Array;
  pathSecret?: PathSecret;
  psks: PreSharedKeyID[];
}
export const encodeGroupSecrets: Encoder<GroupSecrets> = (w, v) => {
  w.opaque(v.joinerSecret).optional(v.pathSecret, encodePathSecret).vector(v.psks, encodePreSharedKeyID);
};
export const decodeGroupSecrets: Decoder<GroupSecrets> = (r) => {
  const joinerSecret = r.opaque();
  const pathSecret = r.optional(decodePathSecret);
  const psks = r.vector(decodePreSharedKeyID);
  return pathSecret === undefined ? { joinerSecret, psks } : { joinerSecret, pathSecret, psks };
};

export interface EncryptedGroupSecrets {
  newMember: KeyPackageRef;
  encryptedGroupSecrets: HPKECiphertext;
}
export const encodeEncryptedGroupSecrets: Encoder<EncryptedGroupSecrets> = (w, v) => {
  w.opaque(v.newMember);
  encodeHPKECiphertext(w, v.encryptedGroupSecrets);
};
export const decodeEncryptedGroupSecrets: Decoder<EncryptedGroupSecrets> = (r) => ({
  newMember: r.opaque(),
  encryptedGroupSecrets: decodeHPKECiphertext(r),
});

export interface Welcome {
  cipherSuite: CipherSuiteValue;
  secrets: EncryptedGroupSecrets[];
  encryptedGroupInfo: Uint8Array;
}
export const encodeWelcome: Encoder<Welcome> = (w, v) => {
  w.u16(v.cipherSuite).vector(v.secrets, encodeEncryptedGroupSecrets).opaque(v.encryptedGroupInfo);
};
export const decodeWelcome: Decoder<Welcome> = (r) => ({
  cipherSuite: r.u16(),
  secrets: r.vector(decodeEncryptedGroupSecrets),
  encryptedGroupInfo: r.opaque(),
});

// ---------------------------------------------------------------------------------------------------------
// Framing (§6)

export type Sender =
  | { senderType: typeof SenderType.member; leafIndex: number }
  | { senderType: typeof SenderType.external; senderIndex: number }
  | { senderType: typeof SenderType.newMemberProposal }
  | { senderType: typeof SenderType.newMemberCommit };

export const encodeSender: Encoder<Sender> = (w, v) => {
  w.u8(v.senderType);
  switch (v.senderType) {
    case SenderType.member:
      w.u32(v.leafIndex);
      return;
    case SenderType.external:
      w.u32(v.senderIndex);
      return;
    case SenderType.newMemberProposal:
    case SenderType.newMemberCommit:
      return;
    default:
      unreachable("sender type", v);
  }
};
export const decodeSender: Decoder<Sender> = (r) => {
  const senderType = readEnum8(r, SenderType, "sender type");
  switch (senderType) {
    case SenderType.member:
      return { senderType, leafIndex: r.u32() };
    case SenderType.external:
      return { senderType, senderIndex: r.u32() };
    case SenderType.newMemberProposal:
    case SenderType.newMemberCommit:
      return { senderType };
  }
};

/** The `content_type` select shared by FramedContent and PrivateMessageContent. */
export type FramedContentBody =
  | { contentType: typeof ContentType.application; applicationData: Uint8Array }
  | { contentType: typeof ContentType.proposal; proposal: Proposal }
  | { contentType: typeof ContentType.commit; commit: Commit };

function encodeContentBody(w: Writer, v: FramedContentBody): void {
  switch (v.contentType) {
    case ContentType.application:
      w.opaque(v.applicationData);
      return;
    case ContentType.proposal:
      return encodeProposal(w, v.proposal);
    case ContentType.commit:
      return encodeCommit(w, v.commit);
    default:
      unreachable("content type", v);
  }
}

function decodeContentBody(r: Reader, contentType: ContentType): FramedContentBody {
  switch (contentType) {
    case ContentType.application:
      return { contentType, applicationData: r.opaque() };
    case ContentType.proposal:
      return { contentType, proposal: decodeProposal(r) };
    case ContentType.commit:
      return { contentType, commit: decodeCommit(r) };
  }
}

const readContentType: Decoder<ContentType> = (r) => readEnum8(r, ContentType, "content type");

export type FramedContent = {
  groupId: Uint8Array;
  epoch: bigint;
  sender: Sender;
  authenticatedData: Uint8Array;
} & FramedContentBody;

export const encodeFramedContent: Encoder<FramedContent> = (w, v) => {
  w.opaque(v.groupId).u64(v.epoch);
  encodeSender(w, v.sender);
  w.opaque(v.authenticatedData).u8(v.contentType);
  encodeContentBody(w, v);
};
export const decodeFramedContent: Decoder<FramedContent> = (r) => {
  const groupId = r.opaque();
  const epoch = r.u64();
  const sender = decodeSender(r);
  const authenticatedData = r.opaque();
  const body = decodeContentBody(r, readContentType(r));
  return { groupId, epoch, sender, authenticatedData, ...body };
};

/** `confirmationTag` is present exactly when the content is a commit. */
export interface FramedContentAuthData {
  signature: Uint8Array;
  confirmationTag?: Uint8Array;
}

/** FramedContentAuthData's layout depends on the enclosing content type, hence encoder/decoder factories. */
export function encodeFramedContentAuthData(contentType: ContentType): Encoder<FramedContentAuthData> {
  return (w, v) => {
    w.opaque(v.signature);
    const isCommit = contentType === ContentType.commit;
    if (isCommit !== (v.confirmationTag !== undefined)) throw new TypeError("confirmation_tag must be present exactly for commits");
    if (v.confirmationTag !== undefined) w.opaque(v.confirmationTag);
  };
}
export function decodeFramedContentAuthData(contentType: ContentType): Decoder<FramedContentAuthData> {
  return (r) => {
    const signature = r.opaque();
    return contentType === ContentType.commit ? { signature, confirmationTag: r.opaque() } : { signature };
  };
}

export interface AuthenticatedContent {
  wireFormat: WireFormat;
  content: FramedContent;
  auth: FramedContentAuthData;
}
export const encodeAuthenticatedContent: Encoder<AuthenticatedContent> = (w, v) => {
  w.u16(v.wireFormat);
  encodeFramedContent(w, v.content);
  encodeFramedContentAuthData(v.content.contentType)(w, v.auth);
};
export const decodeAuthenticatedContent: Decoder<AuthenticatedContent> = (r) => {
  const wireFormat = readEnum16(r, WireFormat, "wire format");
  const content = decodeFramedContent(r);
  return { wireFormat, content, auth: decodeFramedContentAuthData(content.contentType)(r) };
};

function senderCarriesContext(sender: Sender): boolean {
  return sender.senderType === SenderType.member || sender.senderType === SenderType.newMemberCommit;
}

/** FramedContentTBS (§6.1): `context` is present exactly for member and new_member_commit senders. */
export interface FramedContentTBS {
  version: ProtocolVersion;
  wireFormat: WireFormat;
  content: FramedContent;
  context?: GroupContext;
}
export const encodeFramedContentTBS: Encoder<FramedContentTBS> = (w, v) => {
  w.u16(v.version).u16(v.wireFormat);
  encodeFramedContent(w, v.content);
  const needs = senderCarriesContext(v.content.sender);
  if (needs !== (v.context !== undefined)) throw new TypeError("FramedContentTBS carries a GroupContext exactly for member/new_member_commit senders");
  if (v.context !== undefined) encodeGroupContext(w, v.context);
};
export const decodeFramedContentTBS: Decoder<FramedContentTBS> = (r) => {
  const version = r.u16();
  const wireFormat = readEnum16(r, WireFormat, "wire format");
  const content = decodeFramedContent(r);
  return senderCarriesContext(content.sender) ? { version, wireFormat, content, context: decodeGroupContext(r) } : { version, wireFormat, content };
};

/** `membershipTag` is present exactly for member senders. */
export interface PublicMessage {
  content: FramedContent;
  auth: FramedContentAuthData;
  membershipTag?: Uint8Array;
}
export const encodePublicMessage: Encoder<PublicMessage> = (w, v) => {
  encodeFramedContent(w, v.content);
  encodeFramedContentAuthData(v.content.contentType)(w, v.auth);
  const isMember = v.content.sender.senderType === SenderType.member;
  if (isMember !== (v.membershipTag !== undefined)) throw new TypeError("membership_tag must be present exactly for member senders");
  if (v.membershipTag !== undefined) w.opaque(v.membershipTag);
};
export const decodePublicMessage: Decoder<PublicMessage> = (r) => {
  const content = decodeFramedContent(r);
  const auth = decodeFramedContentAuthData(content.contentType)(r);
  return content.sender.senderType === SenderType.member ? { content, auth, membershipTag: r.opaque() } : { content, auth };
};

export interface PrivateMessage {
  groupId: Uint8Array;
  epoch: bigint;
  contentType: ContentType;
  authenticatedData: Uint8Array;
  encryptedSenderData: Uint8Array;
  ciphertext: Uint8Array;
}
export const encodePrivateMessage: Encoder<PrivateMessage> = (w, v) => {
  w.opaque(v.groupId).u64(v.epoch).u8(v.contentType).opaque(v.authenticatedData).opaque(v.encryptedSenderData).opaque(v.ciphertext);
};
export const decodePrivateMessage: Decoder<PrivateMessage> = (r) => ({
  groupId: r.opaque(),
  epoch: r.u64(),
  contentType: readContentType(r),
  authenticatedData: r.opaque(),
  encryptedSenderData: r.opaque(),
  ciphertext: r.opaque(),
});

/** The plaintext of PrivateMessage.ciphertext; `paddingLength` zero bytes follow the auth data. */
export type PrivateMessageContent = FramedContentBody & {
  auth: FramedContentAuthData;
  paddingLength: number;
};
export const encodePrivateMessageContent: Encoder<PrivateMessageContent> = (w, v) => {
  encodeContentBody(w, v);
  encodeFramedContentAuthData(v.contentType)(w, v.auth);
  w.raw(new Uint8Array(v.paddingLength));
};
/** Reads to the end of the input: whatever follows the auth data is padding and must be all zeros (§6.3.1). */
export function decodePrivateMessageContent(contentType: ContentType): Decoder<PrivateMessageContent> {
  return (r) => {
    const body = decodeContentBody(r, contentType);
    const auth = decodeFramedContentAuthData(contentType)(r);
    const at = r.offset;
    const padding = r.raw(r.remaining);
    if (padding.some((b) => b !== 0)) throw new MlsDecodeError("invalid-value", "non-zero byte in PrivateMessageContent padding", at);
    return { ...body, auth, paddingLength: padding.length };
  };
}

export interface SenderData {
  leafIndex: number;
  generation: number;
  /** Exactly 4 bytes. */
  reuseGuard: Uint8Array;
}
export const encodeSenderData: Encoder<SenderData> = (w, v) => {
  if (v.reuseGuard.length !== 4) throw new TypeError("reuse_guard must be 4 bytes");
  w.u32(v.leafIndex).u32(v.generation).raw(v.reuseGuard);
};
export const decodeSenderData: Decoder<SenderData> = (r) => ({ leafIndex: r.u32(), generation: r.u32(), reuseGuard: r.raw(4) });

export interface SenderDataAAD {
  groupId: Uint8Array;
  epoch: bigint;
  contentType: ContentType;
}
export const encodeSenderDataAAD: Encoder<SenderDataAAD> = (w, v) => void w.opaque(v.groupId).u64(v.epoch).u8(v.contentType);
export const decodeSenderDataAAD: Decoder<SenderDataAAD> = (r) => ({ groupId: r.opaque(), epoch: r.u64(), contentType: readContentType(r) });

export interface PrivateContentAAD {
  groupId: Uint8Array;
  epoch: bigint;
  contentType: ContentType;
  authenticatedData: Uint8Array;
}
export const encodePrivateContentAAD: Encoder<PrivateContentAAD> = (w, v) => {
  w.opaque(v.groupId).u64(v.epoch).u8(v.contentType).opaque(v.authenticatedData);
};
export const decodePrivateContentAAD: Decoder<PrivateContentAAD> = (r) => ({
  groupId: r.opaque(),
  epoch: r.u64(),
  contentType: readContentType(r),
  authenticatedData: r.opaque(),
});

// ---------------------------------------------------------------------------------------------------------
// MLSMessage (§6)

export type MLSMessage = { version: typeof ProtocolVersion.mls10 } & (
  | { wireFormat: typeof WireFormat.mlsPublicMessage; publicMessage: PublicMessage }
  | { wireFormat: typeof WireFormat.mlsPrivateMessage; privateMessage: PrivateMessage }
  | { wireFormat: typeof WireFormat.mlsWelcome; welcome: Welcome }
  | { wireFormat: typeof WireFormat.mlsGroupInfo; groupInfo: GroupInfo }
  | { wireFormat: typeof WireFormat.mlsKeyPackage; keyPackage: KeyPackage }
);

export const encodeMLSMessage: Encoder<MLSMessage> = (w, v) => {
  w.u16(v.version).u16(v.wireFormat);
  switch (v.wireFormat) {
    case WireFormat.mlsPublicMessage:
      return encodePublicMessage(w, v.publicMessage);
    case WireFormat.mlsPrivateMessage:
      return encodePrivateMessage(w, v.privateMessage);
    case WireFormat.mlsWelcome:
      return encodeWelcome(w, v.welcome);
    case WireFormat.mlsGroupInfo:
      return encodeGroupInfo(w, v.groupInfo);
    case WireFormat.mlsKeyPackage:
      return encodeKeyPackage(w, v.keyPackage);
    default:
      unreachable("wire format", v);
  }
};

/** Only mls10 is understood: the body layout of any other version is unknown. */
export const decodeMLSMessage: Decoder<MLSMessage> = (r) => {
  const version = readEnum16(r, ProtocolVersion, "protocol version");
  const wireFormat = readEnum16(r, WireFormat, "wire format");
  switch (wireFormat) {
    case WireFormat.mlsPublicMessage:
      return { version, wireFormat, publicMessage: decodePublicMessage(r) };
    case WireFormat.mlsPrivateMessage:
      return { version, wireFormat, privateMessage: decodePrivateMessage(r) };
    case WireFormat.mlsWelcome:
      return { version, wireFormat, welcome: decodeWelcome(r) };
    case WireFormat.mlsGroupInfo:
      return { version, wireFormat, groupInfo: decodeGroupInfo(r) };
    case WireFormat.mlsKeyPackage:
      return { version, wireFormat, keyPackage: decodeKeyPackage(r) };
  }
};

// ---------------------------------------------------------------------------------------------------------
// Hash-based identifiers (§5.2)

/** KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage); accepts the object or its encoding. */
export function makeKeyPackageRef(suite: CipherSuite, keyPackage: KeyPackage | Uint8Array): Promise<KeyPackageRef> {
  const bytes = keyPackage instanceof Uint8Array ? keyPackage : encode(encodeKeyPackage, keyPackage);
  return suite.refHash("MLS 1.0 KeyPackage Reference", bytes);
}

/** ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent) over the encoded AuthenticatedContent. */
export function makeProposalRef(suite: CipherSuite, authenticatedContent: Uint8Array): Promise<ProposalRef> {
  return suite.refHash("MLS 1.0 Proposal Reference", authenticatedContent);
}
