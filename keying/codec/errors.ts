/**
 * The one error type every decoder in keying/ throws for malformed bytes. Callers can rely on it: a
 * decoder never lets a RangeError, TypeError or allocation failure escape for bad input.
 */
export type DecodeErrorCode =
  | "truncated" // a read ran past the end of the input
  | "non-minimal-length" // a variable-length header did not use the shortest encoding (RFC 9420 §2.1.2)
  | "invalid-length" // the reserved 0b11 varint prefix, or a length that cannot be honoured
  | "trailing-bytes" // input left over after a complete structure
  | "unknown-value" // an enum value the RFC forbids here
  | "invalid-value"; // a value that is well-formed but not allowed (e.g. optional<> presence byte > 1)

export class MlsDecodeError extends Error {
  override readonly name = "MlsDecodeError";
  constructor(
    readonly code: DecodeErrorCode,
    readonly detail: string,
    readonly offset?: number,
  ) {
    super(`${code}: ${detail}${offset === undefined ? "" : ` at byte ${offset}`}`);
  }
}
