import { DEFAULT_SFRAME_SUITE, EpochKeyring, MAX_SFRAME_EPOCHS, MAX_SFRAME_LEAVES, sframeSuite } from "../../keying/sframe/index.js";
import { FrameStream, type TransformableFrame } from "./frame-stream.js";
import {
  DEFAULT_FRAME_CRYPTO_OPTIONS,
  type EpochUpdate,
  type FrameCryptoOptions,
  type FromWorker,
  type ParticipantStats,
  type StreamCounts,
  type StreamDescriptor,
  type WorkerError,
} from "./protocol.js";
import { describeError, StatsBook } from "./stats.js";

const BASE_KEY_LENGTH = sframeSuite(DEFAULT_SFRAME_SUITE).Nk;

/** Why an update from the page cannot be installed (without echoing the key), or undefined. */
function invalidEpochUpdate(u: EpochUpdate): string | undefined {
  if (typeof u !== "object" || u === null) return "epoch update is not an object";
  if (typeof u.epoch !== "bigint" || u.epoch < 0n) return "epoch must be a non-negative bigint";
  if (!(u.baseKey instanceof Uint8Array) || u.baseKey.length !== BASE_KEY_LENGTH) return `baseKey must be ${BASE_KEY_LENGTH} bytes`;
  if (!Number.isInteger(u.myLeafIndex) || u.myLeafIndex < 0 || u.myLeafIndex >= MAX_SFRAME_LEAVES) return "myLeafIndex out of range";
  return undefined;
}

/** Stats and errors about the worker's own keying (not any one stream) are filed under this name. */
export const LOCAL_PARTICIPANT = "self";

/**
 * The state of one frame-transform worker: the MLS epochs it holds and every stream it transforms.
 *
 * Epoch updates are applied one at a time, to receive streams first and then to send streams, so
 * frames of the new epoch from others decrypt before we start sending under it. The previous epochs
 * stay for graceMs (frames of senders that switched later, and frames in flight), then every stream's
 * keyring retires them.
 *
 * Each send stream has its own KID context (its own CTR space at the receivers). A context's keyring
 * goes back to a pool when its stream ends and is reused by the next send stream, so its CTR carries
 * on instead of restarting under a key already used: a context number is never handed out twice in
 * the worker's lifetime. (A new worker in the same epoch would restart them: the page keeps one worker.)
 */
export class FrameCrypto {
  private options: FrameCryptoOptions = DEFAULT_FRAME_CRYPTO_OPTIONS;
  private readonly stats: StatsBook;
  /** Epochs held, oldest first; the last is the one sent with. */
  private epochs: EpochUpdate[] = [];
  /** Attached streams by streamId; `stream` is set once its keys are installed. */
  private readonly streams = new Map<number, { readonly abort: AbortController; stream?: FrameStream }>();
  /** Frame counts of every stream attached and not yet released (ended streams included). */
  private readonly counts = new Map<number, StreamCounts>();
  private readonly idleSendKeyrings: EpochKeyring[] = [];
  private nextSendContext = 0n;
  private readonly graceTimers = new Set<ReturnType<typeof setTimeout>>();
  /** Epoch installs and stream attaches, in order: each relies on the previous having finished. */
  private serial: Promise<unknown> = Promise.resolve();

  constructor(private readonly post: (message: FromWorker) => void, options: Partial<FrameCryptoOptions> = {}) {
    this.stats = new StatsBook(post, this.options);
    this.configure(options);
  }

  configure(options: Partial<FrameCryptoOptions>): void {
    const merged = { ...this.options };
    for (const [k, v] of Object.entries(options) as [keyof FrameCryptoOptions, unknown][]) {
      if (!(k in DEFAULT_FRAME_CRYPTO_OPTIONS)) continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v < (k === "maxInFlight" || k === "maxHeldFrames" ? 1 : 0)) {
        this.stats.error(LOCAL_PARTICIPANT, "bad-option", `option ${k} must be a non-negative number`);
        return;
      }
      merged[k] = v;
    }
    this.options = merged;
    this.stats.reconfigure(merged);
  }

  private queue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.serial.then(step);
    this.serial = run.catch(() => undefined);
    return run;
  }

  /** Installs an epoch's keys everywhere. Refused (and reported) unless newer than the newest held. */
  setEpoch(update: EpochUpdate): Promise<void> {
    return this.queue(async () => {
      const invalid = invalidEpochUpdate(update);
      const newest = this.epochs.at(-1);
      if (invalid || (newest && update.epoch <= newest.epoch)) {
        this.stats.error(LOCAL_PARTICIPANT, "epoch-refused", invalid ?? `epoch ${update.epoch} is not newer than ${newest!.epoch}`);
        return;
      }
      const copy: EpochUpdate = { epoch: update.epoch, baseKey: update.baseKey.slice(), myLeafIndex: update.myLeafIndex };
      const sameBits = (e: EpochUpdate) => e.epoch % BigInt(MAX_SFRAME_EPOCHS) === copy.epoch % BigInt(MAX_SFRAME_EPOCHS);
      this.epochs = [...this.epochs.filter((e) => !sameBits(e)), copy];
      const streams = [...this.streams.values()].flatMap((s) => (s.stream ? [s.stream] : []));
      const receive = streams.filter((s) => s.role === "receive");
      const send = streams.filter((s) => s.role === "send");
      try {
        await Promise.all(receive.map((s) => s.addEpoch(copy)));
        await Promise.all([...send.map((s) => s.addEpoch(copy)), ...this.idleSendKeyrings.map((k) => k.addEpoch(copy.epoch, copy.myLeafIndex, copy.baseKey))]);
      } catch (e) {
        this.stats.error(LOCAL_PARTICIPANT, "epoch-refused", describeError(e));
        return;
      }
      for (const old of this.epochs.slice(0, -1)) this.retireAfterGrace(old.epoch);
      this.post({ type: "epoch-installed", epoch: copy.epoch });
    });
  }

  private retireAfterGrace(epoch: bigint): void {
    const timer = setTimeout(() => {
      this.graceTimers.delete(timer);
      this.epochs = this.epochs.filter((e) => e.epoch !== epoch);
      for (const { stream } of this.streams.values()) stream?.keyring.retireEpoch(epoch);
      for (const k of this.idleSendKeyrings) k.retireEpoch(epoch);
    }, this.options.graceMs);
    this.graceTimers.add(timer);
  }

  /**
   * Runs a stream's frames through the frame path until the stream ends. Keys are installed before the
   * first frame is read, so a sender never meets a frame it has no key for once an epoch is known.
   */
  async attach(descriptor: StreamDescriptor, readable: ReadableStream<TransformableFrame>, writable: WritableStream<TransformableFrame>): Promise<void> {
    const { streamId, participantId } = descriptor;
    if (this.streams.has(streamId)) return this.stats.error(participantId, "stream-failed", `stream ${streamId} is already attached`);
    const entry: { readonly abort: AbortController; stream?: FrameStream } = { abort: new AbortController() };
    this.streams.set(streamId, entry);
    const keyring = descriptor.role === "send" ? this.takeSendKeyring() : new EpochKeyring();
    const counts: StreamCounts = { streamId, seen: 0, out: 0 };
    this.counts.set(streamId, counts);
    const s = new FrameStream(descriptor, keyring, this.stats, () => this.options, counts);
    try {
      await this.queue(async () => {
        // A pooled send keyring kept up with every epoch; a new one needs only the epoch it sends with.
        const pending = descriptor.role === "send" ? this.epochs.slice(-1).filter((e) => keyring.epochs.at(-1) !== e.epoch) : this.epochs;
        for (const e of pending) await s.addEpoch(e);
        entry.stream = s;
      });
      await readable.pipeThrough(s.transform()).pipeTo(writable, { signal: entry.abort.signal });
    } catch (e) {
      if (!entry.abort.signal.aborted) this.stats.error(participantId, "stream-failed", `stream ended: ${describeError(e)}`);
    } finally {
      s.close();
      this.streams.delete(streamId);
      if (descriptor.role === "send") this.idleSendKeyrings.push(keyring);
    }
  }

  private takeSendKeyring(): EpochKeyring {
    return this.idleSendKeyrings.pop() ?? new EpochKeyring({ sendContext: this.nextSendContext++ });
  }

  /** Stops a stream: its frames are no longer read (so none pass untransformed) and its keyring is freed. */
  release(streamId: number): void {
    this.streams.get(streamId)?.abort.abort();
    this.counts.delete(streamId);
  }

  /** Every unreleased stream's frame counts, as they are now. */
  streamCounts(): StreamCounts[] {
    return [...this.counts.values()].map((c) => ({ ...c }));
  }

  /** Current counters, one entry per participant (what the next stats post would carry). */
  statsSnapshot(): ParticipantStats[] {
    return this.stats.snapshot();
  }

  /** A problem with what the page sent, reported like any error. */
  reportError(reason: WorkerError["reason"], message: string): void {
    this.stats.error(LOCAL_PARTICIPANT, reason, message);
  }

  close(): void {
    for (const t of this.graceTimers) clearTimeout(t);
    this.graceTimers.clear();
    for (const { stream, abort } of this.streams.values()) {
      stream?.close();
      abort.abort();
    }
    this.stats.close();
  }
}
