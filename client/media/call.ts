/**
 * A whole end-to-end-encrypted call in the browser: the MLS membership (CallSession over the DS), the
 * frame-transform worker that encrypts and decrypts every media frame with the current epoch's SFrame
 * keys (CallE2ee), and the media path through Conclave's SFU on the same Socket.IO connection.
 *
 *   const call = await Call.join({ url, token, room: "standup", workerUrl });
 *   call.on("participants", (list) => render(list));       // MediaStreams, names, E2EE state
 *   call.on("epoch", ({ epoch, safetyCode }) => show(safetyCode));
 *   call.on("chat", ({ from, text }) => append(from.name, text));
 *   await call.sendChat("hello");                          // an MLS application message
 *   call.setMuted("audio", true);
 *   await call.leave();
 *
 * Order of events at a rekey: the commit is processed, the worker installs the new epoch's keys (receive
 * side first, then sending switches), then `epoch` and `rekey` are emitted. Media starts only after the
 * first epoch's keys are in the worker, and only where a transform API exists: `Call.join` refuses
 * (E2eeUnsupportedError, saying why) rather than send media in the clear.
 */
import { CallSession, type CallErrorCode, type CallSessionOptions, type CloseReason, type EpochCause, type EpochEvent } from "../call-session.js";
import { DsConnection, type TokenSource } from "../ds-connection.js";
import { Emitter } from "../emitter.js";
import { memberIdentity, parseEntry } from "../protocol.js";
import type { TransformApi } from "../worker/controller.js";
import type { FrameCryptoOptions } from "../worker/protocol.js";
import { CallE2ee, E2eeBypassError, E2eeUnsupportedError, type TransformBypass } from "./e2ee.js";
import type { ParticipantE2ee } from "./e2ee-status.js";
import { SfuClient, type MediaKind, type MediaState, type RemoteTrack } from "./sfu-client.js";

export interface LocalMediaRequest {
  /** Microphone: true (default), false, or getUserMedia constraints. */
  readonly audio?: boolean | MediaTrackConstraints;
  /** Camera: true (default), false, or getUserMedia constraints. */
  readonly video?: boolean | MediaTrackConstraints;
}

export interface CallJoinOptions {
  /** The DS's base URL (the SFU answers on the same connection). */
  readonly url: string;
  /** The connection token, or a function fetching a fresh one. */
  readonly token: TokenSource;
  readonly room: string;
  /** What to publish: getUserMedia constraints (default camera and microphone), your own MediaStream, or false to only receive. */
  readonly media?: LocalMediaRequest | MediaStream | false;
  /** URL of the bundled frame-transform worker (client/worker/frame-transform.ts). */
  readonly workerUrl: string | URL;
  /**
   * "sfu" (default): media through Conclave's SFU. "external": no media path; carry media yourself and
   * protect each RTCRtpSender/RTCRtpReceiver with `call.e2ee`.
   */
  readonly transport?: "sfu" | "external";
  /** Forces a transform API (default: CallE2ee.support().api: createEncodedStreams in Chromium, else RTCRtpScriptTransform). */
  readonly transformApi?: TransformApi;
  /** Worker options (default here: hold frames of a not-yet-known epoch up to 5 s / 300 frames per stream). */
  readonly frameCrypto?: Partial<FrameCryptoOptions>;
  readonly session?: Pick<CallSessionOptions, "cipherSuite" | "sframeSuite" | "commitPolicy" | "provider">;
}

export interface CallParticipant {
  /** "user/device": the MLS credential identity, the SFU's participant id and the worker's stats key. */
  readonly id: string;
  /** The display name (the user part of the id). */
  readonly name: string;
  readonly self: boolean;
  /** Leaf in the current epoch's group; undefined for someone the SFU forwards who is not in the group. */
  readonly leafIndex: number | undefined;
  /** Remote audio and video (for the local participant: its own published media). */
  readonly stream: MediaStream | undefined;
}

export interface CallEpochEvent {
  readonly epoch: bigint;
  readonly safetyCode: string;
  readonly cause: EpochCause;
  readonly members: readonly { readonly id: string; readonly name: string; readonly leafIndex: number }[];
}

/** One membership change and how long it took to reach new keys in the worker. */
export interface RekeyEntry {
  readonly epoch: bigint;
  readonly cause: EpochCause;
  /** Display names ("user/device" ids in `joinedIds`/`leftIds`). */
  readonly joined: readonly string[];
  readonly left: readonly string[];
  readonly joinedIds: readonly string[];
  readonly leftIds: readonly string[];
  /** When this client first saw the change (its first handshake message, or its own join starting), ms since 1970. */
  readonly changeAt: number;
  /** When the worker had the new epoch's keys installed. */
  readonly keysAt: number;
  readonly ms: number;
}

export interface ChatMessage {
  readonly from: { readonly id: string | undefined; readonly name: string };
  readonly text: string;
  readonly self: boolean;
  readonly epoch: bigint;
  /** Arrival (or, for our own, send) time, ms since 1970. */
  readonly at: number;
}

export interface CallMediaStats {
  /** Inbound media by participant, for the tracks the SFU currently forwards. */
  readonly inbound: Record<string, { framesDecoded: number; keyFramesDecoded: number; videoPackets: number; audioPackets: number }>;
  /** Packets received on every inbound stream of the connection, listed or not. */
  readonly packetsReceived: number;
  readonly framesEncoded: number;
}

export interface CallErrorEvent {
  /** "e2ee-bypass": a sender or receiver moved media its encryption transform never saw (error: E2eeBypassError). */
  readonly code: CallErrorCode | "media" | "e2ee" | "e2ee-bypass";
  readonly message: string;
  readonly error?: unknown;
}

export interface CallEvents {
  participants: readonly CallParticipant[];
  epoch: CallEpochEvent;
  rekey: RekeyEntry;
  e2ee: readonly ParticipantE2ee[];
  /**
   * The browser moved media around the encryption transform; that media was stopped at once (a sender's
   * track removed for the rest of the call, or a remote track ended and dropped from its participant's
   * stream). Also reported as an "e2ee-bypass" error.
   */
  bypass: TransformBypass;
  chat: ChatMessage;
  media: { readonly state: MediaState; readonly reason?: string };
  muted: { readonly audio: boolean; readonly video: boolean };
  error: CallErrorEvent;
  closed: { readonly reason: CloseReason };
}

/**
 * Frame holding for a call: a member that processes a commit late (a busy device, a slow link) receives the
 * others' first frames of the new epoch before it has the keys. The worker's defaults (2 s, 128 frames) lose
 * frames when that lag passes 2 s; 5 s covers a loaded device, and 300 frames covers 5 s of 50 fps audio.
 */
const CALL_FRAME_CRYPTO: Partial<FrameCryptoOptions> = { holdMs: 5000, maxHeldFrames: 300 };
const MAX_TIMELINE = 200;
const MAX_CHAT_CHARS = 10_000;

/** The display name in a "user/device" id (device ids contain no "/"; user names may). */
export function nameOf(id: string): string {
  const slash = id.lastIndexOf("/");
  return slash > 0 ? id.slice(0, slash) : id;
}

async function localStream(media: LocalMediaRequest | MediaStream | false | undefined): Promise<{ stream: MediaStream | undefined; owned: boolean }> {
  if (media === false) return { stream: undefined, owned: false };
  if (typeof MediaStream !== "undefined" && media instanceof MediaStream) return { stream: media, owned: false };
  const request = (media ?? {}) as LocalMediaRequest;
  const audio = request.audio ?? true;
  const video = request.video ?? true;
  if (audio === false && video === false) return { stream: undefined, owned: false };
  return { stream: await navigator.mediaDevices.getUserMedia({ audio, video }), owned: true };
}

export class Call extends Emitter<CallEvents> {
  /**
   * Joins the room's call: checks that media can be end-to-end encrypted here, takes the camera and
   * microphone, joins the MLS group through the DS, then starts media through the SFU. Rejects with
   * E2eeUnsupportedError where frames cannot be encrypted.
   */
  static async join(options: CallJoinOptions): Promise<Call> {
    const support = CallE2ee.support();
    if (!support.api) throw new E2eeUnsupportedError(`cannot join with media: ${support.reason}`);
    const local = await localStream(options.media);
    // The join's rekey is timed from here: the camera prompt is not part of it.
    const startedAt = Date.now();
    let connection: DsConnection | undefined;
    let e2ee: CallE2ee | undefined;
    try {
      connection = await DsConnection.connect({ url: options.url, token: options.token });
      const selfId = memberIdentity(connection.principal);
      e2ee = new CallE2ee({ workerUrl: options.workerUrl, selfId, api: options.transformApi ?? support.api, frameCrypto: { ...CALL_FRAME_CRYPTO, ...options.frameCrypto } });
      const keys = e2ee;
      const session = new CallSession({ ...options.session, connection, room: options.room, onEpochKeys: (update) => keys.setEpoch(update) });
      const call = new Call(connection, session, e2ee, local.stream, local.owned, startedAt);
      await session.join();
      if ((options.transport ?? "sfu") === "sfu") await call.startMedia();
      return call;
    } catch (e) {
      e2ee?.close();
      connection?.close();
      if (local.owned) local.stream?.getTracks().forEach((t) => t.stop());
      throw e;
    }
  }

  /** Attach this to your own RTCRtpSenders/RTCRtpReceivers when media does not go through Conclave's SFU. */
  readonly e2ee: CallE2ee;
  readonly room: string;
  /** This device's id ("user/device"). */
  readonly selfId: string;
  readonly localStream: MediaStream | undefined;
  private readonly connection: DsConnection;
  private readonly session: CallSession;
  private readonly ownsLocal: boolean;
  private sfu: SfuClient | undefined;
  private remoteStreams = new Map<string, MediaStream>();
  private members: CallEpochEvent["members"] = [];
  private readonly rekeys: RekeyEntry[] = [];
  private changeAt: number | undefined;
  private mediaState: { state: MediaState; reason?: string } = { state: "idle" };
  private isClosed = false;
  private closing: Promise<void> | undefined;
  private readonly offs: (() => void)[] = [];

  private constructor(connection: DsConnection, session: CallSession, e2ee: CallE2ee, local: MediaStream | undefined, ownsLocal: boolean, startedAt: number) {
    super();
    this.connection = connection;
    this.session = session;
    this.e2ee = e2ee;
    this.room = session.room;
    this.selfId = e2ee.selfId;
    this.localStream = local;
    this.ownsLocal = ownsLocal;
    this.changeAt = startedAt;
    this.offs.push(
      session.on("epoch", (e) => this.onEpoch(e)),
      session.on("message", (m) =>
        this.emit("chat", {
          from: { id: m.sender?.identity, name: m.sender ? nameOf(m.sender.identity) : "unknown member" },
          text: m.text,
          self: false,
          epoch: m.epoch,
          at: Date.now(),
        }),
      ),
      session.on("error", (e) => this.emit("error", { code: e.code, message: e.error instanceof Error ? e.error.message : String(e.error), error: e.error })),
      session.on("closed", ({ reason }) => void this.teardown(reason)),
      e2ee.on("status", (s) => this.emit("e2ee", s)),
      e2ee.on("error", (e) => this.emit("error", { code: "e2ee", message: `${e.participantId}: ${e.reason}: ${e.message}` })),
      e2ee.on("bypass", (b) => this.onBypass(b)),
      connection.on("connected", ({ reconnect }) => {
        // The DS ended our media session with the old connection; it binds the new one once resubscribed.
        if (reconnect && this.sfu && !this.isClosed) this.startMedia().catch(() => undefined);
      }),
    );
    // The first handshake message of a change starts its clock (a Remove proposal, or the commit itself).
    const onLog = (payload: unknown) => {
      try {
        const entry = parseEntry(payload);
        if (entry.kind !== "application" && entry.groupId === session.groupId) this.changeAt ??= Date.now();
      } catch {
        // DsConnection reports malformed pushes.
      }
    };
    connection.socket.on("group:msg", onLog);
    this.offs.push(() => connection.socket.off("group:msg", onLog));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get epoch(): bigint | undefined {
    return this.session.currentEpoch?.epoch;
  }

  get safetyCode(): string | undefined {
    return this.session.currentEpoch?.safetyCode;
  }

  get leafIndex(): number | undefined {
    return this.session.leafIndex;
  }

  get media(): { readonly state: MediaState; readonly reason?: string } {
    return this.mediaState;
  }

  /** Rekeys so far, oldest first (bounded). */
  get timeline(): readonly RekeyEntry[] {
    return [...this.rekeys];
  }

  /** The group's members plus anyone else the SFU forwards media from. */
  get participants(): CallParticipant[] {
    const list: CallParticipant[] = [];
    const seen = new Set<string>();
    const myLeaf = this.session.leafIndex;
    for (const m of this.members) {
      if (seen.has(m.id)) continue;
      seen.add(m.id);
      const self = m.id === this.selfId;
      list.push({ id: m.id, name: m.name, self, leafIndex: self ? (myLeaf ?? m.leafIndex) : m.leafIndex, stream: self ? this.localStream : this.remoteStreams.get(m.id) });
    }
    for (const [id, stream] of this.remoteStreams) {
      if (!seen.has(id)) list.push({ id, name: nameOf(id), self: false, leafIndex: undefined, stream });
    }
    return list;
  }

  get muted(): { audio: boolean; video: boolean } {
    const off = (kind: MediaKind) => {
      const tracks = kind === "audio" ? this.localStream?.getAudioTracks() : this.localStream?.getVideoTracks();
      return tracks !== undefined && tracks.length > 0 && tracks.every((t) => !t.enabled);
    };
    return { audio: off("audio"), video: off("video") };
  }

  /** Mutes or unmutes the local microphone or camera (the others then get silence or black frames, still encrypted). */
  setMuted(kind: MediaKind, muted: boolean): void {
    const tracks = kind === "audio" ? this.localStream?.getAudioTracks() : this.localStream?.getVideoTracks();
    for (const t of tracks ?? []) t.enabled = !muted;
    this.emit("muted", this.muted);
  }

  /** Sends a chat message to everyone in the call, end-to-end encrypted as an MLS application message. */
  async sendChat(text: string): Promise<void> {
    if (text.length === 0 || text.length > MAX_CHAT_CHARS) throw new RangeError(`a chat message has 1 to ${MAX_CHAT_CHARS} characters`);
    await this.session.chat(text);
    this.emit("chat", { from: { id: this.selfId, name: nameOf(this.selfId) }, text, self: true, epoch: this.session.currentEpoch?.epoch ?? 0n, at: Date.now() });
  }

  /** Leaves the call: media stops at once, then the DS proposes our removal and the others rekey. */
  async leave(): Promise<void> {
    if (this.isClosed) return;
    await this.sfu?.stop("left");
    try {
      await this.session.leave();
    } finally {
      await this.teardown("left");
    }
  }

  /** Decoder and packet counters of the media connection (for status displays and tests). */
  async mediaStats(): Promise<CallMediaStats> {
    const pc = this.sfu?.peerConnection;
    const result = { inbound: {} as CallMediaStats["inbound"], packetsReceived: 0, framesEncoded: 0 };
    if (!pc) return result;
    const byMid = new Map<string, RemoteTrack>((this.sfu?.tracks ?? []).map((t) => [t.mid, t]));
    (await pc.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type === "outbound-rtp" && s.kind === "video") result.framesEncoded += Number(s.framesEncoded ?? 0);
      if (s.type !== "inbound-rtp") return;
      result.packetsReceived += Number(s.packetsReceived ?? 0);
      const track = byMid.get(String(s.mid));
      if (!track) return;
      const entry = (result.inbound[track.participantId] ??= { framesDecoded: 0, keyFramesDecoded: 0, videoPackets: 0, audioPackets: 0 });
      if (s.kind === "video") {
        entry.framesDecoded += Number(s.framesDecoded ?? 0);
        entry.keyFramesDecoded += Number(s.keyFramesDecoded ?? 0);
        entry.videoPackets += Number(s.packetsReceived ?? 0);
      } else {
        entry.audioPackets += Number(s.packetsReceived ?? 0);
      }
    });
    return result;
  }

  private async startMedia(): Promise<void> {
    if (!this.sfu) {
      const sfu = new SfuClient({ socket: this.connection.socket, protection: this.e2ee });
      this.sfu = sfu;
      this.offs.push(
        sfu.on("tracks", (tracks) => this.onTracks(tracks)),
        sfu.on("state", (s) => {
          this.mediaState = s;
          this.emit("media", s);
          if (s.state === "failed") this.emit("error", { code: "media", message: s.reason ?? "media failed" });
        }),
      );
    }
    const local: Partial<Record<MediaKind, MediaStreamTrack>> = {};
    const audio = this.localStream?.getAudioTracks()[0];
    const video = this.localStream?.getVideoTracks()[0];
    if (audio) local.audio = audio;
    if (video) local.video = video;
    try {
      await this.sfu.start(local);
    } catch (e) {
      // The call goes on without media (chat, keys); `media` says why.
      if (this.isClosed) return;
      this.emit("error", { code: "media", message: e instanceof Error ? e.message : String(e), error: e });
    }
  }

  private onBypass(bypass: TransformBypass): void {
    const error = new E2eeBypassError(bypass);
    this.emit("bypass", bypass);
    this.emit("error", { code: "e2ee-bypass", message: error.message, error });
    // The receiver's track was stopped: take it out of its participant's stream.
    if (bypass.role === "receive" && this.sfu) this.onTracks(this.sfu.tracks);
  }

  private onTracks(all: readonly RemoteTrack[]): void {
    // Ended tracks render nothing; those of receivers caught bypassing their transform must not come back.
    const tracks = all.filter((t) => t.track.readyState !== "ended");
    const byParticipant = new Map<string, MediaStreamTrack[]>();
    for (const t of tracks) byParticipant.set(t.participantId, [...(byParticipant.get(t.participantId) ?? []), t.track]);
    const next = new Map<string, MediaStream>();
    for (const [id, list] of byParticipant) {
      const old = this.remoteStreams.get(id);
      const same = old && old.getTracks().length === list.length && list.every((t) => old.getTrackById(t.id) === t);
      next.set(id, same ? old : new MediaStream(list));
    }
    this.remoteStreams = next;
    this.emit("participants", this.participants);
  }

  private onEpoch(e: EpochEvent): void {
    const keysAt = Date.now();
    const members = e.members.map((m) => ({ id: m.identity, name: nameOf(m.identity), leafIndex: m.leafIndex }));
    const key = (m: { id: string; leafIndex: number }) => `${m.leafIndex}\u0000${m.id}`;
    const before = new Set(this.members.map(key));
    const after = new Set(members.map(key));
    const joined = members.filter((m) => !before.has(key(m)));
    const left = this.members.filter((m) => !after.has(key(m)));
    this.members = members;
    const changeAt = this.changeAt ?? keysAt;
    this.changeAt = undefined;
    const entry: RekeyEntry = {
      epoch: e.epoch,
      cause: e.cause,
      joined: joined.map((m) => m.name),
      left: left.map((m) => m.name),
      joinedIds: joined.map((m) => m.id),
      leftIds: left.map((m) => m.id),
      changeAt,
      keysAt,
      ms: keysAt - changeAt,
    };
    this.rekeys.push(entry);
    if (this.rekeys.length > MAX_TIMELINE) this.rekeys.shift();
    this.emit("epoch", { epoch: e.epoch, safetyCode: e.safetyCode, cause: e.cause, members });
    this.emit("rekey", entry);
    this.emit("participants", this.participants);
  }

  private teardown(reason: CloseReason): Promise<void> {
    this.closing ??= this.close(reason);
    return this.closing;
  }

  private async close(reason: CloseReason): Promise<void> {
    this.isClosed = true;
    for (const off of this.offs.splice(0)) off();
    await this.sfu?.stop(reason);
    this.remoteStreams = new Map();
    this.e2ee.close();
    this.connection.close();
    if (this.ownsLocal) this.localStream?.getTracks().forEach((t) => t.stop());
    this.emit("closed", { reason });
  }
}
