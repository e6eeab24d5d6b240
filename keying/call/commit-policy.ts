/**
 * Who commits the DS's Remove proposals, and when (BRIEF decision 3). A pure decision: the client owns
 * the timer and asks again when it fires.
 *
 * - The member with the lowest leaf index among those staying commits at once: everyone computes the same
 *   answer from the same epoch, so normally exactly one commit is sent per epoch.
 * - Every other staying member waits a back-off that grows with its rank among the stayers, plus jitter,
 *   and commits only if the epoch still has proposals when the wait ends (the lowest member may be gone,
 *   or slow). The DS takes the first valid commit of the epoch, so a late duplicate only loses the race.
 * - While a commit of this member is in flight for the epoch, nothing more is sent: proposals arriving
 *   meanwhile are left for the next epoch, where the DS proposes again every departure still in the tree,
 *   and the next commit covers them all at once (pending proposals are always committed by reference).
 */

export interface CommitPolicyOptions {
  /** Back-off per rank above the lowest staying member. */
  readonly backoffStepMs: number;
  /** Uniform random extra wait in [0, backoffJitterMs), so equal ranks after a roster change spread out. */
  readonly backoffJitterMs: number;
  /** Cap on the rank part of the back-off, so a member far down a large call still commits in time. */
  readonly maxBackoffMs: number;
}

export const DEFAULT_COMMIT_POLICY: CommitPolicyOptions = {
  backoffStepMs: 750,
  backoffJitterMs: 500,
  maxBackoffMs: 5000,
};

export interface PendingProposalSummary {
  /** The leaf a Remove proposal removes; undefined for any other proposal type. */
  readonly removes?: number;
}

export interface CommitSituation {
  readonly myLeafIndex: number;
  /** Leaf indices of the current epoch's members. */
  readonly members: readonly number[];
  /** Proposals received in the current epoch and not yet committed. */
  readonly proposals: readonly PendingProposalSummary[];
  /** This member already sent a commit for the current epoch and has no answer yet. */
  readonly commitInFlight: boolean;
  /** The back-off this member was told to wait for the current epoch has run out. */
  readonly backoffElapsed: boolean;
}

export type CommitDecision =
  | { readonly action: "none"; readonly reason: "nothing-pending" | "in-flight" | "being-removed" }
  | { readonly action: "commit-now" }
  | { readonly action: "wait"; readonly delayMs: number };

/** `random` is a uniform sample in [0, 1). */
export function decideCommit(situation: CommitSituation, random: number, options: CommitPolicyOptions = DEFAULT_COMMIT_POLICY): CommitDecision {
  if (situation.proposals.length === 0) return { action: "none", reason: "nothing-pending" };
  if (situation.commitInFlight) return { action: "none", reason: "in-flight" };
  const removed = new Set<number>();
  for (const p of situation.proposals) if (p.removes !== undefined) removed.add(p.removes);
  // RFC 9420 §12.2: a commit must not remove its committer.
  if (removed.has(situation.myLeafIndex)) return { action: "none", reason: "being-removed" };
  if (situation.backoffElapsed) return { action: "commit-now" };
  let rank = 0;
  for (const leaf of situation.members) if (leaf < situation.myLeafIndex && !removed.has(leaf)) rank++;
  if (rank === 0) return { action: "commit-now" };
  const jitter = Math.min(Math.max(random, 0), 1) * options.backoffJitterMs;
  return { action: "wait", delayMs: Math.min(rank * options.backoffStepMs, options.maxBackoffMs) + jitter };
}
