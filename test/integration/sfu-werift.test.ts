/**
 * The SFU with werift peers in Node on both ends: synthetic RTP with known payloads shows forwarding is
 * byte-exact and per subscriber, keyframe requests reach the publisher, removal cuts media at once, and the
 * per-room bounds and payload checks hold. The Chromium test covers real media.
 */
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import { RtcpPacketConverter, type RtcpPacket } from "werift";
import { keyframeRequestSsrcs } from "../../sfu-signaling/sfu/forwarder.js";
import { createSfu, type ForwardedRtp, type Sfu, type SfuOptions } from "../../sfu-signaling/sfu/index.js";
import { NodePeer, pump, type PeerOptions } from "./werift-peer.js";

const ROOM = "room-1";

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Harness {
  sfu: Sfu;
  url: string;
  peers: NodePeer[];
  close(): Promise<void>;
}

/** A Socket.IO server whose test-only "auth" is the handshake's { participantId, room }. */
async function startServer(options: SfuOptions = {}): Promise<Harness> {
  const sfu = createSfu({ negotiationTimeoutMs: 10_000, ...options });
  const http: HttpServer = createServer();
  const ioServer = new Server(http);
  ioServer.on("connection", (socket) => {
    const { participantId, room } = socket.handshake.auth as { participantId: string; room: string };
    sfu.attach(socket, { participantId, room });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const harness: Harness = {
    sfu,
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    peers: [],
    async close() {
      for (const peer of harness.peers) await peer.close();
      sfu.close();
      await ioServer.close();
    },
  };
  return harness;
}

/** A peer on the harness's server, in `room`. */
function nodePeer(harness: Harness, participantId: string, options: PeerOptions = {}, room = ROOM): NodePeer {
  const peer = new NodePeer(io(harness.url, { auth: { participantId, room }, transports: ["websocket"], reconnection: false }), participantId, options);
  harness.peers.push(peer);
  return peer;
}

describe("werift SFU with werift peers", () => {
  let harness: Harness;
  let stopPump: (() => void) | undefined;

  beforeEach(async () => {
    harness = await startServer();
  });
  afterEach(async () => {
    stopPump?.();
    stopPump = undefined;
    await harness.close();
  });

  it("forwards every publisher's audio and video to each other participant, byte for byte", async () => {
    const alice = nodePeer(harness, "alice");
    const bob = nodePeer(harness, "bob");
    expect(await alice.join()).toEqual({ ok: true });
    expect(await bob.join()).toEqual({ ok: true });
    const tapped: ForwardedRtp[] = [];
    harness.sfu.tapForwarded((p) => tapped.push(p));
    stopPump = pump([alice, bob]);
    await until(() => alice.count("bob") > 20 && bob.count("alice") > 20 && bob.count("alice", "audio") > 20, "media both ways");

    expect(bob.received.get("alice/video")!.every((p) => /^alice-video-\d+$/.test(p.toString()))).toBe(true);
    expect(alice.received.get("bob/audio")!.every((p) => /^bob-audio-\d+$/.test(p.toString()))).toBe(true);
    expect(alice.count("alice")).toBe(0);
    // The last offer each got lists exactly the other's two tracks, and its own publish m-lines.
    expect(bob.offers.at(-1)!.tracks.map((t) => `${t.participantId}/${t.kind}`).sort()).toEqual(["alice/audio", "alice/video"]);
    const sample = tapped.find((p) => p.from === "alice" && p.to === "bob" && p.kind === "video")!;
    expect(sample.mimeType).toBe("video/VP8");
    expect(Buffer.from(sample.payload).toString()).toMatch(/^alice-video-\d+$/);
    expect(harness.sfu.participants(ROOM).sort()).toEqual(["alice", "bob"]);
  });

  it("passes a subscriber's PLI to the publisher and asks for a keyframe when someone joins late", async () => {
    const alice = nodePeer(harness, "alice");
    const bob = nodePeer(harness, "bob");
    await alice.join();
    await bob.join();
    stopPump = pump([alice, bob]);
    await until(() => bob.count("alice") > 5, "alice's video at bob");
    let plisAtAlice = 0;
    alice.onKeyframeRequest(() => plisAtAlice++);

    const before = harness.sfu.keyframeRequests(ROOM, "alice");
    const { transceiver, ssrc } = bob.receiverFor("alice");
    await transceiver.receiver.sendRtcpPLI(ssrc);
    await until(() => plisAtAlice >= 1, "bob's PLI at alice");
    expect(harness.sfu.keyframeRequests(ROOM, "alice")).toBeGreaterThan(before);

    const carol = nodePeer(harness, "carol");
    await carol.join();
    const afterBobsPli = plisAtAlice;
    await until(() => carol.count("alice") > 5 && carol.count("bob") > 5, "carol receiving both");
    await until(() => plisAtAlice > afterBobsPli, "a keyframe request for carol");
  });

  it("stops a removed participant's media at once and renegotiates the others", async () => {
    const alice = nodePeer(harness, "alice");
    const bob = nodePeer(harness, "bob");
    const carol = nodePeer(harness, "carol");
    for (const p of [alice, bob, carol]) await p.join();
    stopPump = pump([alice, bob, carol]);
    await until(() => [alice, bob, carol].every((p) => p.received.size === 4 && [...p.received.values()].every((l) => l.length > 5)), "full mesh of media");

    const afterRemoval: ForwardedRtp[] = [];
    let removedAt = -1;
    harness.sfu.tapForwarded((p) => {
      if (removedAt >= 0) afterRemoval.push(p);
    });
    const offersBefore = alice.offers.length;
    expect(harness.sfu.removeParticipant(ROOM, "bob")).toBe(true);
    removedAt = Date.now();
    await until(() => bob.removed === "removed", "bob told he is removed");
    const aliceFromCarol = alice.count("carol");
    await until(() => alice.count("carol") > aliceFromCarol + 20, "alice still receiving carol");
    expect(afterRemoval.filter((p) => p.to === "bob" || p.from === "bob")).toEqual([]);
    expect(afterRemoval.length).toBeGreaterThan(0);
    await until(() => alice.offers.length > offersBefore, "alice renegotiated");
    expect(alice.offers.at(-1)!.tracks.map((t) => t.participantId)).toEqual(["carol", "carol"]);
    expect(harness.sfu.participants(ROOM).sort()).toEqual(["alice", "carol"]);
    // Bob's socket is detached: a new join does not bring him back.
    bob.socket.emit("sfu:join", {});
    await alice.socket.timeout(5000).emitWithAck("sfu:leave");
    expect(harness.sfu.participants(ROOM)).toEqual(["carol"]);
    expect(harness.sfu.removeParticipant(ROOM, "bob")).toBe(false);
  });

  it("ends the media session of a participant that disconnects, and of one that never answers", async () => {
    await harness.close();
    harness = await startServer({ negotiationTimeoutMs: 1000 });
    const alice = nodePeer(harness, "alice");
    const mute = nodePeer(harness, "mute", { answer: false });
    await alice.join();
    expect(await mute.join()).toEqual({ ok: true });
    await until(() => mute.removed === "negotiation-failed", "the silent client removed");
    expect(harness.sfu.participants(ROOM)).toEqual(["alice"]);

    const bob = nodePeer(harness, "bob");
    await bob.join();
    await until(() => alice.offers.at(-1)!.tracks.length === 2, "alice offered bob's tracks");
    const offers = alice.offers.length;
    bob.socket.disconnect();
    await until(() => harness.sfu.participants(ROOM).length === 1, "bob gone after disconnect");
    await until(() => alice.offers.length > offers && alice.offers.at(-1)!.tracks.length === 0, "alice renegotiated without bob");
  });

  it("reuses the m-lines of departed participants, so churn does not grow a connection", async () => {
    const alice = nodePeer(harness, "alice");
    await alice.join();
    stopPump = pump(harness.peers);
    for (let i = 0; i < 4; i++) {
      const guest = nodePeer(harness, `guest-${i}`);
      await guest.join();
      await until(() => alice.count(guest.participantId) > 5 && guest.count("alice") > 5, `media with ${guest.participantId}`);
      const offers = alice.offers.length;
      await guest.close();
      await until(() => alice.offers.length > offers && alice.offers.at(-1)!.tracks.length === 0, `${guest.participantId} gone`);
      expect(alice.offers.at(-1)!.sdp.match(/^m=/gm)).toHaveLength(4);
    }
  });

  it("refuses joins beyond the room limit and malformed payloads", async () => {
    await harness.close();
    harness = await startServer({ maxParticipantsPerRoom: 2, maxRooms: 1 });
    const a = nodePeer(harness, "a");
    const b = nodePeer(harness, "b");
    const c = nodePeer(harness, "c");
    const other = nodePeer(harness, "d", {}, "another-room");
    expect(await a.join()).toEqual({ ok: true });
    expect(await b.join()).toEqual({ ok: true });
    expect((await c.join()).error?.code).toBe("room-full");
    expect((await other.join()).error?.code).toBe("too-many-rooms");
    const bad = await c.socket.timeout(5000).emitWithAck("sfu:join", { evil: 1 });
    expect(bad.error.code).toBe("invalid-payload");
    // A second join from the same participant restarts its session instead of adding one.
    expect(await b.join()).toEqual({ ok: true });
    expect(harness.sfu.participants(ROOM).sort()).toEqual(["a", "b"]);
    // Junk candidates are dropped without hurting the session.
    b.socket.emit("sfu:candidate", { candidate: "x".repeat(5000) });
    b.socket.emit("sfu:candidate", "nonsense");
    await until(() => a.connected && b.connected, "both connected");
  });
});

describe("keyframe requests read off the transport", () => {
  /** RTCP payload-specific feedback (RFC 4585 §6.1): V=2, FMT, PT=206, length, sender SSRC, media SSRC, FCI. */
  function psfb(fmt: number, senderSsrc: number, mediaSsrc: number, fci: Buffer = Buffer.alloc(0)): RtcpPacket {
    const packet = Buffer.alloc(12 + fci.length);
    packet.writeUInt8(0x80 | fmt, 0);
    packet.writeUInt8(206, 1);
    packet.writeUInt16BE(packet.length / 4 - 1, 2);
    packet.writeUInt32BE(senderSsrc, 4);
    packet.writeUInt32BE(mediaSsrc, 8);
    fci.copy(packet, 12);
    return RtcpPacketConverter.deSerialize(packet)[0]!;
  }

  it("names the media SSRC of a PLI and the entry SSRCs of a FIR, and nothing for other feedback", () => {
    expect(keyframeRequestSsrcs(psfb(1, 111, 222))).toEqual([222]);
    const firEntries = Buffer.alloc(16);
    firEntries.writeUInt32BE(333, 0);
    firEntries.writeUInt32BE(444, 8);
    expect(keyframeRequestSsrcs(psfb(4, 111, 0, firEntries))).toEqual([333, 444]);
    const remb = Buffer.from([0x52, 0x45, 0x4d, 0x42, 0x01, 0x00, 0x10, 0x00, 0, 0, 0x01, 0x4d]);
    expect(keyframeRequestSsrcs(psfb(15, 111, 0, remb))).toEqual([]);
  });
});
