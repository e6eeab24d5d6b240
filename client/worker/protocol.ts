/**
 * Messages between the page (controller.ts) and the frame-transform worker (frame-transform.ts), and the
 * stats the worker reports. Everything here crosses postMessage, so it is plain structured-clone data.
 */

/** One MLS epoch's SFrame keying: base_key = MLS-Exporter("SFrame 1.0 Base Key", "", Nk). Never logged. */
export interface EpochUpdate {
  readonly epoch: bigint;
  readonly baseKey: Uint8Array;
  readonly myLeafIndex: number;
}

export interface FrameCryptoOptions {
  /** How long a received frame may wait for its epoch's keys before it is dropped. */
  readonly holdMs: number;
  /** Frames a receive stream may queue behind a held frame before the oldest held one is dropped. */
  readonly maxHeldFrames: number;
  /** How long an epoch's receive keys outlive the arrival of a newer epoch. */
  readonly graceMs: number;
  /** Frames of one stream being encrypted or decrypted at once; output order is kept regardless. */
  readonly maxInFlight: number;
  /** Stats are posted at most this often, and only when they changed. */
  readonly statsIntervalMs: number;
  /** Errors of one participant and reason are posted at most this often; the rest are counted. */
  readonly errorIntervalMs: number;
}

export const DEFAULT_FRAME_CRYPTO_OPTIONS: FrameCryptoOptions = {
  // A commit reaches members within a DS round trip; a sender ahead of us by more than this is broken.
  holdMs: 2000,
  // ~2 s of 30 fps video plus slack; audio at 50 fps may lose the tail of a longer wait, which is inaudible.
  maxHeldFrames: 128,
  graceMs: 5000,
  maxInFlight: 8,
  statsIntervalMs: 1000,
  errorIntervalMs: 5000,
};

export type StreamRole = "send" | "receive";

/**
 * What the page tells the worker about a stream: as RTCRtpScriptTransform options, or alongside the
 * transferred streams of createEncodedStreams. `participantId` names whose frames these are in stats;
 * `streamId` (unique per worker) lets the page release the stream.
 */
export interface StreamDescriptor {
  readonly streamId: number;
  readonly role: StreamRole;
  readonly participantId: string;
}

export type ToWorker =
  | { readonly type: "configure"; readonly options: Partial<FrameCryptoOptions> }
  | { readonly type: "epoch"; readonly update: EpochUpdate }
  | {
      readonly type: "streams";
      readonly stream: StreamDescriptor;
      readonly readable: ReadableStream;
      readonly writable: WritableStream;
    }
  /** The page is done with a stream (its sender or receiver went away): stop transforming it. */
  | { readonly type: "release"; readonly streamId: number }
  /** Asks for every stream's frame counts now (answered by a "stream-counts" message with the same id). */
  | { readonly type: "count-streams"; readonly requestId: number };

/** Why a frame did not come out of the transform. */
export type DropReason =
  | "no-send-key" // sending before the first epoch: never send in the clear
  | "unsupported-codec" // a payload SFrame does not frame (no codec-aware layout for it)
  | "malformed" // too short for its codec prefix, or a header/bitstream that does not parse
  | "auth-failed" // did not authenticate under the epoch's key for that sender
  | "unknown-key" // a KID of a held epoch that resolves to no key (our own leaf index)
  | "expired-epoch" // an epoch older than the ones held (its grace ended)
  | "hold-timeout" // its epoch's keys did not arrive within holdMs
  | "hold-overflow" // more than maxHeldFrames waited behind a held frame
  | "encrypt-failed";

export interface ParticipantStats {
  readonly participantId: string;
  encrypted: number;
  decrypted: number;
  /** Frames held for an epoch not yet known; `released` of them were decrypted once keys arrived. */
  held: number;
  released: number;
  dropped: Partial<Record<DropReason, number>>;
  /** Frames refused by the replay window (not in `dropped`). */
  replayRejected: number;
  /** Epoch of the last frame encrypted or decrypted for this participant. */
  epoch?: bigint;
  lastError?: { readonly reason: DropReason | "replay"; readonly message: string; readonly at: number };
}

export interface WorkerError {
  readonly participantId: string;
  readonly reason: DropReason | "replay" | "epoch-refused" | "stream-failed" | "bad-option";
  readonly message: string;
  /** Errors of this participant and reason not posted since the last one (throttling). */
  readonly suppressed: number;
}

/**
 * Frames one attached stream's transform handled, for the page's bypass check (client/worker/bypass.ts):
 * `seen` came in from WebRTC, `out` were handed back to it (encrypted, decrypted, or empty and passed on).
 * Kept until the page releases the stream, also after the stream ended.
 */
export interface StreamCounts {
  readonly streamId: number;
  seen: number;
  out: number;
}

export type FromWorker =
  | { readonly type: "stats"; readonly stats: ParticipantStats[] }
  | { readonly type: "stream-counts"; readonly requestId: number; readonly streams: StreamCounts[] }
  | { readonly type: "error"; readonly error: WorkerError }
  | { readonly type: "epoch-installed"; readonly epoch: bigint };
