import {
  codecFromMimeType,
  EpochKeyring,
  MAX_SFRAME_EPOCHS,
  parseMlsKid,
  protectFrame,
  SFrameError,
  unprotectFrame,
  type MediaCodec,
} from "../../keying/sframe/index.js";
import type { DropReason, EpochUpdate, FrameCryptoOptions, StreamCounts, StreamDescriptor } from "./protocol.js";
import type { StatsBook } from "./stats.js";

/**
 * The part of RTCEncodedVideoFrame / RTCEncodedAudioFrame the frame path uses; both transform APIs hand
 * the worker such frames, and the benchmark feeds plain objects of this shape.
 */
export interface TransformableFrame {
  data: ArrayBuffer;
  getMetadata(): { mimeType?: string };
}

type SlotState = "busy" | "held" | "ready" | "dropped";

interface Slot {
  readonly frame: TransformableFrame;
  /** Undefined for frames passed through untouched (empty ones). */
  readonly codec: MediaCodec | undefined;
  state: SlotState;
  /** The keyring generation an attempt started under: a miss under an older one is retried, not held. */
  generation: number;
  heldAt: number;
  wasHeld: boolean;
  output?: ArrayBuffer;
}

/** An ArrayBuffer holding exactly the view's bytes (encoded frames take a whole buffer). */
function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer
    : bytes.slice().buffer;
}

/** How a failed decrypt is accounted; `unknown-kid` is decided by the caller (hold or drop). */
function receiveDropReason(e: unknown): DropReason | "replay" {
  if (!(e instanceof SFrameError)) return "malformed";
  switch (e.code) {
    case "auth-failed":
      return "auth-failed";
    case "replay":
      return "replay";
    case "key-in-use":
      return "unknown-key";
    default:
      return "malformed";
  }
}

/**
 * One transformed stream (an RTCRtpSender's or an RTCRtpReceiver's frames) with its own EpochKeyring.
 * Frames are encrypted or decrypted several at a time but leave in arrival order: each frame takes a
 * slot in a queue, and only the leading run of finished slots is emitted.
 *
 * A received frame whose KID names an epoch this stream does not hold yet is held in its slot, so the
 * frames behind it wait too (decoders need order); addEpoch retries every held slot. A held frame is
 * dropped after holdMs, or when more than maxHeldFrames queue behind held frames (oldest first).
 */
export class FrameStream {
  readonly role: StreamDescriptor["role"];
  readonly participantId: string;
  private readonly queue: Slot[] = [];
  private controller: TransformStreamDefaultController<TransformableFrame> | undefined;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private generation = 0;
  /** Newest epoch installed in this stream's keyring. */
  private newest: bigint | undefined;
  private holdTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    descriptor: StreamDescriptor,
    readonly keyring: EpochKeyring,
    private readonly stats: StatsBook,
    private readonly options: () => FrameCryptoOptions,
    /** Frames in and out of this stream, for the page's bypass check. */
    readonly counts: StreamCounts = { streamId: descriptor.streamId, seen: 0, out: 0 },
  ) {
    this.role = descriptor.role;
    this.participantId = descriptor.participantId;
  }

  /** The epoch as this stream's keyring sees it; receive streams retry held frames afterwards. */
  async addEpoch(update: EpochUpdate): Promise<void> {
    await this.keyring.addEpoch(update.epoch, update.myLeafIndex, update.baseKey);
    this.newest = update.epoch;
    this.generation++;
    if (this.closed) return;
    for (const slot of this.queue) if (slot.state === "held") this.start(slot);
  }

  /** The frame path as a TransformStream for `readable.pipeThrough(...)`. */
  transform(): TransformStream<TransformableFrame, TransformableFrame> {
    return new TransformStream<TransformableFrame, TransformableFrame>({
      start: (controller) => {
        this.controller = controller;
      },
      transform: (frame) => this.accept(frame),
      flush: () => this.finish(),
    });
  }

  private async accept(frame: TransformableFrame): Promise<void> {
    this.counts.seen++;
    if (frame.data.byteLength === 0) {
      // Nothing to protect, but it keeps its place in the order.
      this.queue.push({ frame, codec: undefined, state: "ready", generation: 0, heldAt: 0, wasHeld: false, output: frame.data });
      this.drain();
      return;
    }
    const mimeType = frame.getMetadata().mimeType;
    const codec = mimeType === undefined ? undefined : codecFromMimeType(mimeType);
    if (codec === undefined) {
      this.stats.dropped(this.participantId, "unsupported-codec", new Error(`no SFrame layout for ${mimeType ?? "an unlabelled payload"}`));
      return;
    }
    const slot: Slot = { frame, codec, state: "busy", generation: 0, heldAt: 0, wasHeld: false };
    this.queue.push(slot);
    this.start(slot);
    this.enforceCountBound();
    this.drain();
    while (this.inFlight >= this.options().maxInFlight) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private start(slot: Slot): void {
    slot.state = "busy";
    slot.generation = this.generation;
    this.inFlight++;
    const work = this.role === "send" ? this.encrypt(slot) : this.decrypt(slot);
    void work.finally(() => {
      this.inFlight--;
      this.waiters.shift()?.();
      this.drain();
    });
  }

  private async encrypt(slot: Slot): Promise<void> {
    const kid = this.keyring.sendKid;
    if (kid === undefined) return this.drop(slot, "no-send-key", new Error("no epoch installed yet"));
    const epoch = this.keyring.epochOf(kid);
    try {
      const out = await protectFrame(this.keyring.context, kid, slot.codec!, new Uint8Array(slot.frame.data));
      slot.output = exactBuffer(out);
      slot.state = "ready";
      this.stats.encrypted(this.participantId, epoch);
    } catch (e) {
      const malformed = e instanceof SFrameError && (e.code === "frame-too-short" || e.code === "malformed-frame");
      this.drop(slot, malformed ? "malformed" : "encrypt-failed", e);
    }
  }

  private async decrypt(slot: Slot): Promise<void> {
    try {
      const { frame, kid } = await unprotectFrame(this.keyring.context, slot.codec!, new Uint8Array(slot.frame.data));
      slot.output = exactBuffer(frame);
      slot.state = "ready";
      this.stats.decrypted(this.participantId, this.keyring.epochOf(kid), slot.wasHeld);
    } catch (e) {
      if (e instanceof SFrameError && e.code === "unknown-kid" && e.kid !== undefined) return this.missingKey(slot, e.kid, e);
      this.drop(slot, receiveDropReason(e), e);
    }
  }

  private missingKey(slot: Slot, kid: bigint, error: SFrameError): void {
    if (this.closed) return this.drop(slot, "hold-timeout", error);
    // Keys arrived while this attempt ran: the retry in addEpoch did not see this slot as held.
    if (slot.generation !== this.generation) return this.start(slot);
    if (this.keyring.epochOf(kid) !== undefined) return this.drop(slot, "unknown-key", error);
    if (!this.awaitsEpoch(kid)) return this.drop(slot, "expired-epoch", error);
    slot.state = "held";
    if (!slot.wasHeld) {
      slot.wasHeld = true;
      slot.heldAt = Date.now();
      this.stats.held(this.participantId);
    }
    this.enforceCountBound();
    this.armHoldTimer();
  }

  /**
   * Whether a KID's epoch may still arrive: nothing is known yet, or its low E bits lie within half the
   * epoch space ahead of the newest epoch (behind it are retired epochs, whose frames cannot decrypt).
   */
  private awaitsEpoch(kid: bigint): boolean {
    if (this.newest === undefined) return true;
    const newestBits = Number(this.newest % BigInt(MAX_SFRAME_EPOCHS));
    const ahead = (parseMlsKid(kid).epochBits - newestBits + MAX_SFRAME_EPOCHS) % MAX_SFRAME_EPOCHS;
    return ahead >= 1 && ahead <= MAX_SFRAME_EPOCHS / 2;
  }

  private drop(slot: Slot, reason: DropReason | "replay", error: unknown): void {
    slot.state = "dropped";
    this.stats.dropped(this.participantId, reason, error);
  }

  private enforceCountBound(): void {
    const max = this.options().maxHeldFrames;
    while (this.queue.length > max) {
      const i = this.queue.findIndex((s) => s.state === "held");
      if (i < 0) break;
      this.drop(this.queue[i]!, "hold-overflow", new Error(`more than ${max} frames waiting for epoch keys`));
      this.queue.splice(i, 1);
    }
  }

  private armHoldTimer(): void {
    if (this.holdTimer !== undefined) return;
    const oldest = this.queue.find((s) => s.state === "held");
    if (!oldest) return;
    const wait = Math.max(0, oldest.heldAt + this.options().holdMs - Date.now());
    this.holdTimer = setTimeout(() => {
      this.holdTimer = undefined;
      this.expireHeld();
    }, wait);
  }

  private expireHeld(): void {
    const deadline = Date.now() - this.options().holdMs;
    for (const slot of this.queue) {
      if (slot.state === "held" && slot.heldAt <= deadline) {
        this.drop(slot, "hold-timeout", new Error(`epoch keys did not arrive within ${this.options().holdMs} ms`));
      }
    }
    this.drain();
    this.armHoldTimer();
  }

  /** Emits the leading finished slots, in order. */
  private drain(): void {
    let n = 0;
    for (; n < this.queue.length; n++) {
      const slot = this.queue[n]!;
      if (slot.state === "ready") {
        slot.frame.data = slot.output!;
        try {
          this.controller?.enqueue(slot.frame);
          this.counts.out++;
        } catch {
          // The pipe was torn down (track stopped); its frames have nowhere to go.
        }
      } else if (slot.state !== "dropped") break;
    }
    if (n > 0) this.queue.splice(0, n);
  }

  private async finish(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.close();
  }

  /** Stops holding: frames still waiting for keys are dropped, the rest are emitted. */
  close(): void {
    this.closed = true;
    if (this.holdTimer !== undefined) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    for (const slot of this.queue) if (slot.state === "held") this.drop(slot, "hold-timeout", new Error("stream ended before its epoch keys arrived"));
    this.drain();
  }
}
