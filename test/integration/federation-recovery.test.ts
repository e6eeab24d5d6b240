/**
 * Issue 8: the link between a follower (b.example) and the hub (a.example) fails mid-call. Delivery
 * between DSes is at-least-once with de-duplication by seq: whatever the hub accepted while the link was
 * down reaches the follower's users afterwards, once and in order; what the follower's users sent meanwhile
 * reaches the hub once, even when the hub acted on it and only its answer was lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WireEntry } from "../../sfu-signaling/protocol.js";
import { describePeers, epochOf, fingerprint, fullLog, until, type Peer } from "./call-helpers.js";
import { homePeer, startProviders, stopProviders, type Provider } from "./federation-helpers.js";

const ROOM = "sync@a.example";
const SLOW_BACKOFF = { commitPolicy: { backoffStepMs: 5000, maxBackoffMs: 20_000 } };
/** Longer than any outage here: the hub must not mistake a dropped link for its members leaving. */
const GRACE_MS = 6000;

describe("a follower's link to the hub drops mid-call", () => {
  let providers: Map<string, Provider>;
  let a: Provider;
  let b: Provider;
  const peers: Peer[] = [];
  const received = new Map<Peer, number[]>();
  let groupId: string;
  let cutAt = 0;

  beforeAll(async () => {
    providers = await startProviders([{ domain: "a.example" }, { domain: "b.example" }], { leaveGraceMs: GRACE_MS });
    a = providers.get("a.example")!;
    b = providers.get("b.example")!;
    for (const [p, user] of [
      [a, "alice@a.example"],
      [a, "amy@a.example"],
      [b, "bob@b.example"],
      [b, "bea@b.example"],
    ] as const) {
      const peer = await homePeer(p, user, ROOM, SLOW_BACKOFF);
      const seqs: number[] = [];
      received.set(peer, seqs);
      peer.connection.socket.on("group:msg", (e: WireEntry) => seqs.push(e.seq));
      peers.push(peer);
      await peer.session.join();
    }
    groupId = peers[0]!.session.groupId!;
    await agreeAt(3n);
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    await stopProviders(providers);
  });

  const present = () => peers.filter((p) => p.closed === undefined);
  const byName = (n: string) => peers.find((p) => p.name === n)!;

  async function agreeAt(epoch: bigint): Promise<void> {
    const live = present();
    await until(() => live.every((p) => epochOf(p) === epoch), () => `waiting for epoch ${epoch}: ${describePeers(live)}`);
    expect(new Set(live.map((p) => fingerprint(p.session.currentEpoch!))).size, describePeers(live)).toBe(1);
  }

  function texts(p: Peer): string[] {
    return p.messages.map((m) => m.text);
  }

  it("catches the follower's users up on everything the hub accepted while the link was down", async () => {
    const alice = byName("alice@a.example");
    const amy = byName("amy@a.example");
    const bob = byName("bob@b.example");
    b.down = false;
    a.down = true;
    a.proxy.cut();
    cutAt = Date.now();
    await until(() => !b.federation.followed(groupId)!.live, () => "the follower noticing the dropped link");

    // On the hub's side only: chat, a leave (the DS's Remove proposal) and the commit that removes amy.
    await alice.session.chat("during 1");
    await amy.session.leave();
    await until(() => epochOf(alice) === 4n, () => `alice committing amy's removal: ${describePeers([alice])}`);
    await alice.session.chat("during 2");
    // The follower's user sends meanwhile: its DS holds the request until the link is back.
    const sent = bob.session.chat("from b while down");
    expect(epochOf(bob)).toBe(3n);

    a.down = false;
    await sent;
    await agreeAt(4n);
    await until(
      () => present().every((p) => p === bob || texts(p).includes("from b while down")) && ["bob@b.example", "bea@b.example"].every((n) => texts(byName(n)).includes("during 2")),
      () => `catch-up: ${present().map((p) => `${p.name}:${texts(p).join("|")}`).join(", ")}`,
    );
    for (const n of ["bob@b.example", "bea@b.example"]) expect(texts(byName(n)).filter((t) => t.startsWith("during"))).toEqual(["during 1", "during 2"]);
    for (const n of ["alice@a.example", "bea@b.example"]) expect(texts(byName(n)).filter((t) => t === "from b while down")).toHaveLength(1);
    const log = await fullLog(a.store, groupId);
    expect(log.filter((e) => e.kind === "application").length).toBe(3);
    expect(log.filter((e) => e.kind === "commit").map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
  });

  it("does not act twice when the hub accepted a message but its answer was lost with the link", async () => {
    const bob = byName("bob@b.example");
    const before = (await fullLog(a.store, groupId)).length;
    // The next bytes the hub sends through the proxy (the new entry, then the answer) are lost with the link.
    a.proxy.dropNextReply();
    await bob.session.chat("answer lost");
    expect(a.proxy.replyDropped).toBe(true);
    await until(
      () => present().every((p) => p === bob || texts(p).includes("answer lost")),
      () => `delivery: ${present().map((p) => `${p.name}:${texts(p).join("|")}`).join(", ")}`,
    );
    const log = await fullLog(a.store, groupId);
    expect(log.slice(before).map((e) => e.kind)).toEqual(["application"]);
    for (const p of present().filter((x) => x !== bob)) expect(texts(p).filter((t) => t === "answer lost")).toHaveLength(1);
  });

  it("kept the follower's members in the call: their DS announced them again once the link was back", async () => {
    // The hub started their leave grace when the link dropped; past it, nobody but amy was proposed for removal.
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + GRACE_MS + 1000 - Date.now())));
    const proposals = (await fullLog(a.store, groupId)).filter((e) => e.kind === "proposal");
    expect(proposals).toHaveLength(1);
    expect(a.ds.metrics.externalProposals.get({ cause: "disconnect" })).toBe(0);
  });

  it("delivered every entry to every member once and in order, and the follower mirrors the hub's log", async () => {
    const log = await fullLog(a.store, groupId);
    for (const p of present()) {
      const seqs = received.get(p)!;
      expect(seqs, p.name).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
      expect(seqs.at(-1), p.name).toBe(log.at(-1)!.seq);
    }
    const mirror = b.federation.followed(groupId)!;
    expect(mirror.head).toBe(log.at(-1)!.seq);
    expect(mirror.epoch).toBe(4);
    expect(mirror.live).toBe(true);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });
});
