/**
 * The browser side of Conclave's SFU (sfu-signaling/sfu), over the DS's authenticated Socket.IO connection:
 * one RTCPeerConnection that publishes the local camera and microphone and receives every other
 * participant's tracks. The SFU is always the offerer (see sfu-signaling/sfu/index.ts for the wire protocol).
 *
 * E2EE hooks run inside each offer, between setRemoteDescription and setLocalDescription: the publishing
 * senders and every new receiver are protected before the answer exists, as the transform APIs require.
 * A sender or receiver that cannot be protected ends the media session instead of carrying clear media.
 */
import type { Socket } from "socket.io-client";
import { Emitter } from "../emitter.js";

export type MediaKind = "audio" | "video";

/** One remote track, as the SFU's latest offer lists it. */
export interface RemoteTrack {
  readonly mid: string;
  readonly participantId: string;
  readonly kind: MediaKind;
  readonly receiver: RTCRtpReceiver;
  readonly track: MediaStreamTrack;
}

export type MediaState = "idle" | "connecting" | "connected" | "ended" | "failed";

export interface SfuClientEvents {
  /** The full list of remote tracks after each accepted offer. */
  tracks: readonly RemoteTrack[];
  state: { readonly state: MediaState; readonly reason?: string };
}

export interface SfuProtection {
  readonly rtcConfiguration: RTCConfiguration;
  protectSender(sender: RTCRtpSender): void;
  protectReceiver(receiver: RTCRtpReceiver, participantId: string): void;
  release(target: RTCRtpSender | RTCRtpReceiver): void;
  /** Whether a sender was caught sending frames its transform never saw: it is given no track again. */
  bypassed?(sender: RTCRtpSender): boolean;
}

export interface SfuClientOptions {
  readonly socket: Socket;
  readonly protection: SfuProtection;
  /** How long `sfu:join` may go unanswered (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** Attempts at `sfu:join` while the DS has not yet bound this connection to the room (default 20, 500 ms apart). */
  readonly joinAttempts?: number;
}

interface OfferMessage {
  sdp: string;
  publish: Record<MediaKind, string>;
  tracks: { mid: string; participantId: string; kind: MediaKind }[];
}

type OfferAck = (answer: { sdp: string }) => void;

const MAX_TRACKS = 512;

function parseOffer(v: unknown): OfferMessage {
  const o = (typeof v === "object" && v !== null ? v : {}) as Partial<OfferMessage>;
  const str = (x: unknown, max: number): x is string => typeof x === "string" && x.length <= max;
  if (!str(o.sdp, 1 << 20) || typeof o.publish !== "object" || o.publish === null || !Array.isArray(o.tracks) || o.tracks.length > MAX_TRACKS) {
    throw new Error("sfu:offer: malformed offer");
  }
  const publish = o.publish as Record<string, unknown>;
  if (!str(publish.audio, 64) || !str(publish.video, 64)) throw new Error("sfu:offer: malformed publish m-lines");
  const tracks = o.tracks.map((t: unknown): OfferMessage["tracks"][number] => {
    const x = (typeof t === "object" && t !== null ? t : {}) as Record<string, unknown>;
    if (!str(x.mid, 64) || !str(x.participantId, 256) || (x.kind !== "audio" && x.kind !== "video")) throw new Error("sfu:offer: malformed track");
    return { mid: x.mid, participantId: x.participantId, kind: x.kind };
  });
  return { sdp: o.sdp, publish: { audio: publish.audio, video: publish.video }, tracks };
}

export class SfuClient extends Emitter<SfuClientEvents> {
  private readonly socket: Socket;
  private readonly protection: SfuProtection;
  private pc: RTCPeerConnection | undefined;
  private local: Partial<Record<MediaKind, MediaStreamTrack>> = {};
  private remote = new Map<string, RemoteTrack>();
  private currentState: MediaState = "idle";
  /** Offers are handled one at a time, in arrival order. */
  private offerChain: Promise<void> = Promise.resolve();
  private readonly onOffer = (payload: unknown, ack: unknown) => this.queueOffer(payload, ack);
  private readonly onRemoved = (payload: unknown) => {
    const reason = typeof payload === "object" && payload !== null ? String((payload as { reason?: unknown }).reason ?? "removed").slice(0, 64) : "removed";
    this.end("ended", `the SFU ended the media session (${reason})`);
  };

  constructor(private readonly options: SfuClientOptions) {
    super();
    this.socket = options.socket;
    this.protection = options.protection;
  }

  get state(): MediaState {
    return this.currentState;
  }

  get tracks(): readonly RemoteTrack[] {
    return [...this.remote.values()];
  }

  get peerConnection(): RTCPeerConnection | undefined {
    return this.pc;
  }

  /**
   * Starts a media session publishing `local` (at most one audio and one video track). Resolves once the SFU
   * accepted it; media flows after its first offer is answered. Calling it again starts a fresh session.
   */
  async start(local: Partial<Record<MediaKind, MediaStreamTrack>>): Promise<void> {
    this.closePeer();
    this.local = { ...local };
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle", ...this.protection.rtcConfiguration });
    this.pc = pc;
    this.setState("connecting");
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate !== "" && this.pc === pc) this.socket.emit("sfu:candidate", e.candidate.toJSON());
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === "connected") this.setState("connected");
      else if (pc.connectionState === "failed") this.end("failed", "the media connection to the SFU failed");
    };
    this.socket.on("sfu:offer", this.onOffer);
    this.socket.on("sfu:removed", this.onRemoved);
    const attempts = this.options.joinAttempts ?? 20;
    for (let attempt = 1; ; attempt++) {
      let reply: { ok?: boolean; error?: { code?: string; message?: string } };
      try {
        reply = await this.socket.timeout(this.options.requestTimeoutMs ?? 30_000).emitWithAck("sfu:join", {});
      } catch {
        throw this.fail("the SFU did not answer sfu:join");
      }
      if (this.pc !== pc) throw new Error("the media session was stopped while starting");
      if (reply?.ok === true) return;
      // Until the DS has bound this connection to the room's media (on group subscription), sfu:join is unknown.
      const unbound = reply?.error?.code === "invalid-payload" && /unknown event/.test(reply.error.message ?? "");
      if (!unbound || attempt >= attempts) throw this.fail(`the SFU refused the media session: ${reply?.error?.code ?? "no reason"}`);
      await new Promise((r) => setTimeout(r, 500));
      if (this.pc !== pc) throw new Error("the media session was stopped while starting");
    }
  }

  /** Ends the media session (tells the SFU, closes the connection, frees every transform). */
  async stop(reason = "left"): Promise<void> {
    if (!this.pc) return;
    this.end("ended", reason);
    if (this.socket.connected) await this.socket.timeout(5000).emitWithAck("sfu:leave").catch(() => undefined);
  }

  private fail(message: string): Error {
    this.end("failed", message);
    return new Error(message);
  }

  private setState(state: MediaState, reason?: string): void {
    if (this.currentState === state && reason === undefined) return;
    this.currentState = state;
    this.emit("state", reason === undefined ? { state } : { state, reason });
  }

  private end(state: "ended" | "failed", reason: string): void {
    if (!this.pc) return;
    this.closePeer();
    this.setState(state, reason);
  }

  private closePeer(): void {
    const pc = this.pc;
    if (!pc) return;
    this.pc = undefined;
    this.socket.off("sfu:offer", this.onOffer);
    this.socket.off("sfu:removed", this.onRemoved);
    for (const t of pc.getTransceivers()) {
      this.protection.release(t.sender);
      this.protection.release(t.receiver);
    }
    pc.close();
    if (this.remote.size > 0) {
      this.remote = new Map();
      this.emit("tracks", []);
    }
  }

  private queueOffer(payload: unknown, ack: unknown): void {
    const pc = this.pc;
    if (!pc || typeof ack !== "function") return;
    this.offerChain = this.offerChain
      .then(() => this.answer(pc, parseOffer(payload), ack as OfferAck))
      .catch((e: unknown) => {
        if (this.pc === pc) this.end("failed", `media negotiation failed: ${e instanceof Error ? e.message : String(e)}`);
      });
  }

  private async answer(pc: RTCPeerConnection, offer: OfferMessage, ack: OfferAck): Promise<void> {
    if (this.pc !== pc) return;
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    if (this.pc !== pc) return;
    const byMid = new Map(pc.getTransceivers().flatMap((t) => (t.mid === null ? [] : [[t.mid, t] as const])));
    for (const kind of ["audio", "video"] as const) {
      const transceiver = byMid.get(offer.publish[kind]);
      if (!transceiver) throw new Error(`the offer has no ${kind} m-line to publish on`);
      transceiver.direction = "sendonly";
      const caught = this.protection.bypassed?.(transceiver.sender) === true;
      if (!caught) this.protection.protectSender(transceiver.sender);
      const track = caught ? null : (this.local[kind] ?? null);
      if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
    }
    const next = new Map<string, RemoteTrack>();
    for (const t of offer.tracks) {
      const transceiver = byMid.get(t.mid);
      if (!transceiver) throw new Error(`the offer lists track ${t.mid} without an m-line`);
      const known = this.remote.get(t.mid);
      // A recycled m-line is a new transceiver with a new mid; the same mid is the same stream.
      if (known?.receiver === transceiver.receiver) {
        // The worker names a receiver's frames by the participant it was protected for.
        if (known.participantId !== t.participantId) throw new Error(`the SFU moved m-line ${t.mid} to another participant`);
        next.set(t.mid, known);
        continue;
      }
      this.protection.protectReceiver(transceiver.receiver, t.participantId);
      next.set(t.mid, { mid: t.mid, participantId: t.participantId, kind: t.kind, receiver: transceiver.receiver, track: transceiver.receiver.track });
    }
    for (const [mid, old] of this.remote) if (next.get(mid)?.receiver !== old.receiver) this.protection.release(old.receiver);
    await pc.setLocalDescription();
    if (this.pc !== pc) return;
    ack({ sdp: pc.localDescription!.sdp });
    this.remote = next;
    this.emit("tracks", [...next.values()]);
  }
}
