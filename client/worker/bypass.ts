/**
 * The run-time check that an encoded transform really sits in a stream's path: WebRTC's own counters of
 * what a sender sent (or a receiver decoded) are compared with what the frame-transform worker handed
 * back to WebRTC for that stream. A browser that silently ignores a transform (Chromium 156 did, for
 * RTCRtpScriptTransforms set while answering a connection's first offer) sends clear media or feeds the
 * decoder frames it never authenticated while the worker counts nothing; this is what catches it.
 *
 * Pure functions over stats snapshots (no DOM, no timers): the controller (controller.ts) samples and acts.
 *
 * Why the comparison is exact up to a margin: the page reads WebRTC's counter first and the worker's
 * afterwards, and a frame that passed the transform left the worker before WebRTC could count it as sent
 * or received, so without a bypass `media <= transformed` at every sample. Frames the worker dropped (no
 * key yet, failed authentication, held for an epoch) are neither sent nor counted as received, so they
 * cannot make a healthy stream look bypassed.
 */
import type { StreamCounts, StreamRole } from "./protocol.js";

/** The WebRTC counter a stream is judged by: frames where WebRTC counts frames, else RTP packets. */
export type MediaCounter = "framesSent" | "packetsSent" | "framesReceived" | "packetsReceived";

export interface MediaCount {
  readonly kind: "audio" | "video";
  readonly counter: MediaCounter;
  readonly value: number;
}

/** The fields of RTCOutboundRtpStreamStats / RTCInboundRtpStreamStats read here (any stats object fits). */
type StatsEntry = Readonly<Record<string, unknown>>;

const COUNTER: Record<StreamRole, Record<MediaCount["kind"], MediaCounter>> = {
  // An Opus frame is one RTP packet, and audio senders do not retransmit (no NACK for audio).
  send: { video: "framesSent", audio: "packetsSent" },
  // Inbound video frames are counted once assembled and out of the transform (Chromium 156: frames the
  // worker dropped are not counted), decodable or not: unlike framesDecoded, this also catches ciphertext
  // fed to a decoder that fails on it. Inbound audio has no frame counter; its packets reach the transform
  // one frame each.
  receive: { video: "framesReceived", audio: "packetsReceived" },
};

/**
 * The counter a sender's or receiver's stats (RTCRtpSender/RTCRtpReceiver.getStats(), as a list of
 * entries) report for its stream: summed over every outbound-rtp (send: simulcast has one per layer) or
 * inbound-rtp (receive) entry of the stream's kind. Undefined while WebRTC reports no such entry (nothing
 * negotiated or sent yet).
 */
export function mediaCount(stats: Iterable<StatsEntry>, role: StreamRole): MediaCount | undefined {
  const type = role === "send" ? "outbound-rtp" : "inbound-rtp";
  let kind: MediaCount["kind"] | undefined;
  let value = 0;
  for (const s of stats) {
    if (s.type !== type || (s.kind !== "audio" && s.kind !== "video")) continue;
    kind ??= s.kind;
    if (s.kind !== kind) continue;
    const n = Number(s[COUNTER[role][kind]] ?? 0);
    if (Number.isFinite(n) && n > 0) value += n;
  }
  return kind === undefined ? undefined : { kind, counter: COUNTER[role][kind], value };
}

/**
 * - `bypass`: WebRTC moved more than `margin` frames (or packets) that never came out of the transform.
 * - `verified`: at least `margin` frames moved and as many went through the transform (up to the margin).
 * - `pending`: too little has moved to tell.
 */
export type TransformVerdict = "bypass" | "verified" | "pending";

export interface TransformJudgement {
  readonly verdict: TransformVerdict;
  /** WebRTC's count, and the transform's count it is compared with. */
  readonly media: number;
  readonly transformed: number;
}

/**
 * Judges one stream from WebRTC's count (sampled first) and the worker's counts (sampled after it).
 * Frames out of the transform are the measure, except for inbound audio, whose packets are counted before
 * the transform: there, frames into the transform are (a packet still on its way to the worker lags by at
 * most a few, hence the margin). A stream the worker has no counts for (its transform never started)
 * has transformed nothing: a transform that is not running cannot vouch for the media.
 */
export function judgeTransform(media: MediaCount | undefined, counts: StreamCounts | undefined, margin: number): TransformJudgement {
  const transformed = counts === undefined ? 0 : media?.counter === "packetsReceived" ? counts.seen : counts.out;
  const value = media?.value ?? 0;
  const verdict: TransformVerdict = value - transformed > margin ? "bypass" : value >= margin && transformed >= margin ? "verified" : "pending";
  return { verdict, media: value, transformed };
}
