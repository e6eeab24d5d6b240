/** keying/call: an MLS group's epochs as call keys (SFrame base key, safety code, roster) and the commit policy. */
export { CallKeyring, callMemberOf, membershipChangeOf, type CallEpoch, type CallKeyringOptions, type CallMember, type MembershipChange } from "./keyring.js";
export {
  DEFAULT_COMMIT_POLICY,
  decideCommit,
  type CommitDecision,
  type CommitPolicyOptions,
  type CommitSituation,
  type PendingProposalSummary,
} from "./commit-policy.js";
export { safetyCode } from "./safety-code.js";
