/**
 * One participant's media session: a single werift RTCPeerConnection that receives the participant's camera and
 * microphone and sends every other participant's tracks. The SFU is always the offerer, so offers never cross
 * (no glare), and at most one offer is in flight per session; changes made meanwhile are folded into one more.
 */
import { randomUUID } from "node:crypto";
import { MediaStream, RTCPeerConnection, type RTCIceCandidateInit } from "werift";
import type { Socket } from "socket.io";
import { obj, parse, str } from "../validate.js";
import type { ResolvedSfuOptions } from "./config.js";
import { keyframeRequestSsrcs, PublishedTrack, Subscription, type ForwardTap, type MediaKind } from "./forwarder.js";

export const MEDIA_KINDS: readonly MediaKind[] = ["audio", "video"];

/** Remote candidates accepted per session: a browser sends a handful, so more is noise or abuse. */
const MAX_REMOTE_CANDIDATES = 64;

/** Generous for answers with many m-lines (two per participant), small enough to refuse junk. */
const ANSWER = obj({ sdp: str({ min: 1, max: 256 * 1024 }) });

export interface OfferMessage {
  sdp: string;
  /** The m-lines the participant sends its own tracks on. */
  publish: Record<MediaKind, string>;
  /** Every m-line that carries another participant's track, after this offer. */
  tracks: { mid: string; participantId: string; kind: MediaKind }[];
}

export interface SessionContext {
  options: ResolvedSfuOptions;
  tap(): ForwardTap | undefined;
  /** The other sessions in the same room, whose tracks this one subscribes to. */
  peers(session: MediaSession): Iterable<MediaSession>;
  ended(session: MediaSession, reason: string): void;
}

export class MediaSession {
  readonly pc: RTCPeerConnection;
  readonly published: Readonly<Record<MediaKind, PublishedTrack>>;
  /** Groups this participant's audio and video into one MediaStream at subscribers; random, so it names no one. */
  readonly stream = new MediaStream({ id: randomUUID() });
  private readonly subscriptions = new Map<PublishedTrack, Subscription>();
  private negotiating = false;
  private negotiateAgain = false;
  private remoteCandidates = 0;
  closed = false;

  constructor(
    readonly room: string,
    readonly participantId: string,
    readonly socket: Socket,
    private readonly context: SessionContext,
  ) {
    this.pc = new RTCPeerConnection(context.options.peerConfig());
    const publish = (kind: MediaKind) =>
      new PublishedTrack(room, participantId, kind, this.pc.addTransceiver(kind, { direction: "recvonly" }));
    this.published = { audio: publish("audio"), video: publish("video") };
    this.pc.connectionStateChange.subscribe((state) => {
      if (state === "failed") this.close("connection-failed");
    });
    // Keyframe requests are read off the transport: werift routes feedback by the sender SSRC first, and a
    // browser sends its receivers' feedback from the SSRC of its own published stream, so werift would hand a
    // subscriber's PLI to that participant's published track instead of to the subscription it is about.
    this.published.video.transceiver.dtlsTransport.onRtcp.subscribe((packet) => {
      for (const ssrc of keyframeRequestSsrcs(packet)) this.keyframeRequested(ssrc);
    });
  }

  private keyframeRequested(ssrc: number): void {
    for (const { source, transceiver } of this.subscriptions.values()) {
      if (transceiver.sender.ssrc !== ssrc) continue;
      this.context.options.log("keyframe-request", { room: this.room, participantId: this.participantId, publisherId: source.publisherId });
      source.requestKeyframe();
    }
  }

  /** Offers now, or once more after the offer in flight if one is. */
  negotiate(): void {
    if (this.closed) return;
    if (this.negotiating) {
      this.negotiateAgain = true;
      return;
    }
    this.negotiating = true;
    this.runNegotiations()
      .catch((e: unknown) => {
        if (this.closed) return;
        this.context.options.log("negotiation-failed", {
          room: this.room,
          participantId: this.participantId,
          reason: e instanceof Error ? e.message : String(e),
        });
        this.close("negotiation-failed");
      })
      .finally(() => {
        this.negotiating = false;
      });
  }

  private async runNegotiations(): Promise<void> {
    do {
      this.negotiateAgain = false;
      const added = this.syncSubscriptions();
      await this.pc.setLocalDescription(await this.pc.createOffer());
      if (this.closed) return;
      const reply = await this.socket
        .timeout(this.context.options.negotiationTimeoutMs)
        .emitWithAck("sfu:offer", this.offerMessage(this.pc.localDescription!.sdp));
      if (this.closed) return;
      const { sdp } = parse(ANSWER, reply);
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      if (this.closed) return;
      // A subscriber that arrives mid-stream would wait for the publisher's next periodic keyframe.
      for (const subscription of added) {
        if (subscription.source.kind === "video") this.whenSending(subscription, () => subscription.source.requestKeyframe());
      }
    } while (this.negotiateAgain && !this.closed);
  }

  /** Adds a subscription per track of every peer, and stops the m-lines of tracks that are gone. */
  private syncSubscriptions(): Subscription[] {
    for (const [source, subscription] of this.subscriptions) {
      if (!source.closed) continue;
      subscription.close();
      subscription.transceiver.stop();
      this.subscriptions.delete(source);
    }
    const added: Subscription[] = [];
    for (const peer of this.context.peers(this)) {
      for (const kind of MEDIA_KINDS) {
        const source = peer.published[kind];
        if (source.closed || this.subscriptions.has(source)) continue;
        const transceiver = this.pc.addTransceiver(kind, { direction: "sendonly", streams: [peer.stream] });
        const subscription = new Subscription(this.participantId, source, transceiver, () => this.context.tap());
        this.subscriptions.set(source, subscription);
        added.push(subscription);
      }
    }
    return added;
  }

  private offerMessage(sdp: string): OfferMessage {
    const tracks: OfferMessage["tracks"] = [];
    for (const { source, transceiver } of this.subscriptions.values()) {
      if (transceiver.mid !== null) tracks.push({ mid: transceiver.mid, participantId: source.publisherId, kind: source.kind });
    }
    return {
      sdp,
      publish: { audio: this.published.audio.transceiver.mid ?? "", video: this.published.video.transceiver.mid ?? "" },
      tracks,
    };
  }

  private whenSending(subscription: Subscription, run: () => void): void {
    const sender = subscription.transceiver.sender;
    if (sender.dtlsTransport?.state === "connected") {
      run();
      return;
    }
    sender.onReady.once(() => {
      if (subscription.active) run();
    });
  }

  addRemoteCandidate(candidate: RTCIceCandidateInit): void {
    if (this.closed || ++this.remoteCandidates > MAX_REMOTE_CANDIDATES) return;
    this.pc.addIceCandidate(candidate).catch((e: unknown) => {
      this.context.options.log("bad-candidate", {
        room: this.room,
        participantId: this.participantId,
        reason: e instanceof Error ? e.message : String(e),
      });
    });
  }

  /** Video keyframe requests sent to this participant so far. */
  get keyframeRequests(): number {
    return this.published.video.keyframeRequests;
  }

  /**
   * Ends the session. Forwarding to and from this participant stops before this returns; the PeerConnection
   * closes in the background. `notify` tells the client why (not needed when it asked, or is gone).
   */
  close(reason: string, notify = true): void {
    if (this.closed) return;
    this.closed = true;
    for (const kind of MEDIA_KINDS) this.published[kind].close();
    for (const subscription of this.subscriptions.values()) subscription.close();
    this.subscriptions.clear();
    if (notify) this.socket.emit("sfu:removed", { reason });
    this.pc.close().catch(() => undefined);
    this.context.options.log("session-ended", { room: this.room, participantId: this.participantId, reason });
    this.context.ended(this, reason);
  }
}
