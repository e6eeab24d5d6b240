/**
 * The Store contract: every Store implementation (SQLite, Redis) runs this suite against the real engine.
 * Call `storeContract(name, factory)` from a *.test.ts file; `reopen` (when the backend can) closes the
 * store and opens it again on the same data, to check what survives a DS restart.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { GroupRecord, NewGroup, NewLogEntry, Store, StoredKeyPackage } from "../../sfu-signaling/store/store.js";

export interface StoreFactory {
  create(): Promise<Store>;
  reopen?(store: Store): Promise<Store>;
}

const b = (...xs: number[]) => new Uint8Array(xs);

function newGroup(over: Partial<NewGroup> = {}): NewGroup {
  return { groupId: "a1", room: "room-1", suite: 1, epoch: 0, groupInfo: b(1, 2, 3), tree: b(4, 5), createdAt: 1000, ...over };
}

function entry(over: Partial<NewLogEntry> = {}): NewLogEntry {
  return { epoch: 0, kind: "proposal", sender: "alice/d1", message: b(9, 9), at: 2000, ...over };
}

function keyPackage(over: Partial<StoredKeyPackage> = {}): StoredKeyPackage {
  return {
    ref: "r1",
    user: "alice",
    device: "d1",
    suite: 1,
    lastResort: false,
    notAfter: 5000,
    keyPackage: b(7, 7, 7),
    identityKey: b(8, 8),
    ...over,
  };
}

export function storeContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    const open = async () => (store = await factory.create());
    afterEach(async () => {
      await store?.close();
    });

    describe("groups", () => {
      it("creates a group and reads it back by id and by room", async () => {
        await open();
        expect(await store.createGroup(newGroup())).toEqual({ ok: true });
        const g = await store.getGroup("a1");
        expect(g).toEqual<GroupRecord>({ ...newGroup(), seq: 0, epochSeq: 0, closed: false });
        expect(await store.openGroupOfRoom("room-1")).toEqual(g);
        expect(await store.groupHead("a1")).toEqual({ epoch: 0, seq: 0, closed: false });
        expect(await store.groupHead("b2")).toBeUndefined();
        expect(await store.openGroups()).toEqual([g]);
        expect(await store.getGroup("b2")).toBeUndefined();
        expect(await store.openGroupOfRoom("room-2")).toBeUndefined();
      });

      it("refuses a second open group for a room and a reused group id, returning the existing group", async () => {
        await open();
        await store.createGroup(newGroup());
        const again = await store.createGroup(newGroup({ groupId: "b2" }));
        expect(again.ok).toBe(false);
        expect(!again.ok && again.existing?.groupId).toBe("a1");
        await store.closeGroup("a1");
        expect((await store.createGroup(newGroup({ room: "room-9" }))).ok).toBe(false);
        expect(await store.createGroup(newGroup({ groupId: "b2" }))).toEqual({ ok: true });
        expect((await store.openGroupOfRoom("room-1"))?.groupId).toBe("b2");
      });

      it("of concurrent creations for one room exactly one succeeds", async () => {
        await open();
        const results = await Promise.all(["01", "02", "03", "04", "05"].map((id) => store.createGroup(newGroup({ groupId: id }))));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(await store.openGroups()).toHaveLength(1);
      });

      it("closing frees the room, keeps the log readable and refuses further appends", async () => {
        await open();
        await store.createGroup(newGroup());
        await store.append("a1", entry());
        await store.closeGroup("a1");
        await store.closeGroup("a1");
        expect(await store.openGroupOfRoom("room-1")).toBeUndefined();
        expect(await store.openGroups()).toEqual([]);
        expect((await store.getGroup("a1"))?.closed).toBe(true);
        expect((await store.groupHead("a1"))?.closed).toBe(true);
        expect(await store.readLog("a1", 0, 10)).toHaveLength(1);
        const r = await store.append("a1", entry());
        expect(r.ok).toBe(false);
        expect(!r.ok && r.reason).toBe("closed");
      });
    });

    describe("log", () => {
      it("numbers entries 1, 2, 3 and reads them back in order after a seq", async () => {
        await open();
        await store.createGroup(newGroup());
        for (let i = 1; i <= 5; i++) expect(await store.append("a1", entry({ message: b(i) }))).toEqual({ ok: true, seq: i });
        const all = await store.readLog("a1", 0, 100);
        expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(all[2]).toEqual({ ...entry({ message: b(3) }), seq: 3 });
        expect((await store.readLog("a1", 2, 2)).map((e) => e.seq)).toEqual([3, 4]);
        expect(await store.readLog("a1", 5, 10)).toEqual([]);
        expect((await store.getGroup("a1"))?.seq).toBe(5);
      });

      it("keeps each group's log separate", async () => {
        await open();
        await store.createGroup(newGroup());
        await store.createGroup(newGroup({ groupId: "b2", room: "room-2" }));
        await store.append("a1", entry());
        expect(await store.append("b2", entry())).toEqual({ ok: true, seq: 1 });
        expect(await store.readLog("b2", 0, 10)).toHaveLength(1);
      });

      it("a commit moves the group to the next epoch with its GroupInfo and tree", async () => {
        await open();
        await store.createGroup(newGroup());
        await store.append("a1", entry());
        const r = await store.append("a1", entry({ kind: "commit" }), { epoch: 0, seq: 1 }, { groupInfo: b(0xaa), tree: b(0xbb) });
        expect(r).toEqual({ ok: true, seq: 2 });
        const g = await store.getGroup("a1");
        expect(g).toMatchObject({ epoch: 1, seq: 2, epochSeq: 2, groupInfo: b(0xaa), tree: b(0xbb) });
        expect(await store.groupHead("a1")).toEqual({ epoch: 1, seq: 2, closed: false });
      });

      it("refuses an append whose expected epoch or seq is stale, changing nothing", async () => {
        await open();
        await store.createGroup(newGroup());
        await store.append("a1", entry({ kind: "commit" }), { epoch: 0, seq: 0 }, { groupInfo: b(1), tree: b(2) });
        const before = await store.getGroup("a1");
        const staleEpoch = await store.append("a1", entry({ kind: "commit" }), { epoch: 0 }, { groupInfo: b(3), tree: b(4) });
        expect(staleEpoch).toMatchObject({ ok: false, reason: "conflict", group: before });
        const staleSeq = await store.append("a1", entry({ epoch: 1 }), { epoch: 1, seq: 0 });
        expect(staleSeq).toMatchObject({ ok: false, reason: "conflict" });
        expect(await store.getGroup("a1")).toEqual(before);
        expect(await store.readLog("a1", 0, 10)).toHaveLength(1);
      });

      it("of concurrent commits for one epoch exactly one is stored", async () => {
        await open();
        await store.createGroup(newGroup());
        const results = await Promise.all(
          [1, 2, 3, 4, 5, 6].map((i) => store.append("a1", entry({ kind: "commit", message: b(i) }), { epoch: 0, seq: 0 }, { groupInfo: b(i), tree: b(i) })),
        );
        const winners = results.filter((r) => r.ok);
        expect(winners).toHaveLength(1);
        const log = await store.readLog("a1", 0, 10);
        expect(log).toHaveLength(1);
        const g = await store.getGroup("a1");
        expect(g?.epoch).toBe(1);
        expect(g?.groupInfo).toEqual(log[0]!.message);
      });

      it("concurrent unconditional appends get distinct consecutive seqs", async () => {
        await open();
        await store.createGroup(newGroup());
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.append("a1", entry({ message: b(i) }))));
        const seqs = results.map((r) => (r.ok ? r.seq : -1)).sort((x, y) => x - y);
        expect(seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      });

      it("refuses appends to an unknown group", async () => {
        await open();
        expect(await store.append("ff", entry())).toEqual({ ok: false, reason: "unknown-group" });
      });

      it("refuses to advance the epoch with a non-commit", async () => {
        await open();
        await store.createGroup(newGroup());
        await expect(store.append("a1", entry(), undefined, { groupInfo: b(1), tree: b(1) })).rejects.toThrow();
        expect((await store.getGroup("a1"))?.epoch).toBe(0);
      });
    });

    describe("acks", () => {
      it("records the highest acknowledged seq per member and never moves it back", async () => {
        await open();
        expect(await store.acked("a1", "alice/d1")).toBe(0);
        await store.ack("a1", "alice/d1", 5);
        await store.ack("a1", "alice/d1", 3);
        await store.ack("a1", "bob/d1", 2);
        expect(await store.acked("a1", "alice/d1")).toBe(5);
        expect(await store.acked("a1", "bob/d1")).toBe(2);
        expect(await store.acked("b2", "alice/d1")).toBe(0);
      });
    });

    describe("KeyPackages", () => {
      it("hands out single-use KeyPackages oldest first, each once", async () => {
        await open();
        expect(await store.putKeyPackages([keyPackage({ ref: "r1" }), keyPackage({ ref: "r2" }), keyPackage({ ref: "r1" })])).toBe(2);
        expect(await store.putKeyPackages([keyPackage({ ref: "r2" })])).toBe(0);
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("r1");
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("r2");
        expect(await store.takeKeyPackage("alice", "d1", 1, 100)).toBeUndefined();
      });

      it("returns the whole record", async () => {
        await open();
        await store.putKeyPackages([keyPackage()]);
        expect(await store.takeKeyPackage("alice", "d1", 1, 100)).toEqual(keyPackage());
      });

      it("returns the last-resort KeyPackage only when nothing else is left, and keeps it", async () => {
        await open();
        await store.putKeyPackages([keyPackage({ ref: "lr", lastResort: true }), keyPackage({ ref: "r1" })]);
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("r1");
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("lr");
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("lr");
      });

      it("a new last-resort KeyPackage replaces the previous one of that suite", async () => {
        await open();
        await store.putKeyPackages([keyPackage({ ref: "lr1", lastResort: true }), keyPackage({ ref: "lr3", lastResort: true, suite: 3 })]);
        await store.putKeyPackages([keyPackage({ ref: "lr2", lastResort: true })]);
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("lr2");
        expect((await store.takeKeyPackage("alice", "d1", 3, 100))?.ref).toBe("lr3");
      });

      it("never hands out an expired KeyPackage", async () => {
        await open();
        await store.putKeyPackages([keyPackage({ ref: "old", notAfter: 50 }), keyPackage({ ref: "lr", lastResort: true, notAfter: 50 })]);
        expect(await store.takeKeyPackage("alice", "d1", 1, 100)).toBeUndefined();
        expect((await store.takeKeyPackage("alice", "d1", 1, 40))).toBeUndefined();
      });

      it("keeps devices, suites and users apart", async () => {
        await open();
        await store.putKeyPackages([
          keyPackage({ ref: "a", device: "d1", suite: 1 }),
          keyPackage({ ref: "b", device: "d2", suite: 3 }),
          keyPackage({ ref: "c", user: "bob", device: "d1", suite: 1 }),
        ]);
        expect(await store.takeKeyPackage("alice", "d1", 3, 100)).toBeUndefined();
        expect((await store.takeKeyPackage("alice", "d2", 3, 100))?.ref).toBe("b");
        expect((await store.takeKeyPackage("bob", "d1", 1, 100))?.ref).toBe("c");
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("a");
      });

      it("lists every device the user uploaded for, with what is left and valid", async () => {
        await open();
        await store.putKeyPackages([
          keyPackage({ ref: "a1" }),
          keyPackage({ ref: "a2" }),
          keyPackage({ ref: "a3", suite: 3, lastResort: true }),
          keyPackage({ ref: "x", notAfter: 10 }),
          keyPackage({ ref: "b1", device: "d2" }),
          keyPackage({ ref: "z", user: "bob" }),
        ]);
        await store.takeKeyPackage("alice", "d2", 1, 100);
        const inv = await store.keyPackageInventory("alice", 100);
        const sorted = inv.map((d) => ({ device: d.device, suites: [...d.suites].sort((x, y) => x.suite - y.suite) })).sort((x, y) => x.device.localeCompare(y.device));
        expect(sorted).toEqual([
          {
            device: "d1",
            suites: [
              { suite: 1, available: 2, lastResort: false },
              { suite: 3, available: 0, lastResort: true },
            ],
          },
          { device: "d2", suites: [] },
        ]);
        expect(await store.keyPackageInventory("carol", 100)).toEqual([]);
      });

      it("of concurrent claims for one KeyPackage exactly one gets it", async () => {
        await open();
        await store.putKeyPackages([keyPackage()]);
        const got = await Promise.all(Array.from({ length: 8 }, () => store.takeKeyPackage("alice", "d1", 1, 100)));
        expect(got.filter((k) => k !== undefined)).toHaveLength(1);
      });
    });

    describe("secrets", () => {
      it("keeps the first value stored under a name", async () => {
        await open();
        expect(await store.ensureSecret("ds-key", b(1, 2))).toEqual(b(1, 2));
        expect(await store.ensureSecret("ds-key", b(3, 4))).toEqual(b(1, 2));
        expect(await store.ensureSecret("other", b(5))).toEqual(b(5));
      });
    });

    describe("durability", () => {
      it.skipIf(!factory.reopen)("everything stored survives closing and reopening", async () => {
        await open();
        await store.createGroup(newGroup());
        await store.append("a1", entry());
        await store.append("a1", entry({ kind: "commit" }), { epoch: 0, seq: 1 }, { groupInfo: b(0xaa), tree: b(0xbb) });
        await store.ack("a1", "alice/d1", 2);
        await store.putKeyPackages([keyPackage()]);
        await store.ensureSecret("ds-key", b(1));
        const before = await store.getGroup("a1");
        store = await factory.reopen!(store);
        expect(await store.getGroup("a1")).toEqual(before);
        expect(await store.readLog("a1", 0, 10)).toHaveLength(2);
        expect(await store.acked("a1", "alice/d1")).toBe(2);
        expect(await store.ensureSecret("ds-key", b(2))).toEqual(b(1));
        expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("r1");
        const again = await store.append("a1", entry({ kind: "commit" }), { epoch: 0 }, { groupInfo: b(1), tree: b(1) });
        expect(again.ok).toBe(false);
      });
    });
  });
}
