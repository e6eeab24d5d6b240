import { bytesEqual } from "../codec/bytes.js";
import { encode } from "../codec/writer.js";
import { CredentialType, encodeCredential, type Credential, type LeafNode, type PreSharedKeyID } from "./messages.js";
import type { SecretTreeLimits } from "./secret-tree.js";

/**
 * What RFC 9420 leaves to the application, gathered in one object that members and observers share.
 * Every field has a default, so `{}` is a working policy.
 */
export interface GroupPolicy {
  /**
   * §5.3.1 credential validation: does this credential vouch for this signature key? The default accepts
   * a basic credential with a non-empty identity and any X.509 chain with at least one certificate: the
   * authentication service is the application's (the DS, or a PKI).
   */
  readonly validateCredential?: (credential: Credential, signatureKey: Uint8Array) => boolean | Promise<boolean>;
  /**
   * A name for the client a leaf belongs to: two leaves with the same name are the same client (§12.2
   * duplicate Adds, §12.4.3.2 the leaf a resync replaces, §11.3 branch members). Default: none, so the
   * same client means the same signature key or a byte-equal credential.
   */
  readonly clientId?: (leaf: LeafNode) => string;
  /** Current time in seconds since the Unix epoch (LeafNode lifetimes). Default: the system clock. */
  readonly now?: () => bigint;
  /**
   * Check the lifetime of LeafNodes received from others (RFC: RECOMMENDED; replayed test vectors and
   * long-lived trees may need it off). Our own KeyPackages and the KeyPackages we add are always checked.
   */
  readonly checkReceivedLifetimes?: boolean;
  /** Longest acceptable not_after - not_before (§7.2: the application MUST define one). Default 1 year. */
  readonly maxLifetimeSeconds?: bigint;
  /** External PSKs this client holds (§8.4), looked up by PreSharedKeyID. */
  readonly externalPsk?: (id: PreSharedKeyID) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** Accept external commits (joins and resyncs) from non-members. Default true (BRIEF decision 2). */
  readonly allowExternalCommit?: boolean;
  /** Past epochs whose application keys are kept for late messages (§15.3). Default 2. */
  readonly maxPastEpochs?: number;
  /** Epochs whose resumption_psk is kept for later reinit/branch/application PSKs (§8.6). Default 8. */
  readonly maxResumptionPsks?: number;
  /** Out-of-order bounds of each epoch's secret tree. */
  readonly secretTreeLimits?: Partial<SecretTreeLimits>;
}

export const ONE_YEAR_SECONDS = 365n * 24n * 3600n;

/** The policy with every default filled in. */
export interface ResolvedPolicy {
  readonly validateCredential: (credential: Credential, signatureKey: Uint8Array) => boolean | Promise<boolean>;
  readonly clientId: ((leaf: LeafNode) => string) | undefined;
  readonly now: () => bigint;
  readonly checkReceivedLifetimes: boolean;
  readonly maxLifetimeSeconds: bigint;
  readonly externalPsk: (id: PreSharedKeyID) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  readonly allowExternalCommit: boolean;
  readonly maxPastEpochs: number;
  readonly maxResumptionPsks: number;
  readonly secretTreeLimits: Partial<SecretTreeLimits>;
}

function defaultValidateCredential(credential: Credential): boolean {
  return credential.credentialType === CredentialType.basic ? credential.identity.length > 0 : credential.certificates.length > 0;
}

/** Whether two leaves are the same client under the policy. */
export function sameClient(policy: ResolvedPolicy, a: LeafNode, b: LeafNode): boolean {
  if (policy.clientId) return policy.clientId(a) === policy.clientId(b);
  return bytesEqual(a.signatureKey, b.signatureKey) || bytesEqual(encode(encodeCredential, a.credential), encode(encodeCredential, b.credential));
}

export function resolvePolicy(p: GroupPolicy = {}): ResolvedPolicy {
  return {
    validateCredential: p.validateCredential ?? defaultValidateCredential,
    clientId: p.clientId,
    now: p.now ?? (() => BigInt(Math.floor(Date.now() / 1000))),
    checkReceivedLifetimes: p.checkReceivedLifetimes ?? true,
    maxLifetimeSeconds: p.maxLifetimeSeconds ?? ONE_YEAR_SECONDS,
    externalPsk: p.externalPsk ?? (() => undefined),
    allowExternalCommit: p.allowExternalCommit ?? true,
    maxPastEpochs: Math.max(0, p.maxPastEpochs ?? 2),
    maxResumptionPsks: Math.max(1, p.maxResumptionPsks ?? 8),
    secretTreeLimits: p.secretTreeLimits ?? {},
  };
}
