/**
 * What a follower asks of the hub for its users (`fed:act`), and what the hub keeps for them:
 * - `ds:external-sender` names its room, on the client protocol and across the link, so a follower's user gets
 *   the sender of the hub hosting that room without any earlier room:join; acts naming a room of another
 *   provider are refused;
 * - the hub's stand-ins for remote devices exist only while the device is present in one of its calls: they
 *   go when it leaves, when its provider retires it, when its link drops, when the group closes; and each
 *   peer has a bounded number of them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex } from "../../keying/codec/bytes.js";
import { DsConnection } from "../../client/ds-connection.js";
import { DsRequestError, bytesOf, parseSnapshot } from "../../client/protocol.js";
import { retireDevice } from "../../client/federation.js";
import { DsError } from "../../sfu-signaling/errors.js";
import { describePeers, until, type Peer } from "./call-helpers.js";
import { connectTo, homePeer, startProviders, stopProviders, type Provider } from "./federation-helpers.js";

describe("the hub's side of a follower's users", () => {
  let providers: Map<string, Provider>;
  let a: Provider;
  let b: Provider;
  const peers: Peer[] = [];
  const connections: DsConnection[] = [];

  beforeAll(async () => {
    providers = await startProviders([{ domain: "a.example" }, { domain: "b.example" }], { federation: { maxRemoteDevices: 2 } });
    a = providers.get("a.example")!;
    b = providers.get("b.example")!;
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    for (const conn of connections) conn.close();
    await stopProviders(providers);
  });

  async function connect(p: Provider, user: string, device = "d1"): Promise<DsConnection> {
    const conn = await connectTo(p, user, device);
    connections.push(conn);
    return conn;
  }

  async function joined(p: Provider, user: string, room: string): Promise<Peer> {
    const peer = await homePeer(p, user, room, { rejoinWhenRemoved: false });
    peers.push(peer);
    await peer.session.join();
    return peer;
  }

  const standIns = () => a.federation.remoteDevices("b.example");

  it("answers ds:external-sender for the room the request names, across the link too", async () => {
    const room = "sender@a.example";
    const atHub = toHex(bytesOf((await (await connect(a, "alice@a.example")).request("ds:external-sender", { suite: 1 })).externalSender, "sender"));
    const bob = await connect(b, "bob@b.example");
    // No room:join before: the room alone says which provider's sender this is.
    expect(toHex(bytesOf((await bob.request("ds:external-sender", { suite: 1, room })).externalSender, "sender"))).toBe(atHub);
    // Without a room (older clients), and for its own rooms, a DS answers with its own sender.
    await bob.request("room:join", { room });
    const own = toHex(bytesOf((await bob.request("ds:external-sender", { suite: 1 })).externalSender, "sender"));
    expect(own).not.toBe(atHub);
    expect(toHex(bytesOf((await bob.request("ds:external-sender", { suite: 1, room: "local" })).externalSender, "sender"))).toBe(own);
    // The token must grant the room.
    const limited = await DsConnection.connect({ url: b.ds.url, token: await b.token({ user: "bob@b.example", rooms: ["other@a.example"] }), transports: ["websocket"] });
    connections.push(limited);
    expect(((await limited.request("ds:external-sender", { suite: 1, room }).catch((e: unknown) => e)) as DsRequestError).code).toBe("forbidden-room");

    // On the link: the hub wants the room, and only one of its own.
    const link = b.federation.link("a.example");
    const act = (payload: Record<string, unknown>, event = "ds:external-sender") => link.request("fed:act", { user: "bob@b.example", device: "d1", event, payload }, { once: true }).catch((e: unknown) => e);
    expect(toHex(bytesOf(((await act({ suite: 1, room })) as Record<string, unknown>).externalSender, "sender"))).toBe(atHub);
    const roomless = await act({ suite: 1 });
    // (invalid-payload is also a DS code: the link re-raises it as the DS's error)
    expect(roomless).toBeInstanceOf(DsError);
    expect((roomless as DsError).code).toBe("invalid-payload");
    for (const [event, payload] of [
      ["ds:external-sender", { suite: 1, room: "elsewhere@b.example" }],
      ["room:join", { room: "elsewhere@b.example" }],
      ["room:join", { room: "local" }],
    ] as const) {
      const e = await act(payload, event);
      expect(e, `${event} ${payload.room}`).toBeInstanceOf(DsError);
      expect((e as DsError).code).toBe("forbidden-room");
    }
    expect(standIns()).toEqual([]);
  });

  it("keeps a remote device's stand-in while it is in a call, drops it when the link drops, when it leaves or is retired", async () => {
    const room = "presence@a.example";
    await joined(a, "alice@a.example", room);
    const bob = await joined(b, "bob@b.example", room);
    expect(standIns()).toEqual(["bob@b.example/d1"]);
    // A request that leaves nothing behind (a look at the room) keeps no stand-in.
    await (await connect(b, "bea@b.example")).request("room:join", { room });
    expect(standIns()).toEqual(["bob@b.example/d1"]);

    // The link drops: the stand-in goes (the leave grace runs); b.example announces bob again once back.
    a.down = true;
    a.proxy.cut();
    await until(() => standIns().length === 0, () => `stand-ins after the cut: ${standIns().join(",")}`);
    a.down = false;
    await until(() => standIns().length === 1, () => "bob announced again");

    // Its provider retires the device: removed from the call, and from the hub's books.
    const phone = await connect(b, "bob@b.example", "phone");
    await retireDevice(phone, "d1");
    await until(() => bob.closed === "removed", () => `bob removed: ${describePeers([bob])}`);
    expect(standIns()).toEqual([]);

    // An explicit leave.
    const carl = await joined(b, "carl@b.example", room);
    expect(standIns()).toEqual(["carl@b.example/d1"]);
    await carl.session.leave();
    expect(standIns()).toEqual([]);
  });

  it("drops the stand-ins of a group that closes", async () => {
    const room = "closing@a.example";
    const alice = await joined(a, "alice@a.example", room);
    // A user of b.example follows the call (present) without ever joining the group.
    const mallory = await connect(b, "mallory@b.example");
    const snapshot = parseSnapshot((await mallory.request("room:join", { room })).group);
    await mallory.subscribe(snapshot.groupId, snapshot.seq, { entry: () => undefined, closed: () => undefined });
    expect(standIns()).toEqual(["mallory@b.example/d1"]);
    await alice.session.leave();
    await until(() => standIns().length === 0, () => `stand-ins after the close: ${standIns().join(",")}`);
  });

  it("holds a bounded number of stand-ins per peer", async () => {
    const room = "bounded@a.example";
    await joined(a, "alice@a.example", room);
    const first = await joined(b, "dan@b.example", room);
    await joined(b, "dora@b.example", room);
    // maxRemoteDevices is 2 here: a third device of b.example is refused, by a typed error.
    const third = await homePeer(b, "eve@b.example", room);
    peers.push(third);
    const e = await third.session.join().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DsRequestError);
    expect((e as DsRequestError).code).toBe("too-many-devices");
    await first.session.leave();
    const again = await joined(b, "eve@b.example", room);
    expect(again.session.joined).toBe(true);
    expect(standIns()).toEqual(["dora@b.example/d1", "eve@b.example/d1"]);
  });
});
