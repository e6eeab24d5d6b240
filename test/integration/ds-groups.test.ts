/**
 * Calls through a real DS on loopback with real MLS participants: joins (one by one and concurrent external
 * commits), one commit per epoch, chat fan-out, leaves (explicit and by dropped connection), resume, and bad
 * input that must be refused with a typed error and change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { utf8 } from "../../keying/codec/bytes.js";
import { decode } from "../../keying/codec/reader.js";
import { externalSendersExtension } from "../../keying/mls/external.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { decodeExternalSender } from "../../keying/mls/messages.js";
import type { GroupSnapshot } from "../../sfu-signaling/ds/groups.js";
import { bytesOf, connectSocket, errorCode, ok, request, startTestDs, type TestDs } from "./ds-helpers.js";
import { Participant } from "./ds-participant.js";

async function participant(t: TestDs, user: string, device = "d1", rooms = ["*"]): Promise<Participant> {
  return Participant.connect(t.ds.url, await t.token({ user, device, rooms }), `${user}/${device}`);
}

async function commitEpochs(t: TestDs, groupId: string): Promise<number[]> {
  const log = await t.store.readLog(groupId, 0, 100_000);
  return log.filter((e) => e.kind === "commit").map((e) => e.epoch);
}

async function expectConverged(ps: Participant[], epoch: bigint): Promise<void> {
  await Promise.all(ps.map((p) => p.waitForEpoch(epoch)));
  const auths = await Promise.all(ps.map((p) => p.authenticator()));
  const keys = await Promise.all(ps.map((p) => p.sframeBaseKey()));
  expect(ps.map((p) => p.epoch)).toEqual(ps.map(() => epoch));
  expect(new Set(auths).size).toBe(1);
  expect(new Set(keys).size).toBe(1);
  for (const p of ps) expect(p.errors).toEqual([]);
}

describe("DS groups", () => {
  let t: TestDs;
  const subscribed: string[] = [];
  const departed: string[] = [];
  beforeAll(async () => {
    t = await startTestDs({
      leaveGraceMs: 300,
      onSubscribed: (_socket, p, room) => subscribed.push(`${room} ${p.user}/${p.device}`),
      onDeparted: (room, member) => departed.push(`${room} ${member}`),
    });
  });
  afterAll(async () => t.close());

  it("10 participants join one by one, then 10 more at once: one epoch, equal authenticators and keys, one commit per epoch", async () => {
    const first: Participant[] = [];
    for (let i = 0; i < 10; i++) {
      const p = await participant(t, `seq${i}`);
      await p.join("big-call");
      first.push(p);
    }
    await expectConverged(first, 9n);
    const second = await Promise.all(Array.from({ length: 10 }, (_, i) => participant(t, `burst${i}`)));
    await Promise.all(second.map((p) => p.join("big-call")));
    const all = [...first, ...second];
    await expectConverged(all, 19n);
    expect(all[0]!.memberNames()).toEqual(all.map((p) => p.name).sort());
    expect(await commitEpochs(t, all[0]!.groupId!)).toEqual(Array.from({ length: 19 }, (_, i) => i));
    expect(t.ds.metrics.commitsAccepted.get()).toBeGreaterThanOrEqual(19);
    // The burst raced: some external commits lost their epoch and were retried.
    expect(t.ds.metrics.commitsRejected.get({ reason: "wrong-epoch" })).toBeGreaterThan(0);
    for (const p of all) p.close();
  });

  it("two participants creating one room's call at once end up in one group", async () => {
    const [x, y] = await Promise.all([participant(t, "race-x"), participant(t, "race-y")]);
    await Promise.all([x.join("race-room"), y.join("race-room")]);
    await expectConverged([x, y], 1n);
    expect(x.groupId).toBe(y.groupId);
    x.close();
    y.close();
  });

  it("counts a member's report of a commit it could not process", async () => {
    const a = await participant(t, "rep-a");
    await a.join("report-room");
    const before = t.ds.metrics.memberReports.get();
    ok(await request(a.socket, "group:report", { groupId: a.groupId, seq: 0, reason: "bad\nparent hash" }));
    expect(t.ds.metrics.memberReports.get()).toBe(before + 1);
    const outsider = await participant(t, "rep-y", "d1", ["elsewhere"]);
    expect(errorCode(await request(outsider.socket, "group:report", { groupId: a.groupId, seq: 0, reason: "x" }))).toBe("forbidden-room");
    a.close();
    outsider.close();
  });

  it("fans out chat (PrivateMessages) to every member in one order", async () => {
    const ps = [await participant(t, "chat-a"), await participant(t, "chat-b"), await participant(t, "chat-c")];
    for (const p of ps) await p.join("chat-room");
    await expectConverged(ps, 2n);
    await Promise.all(ps.map((p, i) => Promise.all([1, 2, 3].map((n) => p.send(`${i}:${n}`)))));
    // Each member sees the others' six messages (its own echoes are ignored), in the log's order.
    await Promise.all(ps.map((p) => p.waitUntil(() => p.messages.length === 6, "6 messages")));
    const log = (await t.store.readLog(ps[0]!.groupId!, 0, 1000)).filter((e) => e.kind === "application");
    expect(log).toHaveLength(9);
    const order = ps.map((p) => p.processed.filter((x) => x.kind === "application").map((x) => x.seq));
    for (const seqs of order) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    for (const p of ps) p.close();
  });

  it("an explicit leave and a dropped connection each produce exactly one new epoch without the leaver", async () => {
    const ps = await Promise.all(["l-a", "l-b", "l-c", "l-d"].map((u) => participant(t, u)));
    for (const p of ps) await p.join("leave-room");
    await expectConverged(ps, 3n);
    const [a, b, c, d] = ps as [Participant, Participant, Participant, Participant];
    const groupId = a.groupId!;

    await d.leave();
    await expectConverged([a, b, c], 4n);
    expect(a.memberNames()).toEqual(["l-a/d1", "l-b/d1", "l-c/d1"]);

    c.close();
    await expectConverged([a, b], 5n);
    expect(a.memberNames()).toEqual(["l-a/d1", "l-b/d1"]);

    // A chat round trip passes through the group's queue after everything above: the DS proposed nothing more.
    ok(await a.send("still here"));
    await b.waitUntil(() => b.messages.includes("still here"), "the chat message");
    expect(await commitEpochs(t, groupId)).toEqual([0, 1, 2, 3, 4]);
    const log = await t.store.readLog(groupId, 0, 1000);
    expect(log.filter((e) => e.sender === "ds")).toHaveLength(2);
    expect((await t.store.getGroup(groupId))?.epoch).toBe(5);
    expect(t.ds.metrics.externalProposals.get({ cause: "leave" })).toBeGreaterThanOrEqual(1);
    expect(t.ds.metrics.externalProposals.get({ cause: "disconnect" })).toBeGreaterThanOrEqual(1);
    // The media plane is told who may use the room and who must be cut off.
    expect(subscribed).toEqual(expect.arrayContaining(["leave-room l-a/d1", "leave-room l-d/d1"]));
    expect(departed).toEqual(expect.arrayContaining(["leave-room l-d/d1", "leave-room l-c/d1"]));
    expect(departed.filter((d) => d.startsWith("leave-room"))).toHaveLength(2);
    a.close();
    b.close();
    d.close();
  });

  it("a member that unsubscribes gets no more pushes and is removed after the grace", async () => {
    const ps = await Promise.all(["u-a", "u-b", "u-c"].map((u) => participant(t, u)));
    for (const p of ps) await p.join("unsub-room");
    await expectConverged(ps, 2n);
    const [a, b, c] = ps as [Participant, Participant, Participant];
    ok(await request(c.socket, "group:unsubscribe", { groupId: c.groupId }));
    await expectConverged([a, b], 3n);
    expect(a.memberNames()).toEqual(["u-a/d1", "u-b/d1"]);
    expect(c.epoch).toBe(2n);
    for (const p of ps) p.close();
  });

  it("removes, after the grace, a member that joined but never listens", async () => {
    const [a, b] = [await participant(t, "sw-a"), await participant(t, "sw-b")];
    await a.join("sweep-room");
    await b.join("sweep-room");
    await expectConverged([a, b], 1n);
    const ghost = await participant(t, "sw-ghost");
    const snap = ok(await request<{ group: GroupSnapshot }>(ghost.socket, "room:join", { room: "sweep-room" })).group;
    const joined = await MlsGroup.joinByExternalCommit({ groupInfo: bytesOf(snap.groupInfo), ratchetTree: bytesOf(snap.tree), identity: ghost.identity });
    ok(await request(ghost.socket, "group:send", { groupId: snap.groupId, message: joined.commit, groupInfo: joined.groupInfo }));
    await expectConverged([a, b], 3n);
    expect(a.memberNames()).toEqual(["sw-a/d1", "sw-b/d1"]);
    for (const p of [a, b, ghost]) p.close();
  });

  it("closes the call when its last member leaves, freeing the room for a new group", async () => {
    const a = await participant(t, "solo");
    await a.join("solo-room");
    const first = a.groupId!;
    // Someone still subscribed (e.g. a joiner on its way in) learns that the call ended.
    const watcher = await participant(t, "solo-watcher");
    ok(await request(watcher.socket, "group:subscribe", { groupId: first, after: 0 }));
    const closed = new Promise((resolve) => watcher.socket.once("group:closed", resolve));
    await a.leave();
    await expect(closed).resolves.toEqual({ groupId: first });
    expect((await t.store.getGroup(first))?.closed).toBe(true);
    expect(errorCode(await request(watcher.socket, "group:subscribe", { groupId: first, after: 0 }))).toBe("group-closed");
    watcher.close();
    const b = await participant(t, "solo2");
    await b.join("solo-room");
    expect(b.groupId).not.toBe(first);
    expect(b.epoch).toBe(0n);
    a.close();
    b.close();
  });

  it("adds a device from a claimed KeyPackage and hands it the Welcome", async () => {
    const a = await participant(t, "kp-a");
    await a.join("kp-room");
    const carol = await participant(t, "kp-carol");
    const { message, bundle } = await MlsGroup.generateKeyPackage(carol.identity);
    ok(await request(carol.socket, "kp:upload", { keyPackages: [message] }));
    const welcomed = new Promise<{ groupId: string; seq: number; welcome: unknown }>((resolve) => carol.socket.once("group:welcome", resolve));

    const claimed = ok(await request<{ devices: { keyPackage: unknown }[] }>(a.socket, "kp:claim", { user: "kp-carol", suites: [1] }));
    const reply = await a.inQueue(async () => {
      const out = await a.group!.commit({ add: claimed.devices.map((d) => bytesOf(d.keyPackage)) });
      const r = await request<{ seq: number }>(a.socket, "group:send", { groupId: a.groupId, message: out.commit, groupInfo: out.groupInfo, welcome: out.welcome });
      if (!r.ok) a.group!.clearPendingCommit();
      return r;
    });
    const { seq } = ok(reply);
    await a.waitForEpoch(1n);

    const w = await welcomed;
    expect(w).toMatchObject({ groupId: a.groupId, seq });
    const snap = ok(await request<{ group: GroupSnapshot }>(carol.socket, "room:join", { room: "kp-room" })).group;
    const group = await MlsGroup.joinFromWelcome({ welcome: bytesOf(w.welcome), keyPackage: bundle, ratchetTree: bytesOf(snap.tree) });
    expect(group.epoch).toBe(1n);
    expect(await group.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16)).toEqual(await a.inQueue(() => a.group!.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16)));
    // A Welcome without a commit that adds anyone is refused.
    const empty = await a.inQueue(async () => {
      const c = await a.group!.commit({});
      a.group!.clearPendingCommit();
      return c;
    });
    expect(errorCode(await request(a.socket, "group:send", { groupId: a.groupId, message: empty.commit, groupInfo: empty.groupInfo, welcome: w.welcome }))).toBe("invalid-payload");
    a.close();
    carol.close();
  });

  describe("refuses bad input with a typed error and changes nothing", () => {
    let a: Participant;
    let b: Participant;
    let groupId: string;
    const state = async () => {
      const g = await t.store.getGroup(groupId);
      return { epoch: g?.epoch, seq: g?.seq };
    };

    beforeAll(async () => {
      a = await participant(t, "bad-a");
      b = await participant(t, "bad-b");
      await a.join("bad-room");
      await b.join("bad-room");
      await expectConverged([a, b], 1n);
      groupId = a.groupId!;
    });
    afterAll(() => {
      a.close();
      b.close();
    });

    it("a token for another room", async () => {
      const before = await state();
      const other = await participant(t, "bad-y", "d1", ["elsewhere"]);
      expect(errorCode(await request(other.socket, "room:join", { room: "bad-room" }))).toBe("forbidden-room");
      expect(errorCode(await request(other.socket, "group:subscribe", { groupId, after: 0 }))).toBe("forbidden-room");
      const { commit, groupInfo } = await a.inQueue(async () => {
        const c = await a.group!.commit({});
        a.group!.clearPendingCommit();
        return c;
      });
      expect(errorCode(await request(other.socket, "group:send", { groupId, message: commit, groupInfo }))).toBe("forbidden-room");
      expect(await state()).toEqual(before);
      other.close();
    });

    it("malformed MLS bytes, an unknown group, a proposal with a GroupInfo and a commit without one", async () => {
      const before = await state();
      expect(errorCode(await request(a.socket, "group:send", { groupId, message: new Uint8Array([0, 1, 0, 1, 9, 9]) }))).toBe("malformed-message");
      expect(errorCode(await request(a.socket, "group:send", { groupId: "abcd", message: new Uint8Array([0, 1]) }))).toBe("malformed-message");
      const { commit, groupInfo } = await a.inQueue(async () => {
        const c = await a.group!.commit({});
        a.group!.clearPendingCommit();
        return c;
      });
      expect(errorCode(await request(a.socket, "group:send", { groupId: "abcd", message: commit, groupInfo }))).toBe("unknown-group");
      expect(errorCode(await request(a.socket, "group:send", { groupId, message: commit }))).toBe("invalid-payload");
      // Proposed from a copy, so `a` itself holds no pending proposal afterwards.
      const proposal = await a.inQueue(async () => (await MlsGroup.decode(a.group!.encode())).proposeUpdate());
      expect(errorCode(await request(a.socket, "group:send", { groupId, message: proposal.message, groupInfo }))).toBe("invalid-payload");
      expect(await state()).toEqual(before);
    });

    it("an oversized payload", async () => {
      const before = await state();
      expect(errorCode(await request(a.socket, "group:send", { groupId, message: new Uint8Array((1 << 20) + 1) }))).toBe("payload-too-large");
      expect(await state()).toEqual(before);
    });

    it("a commit with a bad signature, and a commit whose GroupInfo is not its new epoch's", async () => {
      const before = await state();
      const { commit, groupInfo } = await a.inQueue(async () => {
        const c = await a.group!.commit({});
        a.group!.clearPendingCommit();
        return c;
      });
      const tampered = commit.slice();
      tampered[tampered.length - 40]! ^= 1;
      const r1 = await request(a.socket, "group:send", { groupId, message: tampered, groupInfo });
      expect(errorCode(r1)).toMatch(/^(invalid-message|malformed-message)$/);
      const oldGroupInfo = await a.inQueue(() => a.group!.groupInfo());
      const r2 = await request(a.socket, "group:send", { groupId, message: commit, groupInfo: oldGroupInfo });
      expect(errorCode(r2)).toBe("invalid-message");
      expect(!r2.ok && r2.error.reason).toBe("invalid-group-info");
      expect(await state()).toEqual(before);
      expect(t.ds.metrics.commitsRejected.get({ reason: "invalid-message" })).toBeGreaterThanOrEqual(1);
    });

    it("a commit replayed by a device that is not its sender, and chat from a non-member", async () => {
      const before = await state();
      const outsider = await participant(t, "bad-x");
      const { commit, groupInfo } = await a.inQueue(async () => {
        const c = await a.group!.commit({});
        a.group!.clearPendingCommit();
        return c;
      });
      expect(errorCode(await request(outsider.socket, "group:send", { groupId, message: commit, groupInfo }))).toBe("not-a-member");
      const chat = await a.inQueue(() => a.group!.encryptApplicationMessage(utf8("not yours")));
      expect(errorCode(await request(outsider.socket, "group:send", { groupId, message: chat }))).toBe("not-a-member");
      expect(await state()).toEqual(before);
      outsider.close();
    });

    it("an external commit whose new leaf names another device", async () => {
      const before = await state();
      const mallory = await participant(t, "bad-m");
      const snap = ok(await request<{ group: GroupSnapshot }>(mallory.socket, "room:join", { room: "bad-room" })).group;
      const impostor = await MlsGroup.generateIdentity(utf8("bad-a/d1"));
      const joined = await MlsGroup.joinByExternalCommit({ groupInfo: bytesOf(snap.groupInfo), ratchetTree: bytesOf(snap.tree), identity: impostor });
      expect(errorCode(await request(mallory.socket, "group:send", { groupId, message: joined.commit, groupInfo: joined.groupInfo }))).toBe("wrong-identity");
      expect(await state()).toEqual(before);
      // The DS's view was rebuilt: an honest join still works.
      await mallory.join("bad-room");
      await expectConverged([a, b, mallory], 2n);
      mallory.close();
      await expectConverged([a, b], 3n);
    });

    it("a stale-epoch commit is answered wrong-epoch with what the sender missed", async () => {
      const stale = await a.inQueue(async () => {
        const c = await a.group!.commit({});
        a.group!.clearPendingCommit();
        return c;
      });
      const epochBefore = a.epoch;
      const won = await b.inQueue(() => b.commitNow());
      expect(won.ok).toBe(true);
      await a.waitForEpoch(epochBefore + 1n);
      const before = await state();
      const r = await request(a.socket, "group:send", { groupId, message: stale.commit, groupInfo: stale.groupInfo, since: before.seq! - 1 });
      expect(errorCode(r)).toBe("wrong-epoch");
      const error = (r as unknown as { error: { epoch: number; missed: { seq: number; kind: string }[] } }).error;
      expect(error.epoch).toBe(Number(epochBefore) + 1);
      expect(error.missed).toMatchObject([{ seq: before.seq, kind: "commit" }]);
      expect(await state()).toEqual(before);
    });

    it("a group created without the DS as external sender, or by a device other than the token's", async () => {
      const c = await participant(t, "bad-c");
      const alone = await MlsGroup.create({ identity: c.identity });
      const r1 = await request(c.socket, "group:create", { room: "new-room-1", groupInfo: await alone.groupInfo(), tree: alone.ratchetTree() });
      expect(errorCode(r1)).toBe("invalid-message");
      expect(!r1.ok && r1.error.reason).toBe("missing-external-sender");
      const sender = decode(decodeExternalSender, bytesOf(ok(await request<{ externalSender: unknown }>(c.socket, "ds:external-sender", { suite: 1 })).externalSender));
      const someoneElse = await MlsGroup.generateIdentity(utf8("bad-a/d1"));
      const forged = await MlsGroup.create({ identity: someoneElse, extensions: [externalSendersExtension([sender])] });
      expect(errorCode(await request(c.socket, "group:create", { room: "new-room-1", groupInfo: await forged.groupInfo(), tree: forged.ratchetTree() }))).toBe("wrong-identity");
      expect(await t.store.openGroupOfRoom("new-room-1")).toBeUndefined();
      c.close();
    });
  });

  it("a reconnecting member resumes after its last seq and receives everything it missed, in order", async () => {
    const r = await startTestDs({ leaveGraceMs: 60_000 });
    try {
      const ps = await Promise.all(["r-a", "r-b", "r-c"].map((u) => participant(r, u)));
      for (const p of ps) await p.join("resume-room");
      await expectConverged(ps, 2n);
      const [a, b, c] = ps as [Participant, Participant, Participant];
      c.socket.disconnect();
      ok(await a.send("while you were away 1"));
      ok(await b.inQueue(() => b.commitNow()));
      await a.waitForEpoch(3n);
      ok(await a.send("while you were away 2"));
      await c.reconnect(r.ds.url, await r.token({ user: "r-c" }));
      await expectConverged(ps, 3n);
      await c.waitUntil(() => c.messages.length === 2, "the missed messages");
      expect(c.messages).toEqual(["while you were away 1", "while you were away 2"]);
      for (const p of ps) p.close();
    } finally {
      await r.close();
    }
  });

  it("refuses an unauthenticated socket before any event", async () => {
    await expect(connectSocket(t.ds.url, "not-a-token")).rejects.toMatchObject({ message: "unauthorized" });
  });
});
