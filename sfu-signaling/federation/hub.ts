/**
 * The hub role (MIMI's hub provider): this DS created the group, so its GroupService alone orders the
 * group's handshake messages, one commit per epoch, whoever sends them. Followers (other providers with
 * users in the call) reach it over their links:
 *
 * - `fed:act`: a follower's user acts in the group (join, send, leave...). The hub runs the DS's own
 *   request handler for that user, so the same vetting applies: the sending leaf's credential must name
 *   that user's device, and the user must belong to the follower's provider (`forbidden-user` otherwise),
 *   so no provider can speak for another provider's users.
 * - `fed:follow`: the follower receives the group's log after a seq, then every accepted entry once, in
 *   order, with the new epoch's GroupInfo and tree on each commit. A stream replays before it goes live
 *   and holds live entries meanwhile, so it has no gap and no duplicate; a follower whose link dropped
 *   follows again from the last seq it holds (at-least-once overall, de-duplicated by seq on its side).
 *
 * A follower's user is present in the hub's GroupService through a RemoteDevice: a stand-in socket whose
 * traffic goes through the follower, so presence, the leave grace and the DS's Remove proposals work for
 * remote members exactly as for local ones. When a follower's link drops, its members' grace starts; the
 * follower re-announces them when it is back. A stand-in is kept only while it is present in a group (or a
 * request of its device runs): it goes when the device unsubscribes or leaves, the group closes, its
 * provider retires the device or the link drops (its id is fixed, so a later stand-in of the same device
 * is the same subscriber to GroupService). Each peer has at most `maxRemoteDevices` at a time.
 */
import type { Socket } from "socket.io";
import type { Principal } from "../auth.js";
import { DsError } from "../errors.js";
import type { DsRequestEvent, GroupSnapshot, WireEntry } from "../protocol.js";
import type { DsInternals } from "../server.js";
import type { LogEntry, NextEpoch } from "../store/store.js";
import type { InboundLink } from "./acceptor.js";
import { FederationError } from "./errors.js";
import { providerOfRoom, providerOfUser } from "./identity.js";
import type { DeviceChange } from "./protocol.js";
import { rosterOf, snapshotOf } from "./roster.js";

/**
 * What GroupService needs of a device's connection, for a device connected to another provider: it holds
 * no connection here (`disconnected`, so media ignores it) and receives the log through its DS.
 */
class RemoteDevice {
  readonly disconnected = true;
  readonly data: Record<string, unknown> = {};
  /** Groups it is subscribed to in GroupService (the device's presence there). */
  readonly groups = new Set<string>();
  /** Requests running with it. */
  busy = 0;
  constructor(
    readonly id: string,
    readonly principal: Principal,
    /** The provider it is a device of (undefined: a user of this DS, see retire). */
    readonly peer?: string,
  ) {}
  emit(): boolean {
    return true;
  }
  join(): void {}
  leave(): void {}
  asSocket(): Socket {
    return this as unknown as Socket;
  }
}

interface Stream {
  readonly link: InboundLink;
  /** Highest seq sent on this stream (or the seq it started after). */
  head: number;
  /** Highest seq actually sent on this stream (0: none). */
  sent: number;
  /** Replaying: live entries wait in `held`. */
  replaying: boolean;
  readonly held: { entry: WireEntry; next: NextEpoch | undefined }[];
}

/** What a follower may do for its users at the hub. */
const ACTS: ReadonlySet<DsRequestEvent> = new Set<DsRequestEvent>([
  "room:join",
  "ds:external-sender",
  "group:create",
  "group:send",
  "group:subscribe",
  "group:unsubscribe",
  "group:leave",
  "group:report",
]);

/** Acts naming a room: the room must be one this hub hosts. */
const ROOM_ACTS: ReadonlySet<DsRequestEvent> = new Set<DsRequestEvent>(["room:join", "ds:external-sender", "group:create"]);

/** The Socket.IO room GroupService fans a group out to (`GroupRuntime.room` in ds/groups.ts). */
export function localGroupRoom(groupId: string): string {
  return `g:${groupId}`;
}

export function wireEntry(groupId: string, e: LogEntry): WireEntry {
  return { groupId, seq: e.seq, epoch: e.epoch, kind: e.kind, sender: e.sender, message: e.message, at: e.at };
}

/** Entries per `fed:read` answer: one binary attachment each, and Socket.IO allows 10 per packet. */
export const READ_PAGE = 8;

export interface HubOptions {
  readonly domain: string;
  /** Most stand-ins of one peer's devices at a time (devices present in calls here). */
  readonly maxRemoteDevices: number;
}

export class HubRole {
  /** Follower streams by group, then by peer. */
  private readonly streams = new Map<string, Map<string, Stream>>();
  /** Stand-ins of remote devices, by peer, then "user/device". */
  private readonly devices = new Map<string, Map<string, RemoteDevice>>();

  constructor(
    private readonly ds: DsInternals,
    private readonly o: HubOptions,
  ) {}

  /** The store accepted an entry (called in log order, see store wrapper in index.ts). */
  appended(groupId: string, e: LogEntry, next: NextEpoch | undefined): void {
    const streams = this.streams.get(groupId);
    if (!streams) return;
    const entry = wireEntry(groupId, e);
    for (const s of streams.values()) {
      if (s.replaying) s.held.push({ entry, next });
      else this.push(s, entry, next);
    }
  }

  closed(groupId: string): void {
    const streams = this.streams.get(groupId);
    this.streams.delete(groupId);
    for (const s of streams?.values() ?? []) s.link.socket.emit("fed:closed", { groupId });
    for (const byMember of this.devices.values()) {
      for (const d of [...byMember.values()]) {
        if (d.groups.delete(groupId)) this.release(d);
      }
    }
  }

  private push(s: Stream, entry: WireEntry, next: NextEpoch | undefined): void {
    if (entry.seq <= s.head) return;
    s.head = entry.seq;
    s.sent = entry.seq;
    s.link.socket.emit("fed:entry", next ? { groupId: entry.groupId, entry, next: { groupInfo: next.groupInfo, tree: next.tree } } : { groupId: entry.groupId, entry });
  }

  /**
   * Starts (or restarts) the peer's stream of the group after `after` (at most the log's head); answers
   * with the current snapshot and `head`, the log's head as far as this stream has reached it (entries
   * held during the replay are sent before the answer, so they may be newer than the snapshot).
   */
  async follow(link: InboundLink, groupId: string, after: number): Promise<{ group: GroupSnapshot; head: number }> {
    const record = await this.ds.store.getGroup(groupId);
    if (!record) throw new DsError("unknown-group", "no such group");
    if (record.closed) throw new DsError("group-closed", "the call has ended");
    let byPeer = this.streams.get(groupId);
    if (!byPeer) this.streams.set(groupId, (byPeer = new Map()));
    const stream: Stream = { link, head: Math.min(after, record.seq), sent: 0, replaying: true, held: [] };
    byPeer.set(link.peer, stream);
    let current;
    try {
      for (;;) {
        const page = await this.ds.store.readLog(groupId, stream.head, 200);
        if (page.length === 0 || this.streams.get(groupId)?.get(link.peer) !== stream) break;
        for (const e of page) this.push(stream, wireEntry(groupId, e), undefined);
      }
      current = await this.ds.store.getGroup(groupId);
      if (!current || current.closed) throw new DsError("group-closed", "the call has ended");
    } finally {
      stream.replaying = false;
      for (const h of stream.held.splice(0)) this.push(stream, h.entry, h.next);
    }
    return { group: snapshotOf(current), head: Math.max(current.seq, stream.sent) };
  }

  unfollow(link: InboundLink, groupId: string): void {
    const byPeer = this.streams.get(groupId);
    if (byPeer?.get(link.peer)?.link === link) byPeer.delete(link.peer);
    if (byPeer?.size === 0) this.streams.delete(groupId);
  }

  async read(groupId: string, after: number, limit: number): Promise<{ entries: WireEntry[] }> {
    const record = await this.ds.store.groupHead(groupId);
    if (!record) throw new DsError("unknown-group", "no such group");
    const page = await this.ds.store.readLog(groupId, after, Math.min(limit, READ_PAGE));
    return { entries: page.map((e) => wireEntry(groupId, e)) };
  }

  async hosts(groupId: string): Promise<boolean> {
    const head = await this.ds.store.groupHead(groupId);
    return head !== undefined && !head.closed;
  }

  /** A request of a follower's user, run as the DS runs its own users' requests. */
  async act(link: InboundLink, user: string, device: string, event: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (!ACTS.has(event as DsRequestEvent)) throw new FederationError("invalid-payload", `${event} cannot be forwarded`);
    if (providerOfUser(user) !== link.peer) throw new FederationError("forbidden-user", `${link.peer} cannot act for ${user}`);
    if (ROOM_ACTS.has(event as DsRequestEvent)) {
      const room = payload.room;
      if (typeof room !== "string") throw new FederationError("invalid-payload", `${event} needs the room on a link`);
      if (providerOfRoom(room) !== this.o.domain) throw new DsError("forbidden-room", `${room.slice(0, 100)} is not a room of ${this.o.domain}`);
    }
    const stand = this.standIn(link.peer, user, device);
    stand.busy++;
    try {
      // Presence only: the follower delivers the log to its device itself.
      const body = event === "group:subscribe" ? { ...payload, after: Number.MAX_SAFE_INTEGER } : payload;
      const reply = await this.ds.dispatch(event as DsRequestEvent, stand.principal, stand.asSocket(), body);
      if (event === "group:subscribe") stand.groups.add(payload.groupId as string);
      else if (event === "group:unsubscribe" || event === "group:leave") stand.groups.delete(payload.groupId as string);
      return reply;
    } finally {
      stand.busy--;
      this.release(stand);
    }
  }

  private standIn(peer: string, user: string, device: string): RemoteDevice {
    let byMember = this.devices.get(peer);
    if (!byMember) this.devices.set(peer, (byMember = new Map()));
    const member = `${user}/${device}`;
    let d = byMember.get(member);
    if (!d) {
      if (byMember.size >= this.o.maxRemoteDevices) throw new DsError("too-many-devices", `${peer} has ${byMember.size} devices in calls here`);
      byMember.set(member, (d = new RemoteDevice(`fed:${peer}:${member}`, { user, device, rooms: ["*"] }, peer)));
    }
    return d;
  }

  /** Drops a stand-in that is in no group and serves no request. */
  private release(d: RemoteDevice): void {
    if (d.busy > 0 || d.groups.size > 0 || d.peer === undefined) return;
    const byMember = this.devices.get(d.peer);
    const member = `${d.principal.user}/${d.principal.device}`;
    if (byMember?.get(member) !== d) return;
    byMember.delete(member);
    if (byMember.size === 0) this.devices.delete(d.peer);
  }

  /** Devices of `peer`'s users present in calls here (for tests and operators). */
  remoteDevices(peer: string): string[] {
    return [...(this.devices.get(peer)?.keys() ?? [])].sort();
  }

  /** The peer's link is gone: its streams end and its devices' leave grace starts (it re-announces them). */
  linkLost(link: InboundLink): void {
    for (const [groupId, byPeer] of this.streams) {
      if (byPeer.get(link.peer)?.link === link) byPeer.delete(link.peer);
      if (byPeer.size === 0) this.streams.delete(groupId);
    }
    for (const d of [...(this.devices.get(link.peer)?.values() ?? [])]) {
      this.ds.service.disconnected(d.principal, d.asSocket());
      d.groups.clear();
      this.release(d);
    }
  }

  /** Tells the group's local subscribers and every follower of it about a device change. */
  announce(change: DeviceChange): void {
    this.ds.io.to(localGroupRoom(change.groupId)).emit("user:device", change);
    for (const s of this.streams.get(change.groupId)?.values() ?? []) s.link.socket.emit("fed:device", change);
  }

  /** Open groups hosted here with a leaf of `user`. */
  async groupsOf(user: string): Promise<string[]> {
    const out: string[] = [];
    for (const record of await this.ds.store.openGroups()) if (rosterOf(record.tree).some((m) => m.user === user)) out.push(record.groupId);
    return out;
  }

  /** A retired device leaves the group: the DS proposes its removal like any other departure. */
  async retire(groupId: string, user: string, device: string): Promise<void> {
    const peer = providerOfUser(user);
    if (peer === undefined || peer === this.o.domain) {
      const stand = new RemoteDevice(`retired:${user}/${device}`, { user, device, rooms: ["*"] });
      await this.ds.dispatch("group:leave", stand.principal, stand.asSocket(), { groupId });
      return;
    }
    const stand = this.standIn(peer, user, device);
    stand.busy++;
    try {
      await this.ds.dispatch("group:leave", stand.principal, stand.asSocket(), { groupId });
      stand.groups.delete(groupId);
    } finally {
      stand.busy--;
      this.release(stand);
    }
  }
}
