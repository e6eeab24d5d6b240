/**
 * The Redis store against a real redis-server started for this file: the shared Store contract, then what
 * only several nodes or a Redis restart can show.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore } from "../../sfu-signaling/store/redis.js";
import type { NewLogEntry, Store } from "../../sfu-signaling/store/store.js";
import { startRedis, type TestRedis } from "../integration/redis-server.js";
import { startTcpProxy } from "../integration/tcp-proxy.js";
import { storeContract } from "./store-contract.js";

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.destroy();
});

let n = 0;
const prefixes = new WeakMap<Store, string>();

async function open(keyPrefix: string): Promise<RedisStore> {
  const store = await RedisStore.connect({ url: redis.url, keyPrefix });
  prefixes.set(store, keyPrefix);
  return store;
}

storeContract("redis", {
  create: () => open(`contract-${n++}:`),
  async reopen(store) {
    const prefix = prefixes.get(store)!;
    await store.close();
    return open(prefix);
  },
});

const b = (...xs: number[]) => new Uint8Array(xs);
const entry = (over: Partial<NewLogEntry> = {}): NewLogEntry => ({ epoch: 0, kind: "proposal", sender: "alice/d1", message: b(1), at: 1, ...over });
const group = { groupId: "a1", room: "r", suite: 1, epoch: 0, groupInfo: b(1), tree: b(2), createdAt: 1 };

describe("Redis store: several nodes on one Redis", () => {
  it("of commits for one epoch raced from two nodes, exactly one is stored, every round", async () => {
    const prefix = `race-${n++}:`;
    const [node1, node2] = [await open(prefix), await open(prefix)];
    try {
      await node1.createGroup(group);
      for (let epoch = 0; epoch < 30; epoch++) {
        const head = (await node2.groupHead("a1"))!;
        expect(head.epoch).toBe(epoch);
        const attempt = (node: Store, who: number) =>
          node.append("a1", entry({ kind: "commit", epoch, message: b(who, epoch) }), { epoch, seq: head.seq }, { groupInfo: b(who, epoch), tree: b(who) });
        // Several candidates per node, as when many members commit at once.
        const results = await Promise.all([attempt(node1, 1), attempt(node2, 2), attempt(node1, 3), attempt(node2, 4)]);
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        for (const r of results) if (!r.ok) expect(r).toMatchObject({ reason: "conflict" });
      }
      const log = await node1.readLog("a1", 0, 100);
      expect(log.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      expect(log.map((e) => e.epoch)).toEqual(Array.from({ length: 30 }, (_, i) => i));
      const g = (await node2.getGroup("a1"))!;
      expect(g).toMatchObject({ epoch: 30, seq: 30, epochSeq: 30 });
      // The group's state is the winner's: the GroupInfo stored with the last commit.
      expect(g.groupInfo).toEqual(log[29]!.message);
    } finally {
      await node1.close();
      await node2.close();
    }
  });

  it("unconditional appends from two nodes interleave without gaps or duplicates", async () => {
    const prefix = `interleave-${n++}:`;
    const [node1, node2] = [await open(prefix), await open(prefix)];
    try {
      await node1.createGroup(group);
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? node1 : node2).append("a1", entry({ message: b(i) }))));
      const seqs = results.map((r) => (r.ok ? r.seq : -1)).sort((x, y) => x - y);
      expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      const log = await node2.readLog("a1", 0, 100);
      expect(new Set(log.map((e) => e.message[0])).size).toBe(40);
    } finally {
      await node1.close();
      await node2.close();
    }
  });

  it("a node sees another node's append in groupHead, getGroup and readLog at once", async () => {
    const prefix = `visibility-${n++}:`;
    const [node1, node2] = [await open(prefix), await open(prefix)];
    try {
      await node1.createGroup(group);
      await node1.append("a1", entry({ kind: "commit" }), { epoch: 0, seq: 0 }, { groupInfo: b(9), tree: b(8) });
      expect(await node2.groupHead("a1")).toEqual({ epoch: 1, seq: 1, closed: false });
      expect((await node2.openGroupOfRoom("r"))?.groupInfo).toEqual(b(9));
      await node2.closeGroup("a1");
      expect(await node1.openGroupOfRoom("r")).toBeUndefined();
      expect((await node1.append("a1", entry({ epoch: 1 }))).ok).toBe(false);
    } finally {
      await node1.close();
      await node2.close();
    }
  });

  it("reads a long log in pages and keeps the log's binary messages intact", async () => {
    const store = await open(`long-${n++}:`);
    try {
      await store.createGroup(group);
      const message = Uint8Array.from({ length: 300 }, (_, i) => (i * 7 + 10) & 0xff); // includes 0x0a
      for (let i = 0; i < 2500; i += 500) {
        await Promise.all(Array.from({ length: 500 }, () => store.append("a1", entry({ message, sender: "ü/d:1\n" }))));
      }
      const all = await store.readLog("a1", 0, 10_000);
      expect(all).toHaveLength(2500);
      expect(all[1234]).toEqual({ ...entry({ message, sender: "ü/d:1\n" }), seq: 1235 });
      expect((await store.readLog("a1", 2400, 1500)).map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 2401 + i));
    } finally {
      await store.close();
    }
  });

  it("keys cannot collide through separators in names", async () => {
    const store = await open(`names-${n++}:`);
    try {
      await store.createGroup({ ...group, room: "a:b" });
      expect((await store.createGroup({ ...group, groupId: "b2", room: "a" })).ok).toBe(true);
      await store.ack("a1", "x:y", 3);
      expect(await store.acked("a1", "x")).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe("Redis store: bounded footprint", () => {
  it("a group costs a fixed set of keys however long its log, and its resend window stays bounded", async () => {
    const prefix = `footprint-${n++}:`;
    const store = await open(prefix);
    try {
      await store.createGroup(group);
      for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 200 }, (_, j) => store.append("a1", entry({ message: b(j) }))));
      await Promise.all(Array.from({ length: 20 }, (_, m) => store.ack("a1", `m${m}/d1`, 5)));
      const keys = (await store.redis.keys(`${prefix}*`)).map((k) => k.slice(prefix.length)).sort();
      expect(keys).toEqual(["acks:a1", "g:a1", "log:a1", "open", "room:r", "tok:a1"]);
      expect(await store.redis.zcard(`${prefix}tok:a1`)).toBe(256);
      await store.closeGroup("a1");
      expect((await store.redis.keys(`${prefix}*`)).map((k) => k.slice(prefix.length)).sort()).toEqual(["acks:a1", "g:a1", "log:a1"]);
    } finally {
      await store.close();
    }
  });

  it("expired KeyPackages are deleted when the inventory is counted, not kept under the device's cap", async () => {
    const prefix = `kp-expiry-${n++}:`;
    const store = await open(prefix);
    const kp = (ref: string, notAfter: number, lastResort = false) => ({
      ref,
      user: "alice",
      device: "d1",
      suite: 1,
      lastResort,
      notAfter,
      keyPackage: b(1),
      identityKey: b(2),
    });
    try {
      await store.putKeyPackages([kp("old1", 10), kp("new", 500), kp("old2", 20), kp("lr", 30, true)]);
      expect(await store.keyPackageInventory("alice", 100)).toEqual([{ device: "d1", suites: [{ suite: 1, available: 1, lastResort: false }] }]);
      expect((await store.redis.smembers(`${prefix}kprefs`)).sort()).toEqual(["new"]);
      expect((await store.takeKeyPackage("alice", "d1", 1, 100))?.ref).toBe("new");
      expect(await store.keyPackageInventory("alice", 100)).toEqual([{ device: "d1", suites: [] }]);
      expect((await store.redis.keys(`${prefix}*`)).map((k) => k.slice(prefix.length)).sort()).toEqual(["kpdev:alice"]);
    } finally {
      await store.close();
    }
  });
});

describe("Redis store: connection", () => {
  it("fails at once when Redis cannot be reached", async () => {
    const closed = await startTcpProxy(() => undefined);
    await expect(RedisStore.connect({ url: `redis://127.0.0.1:${closed.port}`, redis: { retryStrategy: () => null } })).rejects.toThrow();
    await closed.close();
  });

  it("reports whether the server's persistence survives a crash, and where the data is", async () => {
    const store = await RedisStore.connect({ url: redis.url, keyPrefix: "d:" });
    try {
      expect(await store.durability()).toEqual({ appendonly: "yes", appendfsync: "always", crashSafe: true });
      expect(store.description).toBe(`redis://127.0.0.1:${redis.port} prefix d:`);
    } finally {
      await store.close();
    }
  });
});

describe("Redis store: Redis restarts", () => {
  it("reconnects after a restart and continues the log without forking", async () => {
    const prefix = `restart-${n++}:`;
    const [node1, node2] = [await open(prefix), await open(prefix)];
    try {
      await node1.createGroup(group);
      for (let epoch = 0; epoch < 5; epoch++) {
        expect((await node1.append("a1", entry({ kind: "commit", epoch }), { epoch }, { groupInfo: b(epoch), tree: b(epoch) })).ok).toBe(true);
      }
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        const { epoch } = (await node1.groupHead("a1"))!;
        await redis.stop(signal);
        // Commands issued while Redis is down wait for the reconnection instead of failing.
        const commit = (node: Store, who: number) => node.append("a1", entry({ kind: "commit", epoch, message: b(who) }), { epoch }, { groupInfo: b(who), tree: b(who) });
        const pending = Promise.all([commit(node1, 1), commit(node2, 2)]);
        await redis.start();
        expect((await pending).filter((r) => r.ok)).toHaveLength(1);
        expect(await node2.groupHead("a1")).toEqual({ epoch: epoch + 1, seq: epoch + 1, closed: false });
      }
      const log = await node2.readLog("a1", 0, 100);
      expect(log.map((e) => [e.seq, e.epoch])).toEqual(Array.from({ length: 7 }, (_, i) => [i + 1, i]));
      // Scripts are loaded again after the restart emptied Redis's script cache.
      expect(await node2.append("a1", entry({ epoch: 7 }))).toEqual({ ok: true, seq: 8 });
    } finally {
      await node1.close();
      await node2.close();
    }
  });
});

describe("Redis store: lost replies", () => {
  it("a command resent after its reply was lost is applied once, with its first answer", async () => {
    const proxy = await startTcpProxy(() => redis.port);
    const store = await RedisStore.connect({ url: `redis://127.0.0.1:${proxy.port}`, keyPrefix: `lost-${n++}:` });
    try {
      // Load the scripts first, so the reply lost below is the script's and not a NOSCRIPT.
      await store.createGroup({ ...group, groupId: "w0", room: "warm-up" });
      await store.append("w0", entry());
      proxy.dropNextReply();
      expect(await store.createGroup(group)).toEqual({ ok: true });
      expect(proxy.replyDropped).toBe(true);

      // A conditional commit: without recognising its own resend, the store would answer "conflict".
      proxy.dropNextReply();
      expect(await store.append("a1", entry({ kind: "commit" }), { epoch: 0, seq: 0 }, { groupInfo: b(7), tree: b(7) })).toEqual({ ok: true, seq: 1 });
      expect(proxy.replyDropped).toBe(true);

      // An unconditional append: without it, the entry would be stored twice.
      proxy.dropNextReply();
      expect(await store.append("a1", entry({ epoch: 1 }))).toEqual({ ok: true, seq: 2 });
      expect(proxy.replyDropped).toBe(true);

      expect((await store.readLog("a1", 0, 10)).map((e) => e.seq)).toEqual([1, 2]);
      expect(await store.groupHead("a1")).toEqual({ epoch: 1, seq: 2, closed: false });
    } finally {
      await store.close();
      await proxy.close();
    }
  });
});
