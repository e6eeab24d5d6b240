/**
 * What both implementations of the MLS benchmark share: the row format, the timing rule, and the plan
 * of the groups they are measured on (who commits, who receives, who is removed, how the tree fills).
 */
import type { GroupFixture } from "./fixture.js";

export interface Row {
  readonly impl: string;
  readonly members: number;
  /** "blank-tree", "full-tree", "welcome", "external-join". */
  readonly scenario: string;
  /** "commit" (create), "process" (a member receives it), "join" (the joiner's side). */
  readonly op: string;
  /** Median wall time of the measured runs, in milliseconds. */
  readonly ms: number;
  /** Size of the message the operation produces or consumes (Commit, Welcome). */
  readonly bytes: number;
}

export interface Measured {
  readonly ms: number;
  readonly bytes: number;
}

export interface RunOptions {
  /** Measured runs per operation, after one warm-up run. */
  readonly iterations: number;
  readonly log: (line: string) => void;
}

/** One implementation under test: runs every (scenario, op) on the fixture's groups and records each. */
export interface Implementation {
  readonly name: string;
  run(fixture: GroupFixture, options: RunOptions, record: (scenario: string, op: string, m: Measured) => void): Promise<void>;
}

/**
 * Times `op` (which returns the size of the message it handled) once to warm up and then `iterations`
 * times; `reset` runs untimed before each run, to put the state back. The median damps a GC pause.
 */
export async function measure(iterations: number, op: () => Promise<number>, reset?: () => void | Promise<void>): Promise<Measured> {
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i <= iterations; i++) {
    await reset?.();
    const start = performance.now();
    bytes = await op();
    const ms = performance.now() - start;
    if (i > 0) times.push(ms);
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const ms = times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
  return { ms, bytes };
}

/**
 * The group of `members` leaves both implementations build:
 * - the creator (leaf 0) adds everyone else in one commit without a path, so the tree is blank but for
 *   the leaves: a commit with a path then encrypts to about one HPKE key per member;
 * - the committer of the measured commits is leaf 0, the receiver the last leaf, the removed member the
 *   middle one (so the removal blanks a path the commit crosses);
 * - to fill the tree every leaf commits once with a path, in bit-reversed order (the first commits fill
 *   the upper nodes, so later ones encrypt to few nodes), the receiver last so that it holds the keys
 *   of its whole direct path, as a member that had processed every commit would.
 */
export interface GroupPlan {
  readonly members: number;
  readonly committer: number;
  readonly receiver: number;
  readonly removed: number;
  /** Every leaf once, receiver last. */
  readonly fillOrder: readonly number[];
}

export function groupPlan(members: number): GroupPlan {
  if (!Number.isInteger(members) || members < 3) throw new RangeError(`a benchmark group needs at least 3 members, not ${members}`);
  let bits = 0;
  while (1 << bits < members) bits++;
  const receiver = members - 1;
  const reversed: number[] = [];
  for (let i = 0; i < 1 << bits; i++) {
    let r = 0;
    for (let b = 0; b < bits; b++) if (i & (1 << b)) r |= 1 << (bits - 1 - b);
    if (r < members && r !== receiver) reversed.push(r);
  }
  return { members, committer: 0, receiver, removed: members >> 1, fillOrder: [...reversed, receiver] };
}
