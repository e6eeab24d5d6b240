export { MlsDecodeError, type DecodeErrorCode } from "../codec/errors.js";

/**
 * Why a well-formed MLS object was refused. The listed codes are the common ones; a layer may use its
 * own short kebab-case code when none fits. Messages name the object and the check, never key material.
 */
export type MlsValidationCode =
  | "wrong-group"
  | "wrong-epoch"
  | "wrong-version"
  | "wrong-cipher-suite"
  | "unknown-sender"
  | "invalid-signature"
  | "invalid-membership-tag"
  | "invalid-confirmation-tag"
  | "invalid-parent-hash"
  | "invalid-tree-hash"
  | "invalid-leaf-node"
  | "invalid-key-package"
  | "invalid-proposal"
  | "invalid-commit"
  | "unsupported-capability"
  | "unsupported-extension"
  | "duplicate-key"
  | "decrypt-failed"
  | (string & {});

export class MlsValidationError extends Error {
  override readonly name = "MlsValidationError";
  constructor(
    readonly code: MlsValidationCode,
    detail: string,
  ) {
    super(`${code}: ${detail}`);
  }
}
