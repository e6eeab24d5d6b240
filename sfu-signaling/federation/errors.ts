/**
 * Refusals between providers. A link or a peer request fails with a FederationError whose `code` says
 * which trust check failed; what a peer's DS refused for MLS or directory reasons travels as the DS's own
 * DsError code (wrong-epoch, no-common-suite, ...), so a user gets the same answer as at its own DS.
 */
import { DsError } from "../errors.js";
import type { DsErrorCode } from "../protocol.js";

export type FederationErrorCode =
  /** The peer's domain is not in this DS's list of trusted providers. */
  | "untrusted-peer"
  /** The peer asked for another provider than this one (its configuration points at the wrong URL). */
  | "wrong-provider"
  /** The peer's proof did not verify under the key configured for its domain. */
  | "bad-signature"
  /** The DS at the configured URL could not prove it holds the configured key of that provider. */
  | "peer-authentication-failed"
  /** A request arrived on a link whose handshake had not completed. */
  | "not-authenticated"
  /** A provider acted for a user of another provider. */
  | "forbidden-user"
  /** No link is configured for that provider. */
  | "unknown-provider"
  /** The peer did not answer before the deadline (link down or too slow). */
  | "link-down"
  | "invalid-payload";

const FEDERATION_CODES: Record<FederationErrorCode, true> = {
  "untrusted-peer": true,
  "wrong-provider": true,
  "bad-signature": true,
  "peer-authentication-failed": true,
  "not-authenticated": true,
  "forbidden-user": true,
  "unknown-provider": true,
  "link-down": true,
  "invalid-payload": true,
};

/** Every DS code, so a peer's refusal is re-raised as the same DsError (a new code fails to compile here). */
const DS_CODES: Record<DsErrorCode, true> = {
  unauthorized: true,
  "forbidden-room": true,
  "invalid-payload": true,
  "payload-too-large": true,
  "rate-limited": true,
  "malformed-message": true,
  "invalid-message": true,
  "invalid-key-package": true,
  "wrong-identity": true,
  "too-many-key-packages": true,
  "too-many-devices": true,
  "no-common-suite": true,
  "unknown-user": true,
  "key-packages-exhausted": true,
  "claim-quota-exceeded": true,
  "unsupported-suite": true,
  "unknown-group": true,
  "group-exists": true,
  "group-closed": true,
  "wrong-group": true,
  "wrong-epoch": true,
  "not-a-member": true,
  internal: true,
};

export class FederationError extends Error {
  override readonly name = "FederationError";
  constructor(
    readonly code: FederationErrorCode,
    message: string,
    /** The provider concerned. */
    readonly peer?: string,
  ) {
    super(peer ? `${peer}: ${message}` : message);
  }
}

/** The wire form of any refusal on a link: DS codes keep their extra fields (wrong-epoch's `missed`...). */
export function linkError(e: unknown): { code: string; message: string; [k: string]: unknown } {
  if (e instanceof FederationError) return { code: e.code, message: e.message };
  if (e instanceof DsError) return { ...e.extra, code: e.code, message: e.message };
  return { code: "internal", message: "internal error" };
}

/** A refusal received from a peer, as the error it was there. */
export function fromLinkError(peer: string, error: unknown): Error {
  const o = typeof error === "object" && error !== null ? (error as Record<string, unknown>) : {};
  const { code, message, ...extra } = o;
  const text = typeof message === "string" ? message.slice(0, 1000) : "refused";
  // "invalid-payload" is both: the DS's code wins, so a user sees the same refusal as at its own DS.
  if (typeof code === "string" && Object.hasOwn(DS_CODES, code)) return new DsError(code as DsErrorCode, text, extra);
  if (typeof code === "string" && Object.hasOwn(FEDERATION_CODES, code)) return new FederationError(code as FederationErrorCode, text, peer);
  return new DsError("internal", `${peer} answered with an unknown refusal`);
}

/** What a user of this DS is told when a peer provider could not be reached or refused the link. */
export function toUserError(e: unknown): unknown {
  if (e instanceof FederationError) {
    if (e.code === "forbidden-user") return new DsError("unauthorized", e.message);
    return new DsError("internal", `federation: ${e.message}`, { federation: e.code });
  }
  return e;
}
