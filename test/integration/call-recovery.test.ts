/**
 * Issue 5, participant side: what a CallSession does when things go wrong. A dropped connection resumes
 * after the last seq it had; a member the call removed while it was away rejoins; a member whose state
 * diverged fails a sequenced commit, reports it to the DS and rejoins by external commit (a resync).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import type { MlsGroup } from "../../keying/mls/group.js";
import { allAt, describePeers, epochOf, fingerprint, groupLog, joinPeer, until, type Peer } from "./call-helpers.js";
import { startTestDs, type TestDs } from "./ds-helpers.js";

let t: TestDs | undefined;
let peers: Peer[] = [];

afterEach(async () => {
  for (const p of peers) p.connection.close();
  peers = [];
  await t?.close();
  t = undefined;
});

async function call(names: string[], leaveGraceMs: number): Promise<Peer[]> {
  t = await startTestDs({ leaveGraceMs });
  for (const name of names) peers.push(await joinPeer(t, name, "room"));
  return [...peers];
}

async function agreeAt(group: readonly Peer[], epoch: bigint): Promise<string[]> {
  await allAt(group, epoch);
  expect(new Set(group.map((p) => fingerprint(p.session.currentEpoch!))).size, describePeers(group)).toBe(1);
  return group[0]!.session.currentEpoch!.members.map((m) => m.identity).sort();
}

async function oneCommitPerEpoch(groupId: string, epoch: bigint): Promise<void> {
  const commits = (await groupLog(t!, groupId)).filter((e) => e.kind === "commit").map((e) => e.epoch);
  expect(commits).toEqual(Array.from({ length: Number(epoch) }, (_, i) => i));
}

/** Cuts the transport without telling the DS, and keeps socket.io from reconnecting until `reconnect`. */
async function dropTransport(p: Peer): Promise<() => void> {
  const manager = p.connection.socket.io;
  manager.reconnection(false);
  manager.engine.close();
  await until(() => !p.connection.connected, () => `${p.name} still connected`);
  return () => {
    manager.reconnection(true);
    p.connection.socket.connect();
  };
}

describe("call recovery", () => {
  it("resumes after a dropped connection from the last seq: the epochs and chat it missed arrive", async () => {
    const [a, b, c] = await call(["a", "b", "c"], 60_000);
    const groupId = a!.session.groupId!;
    await agreeAt([a!, b!, c!], 2n);
    const reconnect = await dropTransport(b!);
    await a!.session.chat("while you were away");
    const d = await joinPeer(t!, "d", "room");
    peers.push(d);
    await c!.session.chat("and after d joined");
    await allAt([a!, c!, d], 3n);
    expect(epochOf(b!)).toBe(2n);
    reconnect();
    const roster = await agreeAt([a!, b!, c!, d], 3n);
    expect(roster).toEqual(["a/d1", "b/d1", "c/d1", "d/d1"]);
    await until(() => b!.messages.length === 2, () => `b got ${b!.messages.length} messages`);
    expect(b!.messages.map((m) => m.text)).toEqual(["while you were away", "and after d joined"]);
    expect(b!.epochs.map((e) => e.epoch)).toEqual([1n, 2n, 3n]);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
    await oneCommitPerEpoch(groupId, 3n);
  });

  it("has the next member commit after its back-off when the lowest one cannot", async () => {
    const [a, b, c, d] = await call(["a", "b", "c", "d"], 60_000);
    const groupId = a!.session.groupId!;
    await agreeAt([a!, b!, c!, d!], 3n);
    // a (leaf 0) is away but within the DS's grace, so still a member: it is the one that should commit, and cannot.
    const reconnect = await dropTransport(a!);
    await d!.session.leave();
    expect(await agreeAt([b!, c!], 4n)).toEqual(["a/d1", "b/d1", "c/d1"]);
    const commit = (await groupLog(t!, groupId)).filter((e) => e.kind === "commit").at(-1)!;
    expect(["b/d1", "c/d1"]).toContain(commit.sender);
    reconnect();
    await agreeAt([a!, b!, c!], 4n);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
    await oneCommitPerEpoch(groupId, 4n);
  });

  it("rejoins when the call removed it while its connection was gone past the DS's grace", async () => {
    const [a, b, c] = await call(["a", "b", "c"], 200);
    const groupId = a!.session.groupId!;
    await agreeAt([a!, b!, c!], 2n);
    const reconnect = await dropTransport(b!);
    expect(await agreeAt([a!, c!], 3n)).toEqual(["a/d1", "c/d1"]);
    reconnect();
    const roster = await agreeAt([a!, b!, c!], 4n);
    expect(roster).toEqual(["a/d1", "b/d1", "c/d1"]);
    expect(b!.epochs.at(-1)!.cause).toBe("rejoined");
    expect(b!.closed).toBeUndefined();
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
    await oneCommitPerEpoch(groupId, 4n);
  });

  it("reconnects to a restarted DS and carries on: resume, then a join and a leave", async () => {
    const dir = mkdtempSync(join(tmpdir(), "conclave-call-"));
    try {
      const path = join(dir, "ds.sqlite");
      t = await startTestDs({ leaveGraceMs: 60_000, store: new SqliteStore({ path }) });
      for (const name of ["a", "b", "c"]) peers.push(await joinPeer(t, name, "room"));
      const [a, b, c] = peers;
      const groupId = a!.session.groupId!;
      await agreeAt([a!, b!, c!], 2n);
      const port = t.ds.port;
      await t.close();
      await until(() => peers.every((p) => !p.connection.connected), () => "still connected to a closed DS");
      t = await startTestDs({ leaveGraceMs: 60_000, store: new SqliteStore({ path }), port });
      await until(() => peers.every((p) => p.connection.connected), () => "not reconnected");
      await b!.session.chat("back");
      await until(() => [a!, c!].every((p) => p.messages.some((m) => m.text === "back")), () => "chat after restart");
      const d = await joinPeer(t, "d", "room");
      peers.push(d);
      await agreeAt([a!, b!, c!, d], 3n);
      await c!.session.leave();
      expect(await agreeAt([a!, b!, d], 4n)).toEqual(["a/d1", "b/d1", "d/d1"]);
      expect(peers.flatMap((p) => p.errors)).toEqual([]);
      await oneCommitPerEpoch(groupId, 4n);
    } finally {
      for (const p of peers) p.connection.close();
      peers = [];
      await t?.close();
      t = undefined;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reports a sequenced commit it cannot process and rejoins by external commit, replacing its old leaf", async () => {
    const [a, b, c] = await call(["a", "b", "c"], 60_000);
    const groupId = a!.session.groupId!;
    await agreeAt([a!, b!, c!], 2n);
    // Diverge c: it moves to an epoch of its own that the DS never saw.
    const diverged = (c!.session as unknown as { group: MlsGroup }).group;
    await diverged.commit({});
    await diverged.mergePendingCommit();
    const d = await joinPeer(t!, "d", "room");
    peers.push(d);
    await until(() => c!.errors.length > 0, () => "c never failed");
    expect(c!.errors[0]).toMatchObject({ code: "commit-rejected", recovering: true });
    const roster = await agreeAt([a!, b!, c!, d], 4n);
    expect(roster).toEqual(["a/d1", "b/d1", "c/d1", "d/d1"]);
    expect(c!.epochs.at(-1)!.cause).toBe("rejoined");
    expect(c!.session.currentEpoch!.members).toHaveLength(4);
    expect(t!.ds.metrics.memberReports.get()).toBe(1);
    expect([a!, b!, d].flatMap((p) => p.errors)).toEqual([]);
    await oneCommitPerEpoch(groupId, 4n);
  });
});
