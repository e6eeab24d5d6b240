/**
 * End-to-end encryption of a call's media, attachable to any RTCRtpSender / RTCRtpReceiver (so to any SFU):
 *
 *   const e2ee = new CallE2ee({ workerUrl, selfId: "alice/laptop" });
 *   await e2ee.bind(session);                       // every MLS epoch's SFrame key goes to the worker
 *   const pc = new RTCPeerConnection({ ...e2ee.rtcConfiguration });
 *   e2ee.protectSender(pc.addTransceiver(track).sender);      // before setLocalDescription
 *   e2ee.protectReceiver(transceiver.receiver, "bob/phone");   // before the answer is applied
 *
 * One CallE2ee (one frame-transform worker) per call membership: the worker owns the send CTRs, and a
 * second worker under the same epoch keys would restart them (nonce reuse). A browser with neither
 * RTCRtpScriptTransform nor createEncodedStreams gets E2eeUnsupportedError from the constructor, and a
 * sender that cannot be protected has its track removed, so nothing is ever sent in the clear.
 *
 * Every protected sender and receiver is checked against WebRTC's own counters (worker/bypass.ts): one
 * that sends or decodes frames its transform never saw has its track removed (sender) or stopped
 * (receiver), and `bypass` is emitted.
 */
import type { CallSession, EpochKeyUpdate } from "../call-session.js";
import { Emitter } from "../emitter.js";
import {
  detectTransformApi,
  E2eeBypassError,
  E2eeUnsupportedError,
  FrameCryptoController,
  type BypassGuardOptions,
  type TransformApi,
  type TransformBypass,
  type TransformCheck,
} from "../worker/controller.js";
import type { FrameCryptoOptions, ParticipantStats, WorkerError } from "../worker/protocol.js";
import { E2eeStatusBook, type ParticipantE2ee } from "./e2ee-status.js";

export { E2eeBypassError, E2eeUnsupportedError, type BypassGuardOptions, type TransformApi, type TransformBypass, type TransformCheck };

export interface E2eeSupport {
  /** The transform API media would be encrypted with, or undefined when this browser has none. */
  readonly api: TransformApi | undefined;
  /** Why media cannot be protected here (only when `api` is undefined). */
  readonly reason?: string;
}

export interface CallE2eeOptions {
  /** URL of the bundled frame-transform worker (client/worker/frame-transform.ts). */
  readonly workerUrl: string | URL;
  /** The local participant's id, as other participants' receivers name it. */
  readonly selfId: string;
  /** Forces one transform API (it must exist); default: CallE2ee.support().api. */
  readonly api?: TransformApi;
  readonly frameCrypto?: Partial<FrameCryptoOptions>;
  /** How long an epoch's keys may take to reach the worker before the call moves on regardless (default 2 s). */
  readonly installTimeoutMs?: number;
  /** Timing and margin of the bypass check (worker/controller.ts DEFAULT_BYPASS_GUARD). */
  readonly bypassGuard?: Partial<BypassGuardOptions>;
}

export interface CallE2eeEvents {
  /** Every participant's E2EE state, re-evaluated each second and after every stats post. */
  status: readonly ParticipantE2ee[];
  /** The worker installed an epoch's keys (receive side first, then the send side switched to it). */
  installed: { readonly epoch: bigint; readonly at: number };
  /** A worker error (throttled per participant and reason; messages never carry key material). */
  error: WorkerError;
  /** A sender or receiver moved frames its transform never saw; its media was stopped. */
  bypass: TransformBypass;
}

const STATUS_TICK_MS = 1000;

export class CallE2ee extends Emitter<CallE2eeEvents> {
  /** Whether this browser can encrypt media frames, and with which API (detectTransformApi: why that one). */
  static support(): E2eeSupport {
    const api = detectTransformApi();
    if (api) return { api };
    return {
      api: undefined,
      reason:
        "this browser offers neither RTCRtpScriptTransform nor RTCRtpSender.createEncodedStreams, so media could only be sent unencrypted; " +
        "use a current Chrome, Edge, Firefox or Safari",
    };
  }

  readonly selfId: string;
  private readonly controller: FrameCryptoController;
  private readonly book: E2eeStatusBook;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly installTimeoutMs: number;
  private readonly waiting = new Map<bigint, (() => void)[]>();
  private lastStatus = "";
  private closed = false;

  constructor(options: CallE2eeOptions) {
    super();
    this.selfId = options.selfId;
    this.installTimeoutMs = options.installTimeoutMs ?? 2000;
    this.controller = new FrameCryptoController({
      workerUrl: options.workerUrl,
      selfId: options.selfId,
      api: options.api ?? CallE2ee.support().api,
      options: options.frameCrypto,
      bypassGuard: options.bypassGuard,
    });
    const interval = options.frameCrypto?.statsIntervalMs ?? 1000;
    this.book = new E2eeStatusBook(options.selfId, Math.max(3000, 3 * interval));
    this.controller.addEventListener("stats", (e) => {
      this.book.update((e as CustomEvent<ParticipantStats[]>).detail, Date.now());
      this.publishStatus(true);
    });
    this.controller.addEventListener("error", (e) => this.emit("error", (e as CustomEvent<WorkerError>).detail));
    this.controller.addEventListener("epoch", (e) => this.installed((e as CustomEvent<bigint>).detail));
    this.controller.addEventListener("bypass", (e) => this.emit("bypass", (e as CustomEvent<TransformBypass>).detail));
    this.timer = setInterval(() => this.publishStatus(false), STATUS_TICK_MS);
  }

  get api(): TransformApi {
    return this.controller.api;
  }

  /** Merge into every RTCPeerConnection's configuration whose senders or receivers this protects. */
  get rtcConfiguration(): RTCConfiguration {
    return this.controller.rtcConfiguration;
  }

  /** Encrypts everything `sender` sends; call before setLocalDescription. Throws E2eeUnsupportedError (the track is then removed). */
  protectSender(sender: RTCRtpSender): void {
    this.controller.protectSender(sender);
  }

  /** Decrypts what `receiver` receives from `participantId`; call before the answer is applied locally. */
  protectReceiver(receiver: RTCRtpReceiver, participantId: string): void {
    this.controller.protectReceiver(receiver, participantId);
  }

  /** Whether `target` was caught bypassing its transform: such a sender must not be given a track again. */
  bypassed(target: RTCRtpSender | RTCRtpReceiver): boolean {
    return this.controller.bypassed(target);
  }

  /** The latest bypass check of every protected sender and receiver (checked on a timer). */
  get transformChecks(): readonly TransformCheck[] {
    return this.controller.transformChecks;
  }

  /** Frees the worker's stream of a sender or receiver that went away. */
  release(target: RTCRtpSender | RTCRtpReceiver): void {
    this.controller.release(target);
  }

  /**
   * Hands the worker an epoch's key; resolves once the worker installed it (or after installTimeoutMs, so a
   * stuck worker cannot stall the call's MLS processing).
   */
  setEpoch(update: EpochKeyUpdate): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timeout);
        resolve();
      };
      const timeout = setTimeout(() => {
        const list = this.waiting.get(update.epoch)?.filter((d) => d !== done);
        if (list?.length) this.waiting.set(update.epoch, list);
        else this.waiting.delete(update.epoch);
        resolve();
      }, this.installTimeoutMs);
      const list = this.waiting.get(update.epoch) ?? [];
      list.push(done);
      this.waiting.set(update.epoch, list);
      this.controller.setEpoch(update);
    });
  }

  /** Makes `session` hand every epoch's key to this worker (at once with the current epoch, if joined). */
  bind(session: CallSession): Promise<void> {
    return session.setEpochKeyHandler((update) => this.setEpoch(update));
  }

  /** The latest E2EE state of every participant the worker has seen frames of (the local one included). */
  statuses(): ParticipantE2ee[] {
    return this.book.statuses(Date.now());
  }

  status(participantId: string): ParticipantE2ee | undefined {
    return this.book.status(participantId, Date.now());
  }

  /** The worker's raw counters as last posted. */
  get stats(): readonly ParticipantStats[] {
    return this.controller.stats;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.controller.close();
    for (const list of this.waiting.values()) for (const done of list) done();
    this.waiting.clear();
  }

  private installed(epoch: bigint): void {
    const at = Date.now();
    // An install covers every earlier epoch still awaited (the worker refuses older ones after a newer one).
    for (const [e, list] of this.waiting) {
      if (e > epoch) continue;
      this.waiting.delete(e);
      for (const done of list) done();
    }
    this.emit("installed", { epoch, at });
  }

  private publishStatus(force: boolean): void {
    if (this.closed) return;
    const statuses = this.statuses();
    const key = statuses.map((s) => `${s.participantId}:${s.state}`).join("|");
    if (!force && key === this.lastStatus) return;
    this.lastStatus = key;
    this.emit("status", statuses);
  }
}
