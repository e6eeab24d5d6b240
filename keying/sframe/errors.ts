/**
 * Every failure of keying/sframe is an SFrameError with a code a caller can branch on (a worker holds
 * frames on `unknown-kid`, drops them on `auth-failed` or `replay`). Messages name the KID and the
 * reason, never key material.
 */
export type SFrameErrorCode =
  | "truncated" // the input ends before a complete header, tag or codec structure
  | "non-minimal" // a KID or CTR not in the shortest encoding RFC 9605 §4.3 requires
  | "unsupported-suite" // a cipher suite outside RFC 9605 §4.5
  | "invalid-argument" // a KID, CTR, key or option out of range
  | "unknown-kid" // no key for this KID (yet): the caller MAY hold the frame and retry (§4.4.3)
  | "key-in-use" // a KID already installed, or one of our own KIDs offered for receiving (drop, never hold)
  | "auth-failed" // the AEAD rejected the ciphertext, header or metadata
  | "replay" // a CTR already accepted, or older than the replay window
  | "counter-exhausted" // the send CTR reached 2^64-1: the key must be replaced
  | "frame-too-short" // a media frame shorter than its codec's clear prefix
  | "malformed-frame" // a media frame that does not parse as its codec's bitstream
  | "stale-epoch"; // an MLS epoch older than one the keyring already holds

export class SFrameError extends Error {
  override readonly name = "SFrameError";
  constructor(
    readonly code: SFrameErrorCode,
    readonly detail: string,
    /** The KID involved, when known: KIDs are public (they travel in the clear). */
    readonly kid?: bigint,
  ) {
    super(`${code}: ${detail}${kid === undefined ? "" : ` (kid ${kid})`}`);
  }
}
