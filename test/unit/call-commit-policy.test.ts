import { describe, expect, it } from "vitest";
import { DEFAULT_COMMIT_POLICY, decideCommit, type CommitSituation } from "../../keying/call/commit-policy.js";

const policy = { backoffStepMs: 100, backoffJitterMs: 50, maxBackoffMs: 1000 };

function situation(over: Partial<CommitSituation>): CommitSituation {
  return { myLeafIndex: 0, members: [0, 1, 2, 3], proposals: [{ removes: 3 }], commitInFlight: false, backoffElapsed: false, ...over };
}

describe("commit policy for the DS's proposals", () => {
  it("has the lowest staying leaf commit at once", () => {
    expect(decideCommit(situation({ myLeafIndex: 0 }), 0.5, policy)).toEqual({ action: "commit-now" });
  });

  it("skips leaves being removed when finding the lowest", () => {
    const s = situation({ myLeafIndex: 2, members: [0, 1, 2, 5], proposals: [{ removes: 0 }, { removes: 1 }] });
    expect(decideCommit(s, 0.9, policy)).toEqual({ action: "commit-now" });
  });

  it("has the others wait a back-off growing with rank, plus jitter", () => {
    expect(decideCommit(situation({ myLeafIndex: 1 }), 0, policy)).toEqual({ action: "wait", delayMs: 100 });
    expect(decideCommit(situation({ myLeafIndex: 2 }), 0, policy)).toEqual({ action: "wait", delayMs: 200 });
    expect(decideCommit(situation({ myLeafIndex: 2 }), 0.5, policy)).toEqual({ action: "wait", delayMs: 225 });
    // A blank leaf between members does not count.
    expect(decideCommit(situation({ myLeafIndex: 7, members: [0, 7] }), 0, policy)).toEqual({ action: "wait", delayMs: 100 });
  });

  it("caps the rank part of the back-off", () => {
    const members = Array.from({ length: 100 }, (_, i) => i);
    const d = decideCommit(situation({ myLeafIndex: 99, members, proposals: [{ removes: 50 }] }), 0.999, policy);
    expect(d.action).toBe("wait");
    if (d.action === "wait") expect(d.delayMs).toBeLessThan(policy.maxBackoffMs + policy.backoffJitterMs);
  });

  it("keeps out-of-range random samples inside the jitter", () => {
    const d = decideCommit(situation({ myLeafIndex: 1 }), 7, policy);
    expect(d).toEqual({ action: "wait", delayMs: 150 });
  });

  it("commits once the back-off ran out and proposals are still pending", () => {
    expect(decideCommit(situation({ myLeafIndex: 3, members: [0, 1, 2, 3, 4], proposals: [{ removes: 4 }], backoffElapsed: true }), 0, policy)).toEqual({ action: "commit-now" });
  });

  it("never commits its own removal, nor twice in one epoch, nor nothing", () => {
    expect(decideCommit(situation({ myLeafIndex: 3 }), 0, policy)).toEqual({ action: "none", reason: "being-removed" });
    expect(decideCommit(situation({ myLeafIndex: 3, backoffElapsed: true }), 0, policy)).toEqual({ action: "none", reason: "being-removed" });
    expect(decideCommit(situation({ commitInFlight: true }), 0, policy)).toEqual({ action: "none", reason: "in-flight" });
    expect(decideCommit(situation({ proposals: [] }), 0, policy)).toEqual({ action: "none", reason: "nothing-pending" });
  });

  it("treats proposals other than Remove as work for the lowest member", () => {
    expect(decideCommit(situation({ proposals: [{}] }), 0, DEFAULT_COMMIT_POLICY)).toEqual({ action: "commit-now" });
    expect(decideCommit(situation({ myLeafIndex: 1, proposals: [{}] }), 0, DEFAULT_COMMIT_POLICY)).toEqual({ action: "wait", delayMs: DEFAULT_COMMIT_POLICY.backoffStepMs });
  });
});
