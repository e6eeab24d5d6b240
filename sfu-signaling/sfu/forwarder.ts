/**
 * The media plane: a published track fans its RTP out to its subscriptions, and keyframe requests from
 * subscribers flow back to the publisher. Payloads are never parsed or changed: with E2EE they are SFrame
 * ciphertext, and the SFU has no key.
 */
import {
  PictureLossIndication,
  RtcpPayloadSpecificFeedback,
  type MediaStreamTrack,
  type RtcpPacket,
  type RTCRtpTransceiver,
  type RtpPacket,
} from "werift";

export type MediaKind = "audio" | "video";

/** What the test hook sees of one forwarded packet. */
export interface ForwardedRtp {
  room: string;
  /** Publisher's participant id. */
  from: string;
  /** Subscriber's participant id. */
  to: string;
  kind: MediaKind;
  mimeType: string;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  marker: boolean;
  /** A copy of the RTP payload as sent (for VP8: payload descriptor, then frame bytes). */
  payload: Uint8Array;
}

export type ForwardTap = (packet: ForwardedRtp) => void;

/**
 * Subscribers each ask for a keyframe when they start or lose one; a burst of such requests must cost the
 * publisher one keyframe, not one per subscriber. Requests inside the window are folded into one sent at its end.
 */
const KEYFRAME_REQUEST_INTERVAL_MS = 300;

/**
 * The media SSRCs a keyframe request (PLI, RFC 4585 §6.3.1, or FIR, RFC 5104 §4.3.1) asks about; none for any
 * other RTCP packet. A FIR names its SSRCs in its entries, not in the media source field.
 */
export function keyframeRequestSsrcs(packet: RtcpPacket): number[] {
  if (!(packet instanceof RtcpPayloadSpecificFeedback)) return [];
  const feedback = packet.feedback;
  if ("fir" in feedback) return feedback.fir.map((entry) => entry.ssrc);
  return feedback.count === PictureLossIndication.count && "mediaSsrc" in feedback ? [feedback.mediaSsrc] : [];
}

export class PublishedTrack {
  readonly subscriptions = new Set<Subscription>();
  /** PLIs sent to the publisher (tests and metrics). */
  keyframeRequests = 0;
  closed = false;
  private source?: { track: MediaStreamTrack; stop: () => void };
  private lastKeyframeRequestAt = -Infinity;
  private keyframeTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly room: string,
    readonly publisherId: string,
    readonly kind: MediaKind,
    readonly transceiver: RTCRtpTransceiver,
  ) {
    transceiver.onTrack.subscribe((track) => this.bind(track));
  }

  private bind(track: MediaStreamTrack): void {
    if (this.closed || this.source?.track === track) return;
    this.source?.stop();
    const { unSubscribe } = track.onReceiveRtp.subscribe((rtp) => this.forward(rtp));
    this.source = { track, stop: unSubscribe };
  }

  private forward(rtp: RtpPacket): void {
    // Padding-only packets are the publisher's bandwidth probes towards us; they carry no media.
    if (this.closed || rtp.payload.length === 0) return;
    for (const subscription of this.subscriptions) subscription.send(rtp);
  }

  requestKeyframe(): void {
    if (this.closed || this.kind !== "video" || this.keyframeTimer !== undefined) return;
    const wait = this.lastKeyframeRequestAt + KEYFRAME_REQUEST_INTERVAL_MS - Date.now();
    if (wait > 0) {
      this.keyframeTimer = setTimeout(() => {
        this.keyframeTimer = undefined;
        this.requestKeyframe();
      }, wait);
      return;
    }
    const ssrc = this.source?.track.ssrc;
    // Before the first packet there is no SSRC to name; the publisher's encoder starts on a keyframe anyway.
    if (ssrc === undefined) return;
    this.lastKeyframeRequestAt = Date.now();
    this.keyframeRequests++;
    this.transceiver.receiver.sendRtcpPLI(ssrc).catch(() => undefined);
  }

  /** Stops forwarding at once: no packet of this track reaches anyone after this returns. */
  close(): void {
    this.closed = true;
    this.subscriptions.clear();
    this.source?.stop();
    this.source = undefined;
    clearTimeout(this.keyframeTimer);
    this.keyframeTimer = undefined;
  }
}

/** One subscriber's copy of one published track, sent on a sendonly transceiver of the subscriber's connection. */
export class Subscription {
  constructor(
    readonly subscriberId: string,
    readonly source: PublishedTrack,
    readonly transceiver: RTCRtpTransceiver,
    private readonly tap: () => ForwardTap | undefined,
  ) {
    source.subscriptions.add(this);
  }

  get active(): boolean {
    return this.source.subscriptions.has(this);
  }

  send(rtp: RtpPacket): void {
    // Each subscriber's sender rewrites SSRC, payload type, sequence number and header extensions, so it gets its
    // own packet. The publisher's extension IDs were negotiated on another connection and mean nothing on this
    // one: the sender adds its own (sdes:mid).
    const copy = rtp.clone();
    copy.header.extensions = [];
    const sender = this.transceiver.sender;
    const tap = this.tap();
    if (tap && sender.codec && sender.dtlsTransport?.state === "connected") {
      tap({
        room: this.source.room,
        from: this.source.publisherId,
        to: this.subscriberId,
        kind: this.source.kind,
        mimeType: sender.codec.mimeType,
        payloadType: sender.codec.payloadType,
        sequenceNumber: rtp.header.sequenceNumber,
        timestamp: rtp.header.timestamp,
        marker: rtp.header.marker,
        payload: Uint8Array.from(rtp.payload),
      });
    }
    sender.sendRtp(copy).catch(() => undefined);
  }

  /** Stops forwarding to this subscriber at once; the m-line itself is stopped by the next negotiation. */
  close(): void {
    this.source.subscriptions.delete(this);
  }
}
