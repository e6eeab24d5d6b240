/**
 * Issue 5, participant side: CallSession participants against a real DS on loopback. Joins are external
 * commits (one by one, then ten at once), leaves are the DS's Remove proposals committed by the lowest
 * staying member; every epoch must be the same on every screen and in the DS's log exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allAt, connectPeer, describePeers, epochOf, fingerprint, groupLog, joinPeer, until, type Peer } from "./call-helpers.js";
import { startTestDs, type TestDs } from "./ds-helpers.js";

const ROOM = "standup";
/** Slow back-offs, so "the lowest member commits" stays true however loaded the machine is. */
const SLOW_BACKOFF = { commitPolicy: { backoffStepMs: 5000, maxBackoffMs: 20_000 } };

describe("a call of twenty participants", () => {
  let t: TestDs;
  const peers: Peer[] = [];
  let groupId: string;

  beforeAll(async () => {
    t = await startTestDs({ leaveGraceMs: 200 });
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    await t.close();
  });

  const present = () => peers.filter((p) => p.closed === undefined);

  /** Every present peer in `epoch` with the same keys, safety code and roster; returns that roster. */
  async function agreeAt(epoch: bigint): Promise<string[]> {
    const live = present();
    await allAt(live, epoch);
    const prints = new Set(live.map((p) => fingerprint(p.session.currentEpoch!)));
    expect(prints.size, describePeers(live)).toBe(1);
    return live[0]!.session.currentEpoch!.members.map((m) => m.identity).sort();
  }

  /** The DS's log holds exactly one commit per epoch, for epochs 0..epoch-1, and the group is at `epoch`. */
  async function oneCommitPerEpoch(epoch: bigint): Promise<void> {
    const commits = (await groupLog(t, groupId)).filter((e) => e.kind === "commit").map((e) => e.epoch);
    expect(commits).toEqual(Array.from({ length: Number(epoch) }, (_, i) => i));
    expect((await t.store.getGroup(groupId))!.epoch).toBe(Number(epoch));
  }

  it("lets ten participants join one by one, each join an external commit and a new epoch", async () => {
    for (let i = 0; i < 10; i++) {
      const p = await joinPeer(t, `p${i}`, ROOM, SLOW_BACKOFF);
      peers.push(p);
      expect(p.epochs[0]!.cause).toBe(i === 0 ? "created" : "joined");
      expect(epochOf(p)).toBe(BigInt(i));
    }
    groupId = peers[0]!.session.groupId!;
    expect(peers.every((p) => p.session.groupId === groupId)).toBe(true);
    const roster = await agreeAt(9n);
    expect(roster).toEqual(peers.map((p) => `${p.name}/d1`).sort());
    // The first member saw every join as its own epoch.
    expect(peers[0]!.epochs.map((e) => e.epoch)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
    await oneCommitPerEpoch(9n);
  });

  it("lets ten more join at once: concurrent external commits lose races, catch up and retry", async () => {
    const batch = await Promise.all(Array.from({ length: 10 }, (_, i) => connectPeer(t, `q${i}`, ROOM, SLOW_BACKOFF)));
    peers.push(...batch);
    const lostBefore = t.ds.metrics.commitsRejected.get({ reason: "wrong-epoch" });
    await Promise.all(batch.map((p) => p.session.join()));
    // Ten joins from one epoch: all but one lost a race at least once and retried from a newer GroupInfo.
    expect(t.ds.metrics.commitsRejected.get({ reason: "wrong-epoch" }) - lostBefore).toBeGreaterThan(0);
    const roster = await agreeAt(19n);
    expect(roster).toHaveLength(20);
    expect(roster).toEqual(peers.map((p) => `${p.name}/d1`).sort());
    await oneCommitPerEpoch(19n);
    // Each joiner's first epoch is its own commit; nobody had to recover from anything.
    expect(new Set(batch.map((p) => p.epochs[0]!.epoch)).size).toBe(10);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });

  it("delivers chat to everyone in order, named by MLS credential", async () => {
    const sender = peers[7]!;
    await sender.session.chat("hello");
    await sender.session.chat("world");
    const others = present().filter((p) => p !== sender);
    await until(() => others.every((p) => p.messages.length >= 2), () => `chat: ${others.map((p) => p.messages.length).join(",")}`);
    for (const p of others) {
      expect(p.messages.map((m) => m.text)).toEqual(["hello", "world"]);
      expect(p.messages[0]!.sender?.identity).toBe(`${sender.name}/d1`);
    }
    expect(sender.messages).toEqual([]);
  });

  /** After a leave: exactly one new epoch, without the leaver, the same everywhere; then a barrier shows no second commit. */
  async function expectOneEpochWithout(leaver: Peer, before: bigint): Promise<void> {
    const roster = await agreeAt(before + 1n);
    expect(roster).not.toContain(`${leaver.name}/d1`);
    const barrier = present()[0]!;
    const text = `after ${leaver.name}`;
    await barrier.session.chat(text);
    const others = present().filter((p) => p !== barrier);
    await until(() => others.every((p) => p.messages.some((m) => m.text === text)), () => `barrier ${text}`);
    expect(present().every((p) => epochOf(p) === before + 1n), describePeers(present())).toBe(true);
    await oneCommitPerEpoch(before + 1n);
    const lastCommit = (await groupLog(t, groupId)).filter((e) => e.kind === "commit").at(-1)!;
    expect(lastCommit.sender).not.toBe(`${leaver.name}/d1`);
  }

  it("turns an explicit leave of the lowest leaf into exactly one commit by the next lowest", async () => {
    const before = epochOf(peers[0]!);
    const leaver = peers[0]!;
    expect(leaver.session.leafIndex).toBe(0);
    const left: string[] = [];
    const offs = present()
      .filter((p) => p !== leaver)
      .map((p) => p.session.on("member-left", (e) => left.push(`${p.name}:${e.member.identity}`)));
    await leaver.session.leave();
    expect(leaver.closed).toBe("left");
    await expectOneEpochWithout(leaver, before);
    offs.forEach((off) => off());
    expect(left).toHaveLength(19);
    expect(new Set(left.map((l) => l.split(":")[1]))).toEqual(new Set([`${leaver.name}/d1`]));
    const commit = (await groupLog(t, groupId)).filter((e) => e.kind === "commit").at(-1)!;
    const lowest = present().reduce((a, b) => (a.session.leafIndex! < b.session.leafIndex! ? a : b));
    expect(commit.sender).toBe(`${lowest.name}/d1`);
  });

  it("turns a dropped connection into exactly one commit once the DS's grace ran out", async () => {
    const before = epochOf(present()[0]!);
    const dropped = present()[5]!;
    dropped.connection.close();
    expect(dropped.closed).toBe("connection-closed");
    await expectOneEpochWithout(dropped, before);
  });

  it("handles a leave of a member in the middle of the tree, then a join into its blank leaf", async () => {
    const before = epochOf(present()[0]!);
    const leaver = present()[9]!;
    const leaf = leaver.session.leafIndex;
    await leaver.session.leave();
    await expectOneEpochWithout(leaver, before);
    const late = await joinPeer(t, "late", ROOM, SLOW_BACKOFF);
    peers.push(late);
    expect(late.session.leafIndex).toBeLessThanOrEqual(leaf!);
    const roster = await agreeAt(before + 2n);
    expect(roster).toContain("late/d1");
    await oneCommitPerEpoch(before + 2n);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });

  it("removes two members leaving at once, in one commit or two, never more", async () => {
    const before = epochOf(present()[0]!);
    const [x, y] = present().slice(-2);
    await Promise.all([x!.session.leave(), y!.session.leave()]);
    const stayers = present();
    await until(
      () => stayers.every((p) => p.session.currentEpoch!.members.every((m) => m.identity !== `${x!.name}/d1` && m.identity !== `${y!.name}/d1`)),
      () => `waiting for both removals: ${describePeers(stayers)}`,
    );
    const after = epochOf(stayers[0]!);
    expect(after === before + 1n || after === before + 2n).toBe(true);
    const roster = await agreeAt(after);
    expect(roster).toHaveLength(stayers.length);
    await oneCommitPerEpoch(after);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });
});
