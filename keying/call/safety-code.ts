import { MlsValidationError } from "../mls/errors.js";

/** Bytes of epoch_authenticator consumed per group of digits: 40 bits reduced mod 10^5 (bias below 2^-23). */
const BYTES_PER_GROUP = 5;
const GROUPS = 6;

/**
 * The safety code of an epoch (brief, decision 8): its epoch_authenticator (RFC 9420 §8.7) shown as six
 * groups of five digits. Everyone in the same epoch of the same group sees the same code; a DS that split
 * the group (a different tree or key schedule on some screens) cannot make the codes agree.
 */
export function safetyCode(epochAuthenticator: Uint8Array): string {
  if (epochAuthenticator.length < BYTES_PER_GROUP * GROUPS) {
    throw new MlsValidationError("invalid-value", `epoch_authenticator of ${epochAuthenticator.length} bytes is too short for a safety code`);
  }
  const groups: string[] = [];
  for (let g = 0; g < GROUPS; g++) {
    let n = 0n;
    for (let i = 0; i < BYTES_PER_GROUP; i++) n = (n << 8n) | BigInt(epochAuthenticator[g * BYTES_PER_GROUP + i]!);
    groups.push((n % 100000n).toString().padStart(5, "0"));
  }
  return groups.join(" ");
}
