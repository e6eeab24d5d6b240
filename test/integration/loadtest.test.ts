/**
 * Issue 7: the load test's short run as a correctness check (never timing): twenty real participants in
 * worker threads against a DS in a child process, ten joins and leaves (two at a time in the second run),
 * every change's epoch installed by every member, and one epoch_authenticator per epoch everywhere.
 */
import { describe, expect, it } from "vitest";
import { runLoadTest } from "../../bench/loadtest/run.js";
import type { LoadTestResult } from "../../bench/loadtest/results.js";

function expectCorrect(r: LoadTestResult, changes: number): void {
  expect(r.failures).toEqual([]);
  expect(r.problems).toEqual([]);
  expect(r.diverged).toBe(false);
  expect(r.divergent_epochs).toEqual([]);
  expect(r.samples).toHaveLength(changes);
  for (const s of r.samples) {
    expect(s.epoch, `change ${s.index} (${s.kind} ${s.participant})`).not.toBeNull();
    expect(s.missing, `change ${s.index} (${s.kind} ${s.participant})`).toEqual([]);
    expect(s.observed).toBe(s.observers);
    expect(s.latency_ms).toHaveLength(s.observers);
    expect(s.commit_bytes).toBeGreaterThan(0);
  }
  // Joins grow the call, leaves shrink it: each change's observers are the members after its batch.
  expect(r.samples.filter((s) => s.kind === "join")).toHaveLength(Math.ceil(changes / 2));
  expect(r.unobserved).toBe(0);
  // The child DS's /metrics (loopback, no token) was read.
  expect(r.ds_fanout?.commits_accepted).toBeGreaterThan(0);
  expect(r.ok).toBe(true);
}

describe("the rekey load test", () => {
  it("brings 20 participants into one call and sees 10 changes reach every one of them", async () => {
    const r = await runLoadTest({ members: 20, changes: 10, workers: 2 });
    expectCorrect(r, 10);
    // Every change is one commit here (one at a time), so the epochs follow each other.
    expect(r.samples.map((s) => s.epoch)).toEqual(r.samples.map((_, i) => 19 + 1 + i));
    expect(r.environment.final_epoch).toBe(29);
    expect(r.samples.every((s) => s.observers === (s.kind === "join" ? 21 : 20))).toBe(true);
  });

  it("keeps everyone in step when changes run two at a time", async () => {
    const r = await runLoadTest({ members: 20, changes: 10, concurrency: 2, workers: 2, seed: 7 });
    expectCorrect(r, 10);
    expect(new Set(r.samples.map((s) => s.batch)).size).toBe(5);
  });
});
