/**
 * The one error type the DS answers with. `code` is a stable kebab-case string clients switch on; `extra`
 * carries structured data some codes need (`wrong-epoch` carries the current epoch and the missed entries).
 * Messages name the object and the failed check, never a secret.
 */
export type DsErrorCode =
  | "unauthorized"
  | "forbidden-room"
  | "invalid-payload"
  | "payload-too-large"
  | "rate-limited"
  | "malformed-message"
  | "invalid-message"
  | "invalid-key-package"
  | "wrong-identity"
  | "too-many-key-packages"
  | "no-common-suite"
  | "unknown-user"
  | "key-packages-exhausted"
  | "unsupported-suite"
  | "unknown-group"
  | "group-exists"
  | "group-closed"
  | "wrong-group"
  | "wrong-epoch"
  | "not-a-member"
  | "internal";

export class DsError extends Error {
  override readonly name = "DsError";
  constructor(
    readonly code: DsErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** The wire form of a refusal: `{ code, message, ...extra }`. */
export interface WireError {
  code: DsErrorCode;
  message: string;
  [k: string]: unknown;
}

export function toWireError(e: unknown): WireError {
  if (e instanceof DsError) return { ...e.extra, code: e.code, message: e.message };
  return { code: "internal", message: "internal error" };
}
