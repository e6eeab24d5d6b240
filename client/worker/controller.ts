/**
 * Page side of the frame-transform worker: attaches it to RTCRtpSenders and RTCRtpReceivers, forwards
 * epoch keys to it and re-emits its stats and errors as events ("stats", "error", "epoch").
 *
 * Chromium's createEncodedStreams is used where it exists (the peer connection must be created with
 * `controller.rtcConfiguration` merged in), otherwise RTCRtpScriptTransform. With neither, the
 * constructor throws E2eeUnsupportedError: the caller must not send media at all rather than send it
 * in the clear. Transforms must be attached before negotiation (sender) or before the answer is applied
 * (receiver); Chromium ignores ones set later.
 *
 * Every protected sender and receiver is then watched (bypass.ts): if WebRTC sends or decodes frames that
 * never went through the worker, the sender's track is removed or the receiver's track stopped, and a
 * "bypass" event says which.
 */
import { judgeTransform, mediaCount, type MediaCount, type MediaCounter, type TransformVerdict } from "./bypass.js";
import type { EpochUpdate, FrameCryptoOptions, FromWorker, ParticipantStats, StreamCounts, StreamDescriptor, StreamRole, ToWorker, WorkerError } from "./protocol.js";

export type TransformApi = "script-transform" | "encoded-streams";

export class E2eeUnsupportedError extends Error {
  override readonly name = "E2eeUnsupportedError";
}

/** One sender or receiver caught moving media its transform never saw, and what was done about it. */
export interface TransformBypass {
  /** The participant whose media it is (for a sender: the local one). */
  readonly participantId: string;
  readonly role: StreamRole;
  readonly kind: MediaCount["kind"];
  readonly api: TransformApi;
  /** WebRTC's counter and its value at detection, and the frames the transform handled by then. */
  readonly counter: MediaCounter;
  readonly media: number;
  readonly transformed: number;
  /** "track-removed": the sender sends nothing from now on; "track-stopped": the receiver's track ended. */
  readonly action: "track-removed" | "track-stopped";
  readonly at: number;
}

/** The typed error for a TransformBypass (CallE2ee/Call report it through their "error" events). */
export class E2eeBypassError extends Error {
  override readonly name = "E2eeBypassError";
  constructor(readonly bypass: TransformBypass) {
    super(
      `${bypass.kind} ${bypass.role === "send" ? "sender" : `receiver of ${bypass.participantId}`} bypassed its encryption transform ` +
        `(${bypass.counter} ${bypass.media}, ${bypass.transformed} through the transform); ${bypass.action === "track-removed" ? "its track was removed" : "its track was stopped"}`,
    );
  }
}

/** The latest bypass check of one protected sender or receiver. */
export interface TransformCheck {
  readonly participantId: string;
  readonly role: StreamRole;
  readonly kind: MediaCount["kind"] | undefined;
  readonly verdict: TransformVerdict;
  readonly media: number;
  readonly transformed: number;
  readonly at: number;
}

export interface BypassGuardOptions {
  /** How often a stream is checked until enough media went through its transform to trust it. */
  readonly checkMs: number;
  /** How often a trusted stream is checked again. */
  readonly recheckMs: number;
  /** Frames (audio: packets) WebRTC may move beyond the transform's count before it is a bypass. */
  readonly margin: number;
  /** A check whose stats or worker answer take longer is skipped (a busy worker is not a bypass). */
  readonly answerTimeoutMs: number;
}

export const DEFAULT_BYPASS_GUARD: BypassGuardOptions = { checkMs: 500, recheckMs: 10_000, margin: 10, answerTimeoutMs: 5000 };

interface EncodedStreams {
  readable: ReadableStream;
  writable: WritableStream;
}

interface WithEncodedStreams {
  createEncodedStreams(): EncodedStreams;
}

type Endpoint = RTCRtpSender | RTCRtpReceiver;

interface Guarded {
  readonly target: Endpoint;
  readonly stream: StreamDescriptor;
  trusted: boolean;
  checkedAt: number;
}

function hasEncodedStreams(): boolean {
  return typeof RTCRtpSender !== "undefined" && "createEncodedStreams" in RTCRtpSender.prototype && "createEncodedStreams" in RTCRtpReceiver.prototype;
}

/**
 * The transform API to use in this browser; undefined if none. createEncodedStreams wins where it exists
 * (Chromium): in Chromium 156, RTCRtpScriptTransforms set while answering a connection's first offer were
 * silently bypassed on receivers and on the video sender (clear video sent, ciphertext decoded), while
 * createEncodedStreams transformed every stream in the same flows. Firefox and Safari have only
 * RTCRtpScriptTransform.
 */
export function detectTransformApi(): TransformApi | undefined {
  if (hasEncodedStreams()) return "encoded-streams";
  if (typeof RTCRtpScriptTransform === "function") return "script-transform";
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
  /** The bypass check's timing and margin (default DEFAULT_BYPASS_GUARD); it cannot be turned off. */
  readonly bypassGuard?: Partial<BypassGuardOptions>;
}

export class FrameCryptoController extends EventTarget {
  readonly api: TransformApi;
  readonly selfId: string;
  /** The last stats the worker posted, one entry per participant. */
  stats: ParticipantStats[] = [];
  private readonly worker: Worker;
  private readonly streamIds = new WeakMap<Endpoint, number>();
  private nextStreamId = 0;
  private readonly guard: BypassGuardOptions;
  /** Protected senders and receivers under the bypass check, by stream id (until released or caught). */
  private readonly guarded = new Map<number, Guarded>();
  private readonly checks = new Map<number, TransformCheck>();
  /** Senders and receivers caught bypassing: they stay silent. */
  private readonly caught = new WeakSet<Endpoint>();
  private guardTimer: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  private readonly countRequests = new Map<number, (streams: StreamCounts[]) => void>();
  private nextRequestId = 0;
  private closed = false;

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
    this.guard = { ...DEFAULT_BYPASS_GUARD, ...options.bypassGuard };
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
      case "stream-counts":
        this.countRequests.get(m.requestId)?.(m.streams);
        break;
    }
  }

  private attach(target: Endpoint, role: StreamDescriptor["role"], participantId: string): void {
    if (this.streamIds.has(target)) return;
    const stream: StreamDescriptor = { streamId: this.nextStreamId++, role, participantId };
    if (this.api === "script-transform") {
      target.transform = new RTCRtpScriptTransform(this.worker, stream);
    } else {
      const { readable, writable } = (target as unknown as WithEncodedStreams).createEncodedStreams();
      this.send({ type: "streams", stream, readable, writable }, [readable as unknown as Transferable, writable as unknown as Transferable]);
    }
    this.streamIds.set(target, stream.streamId);
    this.guarded.set(stream.streamId, { target, stream, trusted: false, checkedAt: 0 });
    this.guardTimer ??= setInterval(() => void this.checkTransforms(), this.guard.checkMs);
  }

  /**
   * Encrypts everything `sender` sends. If that cannot be arranged (or the sender was caught bypassing its
   * transform) the sender's track is removed, so nothing leaves in the clear, and E2eeUnsupportedError is
   * thrown.
   */
  protectSender(sender: RTCRtpSender): void {
    if (this.caught.has(sender)) {
      void sender.replaceTrack(null).catch(() => undefined);
      throw new E2eeUnsupportedError("this sender was caught sending frames its encryption transform never saw");
    }
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

  /** Whether `target` was caught bypassing its transform (a sender that must not be given a track again). */
  bypassed(target: Endpoint): boolean {
    return this.caught.has(target);
  }

  /**
   * Stops transforming a sender's or receiver's frames, when it is removed; its stats stay. Media of a
   * released sender stops flowing rather than going out in the clear.
   */
  release(target: Endpoint): void {
    const streamId = this.streamIds.get(target);
    if (streamId === undefined) return;
    this.streamIds.delete(target);
    this.guarded.delete(streamId);
    this.checks.delete(streamId);
    this.send({ type: "release", streamId });
  }

  /** Hands the worker an epoch's SFrame base key (copied: the caller's buffer stays usable). */
  setEpoch(update: EpochUpdate): void {
    this.send({ type: "epoch", update: { epoch: update.epoch, baseKey: update.baseKey, myLeafIndex: update.myLeafIndex } });
  }

  /** The latest bypass check of every protected sender and receiver. */
  get transformChecks(): TransformCheck[] {
    return [...this.checks.values()];
  }

  /**
   * Runs the bypass check now on every stream that is due: every check interval until the stream is
   * trusted, every recheck interval afterwards. Runs on its own timer; callable for an immediate check.
   */
  async checkTransforms(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      const now = Date.now();
      const due = [...this.guarded.values()].filter((g) => !g.trusted || now - g.checkedAt >= this.guard.recheckMs);
      if (due.length === 0) return;
      // WebRTC's counters first, then the worker's: a frame WebRTC counted has already left the worker.
      const media = await Promise.all(due.map((g) => this.sample(g)));
      const counts = await this.countStreams();
      if (counts === undefined || this.closed) return;
      const byId = new Map(counts.map((c) => [c.streamId, c]));
      const at = Date.now();
      due.forEach((g, i) => {
        const m = media[i];
        // A stream released meanwhile, or whose stats could not be read (its connection closed), is skipped.
        if (m === null || this.guarded.get(g.stream.streamId) !== g) return;
        const { verdict, media: value, transformed } = judgeTransform(m, byId.get(g.stream.streamId), this.guard.margin);
        const { participantId, role } = g.stream;
        this.checks.set(g.stream.streamId, { participantId, role, kind: m?.kind, verdict, media: value, transformed, at });
        g.checkedAt = at;
        if (verdict === "verified") g.trusted = true;
        else if (verdict === "bypass" && m) {
          const action = role === "send" ? "track-removed" : "track-stopped";
          this.stop(g, { participantId, role, kind: m.kind, api: this.api, counter: m.counter, media: value, transformed, action, at });
        }
      });
    } finally {
      this.checking = false;
    }
  }

  /** WebRTC's count for a stream; null if its stats cannot be read in time (a closed connection rejects). */
  private sample(g: Guarded): Promise<MediaCount | undefined | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), this.guard.answerTimeoutMs);
      g.target.getStats().then(
        (report) => {
          clearTimeout(timer);
          resolve(mediaCount(report.values() as Iterable<Record<string, unknown>>, g.stream.role));
        },
        () => {
          clearTimeout(timer);
          resolve(null);
        },
      );
    });
  }

  /** The worker's per-stream counts, or undefined if it did not answer in time. */
  private countStreams(): Promise<StreamCounts[] | undefined> {
    const requestId = this.nextRequestId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), this.guard.answerTimeoutMs);
      const finish = (streams: StreamCounts[] | undefined) => {
        clearTimeout(timer);
        this.countRequests.delete(requestId);
        resolve(streams);
      };
      this.countRequests.set(requestId, finish);
      this.send({ type: "count-streams", requestId });
    });
  }

  private stop(g: Guarded, bypass: TransformBypass): void {
    this.guarded.delete(g.stream.streamId);
    this.caught.add(g.target);
    if (g.stream.role === "send") void (g.target as RTCRtpSender).replaceTrack(null).catch(() => undefined);
    else (g.target as RTCRtpReceiver).track.stop();
    this.dispatchEvent(new CustomEvent<TransformBypass>("bypass", { detail: bypass }));
  }

  close(): void {
    this.closed = true;
    if (this.guardTimer !== undefined) clearInterval(this.guardTimer);
    for (const finish of [...this.countRequests.values()]) finish([]);
    this.worker.terminate();
  }
}
