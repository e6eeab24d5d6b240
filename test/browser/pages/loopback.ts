/**
 * Worker loopback page: "alice" sends the fake camera (and microphone) through her frame-transform worker
 * to one loopback RTCPeerConnection pair per receiver; each receiver has its own worker and keys:
 * "shared" (the group's base keys), "wrong" (other keys for the same epochs) or "none" (never any).
 * The test drives it through `globalThis.loopback` and reads decoder and worker stats back.
 */
import { FrameCryptoController, type TransformApi } from "../../../client/worker/controller.js";
import type { FrameCryptoOptions, ParticipantStats, WorkerError } from "../../../client/worker/protocol.js";
import { createPeerPair, fakeMedia, type PeerPair } from "./peer-pair.js";

export type ReceiverKeys = "shared" | "wrong" | "none";

export interface LoopbackReceiver {
  name: string;
  keys: ReceiverKeys;
  options?: Partial<FrameCryptoOptions>;
}

export interface LoopbackSetup {
  api: TransformApi;
  /** Forced video codec, e.g. "video/VP8". */
  videoCodec: string;
  audio: boolean;
  /** Given to every worker before media flows (as a call's SDK would), so no frame meets a keyless sender. */
  initialEpoch: bigint;
  senderOptions?: Partial<FrameCryptoOptions>;
  receivers: LoopbackReceiver[];
}

export interface ReceiverSnapshot {
  framesDecoded: number;
  /** Audio RTP packets received (decoded audio is only counted when played, which a headless page does not). */
  audioPackets: number;
  /** The receiving worker's stats for alice's frames. */
  stats: ParticipantStats | undefined;
}

export interface LoopbackSnapshot {
  alice: ParticipantStats | undefined;
  receivers: Record<string, ReceiverSnapshot>;
  errors: string[];
}

interface Receiver extends LoopbackReceiver {
  controller: FrameCryptoController;
  pair: PeerPair;
}

const BASE_KEY_BYTES = 16;

class Loopback {
  private readonly keys = new Map<string, Uint8Array>();
  readonly errors: string[] = [];

  private constructor(
    readonly alice: FrameCryptoController,
    readonly receivers: Receiver[],
    private readonly media: MediaStream,
  ) {}

  static async start(setup: LoopbackSetup): Promise<Loopback> {
    const media = await fakeMedia(true, setup.audio);
    const controller = (selfId: string, options?: Partial<FrameCryptoOptions>) =>
      new FrameCryptoController({ workerUrl: "/frame-transform.js", selfId, api: setup.api, options: { statsIntervalMs: 200, ...options } });
    const alice = controller("alice", setup.senderOptions);
    const receivers: Receiver[] = [];
    const loopback = new Loopback(alice, receivers, media);
    alice.addEventListener("error", (e) => loopback.logError("alice", e));
    loopback.setEpoch("alice", setup.initialEpoch);
    try {
      for (const r of setup.receivers) {
        const c = controller(r.name, r.options);
        c.addEventListener("error", (e) => loopback.logError(r.name, e));
        loopback.giveEpoch(c, r, receivers.length + 1, setup.initialEpoch);
        // Each pair sends its own clone: one encoder per receiver, as an SFU-less mesh would.
        const tracks = media.getTracks().map((t) => t.clone());
        const pair = await createPeerPair({
          tracks,
          codecs: { video: setup.videoCodec },
          encodedInsertableStreams: setup.api === "encoded-streams",
          attachSenders: (senders) => senders.forEach((s) => alice.protectSender(s)),
          attachReceivers: (rs) => rs.forEach((rx) => c.protectReceiver(rx, "alice")),
        });
        receivers.push({ ...r, controller: c, pair });
      }
    } catch (e) {
      loopback.stop();
      throw e;
    }
    return loopback;
  }

  private logError(worker: string, e: Event): void {
    const { participantId, reason, message } = (e as CustomEvent<WorkerError>).detail;
    if (this.errors.length < 50) this.errors.push(`${worker}: ${participantId} ${reason}: ${message}`);
  }

  private key(label: string): Uint8Array {
    let k = this.keys.get(label);
    if (!k) this.keys.set(label, (k = crypto.getRandomValues(new Uint8Array(BASE_KEY_BYTES))));
    return k;
  }

  /** Gives `who` (alice or a receiver) the epoch, with keys as that receiver is set up to get them. */
  setEpoch(who: string, epoch: bigint): void {
    if (who === "alice") return this.alice.setEpoch({ epoch, baseKey: this.key(`shared ${epoch}`), myLeafIndex: 0 });
    const index = this.receivers.findIndex((r) => r.name === who);
    const r = this.receivers[index];
    if (!r) throw new Error(`no receiver ${who}`);
    this.giveEpoch(r.controller, r, index + 1, epoch);
  }

  private giveEpoch(c: FrameCryptoController, r: LoopbackReceiver, leafIndex: number, epoch: bigint): void {
    if (r.keys === "none") return;
    c.setEpoch({ epoch, baseKey: this.key(`${r.keys === "shared" ? "shared" : r.name} ${epoch}`), myLeafIndex: leafIndex });
  }

  async snapshot(): Promise<LoopbackSnapshot> {
    const receivers: Record<string, ReceiverSnapshot> = {};
    for (const r of this.receivers) {
      let framesDecoded = 0;
      let audioPackets = 0;
      (await r.pair.receiver.getStats()).forEach((s: { type: string; kind?: string; framesDecoded?: number; packetsReceived?: number }) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") framesDecoded += s.framesDecoded ?? 0;
        if (s.kind === "audio") audioPackets += s.packetsReceived ?? 0;
      });
      receivers[r.name] = { framesDecoded, audioPackets, stats: r.controller.stats.find((s) => s.participantId === "alice") };
    }
    return { alice: this.alice.stats.find((s) => s.participantId === "alice"), receivers, errors: [...this.errors] };
  }

  stop(): void {
    for (const r of this.receivers) {
      r.pair.close();
      r.pair.senders.forEach((s) => s.track?.stop());
      r.controller.close();
    }
    this.media.getTracks().forEach((t) => t.stop());
    this.alice.close();
  }
}

let current: Loopback | undefined;

const loopback = {
  async start(setup: LoopbackSetup): Promise<void> {
    current?.stop();
    current = undefined;
    current = await Loopback.start(setup);
  },
  setEpoch(who: string, epoch: bigint): void {
    if (!current) throw new Error("loopback not started");
    current.setEpoch(who, epoch);
  },
  snapshot(): Promise<LoopbackSnapshot> {
    if (!current) throw new Error("loopback not started");
    return current.snapshot();
  },
  stop(): void {
    current?.stop();
    current = undefined;
  },
  videoCodecs(): string[] {
    return [...new Set((RTCRtpSender.getCapabilities("video")?.codecs ?? []).map((c) => c.mimeType))];
  },
};

export type LoopbackApi = typeof loopback;

Object.assign(globalThis, { loopback, conclaveReady: true });
