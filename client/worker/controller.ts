/**
 * Page side of the frame-transform worker: attaches it to RTCRtpSenders and RTCRtpReceivers, forwards
 * epoch keys to it and re-emits its stats and errors as events ("stats", "error", "epoch").
 *
 * RTCRtpScriptTransform is used where it exists; otherwise Chromium's createEncodedStreams, which needs
 * the peer connection created with `controller.rtcConfiguration` merged in. With neither, the
 * constructor throws E2eeUnsupportedError: the caller must not send media at all rather than send it
 * in the clear. Transforms must be attached before negotiation (sender) or before the answer is applied
 * (receiver); Chromium ignores ones set later.
 */
import type { EpochUpdate, FrameCryptoOptions, FromWorker, ParticipantStats, StreamDescriptor, ToWorker, WorkerError } from "./protocol.js";

export type TransformApi = "script-transform" | "encoded-streams";

export class E2eeUnsupportedError extends Error {
  override readonly name = "E2eeUnsupportedError";
}

interface EncodedStreams {
  readable: ReadableStream;
  writable: WritableStream;
}

interface WithEncodedStreams {
  createEncodedStreams(): EncodedStreams;
}

function hasEncodedStreams(): boolean {
  return typeof RTCRtpSender !== "undefined" && "createEncodedStreams" in RTCRtpSender.prototype && "createEncodedStreams" in RTCRtpReceiver.prototype;
}

/** The transform API this browser offers, preferring RTCRtpScriptTransform; undefined if none. */
export function detectTransformApi(): TransformApi | undefined {
  if (typeof RTCRtpScriptTransform === "function") return "script-transform";
  if (hasEncodedStreams()) return "encoded-streams";
  return undefined;
}

function available(api: TransformApi): boolean {
  return api === "script-transform" ? typeof RTCRtpScriptTransform === "function" : hasEncodedStreams();
}

export interface FrameCryptoControllerOptions {
  /** URL of the bundled worker (client/worker/frame-transform.ts). */
  readonly workerUrl: string | URL;
  /** The local participant, as named in stats for what this page sends. */
  readonly selfId?: string;
  /** Forces one API (it must exist); default: detectTransformApi(). */
  readonly api?: TransformApi;
  readonly options?: Partial<FrameCryptoOptions>;
}

export class FrameCryptoController extends EventTarget {
  readonly api: TransformApi;
  readonly selfId: string;
  /** The last stats the worker posted, one entry per participant. */
  stats: ParticipantStats[] = [];
  private readonly worker: Worker;
  private readonly streamIds = new WeakMap<RTCRtpSender | RTCRtpReceiver, number>();
  private nextStreamId = 0;

  constructor(options: FrameCryptoControllerOptions) {
    super();
    const api = options.api ?? detectTransformApi();
    if (api === undefined || !available(api)) {
      throw new E2eeUnsupportedError(
        api === undefined ? "this browser has no encoded transform API; media would be sent unencrypted" : `${api} is not available in this browser`,
      );
    }
    this.api = api;
    this.selfId = options.selfId ?? "self";
    this.worker = new Worker(options.workerUrl, { type: "module", name: "conclave-frame-transform" });
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.receive(e.data);
    if (options.options) this.send({ type: "configure", options: options.options });
  }

  /** Fields a peer connection must be created with for this controller's API. */
  get rtcConfiguration(): RTCConfiguration {
    return this.api === "encoded-streams" ? ({ encodedInsertableStreams: true } as RTCConfiguration) : {};
  }

  private send(message: ToWorker, transfer: Transferable[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  private receive(m: FromWorker): void {
    switch (m.type) {
      case "stats":
        this.stats = m.stats;
        this.dispatchEvent(new CustomEvent<ParticipantStats[]>("stats", { detail: m.stats }));
        break;
      case "error":
        this.dispatchEvent(new CustomEvent<WorkerError>("error", { detail: m.error }));
        break;
      case "epoch-installed":
        this.dispatchEvent(new CustomEvent<bigint>("epoch", { detail: m.epoch }));
        break;
    }
  }

  private attach(target: RTCRtpSender | RTCRtpReceiver, role: StreamDescriptor["role"], participantId: string): void {
    if (this.streamIds.has(target)) return;
    const stream: StreamDescriptor = { streamId: this.nextStreamId++, role, participantId };
    if (this.api === "script-transform") {
      target.transform = new RTCRtpScriptTransform(this.worker, stream);
    } else {
      const { readable, writable } = (target as unknown as WithEncodedStreams).createEncodedStreams();
      this.send({ type: "streams", stream, readable, writable }, [readable as unknown as Transferable, writable as unknown as Transferable]);
    }
    this.streamIds.set(target, stream.streamId);
  }

  /**
   * Encrypts everything `sender` sends. If that cannot be arranged the sender's track is removed (so
   * nothing leaves in the clear) and E2eeUnsupportedError is thrown.
   */
  protectSender(sender: RTCRtpSender): void {
    try {
      this.attach(sender, "send", this.selfId);
    } catch (e) {
      void sender.replaceTrack(null).catch(() => undefined);
      throw new E2eeUnsupportedError(`cannot protect the sender: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Decrypts what `receiver` receives from `participantId` (named in stats and errors). */
  protectReceiver(receiver: RTCRtpReceiver, participantId: string): void {
    try {
      this.attach(receiver, "receive", participantId);
    } catch (e) {
      throw new E2eeUnsupportedError(`cannot protect the receiver: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Stops transforming a sender's or receiver's frames, when it is removed; its stats stay. Media of a
   * released sender stops flowing rather than going out in the clear.
   */
  release(target: RTCRtpSender | RTCRtpReceiver): void {
    const streamId = this.streamIds.get(target);
    if (streamId === undefined) return;
    this.streamIds.delete(target);
    this.send({ type: "release", streamId });
  }

  /** Hands the worker an epoch's SFrame base key (copied: the caller's buffer stays usable). */
  setEpoch(update: EpochUpdate): void {
    this.send({ type: "epoch", update: { epoch: update.epoch, baseKey: update.baseKey, myLeafIndex: update.myLeafIndex } });
  }

  close(): void {
    this.worker.terminate();
  }
}
