/**
 * Loads the MLS interop harness interface (mls_client.proto of mlswg/mls-implementations) at run time from
 * ../shared/mls-interop, so the project never carries a private copy that could drift from the shared one.
 * Field names are camelCased by proto-loader; the request/response shapes below are the ones this project
 * reads and writes (the proto file stays the single source of truth for the wire format).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** ../shared/mls-interop/mls_client.proto next to the checkout; MLS_INTEROP_PROTO overrides it. */
export function defaultProtoPath(): string {
  return process.env["MLS_INTEROP_PROTO"] ?? fileURLToPath(new URL("../../shared/mls-interop/mls_client.proto", import.meta.url));
}

export interface InteropProto {
  readonly service: grpc.ServiceDefinition;
  /** Constructor of a client stub for the MLSClient service. */
  readonly Client: grpc.ServiceClientConstructor;
  /** RPC names as in the proto (e.g. "CreateGroup"). */
  readonly methods: readonly string[];
}

const cache = new Map<string, Promise<InteropProto>>();

export function loadInteropProto(path: string = defaultProtoPath()): Promise<InteropProto> {
  let p = cache.get(path);
  if (!p) {
    p = load(path);
    cache.set(path, p);
    p.catch(() => cache.delete(path));
  }
  return p;
}

async function load(path: string): Promise<InteropProto> {
  if (!existsSync(path)) throw new Error(`interop proto not found at ${path} (set MLS_INTEROP_PROTO)`);
  // uint64 epoch ids arrive as decimal strings so no precision is lost; absent fields get their defaults.
  const def = await protoLoader.load(path, { keepCase: false, longs: String, enums: String, defaults: true, arrays: true });
  const pkg = grpc.loadPackageDefinition(def)["mls_client"] as grpc.GrpcObject | undefined;
  const Client = pkg?.["MLSClient"] as grpc.ServiceClientConstructor | undefined;
  if (!Client || typeof Client !== "function") throw new Error(`${path} does not define mls_client.MLSClient`);
  return { service: Client.service, Client, methods: Object.keys(Client.service) };
}

// ---------------------------------------------------------------------------------------------------------
// Message shapes (camelCase, as proto-loader decodes them). Incoming bytes are Buffers; outgoing may be any
// Uint8Array. uint64 fields are decimal strings on input and may be number | string on output.

export type Bytes = Uint8Array;

export interface ExtensionMsg {
  extensionType: number;
  extensionData: Bytes;
}

export interface PreSharedKeyMsg {
  pskId: Bytes;
  pskSecret: Bytes;
}

export interface ProposalDescriptionMsg {
  proposalType: Bytes;
  keyPackage: Bytes;
  removedId: Bytes;
  pskId: Bytes;
  epochId: string | number;
  extensions: ExtensionMsg[];
  groupId: Bytes;
  cipherSuite: number;
}

export interface MlsRequests {
  Name: Record<string, never>;
  SupportedCiphersuites: Record<string, never>;
  CreateGroup: { groupId: Bytes; cipherSuite: number; encryptHandshake: boolean; identity: Bytes };
  CreateKeyPackage: { cipherSuite: number; identity: Bytes };
  JoinGroup: { transactionId: number; welcome: Bytes; encryptHandshake: boolean; identity: Bytes; ratchetTree: Bytes };
  ExternalJoin: { groupInfo: Bytes; ratchetTree: Bytes; encryptHandshake: boolean; identity: Bytes; removePrior: boolean; psks: PreSharedKeyMsg[] };
  GroupInfo: { stateId: number; externalTree: boolean };
  StateAuth: { stateId: number };
  Export: { stateId: number; label: string; context: Bytes; keyLength: number };
  Protect: { stateId: number; authenticatedData: Bytes; plaintext: Bytes };
  Unprotect: { stateId: number; ciphertext: Bytes };
  StorePSK: { stateOrTransactionId: number; pskId: Bytes; pskSecret: Bytes };
  AddProposal: { stateId: number; keyPackage: Bytes };
  UpdateProposal: { stateId: number };
  RemoveProposal: { stateId: number; removedId: Bytes };
  ExternalPSKProposal: { stateId: number; pskId: Bytes };
  ResumptionPSKProposal: { stateId: number; epochId: string | number };
  GroupContextExtensionsProposal: { stateId: number; extensions: ExtensionMsg[] };
  Commit: CommitRequestMsg;
  HandleCommit: HandleCommitRequestMsg;
  HandlePendingCommit: { stateId: number };
  ReInitProposal: { stateId: number; cipherSuite: number; groupId: Bytes; extensions: ExtensionMsg[] };
  ReInitCommit: CommitRequestMsg;
  HandlePendingReInitCommit: { stateId: number };
  HandleReInitCommit: HandleCommitRequestMsg;
  ReInitWelcome: { reinitId: number; keyPackage: Bytes[]; forcePath: boolean; externalTree: boolean };
  HandleReInitWelcome: { reinitId: number; welcome: Bytes; ratchetTree: Bytes };
  CreateBranch: { stateId: number; groupId: Bytes; extensions: ExtensionMsg[]; keyPackages: Bytes[]; forcePath: boolean; externalTree: boolean };
  HandleBranch: { stateId: number; transactionId: number; welcome: Bytes; ratchetTree: Bytes };
  NewMemberAddProposal: { groupInfo: Bytes; identity: Bytes };
  CreateExternalSigner: { cipherSuite: number; identity: Bytes };
  AddExternalSigner: { stateId: number; externalSender: Bytes };
  ExternalSignerProposal: { signerId: number; signerIndex: number; groupInfo: Bytes; ratchetTree: Bytes; description: ProposalDescriptionMsg };
  Free: { stateId: number };
}

export interface CommitRequestMsg {
  stateId: number;
  byReference: Bytes[];
  byValue: ProposalDescriptionMsg[];
  forcePath: boolean;
  externalTree: boolean;
}

export interface HandleCommitRequestMsg {
  stateId: number;
  proposal: Bytes[];
  commit: Bytes;
}

interface ProposalResponse {
  proposal: Bytes;
}
interface CommitResponse {
  commit: Bytes;
  welcome: Bytes;
  ratchetTree: Bytes;
}
interface HandleCommitResponse {
  stateId: number;
  epochAuthenticator: Bytes;
}
interface HandleReInitCommitResponse {
  reinitId: number;
  keyPackage: Bytes;
  epochAuthenticator: Bytes;
}
interface CreateSubgroupResponse {
  stateId: number;
  welcome: Bytes;
  ratchetTree: Bytes;
  epochAuthenticator: Bytes;
}
interface JoinGroupResponse {
  stateId: number;
  epochAuthenticator: Bytes;
}

export interface MlsResponses {
  Name: { name: string };
  SupportedCiphersuites: { ciphersuites: number[] };
  CreateGroup: { stateId: number };
  CreateKeyPackage: { transactionId: number; keyPackage: Bytes; initPriv: Bytes; encryptionPriv: Bytes; signaturePriv: Bytes };
  JoinGroup: JoinGroupResponse;
  ExternalJoin: { stateId: number; commit: Bytes; epochAuthenticator: Bytes };
  GroupInfo: { groupInfo: Bytes; ratchetTree: Bytes };
  StateAuth: { stateAuthSecret: Bytes };
  Export: { exportedSecret: Bytes };
  Protect: { ciphertext: Bytes };
  Unprotect: { authenticatedData: Bytes; plaintext: Bytes };
  StorePSK: Record<string, never>;
  AddProposal: ProposalResponse;
  UpdateProposal: ProposalResponse;
  RemoveProposal: ProposalResponse;
  ExternalPSKProposal: ProposalResponse;
  ResumptionPSKProposal: ProposalResponse;
  GroupContextExtensionsProposal: ProposalResponse;
  Commit: CommitResponse;
  HandleCommit: HandleCommitResponse;
  HandlePendingCommit: HandleCommitResponse;
  ReInitProposal: ProposalResponse;
  ReInitCommit: CommitResponse;
  HandlePendingReInitCommit: HandleReInitCommitResponse;
  HandleReInitCommit: HandleReInitCommitResponse;
  ReInitWelcome: CreateSubgroupResponse;
  HandleReInitWelcome: JoinGroupResponse;
  CreateBranch: CreateSubgroupResponse;
  HandleBranch: { stateId: number; epochAuthenticator: Bytes };
  NewMemberAddProposal: { transactionId: number; proposal: Bytes; initPriv: Bytes; encryptionPriv: Bytes; signaturePriv: Bytes };
  CreateExternalSigner: { signerId: number; externalSender: Bytes };
  AddExternalSigner: ProposalResponse;
  ExternalSignerProposal: ProposalResponse;
  Free: Record<string, never>;
}

export type MlsMethod = keyof MlsRequests & keyof MlsResponses;
