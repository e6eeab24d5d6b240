/**
 * A bare SFU client for the SFU browser test: publishes the fake camera and microphone through the SFU and
 * receives everyone else, following the wire protocol in the SFU API note. Optionally it protects every frame
 * with SFrame under a fixed epoch key given by the test (the client SDK does this for real, from MLS), so the
 * test can check what the SFU forwards. Driven by the test through `globalThis.sfuPeer`.
 */
import { io, type Socket } from "socket.io-client";
import { codecFromMimeType, EpochKeyring, protectFrame, unprotectFrame, type MediaCodec } from "../../../keying/sframe/index.js";

/** Test-only keying: one epoch, one base key shared by every page, a leaf index per page. */
export interface TestSFrameKeying {
  epoch: number;
  leafIndex: number;
  baseKey: number[];
}

export interface JoinOptions {
  sframe?: TestSFrameKeying;
  /** Put a pass-through RTCRtpScriptTransform on each video receiver, so the test can make it ask for a keyframe. */
  keyframeProbe?: boolean;
}

/** Pass-through receive transforms whose keyframe request (Chromium sends a PLI) the page triggers by mid. */
const PROBE_WORKER = `
const transformers = new Map();
onrtctransform = (e) => {
  transformers.set(e.transformer.options.mid, e.transformer);
  e.transformer.readable.pipeTo(e.transformer.writable);
};
onmessage = async ({ data }) => {
  try {
    await transformers.get(data.mid).sendKeyFrameRequest();
    postMessage({ id: data.id, ok: true });
  } catch (e) {
    postMessage({ id: data.id, ok: false, error: String(e) });
  }
};`;

/** Chromium's encoded-frame API (createEncodedStreams); only what this page uses. */
interface EncodedFrame {
  data: ArrayBuffer;
  getMetadata(): { mimeType?: string };
}
type EncodedEndpoint = { createEncodedStreams(): { readable: ReadableStream<EncodedFrame>; writable: WritableStream<EncodedFrame> } };

interface RemoteTrack {
  mid: string;
  participantId: string;
  kind: "audio" | "video";
}

interface OfferMessage {
  sdp: string;
  publish: Record<"audio" | "video", string>;
  tracks: RemoteTrack[];
}

export interface PeerStats {
  /** Inbound video by publisher (only m-lines the latest offer still lists). */
  video: Record<string, { framesDecoded: number; keyFramesDecoded: number; packetsReceived: number }>;
  /** Packets received on every inbound stream, listed or not: a removed participant's should stop growing. */
  packetsReceivedTotal: number;
  /** Our own video as sent: PLIs the SFU (or a subscriber through it) sent us. */
  outbound: { framesEncoded: number; keyFramesEncoded: number; pliCount: number };
  connectionState: RTCPeerConnectionState;
  removed: string | null;
  offers: number;
  sframe: { protected: number; unprotected: number; failed: number };
}

let socket: Socket | undefined;
let pc: RTCPeerConnection | undefined;
let local: MediaStream | undefined;
let remote = new Map<string, RemoteTrack>();
let removed: string | null = null;
let offers = 0;
let keying: { epoch: bigint; leafIndex: number; baseKey: Uint8Array } | undefined;
let probe: Worker | undefined;
let probeRequests = 0;
const sframeCounts = { protected: 0, unprotected: 0, failed: 0 };
const transformed = new WeakSet<RTCRtpSender | RTCRtpReceiver>();

function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : bytes.slice().buffer;
}

/**
 * Runs every frame of `endpoint` through `transform` (in order: the stream awaits each frame); a frame the
 * transform rejects is dropped, never passed on in the clear. Must run before setLocalDescription.
 */
function transformFrames(
  endpoint: RTCRtpSender | RTCRtpReceiver,
  kind: "audio" | "video",
  keyring: EpochKeyring,
  transform: (keyring: EpochKeyring, codec: MediaCodec, data: Uint8Array) => Promise<Uint8Array>,
  counter: "protected" | "unprotected",
): void {
  if (transformed.has(endpoint)) return;
  transformed.add(endpoint);
  const ready = keyring.addEpoch(keying!.epoch, keying!.leafIndex, keying!.baseKey);
  const { readable, writable } = (endpoint as unknown as EncodedEndpoint).createEncodedStreams();
  const frames = new TransformStream<EncodedFrame, EncodedFrame>({
    async transform(frame, controller) {
      await ready;
      const codec = codecFromMimeType(frame.getMetadata().mimeType ?? "") ?? (kind === "audio" ? "opus" : "vp8");
      try {
        frame.data = exactBuffer(await transform(keyring, codec, new Uint8Array(frame.data)));
        sframeCounts[counter]++;
        controller.enqueue(frame);
      } catch {
        sframeCounts.failed++;
      }
    },
  });
  readable.pipeThrough(frames).pipeTo(writable).catch(() => undefined);
}

const protect = (keyring: EpochKeyring, codec: MediaCodec, data: Uint8Array) => protectFrame(keyring.context, keyring.sendKid!, codec, data);
const unprotect = async (keyring: EpochKeyring, codec: MediaCodec, data: Uint8Array) => (await unprotectFrame(keyring.context, codec, data)).frame;

async function onOffer(offer: OfferMessage, ack: (answer: { sdp: string }) => void): Promise<void> {
  const connection = pc!;
  await connection.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  for (const kind of ["audio", "video"] as const) {
    const transceiver = connection.getTransceivers().find((t) => t.mid === offer.publish[kind]);
    const track = local!.getTracks().find((t) => t.kind === kind) ?? null;
    if (!transceiver) throw new Error(`offer has no ${kind} publish m-line`);
    transceiver.direction = "sendonly";
    if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
    // Each outbound stream has its own KID context, so its own CTR space (audio 0, video 1).
    if (keying) transformFrames(transceiver.sender, kind, new EpochKeyring({ sendContext: kind === "audio" ? 0n : 1n }), protect, "protected");
  }
  remote = new Map(offer.tracks.map((t) => [t.mid, t]));
  for (const { mid, kind } of probe ? offer.tracks : []) {
    const receiver = connection.getTransceivers().find((t) => t.mid === mid)!.receiver;
    if (kind !== "video" || transformed.has(receiver)) continue;
    transformed.add(receiver);
    const ScriptTransform = (globalThis as unknown as { RTCRtpScriptTransform: new (w: Worker, o: unknown) => unknown }).RTCRtpScriptTransform;
    (receiver as unknown as { transform: unknown }).transform = new ScriptTransform(probe!, { mid });
  }
  if (keying) {
    for (const { mid, kind } of offer.tracks) {
      const receiver = connection.getTransceivers().find((t) => t.mid === mid)!.receiver;
      transformFrames(receiver, kind, new EpochKeyring(), unprotect, "unprotected");
    }
  }
  await connection.setLocalDescription();
  offers++;
  ack({ sdp: connection.localDescription!.sdp });
}

async function join(url: string, participantId: string, room: string, options: JoinOptions = {}): Promise<unknown> {
  const { sframe } = options;
  if (sframe) keying = { epoch: BigInt(sframe.epoch), leafIndex: sframe.leafIndex, baseKey: Uint8Array.from(sframe.baseKey) };
  if (options.keyframeProbe) probe = new Worker(URL.createObjectURL(new Blob([PROBE_WORKER], { type: "text/javascript" })));
  local = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 }, audio: true });
  socket = io(url, { auth: { participantId, room }, transports: ["websocket"], reconnection: false });
  const connection = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle", encodedInsertableStreams: keying !== undefined } as RTCConfiguration);
  pc = connection;
  connection.onicecandidate = (e) => {
    if (e.candidate) socket!.emit("sfu:candidate", e.candidate.toJSON());
  };
  // Chromium decodes only tracks that reach a sink.
  connection.ontrack = (e) => {
    if (e.track.kind !== "video") return;
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    video.srcObject = new MediaStream([e.track]);
    document.body.append(video);
  };
  socket.on("sfu:offer", (offer: OfferMessage, ack: (answer: { sdp: string }) => void) => {
    onOffer(offer, ack).catch((e: unknown) => console.error("offer failed", e));
  });
  // A real client closes its connection here; this one keeps it open so the test can see the SFU stopped sending.
  socket.on("sfu:removed", ({ reason }: { reason: string }) => {
    removed = reason;
  });
  await new Promise<void>((resolve, reject) => {
    socket!.once("connect", resolve);
    socket!.once("connect_error", reject);
  });
  return socket.timeout(30_000).emitWithAck("sfu:join", {});
}

async function stats(): Promise<PeerStats> {
  const result: PeerStats = {
    video: {},
    packetsReceivedTotal: 0,
    outbound: { framesEncoded: 0, keyFramesEncoded: 0, pliCount: 0 },
    connectionState: pc?.connectionState ?? "new",
    removed,
    offers,
    sframe: { ...sframeCounts },
  };
  if (!pc) return result;
  const report = await pc.getStats();
  report.forEach((s: Record<string, unknown>) => {
    if (s.type === "inbound-rtp") {
      result.packetsReceivedTotal += Number(s.packetsReceived ?? 0);
      const track = remote.get(String(s.mid));
      if (s.kind === "video" && track) {
        result.video[track.participantId] = {
          framesDecoded: Number(s.framesDecoded ?? 0),
          keyFramesDecoded: Number(s.keyFramesDecoded ?? 0),
          packetsReceived: Number(s.packetsReceived ?? 0),
        };
      }
    } else if (s.type === "outbound-rtp" && s.kind === "video") {
      result.outbound = {
        framesEncoded: Number(s.framesEncoded ?? 0),
        keyFramesEncoded: Number(s.keyFramesEncoded ?? 0),
        pliCount: Number(s.pliCount ?? 0),
      };
    }
  });
  return result;
}

/** Makes our receiver of `participantId`'s video ask for a keyframe (needs `keyframeProbe`). */
function requestKeyframe(participantId: string): Promise<void> {
  const mid = [...remote.values()].find((t) => t.participantId === participantId && t.kind === "video")?.mid;
  if (!probe || mid === undefined) return Promise.reject(new Error(`no probed video receiver for ${participantId}`));
  const id = ++probeRequests;
  const worker = probe;
  return new Promise((resolve, reject) => {
    const onReply = ({ data }: MessageEvent<{ id: number; ok: boolean; error?: string }>) => {
      if (data.id !== id) return;
      worker.removeEventListener("message", onReply);
      if (data.ok) resolve();
      else reject(new Error(data.error));
    };
    worker.addEventListener("message", onReply);
    worker.postMessage({ mid, id });
  });
}

const api = { join, stats, requestKeyframe };
export type SfuPeerApi = typeof api;
(globalThis as { sfuPeer?: SfuPeerApi }).sfuPeer = api;
(globalThis as { conclaveReady?: boolean }).conclaveReady = true;
