/** Cryptographic failure with a reason, never key material. */
export type CryptoErrorCode =
  | "aead-open-failed"
  | "hpke-open-failed"
  | "invalid-public-key"
  | "invalid-private-key"
  | "invalid-signature-encoding"
  | "unsupported-suite"
  | "invalid-length"
  /** A backend failed where valid input cannot fail (hashing, key generation). */
  | "operation-failed";

export class CryptoError extends Error {
  override readonly name = "CryptoError";
  constructor(
    readonly code: CryptoErrorCode,
    detail: string,
  ) {
    super(`${code}: ${detail}`);
  }
}
