/**
 * The encryption-bypass check: reading WebRTC stats snapshots (shaped as Chromium reports them), judging a
 * stream from WebRTC's and the worker's counts, the worker's per-stream counts, the transform API choice,
 * and the controller acting on a bypass (track removed / stopped, event, sender refused afterwards). The
 * controller runs here against a stand-in Worker that hosts the real FrameCrypto and stand-in senders and
 * receivers with createEncodedStreams: "leaking" frames is what a browser ignoring the transform does.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { judgeTransform, mediaCount } from "../../client/worker/bypass.js";
import { detectTransformApi, FrameCryptoController, type TransformBypass } from "../../client/worker/controller.js";
import { FrameCrypto } from "../../client/worker/frame-crypto.js";
import type { TransformableFrame } from "../../client/worker/frame-stream.js";
import type { FromWorker, StreamCounts, ToWorker } from "../../client/worker/protocol.js";

/** Entries of a Chromium 156 sender's getStats() for a video track sent as two simulcast layers. */
const videoSenderStats = [
  { id: "OT01V1", type: "outbound-rtp", kind: "video", ssrc: 1, packetsSent: 410, framesEncoded: 130, framesSent: 128, keyFramesEncoded: 2 },
  { id: "OT01V2", type: "outbound-rtp", kind: "video", ssrc: 2, packetsSent: 160, framesEncoded: 66, framesSent: 66 },
  { id: "SV1", type: "media-source", kind: "video", frames: 200 },
  { id: "RI01V1", type: "remote-inbound-rtp", kind: "video", packetsLost: 0 },
  { id: "CTx", type: "codec", mimeType: "video/VP8" },
  { id: "T01", type: "transport", packetsSent: 900 },
];
const audioSenderStats = [
  { id: "OT01A", type: "outbound-rtp", kind: "audio", ssrc: 3, packetsSent: 251, bytesSent: 20_000 },
  { id: "SA", type: "media-source", kind: "audio", totalSamplesDuration: 5 },
];
const videoReceiverStats = [
  { id: "IT01V", type: "inbound-rtp", kind: "video", packetsReceived: 300, framesReceived: 95, framesDecoded: 93, framesDropped: 2, keyFramesDecoded: 1 },
  { id: "CIT", type: "codec", mimeType: "video/VP8" },
];
const audioReceiverStats = [{ id: "IT01A", type: "inbound-rtp", kind: "audio", packetsReceived: 140, totalSamplesReceived: 130_000 }];

const counts = (seen: number, out: number): StreamCounts => ({ streamId: 0, seen, out });

describe("reading a sender's or receiver's stats", () => {
  it("sums frames sent over simulcast layers and ignores every other entry", () => {
    expect(mediaCount(videoSenderStats, "send")).toEqual({ kind: "video", counter: "framesSent", value: 194 });
  });

  it("counts packets for audio senders and receivers, frames received (decodable or not) for video receivers", () => {
    expect(mediaCount(audioSenderStats, "send")).toEqual({ kind: "audio", counter: "packetsSent", value: 251 });
    expect(mediaCount(videoReceiverStats, "receive")).toEqual({ kind: "video", counter: "framesReceived", value: 95 });
    expect(mediaCount(audioReceiverStats, "receive")).toEqual({ kind: "audio", counter: "packetsReceived", value: 140 });
  });

  it("reports nothing before the stream exists, and a missing or bogus counter as zero", () => {
    expect(mediaCount([{ id: "T01", type: "transport" }], "send")).toBeUndefined();
    expect(mediaCount(videoSenderStats, "receive")).toBeUndefined();
    expect(mediaCount([{ type: "outbound-rtp", kind: "video" }], "send")).toEqual({ kind: "video", counter: "framesSent", value: 0 });
    expect(mediaCount([{ type: "inbound-rtp", kind: "video", framesReceived: "many" }], "receive")?.value).toBe(0);
  });
});

describe("judging a stream", () => {
  const video = (value: number) => ({ kind: "video" as const, counter: "framesSent" as const, value });

  it("calls frames sent that never came out of the transform a bypass, past the margin", () => {
    expect(judgeTransform(video(40), counts(0, 0), 10)).toEqual({ verdict: "bypass", media: 40, transformed: 0 });
    // A transform that never started (no counts at all) vouches for nothing.
    expect(judgeTransform(video(40), undefined, 10).verdict).toBe("bypass");
    // A partial bypass: the transform saw some frames, WebRTC sent many more.
    expect(judgeTransform(video(300), counts(120, 120), 10).verdict).toBe("bypass");
    expect(judgeTransform(video(10), counts(0, 0), 10).verdict).toBe("pending");
    expect(judgeTransform(video(20), counts(12, 12), 10).verdict).toBe("verified");
    expect(judgeTransform(video(11), counts(0, 0), 10).verdict).toBe("bypass");
  });

  it("trusts a stream once enough media went through the transform, and waits before that", () => {
    expect(judgeTransform(video(40), counts(42, 41), 10)).toEqual({ verdict: "verified", media: 40, transformed: 41 });
    expect(judgeTransform(video(3), counts(3, 3), 10).verdict).toBe("pending");
    expect(judgeTransform(undefined, undefined, 10)).toEqual({ verdict: "pending", media: 0, transformed: 0 });
  });

  it("does not mistake frames the worker dropped or holds for a bypass: they are neither sent nor decoded", () => {
    // A sender without keys drops every frame: WebRTC encoded them but sent none.
    expect(judgeTransform(mediaCount([{ type: "outbound-rtp", kind: "video", framesEncoded: 90, framesSent: 0 }], "send"), counts(90, 0), 10).verdict).toBe("pending");
    // A receiver holding frames for an epoch (or dropping undecryptable ones): none reaches the frame buffer.
    expect(judgeTransform(mediaCount([{ type: "inbound-rtp", kind: "video", packetsReceived: 400, framesReceived: 0 }], "receive"), counts(120, 0), 10).verdict).toBe(
      "pending",
    );
    // Ciphertext fed to the decoder past an ignored transform: received, barely decoded, never transformed.
    expect(
      judgeTransform(mediaCount([{ type: "inbound-rtp", kind: "video", packetsReceived: 1213, framesReceived: 716, framesDecoded: 1 }], "receive"), counts(0, 0), 10),
    ).toEqual({ verdict: "bypass", media: 716, transformed: 0 });
  });

  it("judges inbound audio by frames into the transform (its packets are counted before it)", () => {
    const audio = mediaCount(audioReceiverStats, "receive");
    // Undecryptable audio (no keys) still reached the transform: no bypass.
    expect(judgeTransform(audio, counts(135, 0), 10).verdict).toBe("verified");
    expect(judgeTransform(audio, counts(0, 0), 10).verdict).toBe("bypass");
  });
});

describe("choosing the transform API", () => {
  afterEach(() => vi.unstubAllGlobals());

  class WithEncodedStreams {
    createEncodedStreams(): void {}
  }

  it("prefers createEncodedStreams where it exists, else RTCRtpScriptTransform", () => {
    vi.stubGlobal("RTCRtpScriptTransform", class {});
    expect(detectTransformApi()).toBe("script-transform");
    vi.stubGlobal("RTCRtpSender", WithEncodedStreams);
    vi.stubGlobal("RTCRtpReceiver", WithEncodedStreams);
    expect(detectTransformApi()).toBe("encoded-streams");
  });
});

describe("the worker's per-stream counts", () => {
  class Frame implements TransformableFrame {
    constructor(public data: ArrayBuffer) {}
    getMetadata() {
      return { mimeType: "video/VP8" };
    }
  }
  const vp8 = () => new Frame(new Uint8Array(200).fill(3).buffer);

  it("counts frames in and frames out per stream, keeps them after the stream ended, forgets them on release", async () => {
    const core = new FrameCrypto(() => undefined, { statsIntervalMs: 60_000 });
    const input = new TransformStream<Frame, Frame>();
    const writer = input.writable.getWriter();
    const out: Frame[] = [];
    const done = core.attach({ streamId: 7, role: "send", participantId: "me" }, input.readable, new WritableStream<Frame>({ write: (f) => void out.push(f) }));
    // No epoch yet: frames are seen and dropped (no-send-key), none goes out.
    await writer.write(vp8());
    await writer.write(vp8());
    await vi.waitFor(() => expect(core.streamCounts()).toEqual([{ streamId: 7, seen: 2, out: 0 }]));
    await core.setEpoch({ epoch: 1n, baseKey: new Uint8Array(16).fill(1), myLeafIndex: 0 });
    for (let i = 0; i < 3; i++) await writer.write(vp8());
    await writer.close();
    await done;
    expect(out).toHaveLength(3);
    expect(core.streamCounts()).toEqual([{ streamId: 7, seen: 5, out: 3 }]);
    core.release(7);
    expect(core.streamCounts()).toEqual([]);
    core.close();
  });
});

describe("the controller's bypass check", () => {
  const workers: StandInWorker[] = [];
  const controllers: FrameCryptoController[] = [];

  /** Hosts the real FrameCrypto as the bundled worker (frame-transform.ts) does, without a thread. */
  class StandInWorker {
    onmessage: ((e: { data: FromWorker }) => void) | null = null;
    readonly core = new FrameCrypto((m) => queueMicrotask(() => this.onmessage?.({ data: m })), { statsIntervalMs: 60_000 });
    constructor() {
      workers.push(this);
    }
    postMessage(m: ToWorker): void {
      if (m.type === "epoch") void this.core.setEpoch(m.update);
      else if (m.type === "streams") void this.core.attach(m.stream, m.readable, m.writable);
      else if (m.type === "release") this.core.release(m.streamId);
      else if (m.type === "count-streams") queueMicrotask(() => this.onmessage?.({ data: { type: "stream-counts", requestId: m.requestId, streams: this.core.streamCounts() } }));
    }
    terminate(): void {
      this.core.close();
    }
  }

  /**
   * A sender or receiver whose encoded frames go through createEncodedStreams. `deliver` feeds frames
   * through the transform (WebRTC counts those that come out, or for inbound audio those that go in),
   * `leak` counts frames WebRTC moved past it.
   */
  class Endpoint {
    track: { stopped: boolean; stop(): void } | null = { stopped: false, stop: () => void (this.track!.stopped = true) };
    replaced: unknown[] = [];
    private moved = 0;
    private writer: WritableStreamDefaultWriter<TransformableFrame> | undefined;
    constructor(
      private readonly role: "send" | "receive",
      private readonly kind: "audio" | "video" = "video",
    ) {}
    createEncodedStreams() {
      const encoder = new TransformStream<TransformableFrame, TransformableFrame>();
      this.writer = encoder.writable.getWriter();
      const countsOut = !(this.role === "receive" && this.kind === "audio");
      return { readable: encoder.readable, writable: new WritableStream<TransformableFrame>({ write: () => void (countsOut && this.moved++) }) };
    }
    async deliver(n: number): Promise<void> {
      if (this.role === "receive" && this.kind === "audio") this.moved += n;
      for (let i = 0; i < n; i++) await this.writer!.write({ data: new Uint8Array(120).fill(i).buffer, getMetadata: () => ({ mimeType: this.kind === "video" ? "video/VP8" : "audio/opus" }) });
    }
    leak(n: number): void {
      this.moved += n;
    }
    replaceTrack(track: unknown): Promise<void> {
      this.replaced.push(track);
      return Promise.resolve();
    }
    getStats(): Promise<Map<string, Record<string, unknown>>> {
      const counter = this.role === "send" ? (this.kind === "video" ? "framesSent" : "packetsSent") : this.kind === "video" ? "framesReceived" : "packetsReceived";
      return Promise.resolve(new Map([["rtp", { type: this.role === "send" ? "outbound-rtp" : "inbound-rtp", kind: this.kind, [counter]: this.moved }]]));
    }
  }

  function controller() {
    vi.stubGlobal("Worker", StandInWorker);
    vi.stubGlobal("RTCRtpSender", class extends Endpoint {});
    vi.stubGlobal("RTCRtpReceiver", class extends Endpoint {});
    const c = new FrameCryptoController({ workerUrl: "/frame-transform.js", selfId: "me", bypassGuard: { checkMs: 20, recheckMs: 60_000, margin: 10 } });
    controllers.push(c);
    const bypasses: TransformBypass[] = [];
    c.addEventListener("bypass", (e) => bypasses.push((e as CustomEvent<TransformBypass>).detail));
    c.setEpoch({ epoch: 1n, baseKey: new Uint8Array(16).fill(9), myLeafIndex: 0 });
    return { c, bypasses };
  }

  afterEach(() => {
    for (const c of controllers.splice(0)) c.close();
    workers.length = 0;
    vi.unstubAllGlobals();
  });

  it("chooses createEncodedStreams and trusts a sender whose frames all went through the worker", async () => {
    const { c, bypasses } = controller();
    expect(c.api).toBe("encoded-streams");
    const sender = new Endpoint("send");
    c.protectSender(sender as unknown as RTCRtpSender);
    await sender.deliver(30);
    await vi.waitFor(() => expect(c.transformChecks).toMatchObject([{ participantId: "me", role: "send", kind: "video", verdict: "verified" }]));
    const [checked] = c.transformChecks;
    expect(checked!.media).toBeGreaterThanOrEqual(10);
    expect(checked!.transformed).toBeGreaterThanOrEqual(checked!.media);
    expect(bypasses).toEqual([]);
    expect(sender.replaced).toEqual([]);
  });

  it("removes the track of a sender whose frames leave without the transform, reports it and refuses the sender afterwards", async () => {
    const { c, bypasses } = controller();
    const sender = new Endpoint("send");
    c.protectSender(sender as unknown as RTCRtpSender);
    await sender.deliver(5);
    await vi.waitFor(() => expect(workers[0]!.core.streamCounts()).toMatchObject([{ seen: 5, out: 5 }]));
    sender.leak(40);
    await vi.waitFor(() => expect(bypasses).toHaveLength(1));
    expect(bypasses[0]).toMatchObject({ participantId: "me", role: "send", kind: "video", api: "encoded-streams", counter: "framesSent", media: 45, transformed: 5, action: "track-removed" });
    expect(sender.replaced).toEqual([null]);
    expect(c.bypassed(sender as unknown as RTCRtpSender)).toBe(true);
    expect(c.transformChecks[0]?.verdict).toBe("bypass");
    // A renegotiation protecting it again must not give it a track back.
    expect(() => c.protectSender(sender as unknown as RTCRtpSender)).toThrow(/caught sending frames/);
    expect(sender.replaced).toEqual([null, null]);
  });

  it("stops the track of a receiver that gets frames the transform never saw, and only that one", async () => {
    const { c, bypasses } = controller();
    const bypassed = new Endpoint("receive");
    const fine = new Endpoint("receive", "audio");
    c.protectReceiver(bypassed as unknown as RTCRtpReceiver, "bob/phone");
    c.protectReceiver(fine as unknown as RTCRtpReceiver, "carol/laptop");
    bypassed.leak(30);
    // Audio the worker cannot decrypt (not from this epoch's sender) still went through it: no bypass.
    await fine.deliver(30);
    await vi.waitFor(() => expect(bypasses).toHaveLength(1));
    expect(bypasses[0]).toMatchObject({ participantId: "bob/phone", role: "receive", counter: "framesReceived", media: 30, transformed: 0, action: "track-stopped" });
    expect(bypassed.track?.stopped).toBe(true);
    expect(fine.track?.stopped).toBe(false);
    await vi.waitFor(() => expect(c.transformChecks.find((x) => x.participantId === "carol/laptop")?.verdict).toBe("verified"));
  });

  it("does not check released streams", async () => {
    const { c, bypasses } = controller();
    const sender = new Endpoint("send");
    c.protectSender(sender as unknown as RTCRtpSender);
    c.release(sender as unknown as RTCRtpSender);
    sender.leak(100);
    await new Promise((r) => setTimeout(r, 100));
    expect(bypasses).toEqual([]);
    expect(c.transformChecks).toEqual([]);
  });
});
