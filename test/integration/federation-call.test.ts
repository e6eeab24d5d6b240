/**
 * Issue 8: one call across three providers. The call's room is hosted by a.example (its hub); users of
 * b.example and c.example join through their own DS (server fan-out), one user of b.example connects to the
 * hub directly with a token the hub issued through the federation link (client fan-out). Every member must
 * see the same epochs and safety codes, the hub's log must hold exactly one commit per epoch, and every
 * member must receive every entry once, in order, whichever DS it is connected to.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { utf8 } from "../../keying/codec/bytes.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { DsConnection } from "../../client/ds-connection.js";
import { connectToHub, hubToken, onDeviceChange, retireDevice, type DeviceChange } from "../../client/federation.js";
import { describePeers, epochOf, fingerprint, fullLog, sessionPeer, until, type Peer } from "./call-helpers.js";
import { TrackedPeers, connectTo, homePeer, startProviders, stopProviders, type Provider } from "./federation-helpers.js";

const ROOM = "standup@a.example";
const SLOW_BACKOFF = { commitPolicy: { backoffStepMs: 5000, maxBackoffMs: 20_000 } };

describe("a call across three providers", () => {
  let providers: Map<string, Provider>;
  let a: Provider;
  let b: Provider;
  let c: Provider;
  const tracked = new TrackedPeers();
  const { peers, received } = tracked;
  let groupId: string;

  beforeAll(async () => {
    providers = await startProviders([{ domain: "a.example" }, { domain: "b.example" }, { domain: "c.example" }]);
    a = providers.get("a.example")!;
    b = providers.get("b.example")!;
    c = providers.get("c.example")!;
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    await stopProviders(providers);
  });

  const present = () => peers.filter((p) => p.closed === undefined);

  /** Device-change events each present peer receives from now on. */
  function watchDevices(): Map<Peer, DeviceChange[]> {
    const seen = new Map<Peer, DeviceChange[]>();
    for (const p of present()) {
      const list: DeviceChange[] = [];
      seen.set(p, list);
      onDeviceChange(p.connection, (e) => list.push(e));
    }
    return seen;
  }

  const track = (p: Peer) => tracked.add(p);

  async function agreeAt(epoch: bigint): Promise<string[]> {
    const live = present();
    await until(() => live.every((p) => epochOf(p) === epoch), () => `waiting for epoch ${epoch}: ${describePeers(live)}`);
    const prints = new Set(live.map((p) => fingerprint(p.session.currentEpoch!)));
    expect(prints.size, describePeers(live)).toBe(1);
    return live[0]!.session.currentEpoch!.members.map((m) => m.identity).sort();
  }

  async function oneCommitPerEpoch(epoch: bigint): Promise<void> {
    const commits = (await fullLog(a.store, groupId)).filter((e) => e.kind === "commit").map((e) => e.epoch);
    expect(commits).toEqual(Array.from({ length: Number(epoch) }, (_, i) => i));
  }

  it("lets users of three providers join a call hosted by one of them, each join one epoch", async () => {
    const alice = track(await homePeer(a, "alice@a.example", ROOM, SLOW_BACKOFF));
    await alice.session.join();
    expect(alice.epochs[0]!.cause).toBe("created");
    groupId = alice.session.groupId!;

    const bob = track(await homePeer(b, "bob@b.example", ROOM, SLOW_BACKOFF));
    await bob.session.join();
    expect(bob.session.groupId).toBe(groupId);
    expect(await agreeAt(1n)).toEqual(["alice@a.example/d1", "bob@b.example/d1"]);

    const carol = track(await homePeer(c, "carol@c.example", ROOM, SLOW_BACKOFF));
    await carol.session.join();
    expect(await agreeAt(2n)).toEqual(["alice@a.example/d1", "bob@b.example/d1", "carol@c.example/d1"]);
    await oneCommitPerEpoch(2n);

    // The hub stored the group; the followers only mirror it, with the hub's seqs and the roster by provider.
    expect(await b.store.getGroup(groupId)).toBeUndefined();
    const mirror = b.federation.followed(groupId)!;
    expect(mirror.hub).toBe("a.example");
    expect(mirror.epoch).toBe(2);
    expect(mirror.roster.map((r) => `${r.member}@${r.provider}`).sort()).toEqual(["alice@a.example/d1@a.example", "bob@b.example/d1@b.example", "carol@c.example/d1@c.example"]);
  });

  it("mixes in a user of b.example connected straight to the hub with a token the hub issued", async () => {
    const home = await connectTo(b, "dave@b.example");
    const grant = await hubToken(home, ROOM);
    expect(grant.hub).toBe("a.example");
    // The URL the hub's provider is known by (here the proxy in front of a.example).
    expect(grant.url).toBe(a.linkUrl);
    const direct = await connectToHub(home, ROOM, { transports: ["websocket"] });
    home.close();
    const dave = track(sessionPeer(direct, "dave@b.example", ROOM, SLOW_BACKOFF));
    await dave.session.join();
    expect(await agreeAt(3n)).toEqual(["alice@a.example/d1", "bob@b.example/d1", "carol@c.example/d1", "dave@b.example/d1"]);
    // Connected to the hub itself: the hub delivers to it, b.example is not involved.
    expect(a.ds.metrics.connections.get({})).toBeGreaterThanOrEqual(2);
    // The hub token grants this room only.
    const other = sessionPeer(await DsConnection.connect({ url: grant.url!, token: grant.token, transports: ["websocket"] }), "dave@b.example", "other@a.example");
    await expect(other.session.join()).rejects.toThrow(/forbidden-room/);
    other.connection.close();
  });

  it("keeps one commit per epoch when members on different providers join at the same moment", async () => {
    const batch = await Promise.all([
      homePeer(a, "erin@a.example", ROOM, SLOW_BACKOFF),
      homePeer(b, "frank@b.example", ROOM, { ...SLOW_BACKOFF, rejoinWhenRemoved: false }),
      homePeer(c, "grace@c.example", ROOM, SLOW_BACKOFF),
      homePeer(c, "heidi@c.example", ROOM, SLOW_BACKOFF),
    ]);
    batch.forEach(track);
    const lost = a.ds.metrics.commitsRejected.get({ reason: "wrong-epoch" });
    await Promise.all(batch.map((p) => p.session.join()));
    expect(a.ds.metrics.commitsRejected.get({ reason: "wrong-epoch" })).toBeGreaterThan(lost);
    const roster = await agreeAt(7n);
    expect(roster).toHaveLength(8);
    await oneCommitPerEpoch(7n);
  });

  it("delivers chat from every provider to every member, named by MLS credential", async () => {
    const senders = [peers.find((p) => p.name === "carol@c.example")!, peers.find((p) => p.name === "dave@b.example")!, peers.find((p) => p.name === "alice@a.example")!];
    for (const s of senders) await s.session.chat(`hi from ${s.name}`);
    const texts = senders.map((s) => `hi from ${s.name}`);
    await until(
      () => present().every((p) => texts.filter((t) => !t.endsWith(p.name)).every((t) => p.messages.some((m) => m.text === t))),
      () => `chat: ${present().map((p) => `${p.name}:${p.messages.length}`).join(",")}`,
    );
    for (const p of present()) {
      const got = p.messages.filter((m) => texts.includes(m.text));
      expect(got.map((m) => `${m.sender?.identity}:${m.text}`)).toEqual(senders.filter((s) => s !== p).map((s) => `${s.name}/d1:hi from ${s.name}`));
    }
  });

  it("tells members on every provider when a user of b.example adds a device", async () => {
    const seen = watchDevices();
    const phone = await connectTo(b, "bob@b.example", "phone");
    const id = await MlsGroup.generateIdentity(utf8("bob@b.example/phone"));
    await phone.request("kp:upload", { keyPackages: [(await MlsGroup.generateKeyPackage(id)).message] });
    const watchers = present().filter((p) => p.name !== "bob@b.example");
    expect(new Set(watchers.map((p) => p.name.split("@")[1]))).toEqual(new Set(["a.example", "b.example", "c.example"]));
    await until(
      () => watchers.every((p) => seen.get(p)!.length > 0),
      () => `device events: ${watchers.map((p) => `${p.name}:${seen.get(p)!.length}`).join(",")}`,
    );
    for (const p of watchers) expect(seen.get(p)).toEqual([{ groupId, user: "bob@b.example", device: "phone", change: "added" }]);
    phone.close();
  });

  it("removes a device its user retires from the call, and tells every member", async () => {
    const frank = peers.find((p) => p.name === "frank@b.example")!;
    const seen = watchDevices();
    const before = epochOf(frank);
    const laptop = await connectTo(b, "frank@b.example", "laptop");
    await retireDevice(laptop, "d1");
    laptop.close();
    // Still connected, but removed by the hub's Remove proposal and the next commit (it does not rejoin).
    await until(() => frank.closed === "removed", () => `frank removed: ${describePeers([frank])}`);
    expect(await agreeAt(before + 1n)).not.toContain("frank@b.example/d1");
    for (const p of present()) expect(seen.get(p)).toContainEqual({ groupId, user: "frank@b.example", device: "d1", change: "removed" });
  });

  it("removes leavers from every provider with one commit each, and delivered every entry once and in order", async () => {
    const before = epochOf(present()[0]!);
    const bob = peers.find((p) => p.name === "bob@b.example")!;
    await bob.session.leave();
    expect(await agreeAt(before + 1n)).not.toContain("bob@b.example/d1");
    const grace = peers.find((p) => p.name === "grace@c.example")!;
    await grace.session.leave();
    expect(await agreeAt(before + 2n)).not.toContain("grace@c.example/d1");
    await oneCommitPerEpoch(before + 2n);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);

    const log = await fullLog(a.store, groupId);
    for (const p of present()) {
      const seqs = received.get(p)!;
      // Once each, in order, up to the end of the log (from the seq the member subscribed after).
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
      expect(seqs.at(-1)).toBe(log.at(-1)!.seq);
    }
  });
});
