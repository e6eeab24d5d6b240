import { describe, expect, it } from "vitest";
import { ClaimQuota } from "../../sfu-signaling/ds/claim-quota.js";
import { DsError } from "../../sfu-signaling/errors.js";

describe("ClaimQuota", () => {
  it("allows `claims` per pair in a sliding window, gives back released reservations, and says when to retry", () => {
    let now = 1_000_000;
    const q = new ClaimQuota({ claims: 2, windowMs: 60_000, maxTracked: 100 }, () => now);
    q.take("mallory", "victim");
    now += 10_000;
    const release = q.take("mallory", "victim");
    expect(() => q.take("mallory", "victim")).toThrow(expect.objectContaining({ code: "claim-quota-exceeded", extra: { retryAfterMs: 50_000 } }));
    q.take("mallory", "someone-else");
    q.take("alice", "victim");
    release();
    q.take("mallory", "victim");
    expect(() => q.take("mallory", "victim")).toThrow(DsError);
    now += 50_001;
    q.take("mallory", "victim");
    expect(() => q.take("mallory", "victim")).toThrow(DsError);
  });

  it("remembers at most maxTracked pairs, dropping expired ones first", () => {
    let now = 0;
    const q = new ClaimQuota({ claims: 1, windowMs: 1000, maxTracked: 100 }, () => now);
    for (let i = 0; i < 100; i++) q.take(`c${i}`, "t");
    now = 5000;
    q.take("late", "t");
    expect(q.size).toBe(1);
    for (let i = 0; i < 1000; i++) q.take(`d${i}`, "t");
    expect(q.size).toBeLessThanOrEqual(100);
    // The most recent pairs are still counted.
    expect(() => q.take("d999", "t")).toThrow(DsError);
  });
});
