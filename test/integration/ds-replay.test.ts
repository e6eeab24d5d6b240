/**
 * Log replays (`group:subscribe { after }`) are paced by the subscriber's connection: a client that asks for
 * a long log again and again, and does not read, makes the DS queue at most one window for it, while the
 * call goes on and an honest subscriber still gets every entry in order. Real DS, SQLite, Socket.IO on
 * loopback; the non-reading client sits behind a proxy that stops reading from the DS.
 */
import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket as NetSocket } from "node:net";
import type { Socket as ServerSocket } from "socket.io";
import type { Socket } from "socket.io-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DsConnection } from "../../client/ds-connection.js";
import { queuedBytes } from "../../sfu-signaling/ds/socket-queue.js";
import { memberId } from "../../sfu-signaling/protocol.js";
import { connectSocket, errorCode, ok, request, startTestDs, type Reply, type TestDs } from "./ds-helpers.js";
import { Participant } from "./ds-participant.js";

const ENTRIES = 3000;
/** 12 MB of log: far more than the kernel's loopback socket buffers absorb for a reader that stopped. */
const ENTRY_BYTES = 4096;
const WINDOW = 1 << 20;

/** A loopback proxy whose connections can stop reading from the DS (the DS's writes then back up). */
async function startStallingProxy(target: number) {
  const backends = new Set<NetSocket>();
  const clients = new Map<NetSocket, NetSocket>();
  const server = createServer((client) => {
    const backend = connect(target, "127.0.0.1");
    backends.add(backend);
    clients.set(backend, client);
    client.pipe(backend);
    backend.pipe(client);
    const end = () => {
      backends.delete(backend);
      clients.delete(backend);
      client.destroy();
      backend.destroy();
    };
    for (const s of [client, backend]) s.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    /** Stops reading from the DS on every open connection. */
    stall: () => {
      for (const b of backends) {
        b.unpipe();
        b.pause();
      }
    },
    /** Reads from the DS again on every open connection (a stalled one then sees what the DS did meanwhile). */
    resume: () => {
      for (const b of backends) b.pipe(clients.get(b)!);
    },
    close: () => {
      for (const b of backends) b.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Collects the seqs of `group:msg` pushes on a client socket. */
function seqsOf(socket: Socket): number[] {
  const seqs: number[] = [];
  socket.on("group:msg", (e: { seq: number }) => seqs.push(e.seq));
  return seqs;
}

async function until(done: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe("DS log replay", () => {
  let t: TestDs;
  const serverSockets = new Map<string, ServerSocket[]>();
  let alice: Participant;
  let bob: Participant;
  let groupId: string;
  let head: number;

  beforeAll(async () => {
    t = await startTestDs({
      leaveGraceMs: 60_000,
      onConnection: (socket, principal) => {
        const list = serverSockets.get(memberId(principal)) ?? [];
        list.push(socket);
        serverSockets.set(memberId(principal), list);
      },
    });
    alice = await Participant.connect(t.ds.url, await t.token({ user: "alice" }), "alice/d1");
    await alice.join("replay");
    groupId = alice.groupId!;
    // A long call history: chat-sized entries written to the store as the sequencer would have.
    for (let i = 0; i < ENTRIES; i++) {
      const r = await t.store.append(groupId, { kind: "application", epoch: 0, sender: "alice/d1", message: randomBytes(ENTRY_BYTES), at: Date.now() });
      if (!r.ok) throw new Error(`append refused: ${r.reason}`);
    }
    alice.lastSeq = ENTRIES;
    bob = await Participant.connect(t.ds.url, await t.token({ user: "bob" }), "bob/d1");
    await bob.join("replay");
    await alice.waitUntil(() => alice.lastSeq === ENTRIES + 1, "bob's join");
    head = ENTRIES + 1;
  }, 120_000);

  afterAll(async () => {
    alice?.close();
    bob?.close();
    await t?.close();
  });

  it("queues at most one window for a client that re-subscribes from 0 and does not read, and the call goes on", async () => {
    const proxy = await startStallingProxy(t.ds.port);
    try {
      const mallory = await connectSocket(proxy.url, await t.token({ user: "mallory" }));
      const received = seqsOf(mallory);
      const server = serverSockets.get("mallory/d1")![0]!;
      const refused = () => t.ds.metrics.refusals.get({ event: "group:subscribe", code: "rate-limited" });
      const refusedBefore = refused();
      proxy.stall();
      // Mallory never reads the answers; they fail when it disconnects.
      for (let i = 0; i < 20; i++) request(mallory, "group:subscribe", { groupId, after: 0 }).catch(() => undefined);
      let maxQueued = 0;
      const sample = setInterval(() => (maxQueued = Math.max(maxQueued, queuedBytes(server))), 5);
      try {
        // The first replay waits for mallory to read; the other 19 subscribes are refused meanwhile.
        await until(() => refused() - refusedBefore === 19, "19 refused subscribes", 15_000).catch(() => undefined);
        // Meanwhile the members' chat is sequenced and delivered live, in order.
        for (let i = 0; i < 5; i++) {
          ok(await alice.send(`a${i}`));
          ok(await bob.send(`b${i}`));
        }
        await alice.waitUntil(() => alice.lastSeq === head + 10, "the chat");
        await bob.waitUntil(() => bob.lastSeq === head + 10, "the chat");
      } finally {
        clearInterval(sample);
      }
      maxQueued = Math.max(maxQueued, queuedBytes(server));
      expect(maxQueued).toBeLessThanOrEqual(WINDOW + 2 * ENTRY_BYTES);
      expect(refused() - refusedBefore).toBe(19);
      expect(t.ds.metrics.replays.get()).toBe(1);
      expect(alice.messages).toEqual(["b0", "b1", "b2", "b3", "b4"]);
      expect(bob.messages).toEqual(["a0", "a1", "a2", "a3", "a4"]);
      expect([...alice.errors, ...bob.errors]).toEqual([]);
      expect(received.length).toBeLessThan(ENTRIES);
      mallory.disconnect();
      // The stalled replay ends with the connection.
      await until(() => t.ds.metrics.replays.get() === 0, "the replay to stop");
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it("limits paced replays per device across connections", async () => {
    const proxy = await startStallingProxy(t.ds.port);
    try {
      const sockets = await Promise.all(range(1, 5).map(async () => connectSocket(proxy.url, await t.token({ user: "eve" }))));
      const refused = () => t.ds.metrics.refusals.get({ event: "group:subscribe", code: "rate-limited" });
      const refusedBefore = refused();
      proxy.stall();
      for (const s of sockets.slice(0, 4)) s.emit("group:subscribe", { groupId, after: 0 }, () => {});
      await until(() => t.ds.metrics.replays.get() === 4, "four paced replays");
      sockets[4]!.emit("group:subscribe", { groupId, after: 0 }, () => {});
      await until(() => refused() - refusedBefore === 1, "the fifth replay refused");
      for (const s of sockets) s.disconnect();
      await until(() => t.ds.metrics.replays.get() === 0, "the replays to stop");
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it("replays the whole log in order to an honest subscriber, then live entries, and refuses a second subscribe meanwhile", async () => {
    const carol = await t.client({ user: "carol" });
    const seqs = seqsOf(carol);
    const [first, second] = await Promise.all([
      request<{ seq: number }>(carol, "group:subscribe", { groupId, after: 0 }),
      request<{ seq: number }>(carol, "group:subscribe", { groupId, after: 0 }),
    ]);
    expect(errorCode(second as Reply<unknown>)).toBe("rate-limited");
    const last = ok(first).seq;
    expect(last).toBe(alice.lastSeq);
    expect(seqs).toEqual(range(1, last));
    ok(await alice.send("after the replay"));
    await until(() => seqs.length === last + 1, "the live entry");
    expect(seqs).toEqual(range(1, last + 1));
    // Subscribing again once the replay is over is fine (a client resuming after a gap does this).
    ok(await request(carol, "group:subscribe", { groupId, after: last }));
    carol.disconnect();
  }, 60_000);

  it("delivers replay then live entries exactly once and in order to the client SDK while the call keeps sending", async () => {
    const connection = await DsConnection.connect({ url: t.ds.url, token: await t.token({ user: "dave" }), transports: ["websocket"] });
    try {
      const seqs: number[] = [];
      const subscribed = connection.subscribe(groupId, 0, { entry: (e) => seqs.push(e.seq), closed: () => undefined });
      const sent = (async () => {
        let seq = 0;
        for (let i = 0; i < 5; i++) seq = ok(await alice.send(`during ${i}`)).seq;
        return seq;
      })();
      await subscribed;
      const last = await sent;
      await until(() => seqs.length >= last, "every entry");
      expect(seqs).toEqual(range(1, last));
    } finally {
      connection.close();
    }
  }, 60_000);
});

describe("DS live fan-out to a connection that stopped reading", () => {
  const LIMIT = 512 << 10;
  let t: TestDs;

  beforeAll(async () => {
    // Alice sends far faster than the default byte rate allows a member: that limit is not what is tested here.
    t = await startTestDs({ maxQueuedBytes: LIMIT, leaveGraceMs: 60_000, rateLimits: { bytesPerSecond: 256 << 20, byteBurst: 256 << 20 } });
  });

  afterAll(async () => {
    await t?.close();
  });

  it("drops the connection once its backlog passes maxQueuedBytes; the client reconnects and misses nothing", async () => {
    const alice = await Participant.connect(t.ds.url, await t.token({ user: "alice" }), "alice/d1");
    await alice.join("backlog");
    const groupId = alice.groupId!;
    const proxy = await startStallingProxy(t.ds.port);
    const connection = await DsConnection.connect({ url: proxy.url, token: await t.token({ user: "dave" }), transports: ["websocket"], reconnectionDelayMs: 50 });
    try {
      const seqs: number[] = [];
      await connection.subscribe(groupId, 0, { entry: (e) => seqs.push(e.seq), closed: () => undefined });
      proxy.stall();
      // 15 MB of chat while dave reads nothing: more than the loopback socket buffers absorb, so the rest piles
      // up in the DS (the limit is 512 KiB); sending stops as soon as the DS has dropped dave's connection.
      const big = "x".repeat(600_000);
      let last = 0;
      for (let i = 0; i < 25 && t.ds.metrics.backlogDisconnects.get() === 0; i++) last = ok(await alice.send(`${i} ${big}`)).seq;
      await until(() => t.ds.metrics.backlogDisconnects.get() === 1, "the backlog disconnect");
      last = ok(await alice.send("after the disconnect")).seq;
      // The DS let go of the connection at once; dave, reading again, sees the drop, reconnects and resumes.
      await until(() => t.ds.metrics.connections.get() === 1, "the DS to let go of dave's connection (alice's is left)");
      proxy.resume();
      await until(() => seqs.length === last, "dave to catch up after reconnecting", 30_000);
      expect(seqs).toEqual(range(1, last));
      expect(alice.errors).toEqual([]);
    } finally {
      connection.close();
      alice.close();
      await proxy.close();
    }
  }, 60_000);
});
