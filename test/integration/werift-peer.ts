/**
 * A media participant for SFU tests: a werift PeerConnection in Node following the SFU's wire protocol
 * (sfu-signaling/sfu/index.ts) over a Socket.IO socket the SFU is attached to (a bare test server's, or a DS
 * connection that subscribed to a call), sending synthetic RTP with known payloads and recording what it receives.
 */
import type { Socket as ClientSocket } from "socket.io-client";
import { RTCPeerConnection, RtpHeader, RtpPacket, type MediaStreamTrack, type RtcpPacket, type RTCRtpTransceiver } from "werift";
import { keyframeRequestSsrcs } from "../../sfu-signaling/sfu/forwarder.js";
import type { OfferMessage } from "../../sfu-signaling/sfu/index.js";

export interface PeerOptions {
  /** Answer offers (default true); false simulates a client that never does. */
  answer?: boolean;
}

/** A participant with a werift PeerConnection, following the wire protocol a browser client follows. */
export class NodePeer {
  pc: RTCPeerConnection;
  /** Payloads received, by publisher and kind ("alice/video"). */
  readonly received = new Map<string, Buffer[]>();
  readonly offers: OfferMessage[] = [];
  removed: string | undefined;
  publish: Partial<Record<"audio" | "video", RTCRtpTransceiver>> = {};
  private readonly watched = new Set<RTCRtpTransceiver>();
  private seq = 1000;
  private joined = false;

  constructor(
    readonly socket: ClientSocket,
    readonly participantId: string,
    options: PeerOptions = {},
  ) {
    this.pc = this.newPeerConnection();
    this.socket.on("sfu:removed", ({ reason }: { reason: string }) => {
      this.removed = reason;
    });
    this.socket.on("sfu:offer", (offer: OfferMessage, ack: (answer: { sdp: string }) => void) => {
      this.offers.push(offer);
      if (options.answer !== false) void this.answer(offer).then(ack);
    });
  }

  private async answer(offer: OfferMessage): Promise<{ sdp: string }> {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const byMid = (mid: string) => this.pc.getTransceivers().find((t) => t.mid === mid);
    for (const kind of ["audio", "video"] as const) {
      const transceiver = byMid(offer.publish[kind])!;
      transceiver.setDirection("sendonly");
      this.publish[kind] = transceiver;
    }
    for (const { mid, participantId, kind } of offer.tracks) {
      const transceiver = byMid(mid)!;
      if (this.watched.has(transceiver)) continue;
      this.watched.add(transceiver);
      const key = `${participantId}/${kind}`;
      const record = (track: MediaStreamTrack) =>
        track.onReceiveRtp.subscribe((rtp) => {
          const list = this.received.get(key) ?? [];
          list.push(Buffer.from(rtp.payload));
          this.received.set(key, list);
        });
      // werift creates the track (by the offered SSRC) inside setRemoteDescription, before onTrack can be heard.
      transceiver.receiver.tracks.forEach(record);
      transceiver.onTrack.subscribe(record);
    }
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return { sdp: this.pc.localDescription!.sdp };
  }

  private newPeerConnection(): RTCPeerConnection {
    const pc = new RTCPeerConnection({ iceServers: [], iceAdditionalHostAddresses: ["127.0.0.1"], iceUseIpv6: false, bundlePolicy: "max-bundle" });
    pc.onIceCandidate.subscribe((candidate) => {
      if (candidate) this.socket.emit("sfu:candidate", candidate.toJSON());
    });
    return pc;
  }

  /** Each join is a new media session on the SFU, so it takes a new PeerConnection. */
  join(): Promise<{ ok: boolean; error?: { code: string } }> {
    if (this.joined) {
      void this.pc.close();
      this.pc = this.newPeerConnection();
      this.watched.clear();
      this.publish = {};
    }
    this.joined = true;
    return this.socket.timeout(10_000).emitWithAck("sfu:join", {});
  }

  get connected(): boolean {
    return this.pc.connectionState === "connected";
  }

  count(from: string, kind = "video"): number {
    return this.received.get(`${from}/${kind}`)?.length ?? 0;
  }

  send(kind: "audio" | "video", payload: Buffer): void {
    const header = new RtpHeader({ payloadType: 96, sequenceNumber: this.seq++ & 0xffff, timestamp: this.seq * 3000, marker: true });
    void this.publish[kind]!.sender.sendRtp(new RtpPacket(header, payload));
  }

  /**
   * Keyframe requests for this peer's video. werift routes incoming feedback by the sender SSRC first, and on
   * this side that SSRC (the SFU's, from the offer) belongs to the transceiver's receiver, so listen on both.
   */
  onKeyframeRequest(listener: () => void): void {
    const transceiver = this.publish.video!;
    const check = (packet: RtcpPacket) => {
      if (keyframeRequestSsrcs(packet).includes(transceiver.sender.ssrc)) listener();
    };
    transceiver.sender.onRtcp.subscribe(check);
    transceiver.receiver.onRtcp.subscribe(check);
  }

  /** The SSRC this peer receives `from`'s video on, for sending it a PLI. */
  receiverFor(from: string): { transceiver: RTCRtpTransceiver; ssrc: number } {
    const latest = this.offers.at(-1)!;
    const mid = latest.tracks.find((t) => t.participantId === from && t.kind === "video")!.mid;
    const transceiver = this.pc.getTransceivers().find((t) => t.mid === mid)!;
    return { transceiver, ssrc: transceiver.receiver.track.ssrc! };
  }

  async close(): Promise<void> {
    this.socket.disconnect();
    await this.pc.close();
  }
}

/** Keeps sending numbered packets from each peer until stopped. */
export function pump(peers: NodePeer[]): () => void {
  let n = 0;
  const timer = setInterval(() => {
    n++;
    for (const peer of peers) {
      if (!peer.publish.video) continue;
      peer.send("video", Buffer.from(`${peer.participantId}-video-${n}`));
      peer.send("audio", Buffer.from(`${peer.participantId}-audio-${n}`));
    }
  }, 20);
  return () => clearInterval(timer);
}

