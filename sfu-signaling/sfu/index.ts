/**
 * The media plane of a call: a selective forwarding unit on werift. Each participant has one PeerConnection to
 * it, publishing camera and microphone and receiving every other participant's tracks. RTP payloads pass through
 * untouched (with E2EE they are SFrame ciphertext; the SFU has no key and decodes nothing).
 *
 * Signaling rides on the DS's already authenticated Socket.IO connection (`attach`). The SFU is always the
 * offerer, so offers never cross; replies use the DS's `{ ok: true } | { ok: false, error: { code, message } }`.
 *   client -> sfu:join      {}                          ack: starts a new media session (a new PeerConnection)
 *   sfu -> client sfu:offer { sdp, publish: { audio, video }: mid, tracks: [{ mid, participantId, kind }] }
 *                                                       ack { sdp }: the answer; `publish` m-lines carry the
 *                                                       client's own tracks, `tracks` lists every remote one
 *   client -> sfu:candidate RTCIceCandidateInit          (the SFU's own candidates are in its offers)
 *   client -> sfu:leave     ack: ends the media session
 *   sfu -> client sfu:removed { reason }                 the session was ended by the SFU or the DS
 */
import type { Socket } from "socket.io";
import { toWireError, type DsErrorCode } from "../errors.js";
import { int, obj, optional, parse, ROOM, str } from "../validate.js";
import { resolveOptions, type ResolvedSfuOptions, type SfuOptions } from "./config.js";
import type { ForwardTap } from "./forwarder.js";
import { MediaSession, type SessionContext } from "./session.js";

export type { SfuOptions, SfuIceOptions, VideoCodecName } from "./config.js";
export type { ForwardedRtp, ForwardTap, MediaKind } from "./forwarder.js";
export type { OfferMessage } from "./session.js";

export type SfuErrorCode = "room-full" | "too-many-rooms";

export class SfuError extends Error {
  override readonly name = "SfuError";
  constructor(
    readonly code: SfuErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface Participant {
  participantId: string;
  room: string;
}

export interface Sfu {
  /** Lets an authenticated socket use the SFU as `participantId` in `room`; media starts on its `sfu:join`. */
  attach(socket: Socket, who: Participant): void;
  /**
   * Cuts the participant off at once (no packet to or from them after this returns), tells its client
   * (`sfu:removed`), detaches its sockets and renegotiates the others. False if it had no media session.
   */
  removeParticipant(room: string, participantId: string): boolean;
  /** Participants of `room` with a media session. */
  participants(room: string): string[];
  /** Video keyframe requests the SFU sent to this participant (tests, metrics). */
  keyframeRequests(room: string, participantId: string): number;
  /** Test hook: sees a copy of every packet as it is forwarded. Returns the function that removes it. */
  tapForwarded(listener: ForwardTap): () => void;
  close(): void;
}

export function createSfu(options?: SfuOptions): Sfu {
  return new SelectiveForwardingUnit(resolveOptions(options));
}

const PARTICIPANT = obj({ participantId: str({ min: 1, max: 256 }), room: ROOM });
const JOIN = optional(obj({}));
const CANDIDATE = obj({
  candidate: str({ max: 1024 }),
  sdpMid: optional(str({ max: 64 })),
  sdpMLineIndex: optional(int({ min: 0, max: 1023 })),
  usernameFragment: optional(str({ max: 256 })),
});

export interface SfuWireError {
  code: SfuErrorCode | DsErrorCode;
  message: string;
}

/** The DS's reply shape, so a client handles DS and SFU replies alike. */
type Ack = (response: { ok: true } | { ok: false; error: SfuWireError }) => void;

/** Socket.IO puts the acknowledgement callback last, whether or not the client sent a payload. */
function splitAck(args: unknown[]): { payload: unknown; ack: Ack } {
  const last = args.at(-1);
  if (typeof last === "function") return { payload: args.length > 1 ? args[0] : undefined, ack: last as Ack };
  return { payload: args[0], ack: () => undefined };
}

function wireError(e: unknown): SfuWireError {
  if (e instanceof SfuError) return { code: e.code, message: e.message };
  const { code, message } = toWireError(e);
  return { code, message };
}

interface Attachment extends Participant {
  socket: Socket;
  session?: MediaSession;
  handlers: [event: string, handler: (...args: unknown[]) => void][];
}

class SelectiveForwardingUnit implements Sfu {
  private readonly rooms = new Map<string, Map<string, MediaSession>>();
  private readonly attachments = new Map<Socket, Attachment>();
  private readonly taps = new Set<ForwardTap>();
  private readonly dispatchTap: ForwardTap = (packet) => {
    for (const tap of this.taps) tap(packet);
  };
  private readonly context: SessionContext;

  constructor(private readonly options: ResolvedSfuOptions) {
    this.context = {
      options,
      tap: () => (this.taps.size > 0 ? this.dispatchTap : undefined),
      peers: (session: MediaSession) => this.peersOf(session),
      ended: (session: MediaSession) => this.sessionEnded(session),
    };
  }

  attach(socket: Socket, who: Participant): void {
    const { participantId, room } = parse(PARTICIPANT, who);
    const previous = this.attachments.get(socket);
    let session: MediaSession | undefined;
    if (previous) {
      // Same identity: the media session carries over; another one: it ends.
      if (previous.participantId === participantId && previous.room === room) session = previous.session;
      else previous.session?.close("reattached");
      this.detach(previous);
    }
    if (socket.disconnected) {
      session?.close("disconnected", false);
      return;
    }
    const attachment: Attachment = { socket, participantId, room, session, handlers: [] };
    const on = (event: string, handler: (...args: unknown[]) => void) => {
      attachment.handlers.push([event, handler]);
      socket.on(event, handler);
    };
    on("sfu:join", (...args) => {
      const { payload, ack } = splitAck(args);
      try {
        parse(JOIN, payload);
        this.join(attachment);
        ack({ ok: true });
      } catch (e) {
        ack({ ok: false, error: wireError(e) });
      }
    });
    on("sfu:candidate", (...args) => {
      const { payload } = splitAck(args);
      try {
        const candidate = parse(CANDIDATE, payload);
        if (candidate.candidate !== "") attachment.session?.addRemoteCandidate(candidate);
      } catch (e) {
        this.options.log("bad-candidate", { room, participantId, reason: wireError(e).message });
      }
    });
    on("sfu:leave", (...args) => {
      attachment.session?.close("left", false);
      splitAck(args).ack({ ok: true });
    });
    on("disconnect", () => {
      attachment.session?.close("disconnected", false);
      this.detach(attachment);
    });
    this.attachments.set(socket, attachment);
  }

  private join(attachment: Attachment): void {
    const { room, participantId, socket } = attachment;
    attachment.session?.close("rejoined", false);
    // The same participant on another socket (a reload, a second tab) gives way to the newest.
    this.rooms.get(room)?.get(participantId)?.close("replaced");
    const members = this.rooms.get(room) ?? new Map<string, MediaSession>();
    if (members.size === 0 && this.rooms.size >= this.options.maxRooms) {
      throw new SfuError("too-many-rooms", "the SFU serves its maximum number of rooms");
    }
    if (members.size >= this.options.maxParticipantsPerRoom) {
      throw new SfuError("room-full", `room has ${members.size} participants with media, the maximum`);
    }
    const session = new MediaSession(room, participantId, socket, this.context);
    members.set(participantId, session);
    this.rooms.set(room, members);
    attachment.session = session;
    for (const member of members.values()) member.negotiate();
  }

  private peersOf(session: MediaSession): MediaSession[] {
    const members = this.rooms.get(session.room);
    return members ? [...members.values()].filter((member) => member !== session && !member.closed) : [];
  }

  private sessionEnded(session: MediaSession): void {
    for (const attachment of this.attachments.values()) {
      if (attachment.session === session) attachment.session = undefined;
    }
    const members = this.rooms.get(session.room);
    if (members?.get(session.participantId) !== session) return;
    members.delete(session.participantId);
    if (members.size === 0) this.rooms.delete(session.room);
    for (const member of members.values()) member.negotiate();
  }

  private detach(attachment: Attachment): void {
    for (const [event, handler] of attachment.handlers) attachment.socket.off(event, handler);
    attachment.handlers = [];
    if (this.attachments.get(attachment.socket) === attachment) this.attachments.delete(attachment.socket);
  }

  removeParticipant(room: string, participantId: string): boolean {
    const session = this.rooms.get(room)?.get(participantId);
    session?.close("removed");
    for (const attachment of [...this.attachments.values()]) {
      if (attachment.room !== room || attachment.participantId !== participantId) continue;
      attachment.session?.close("removed");
      this.detach(attachment);
    }
    return session !== undefined;
  }

  participants(room: string): string[] {
    return [...(this.rooms.get(room)?.keys() ?? [])];
  }

  keyframeRequests(room: string, participantId: string): number {
    return this.rooms.get(room)?.get(participantId)?.keyframeRequests ?? 0;
  }

  tapForwarded(listener: ForwardTap): () => void {
    this.taps.add(listener);
    return () => this.taps.delete(listener);
  }

  close(): void {
    for (const members of [...this.rooms.values()]) for (const session of [...members.values()]) session.close("shutdown");
    for (const attachment of [...this.attachments.values()]) this.detach(attachment);
  }
}
