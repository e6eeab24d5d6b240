/**
 * Issue 8's "done when", as deployed: three providers (a.example, b.example, c.example) as three DS processes
 * (`main.ts`, each with its own SQLite file and provider key, configured by DS_FEDERATION_*), plus x.example,
 * which trusts a.example but is not trusted by it. One call hosted by a.example: users of every provider on
 * their own DS (server fan-out) and one user of c.example connected straight to the hub with a hub token
 * (client fan-out). Members of b.example and c.example commit with no back-off, so every departure makes
 * them commit at the same moment. Each DS-to-DS link runs through a proxy the test can cut.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { MlsGroup, type SigningIdentity } from "../../keying/mls/group.js";
import type { CallSessionOptions } from "../../client/call-session.js";
import { DsConnection } from "../../client/ds-connection.js";
import { connectToHub, hubToken, onDeviceChange, retireDevice, type DeviceChange } from "../../client/federation.js";
import { DsRequestError, bytesOf, parseSnapshot } from "../../client/protocol.js";
import { FederationError } from "../../sfu-signaling/federation/index.js";
import { importPublicKey } from "../../sfu-signaling/federation/identity.js";
import { PeerLink } from "../../sfu-signaling/federation/link.js";
import { describePeers, epochOf, fingerprint, sessionPeer, until, type Peer } from "./call-helpers.js";
import { TrackedPeers } from "./federation-helpers.js";
import { startProviderProcesses, type DsProcess, type ProviderProcesses } from "./provider-processes.js";
import { NodePeer, pump } from "./werift-peer.js";

const ROOM = "call@a.example";
/** Commit a Remove proposal at once, whatever the rank: members on several providers commit together. */
const AT_ONCE: Partial<CallSessionOptions> = { commitPolicy: { backoffStepMs: 0, backoffJitterMs: 0, maxBackoffMs: 0 } };
/** Longer than the link outage below: the hub must not take the follower's members for gone. */
const GRACE_MS = 20_000;
const REJECTED = "conclave_ds_commits_rejected_total";

describe("three providers as three processes", () => {
  let set: ProviderProcesses;
  let a: DsProcess;
  let b: DsProcess;
  let c: DsProcess;
  let x: DsProcess;
  const tracked = new TrackedPeers();
  const { peers, received } = tracked;
  const connections: DsConnection[] = [];
  const links: PeerLink[] = [];
  let groupId: string;

  beforeAll(async () => {
    set = await startProviderProcesses(
      [
        { domain: "a.example", trusts: ["b.example", "c.example"] },
        { domain: "b.example", trusts: ["a.example", "c.example"] },
        { domain: "c.example", trusts: ["a.example", "b.example"] },
        { domain: "x.example", trusts: ["a.example"] },
      ],
      { leaveGraceMs: GRACE_MS },
    );
    a = set.get("a.example");
    b = set.get("b.example");
    c = set.get("c.example");
    x = set.get("x.example");
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    for (const conn of connections) conn.close();
    for (const l of links) l.close();
    await set?.stop();
  });

  async function connect(ds: DsProcess, user: string, device = "d1"): Promise<DsConnection> {
    const connection = await DsConnection.connect({ url: ds.url, token: await ds.token({ user, device }), transports: ["websocket"] });
    connections.push(connection);
    return connection;
  }

  const track = (p: Peer) => tracked.add(p);

  async function member(ds: DsProcess, user: string, options: Partial<CallSessionOptions> = {}): Promise<Peer> {
    const home = await DsConnection.connect({ url: ds.url, token: await ds.token({ user }), transports: ["websocket"] });
    return track(sessionPeer(home, user, ROOM, ds === a ? options : { ...AT_ONCE, ...options }));
  }

  const present = () => peers.filter((p) => p.closed === undefined);
  const byName = (n: string) => peers.find((p) => p.name === n)!;
  const texts = (p: Peer) => p.messages.map((m) => m.text);

  /** Every present member in `epoch`, with one fingerprint (keys, safety code, roster); returns the roster. */
  async function agreeAt(epoch: bigint): Promise<string[]> {
    const live = present();
    await until(() => live.every((p) => epochOf(p) === epoch), () => `waiting for epoch ${epoch}: ${describePeers(live)}`);
    expect(new Set(live.map((p) => fingerprint(p.session.currentEpoch!))).size, describePeers(live)).toBe(1);
    expect(new Set(live.map((p) => p.session.currentEpoch!.safetyCode)).size).toBe(1);
    return live[0]!.session.currentEpoch!.members.map((m) => m.identity).sort();
  }

  /** The hub's log holds exactly one commit for each epoch before `epoch`. */
  function oneCommitPerEpoch(epoch: bigint): void {
    expect(a.log(groupId).filter((e) => e.kind === "commit").map((e) => e.epoch)).toEqual(Array.from({ length: Number(epoch) }, (_, i) => i));
  }

  it("runs one call across the three, server and client fan-out, with the same safety code after each join", async () => {
    for (const [ds, user] of [
      [a, "alice@a.example"],
      [b, "bob@b.example"],
      [c, "carol@c.example"],
      [a, "alan@a.example"],
    ] as const) {
      const p = await member(ds, user);
      await p.session.join();
      await agreeAt(BigInt(peers.length - 1));
    }
    groupId = byName("alice@a.example").session.groupId!;

    // dave@c.example connects to the hub itself with a token the hub issued through c.example's link.
    const home = await connect(c, "dave@c.example");
    expect((await hubToken(home, ROOM)).hub).toBe("a.example");
    const direct = await connectToHub(home, ROOM, { transports: ["websocket"] });
    expect(direct).not.toBe(home);
    const dave = track(sessionPeer(direct, "dave@c.example", ROOM, AT_ONCE));
    await dave.session.join();
    expect(await agreeAt(4n)).toEqual(["alan@a.example/d1", "alice@a.example/d1", "bob@b.example/d1", "carol@c.example/d1", "dave@c.example/d1"]);
    oneCommitPerEpoch(4n);
    // The hub stores the group; the followers only mirror it.
    expect(b.log(groupId)).toEqual([]);
    expect(c.log(groupId)).toEqual([]);
    expect(a.output()).toMatch(/federation: b\.example linked/);
    expect(a.output()).toMatch(/federation: c\.example linked/);
  });

  it("keeps one commit per epoch when members on b.example and c.example commit at the same moment", async () => {
    const rejected = await a.metric(REJECTED, { reason: "wrong-epoch" });
    // Four external commits from two followers on the same epoch: the hub takes one, the others retry.
    const joiners = await Promise.all([member(b, "erin@b.example", { rejoinWhenRemoved: false }), member(b, "ivan@b.example"), member(c, "frank@c.example"), member(c, "grace@c.example")]);
    await Promise.all(joiners.map((p) => p.session.join()));
    expect(await agreeAt(8n)).toHaveLength(9);
    const afterJoins = await a.metric(REJECTED, { reason: "wrong-epoch" });
    expect(afterJoins).toBeGreaterThan(rejected);

    // ivan leaves: the DS proposes his removal, and every member on b and c commits it at once.
    await byName("ivan@b.example").session.leave();
    expect(await agreeAt(9n)).not.toContain("ivan@b.example/d1");
    expect(await a.metric(REJECTED, { reason: "wrong-epoch" })).toBeGreaterThan(afterJoins);
    // carol leaves too (a member of c.example): again one commit.
    await byName("carol@c.example").session.leave();
    expect(await agreeAt(10n)).not.toContain("carol@c.example/d1");
    oneCommitPerEpoch(10n);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });

  it("catches b.example's users up after its link to the hub is cut and restored, nothing lost or duplicated", async () => {
    const alice = byName("alice@a.example");
    const bob = byName("bob@b.example");
    const onB = present().filter((p) => p.name.endsWith("@b.example"));
    const elsewhere = present().filter((p) => !onB.includes(p));
    const before = a.log(groupId);
    const epoch = epochOf(alice);

    const wire = set.wire("b.example", "a.example");
    wire.down = true;
    wire.cut();
    const lost = (a.output().match(/link from b\.example lost/g) ?? []).length;
    await until(() => (a.output().match(/link from b\.example lost/g) ?? []).length > lost, () => "the hub noticing the cut");
    // While b.example is cut off: chat, alan's leave and the commit removing him (a and c members commit).
    await alice.session.chat("during 1");
    await byName("alan@a.example").session.leave();
    await until(() => elsewhere.every((p) => p.closed !== undefined || epochOf(p) === epoch + 1n), () => `commit without b: ${describePeers(elsewhere)}`);
    await alice.session.chat("during 2");
    // b.example holds its user's message until the link is back.
    const sent = bob.session.chat("from b while down");
    expect(onB.every((p) => epochOf(p) === epoch)).toBe(true);

    wire.down = false;
    await sent;
    expect(a.output().match(/federation: b\.example linked/g)!.length).toBeGreaterThan(1);
    expect(await agreeAt(epoch + 1n)).not.toContain("alan@a.example/d1");
    await until(
      () => present().every((p) => (p === bob || texts(p).includes("from b while down")) && (p === alice || texts(p).includes("during 2"))),
      () => `catch-up: ${present().map((p) => `${p.name}:${texts(p).join("|")}`).join(", ")}`,
    );
    for (const p of onB) expect(texts(p).filter((t) => t.startsWith("during")), p.name).toEqual(["during 1", "during 2"]);
    for (const p of present().filter((q) => q !== bob)) expect(texts(p).filter((t) => t === "from b while down"), p.name).toHaveLength(1);

    // The hub's log: bob's message once, one commit, and no removal of b.example's members.
    const added = a.log(groupId).slice(before.length);
    expect(added.filter((e) => e.sender === "bob@b.example/d1").map((e) => e.kind)).toEqual(["application"]);
    expect(added.filter((e) => e.kind === "commit").map((e) => e.epoch)).toEqual([Number(epoch)]);
    expect(added.filter((e) => e.kind === "proposal")).toHaveLength(1);
    oneCommitPerEpoch(epoch + 1n);
    // Every member's connection got every entry once, in order, up to the hub's head.
    const head = a.log(groupId).at(-1)!.seq;
    for (const p of present()) {
      const seqs = received.get(p)!;
      expect(seqs, p.name).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
      expect(seqs.at(-1), p.name).toBe(head);
    }
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });

  it("claims KeyPackages across providers: one bundle per device with its identity key, single-use ones once", async () => {
    const publish = async (device: string, suites: number[], count: number) => {
      const conn = await connect(c, "kim@c.example", device);
      const identity = await MlsGroup.generateIdentity(utf8(`kim@c.example/${device}`));
      const messages: Uint8Array[] = [];
      for (const suite of suites) for (let i = 0; i < count; i++) messages.push((await MlsGroup.generateKeyPackage(identity, { cipherSuite: suite as 1 })).message);
      await conn.request("kp:upload", { keyPackages: messages });
      return { identity, published: new Set(messages.map(toHex)) };
    };
    const laptop = await publish("laptop", [1, 3], 3);
    const phone = await publish("phone", [1], 2);
    const owners = new Map<string, { identity: SigningIdentity; published: Set<string> }>([
      ["laptop", laptop],
      ["phone", phone],
    ]);
    const fromB = byName("bob@b.example").connection;
    const fromA = byName("alice@a.example").connection;
    const handedOut: string[] = [];
    const take = (r: Record<string, unknown>) => {
      for (const d of r.devices as { device: string; keyPackage: unknown; identityKey: string }[]) {
        const kp = toHex(bytesOf(d.keyPackage, "kp"));
        expect(owners.get(d.device)!.published.has(kp)).toBe(true);
        expect(d.identityKey).toBe(toHex(owners.get(d.device)!.identity.signaturePublicKey));
        handedOut.push(kp);
      }
      return (r.devices as { device: string }[]).map((d) => d.device).sort();
    };

    // Suite 3 preferred, but only suite 1 is on every device.
    const first = await fromB.request("kp:claim", { user: "kim@c.example", suites: [3, 1] });
    expect(first.suite).toBe(1);
    expect(take(first)).toEqual(["laptop", "phone"]);
    // Two providers claim at the same moment: the phone's last suite-1 KeyPackage goes to one of them.
    const [fromBoth1, fromBoth2] = await Promise.all([fromB.request("kp:claim", { user: "kim@c.example", suites: [1] }), fromA.request("kp:claim", { user: "kim@c.example", suites: [1] })]);
    expect([take(fromBoth1), take(fromBoth2)].flat().sort()).toEqual(["laptop", "laptop", "phone"]);
    expect([fromBoth1.exhausted, fromBoth2.exhausted].flat()).toEqual(["phone"]);
    expect(new Set(handedOut).size).toBe(handedOut.length);

    const impossible = await fromB.request("kp:claim", { user: "kim@c.example", suites: [2] }).catch((e: unknown) => e);
    expect(impossible).toBeInstanceOf(DsRequestError);
    expect((impossible as DsRequestError).code).toBe("no-common-suite");
    expect((impossible as DsRequestError).extra.offered).toEqual([3]);
  });

  it("tells members at a.example and c.example when a user of b.example adds and retires a device", async () => {
    const watchers = present().filter((p) => !p.name.endsWith("@b.example"));
    expect(new Set(watchers.map((p) => p.name.split("@")[1]))).toEqual(new Set(["a.example", "c.example"]));
    const seen = new Map<Peer, DeviceChange[]>(watchers.map((p) => [p, []]));
    for (const p of watchers) onDeviceChange(p.connection, (e) => seen.get(p)!.push(e));
    const erin = byName("erin@b.example");

    const phone = await connect(b, "erin@b.example", "phone");
    const id = await MlsGroup.generateIdentity(utf8("erin@b.example/phone"));
    await phone.request("kp:upload", { keyPackages: [(await MlsGroup.generateKeyPackage(id)).message] });
    const added: DeviceChange = { groupId, user: "erin@b.example", device: "phone", change: "added" };
    await until(() => watchers.every((p) => seen.get(p)!.length > 0), () => `device events: ${watchers.map((p) => `${p.name}:${seen.get(p)!.length}`).join(",")}`);
    for (const p of watchers) expect(seen.get(p), p.name).toEqual([added]);

    // The phone retires the device in the call: every member hears it, and it is removed by one commit.
    const epoch = epochOf(erin);
    await retireDevice(phone, "d1");
    await until(() => erin.closed === "removed", () => `erin removed: ${describePeers([erin])}`);
    expect(await agreeAt(epoch + 1n)).not.toContain("erin@b.example/d1");
    await until(() => watchers.every((p) => seen.get(p)!.length > 1), () => "removal events");
    for (const p of watchers) expect(seen.get(p), p.name).toEqual([added, { groupId, user: "erin@b.example", device: "d1", change: "removed" }]);
    oneCommitPerEpoch(epoch + 1n);
  });

  it("carries the media of a user of b.example through the hub's SFU, with a token the hub issued over b's link", async () => {
    const alice = byName("alice@a.example");
    const bob = byName("bob@b.example");
    // bob follows the call at b.example; for media he connects to the hub and subscribes to the call there.
    const grant = await hubToken(bob.connection, ROOM);
    expect(grant).toMatchObject({ hub: "a.example", url: set.wire("b.example", "a.example").url });
    const media = await DsConnection.connect({ url: grant.url!, token: grant.token, transports: ["websocket"] });
    connections.push(media);
    await media.subscribe(groupId, a.log(groupId).at(-1)!.seq, { entry: () => undefined, closed: () => undefined });
    const atHub = new NodePeer(alice.connection.socket, "alice@a.example/d1");
    const fromB = new NodePeer(media.socket, "bob@b.example/d1");
    expect(await atHub.join()).toEqual({ ok: true });
    expect(await fromB.join()).toEqual({ ok: true });
    const stop = pump([atHub, fromB]);
    try {
      await until(
        () => atHub.count("bob@b.example/d1") > 10 && fromB.count("alice@a.example/d1") > 10,
        () => `media: at a ${atHub.count("bob@b.example/d1")}, at b ${fromB.count("alice@a.example/d1")}`,
      );
    } finally {
      stop();
      await Promise.all([atHub.pc.close(), fromB.pc.close()]);
    }
    expect(atHub.received.get("bob@b.example/d1/video")!.every((p) => /^bob@b\.example\/d1-video-\d+$/.test(p.toString()))).toBe(true);
    expect(fromB.received.get("alice@a.example/d1/audio")!.every((p) => /^alice@a\.example\/d1-audio-\d+$/.test(p.toString()))).toBe(true);
  });

  it("refuses a DS outside the trusted list, and a follower acting or committing for another provider's user", async () => {
    // x.example lists a.example, but a.example does not list x.example: its users get the typed refusal.
    const xena = sessionPeer(await connect(x, "xena@x.example"), "xena@x.example", ROOM);
    const refused = await xena.session.join().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DsRequestError);
    expect((refused as DsRequestError).extra.federation).toBe("untrusted-peer");

    const log = a.log(groupId);
    // A user of b.example sends an external commit whose credential names a user of c.example.
    const mallory = await connect(b, "mallory@b.example");
    const snapshot = parseSnapshot((await mallory.request("room:join", { room: ROOM })).group);
    const forged = await MlsGroup.joinByExternalCommit({ groupInfo: snapshot.groupInfo, ratchetTree: snapshot.tree, identity: await MlsGroup.generateIdentity(utf8("carol@c.example/d1")) });
    const e = await mallory.request("group:send", { groupId, message: forged.commit, groupInfo: forged.groupInfo }).catch((err: unknown) => err);
    expect((e as DsRequestError).code).toBe("wrong-identity");
    // b.example itself (its key) acting for a user of c.example over its link.
    const asB = new PeerLink({
      domain: "b.example",
      key: b.key.privateKey,
      peer: { domain: "a.example", url: set.wire("b.example", "a.example").url, publicKey: a.key.publicKey },
      peerKey: importPublicKey(a.key.publicKey),
      onReady: () => undefined,
      onPush: () => undefined,
      log: () => undefined,
      requestTimeoutMs: 10_000,
    });
    links.push(asB);
    const act = await asB
      .request("fed:act", { user: "carol@c.example", device: "d1", event: "group:send", payload: { groupId, message: forged.commit, groupInfo: forged.groupInfo } }, { once: true })
      .catch((err: unknown) => err);
    expect(act).toBeInstanceOf(FederationError);
    expect((act as FederationError).code).toBe("forbidden-user");
    expect(a.log(groupId)).toEqual(log);
    expect(await agreeAt(epochOf(byName("alice@a.example")))).not.toContain("carol@c.example/d1");
  });
});
