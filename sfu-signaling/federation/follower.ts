/**
 * The follower role: this DS's users are in a call another provider (the hub) hosts. They stay connected to
 * this DS and speak the ordinary client protocol; this DS forwards what they do to the hub (`fed:act`) and
 * delivers the hub's log to them.
 *
 * Each such group has a Mirror: the hub's log from some seq on (the same seqs, so clients cannot tell a
 * follower from the hub), the metadata joiners need (epoch, GroupInfo, tree, and the roster of which
 * provider serves which member), refreshed by every commit the hub sends. The hub streams each entry once
 * per follower; the mirror keeps an entry only if it is the next seq (a duplicate after a re-follow is
 * dropped, a gap makes it follow again), and only then fans it out to its local subscribers, so they get
 * every entry once and in order. When the link comes back after a drop, every mirror follows again from its
 * last seq and every local member is announced present again.
 *
 * The mirror ends when the hub closes the group, or when no local device follows it and no member of this
 * provider is left in the tree.
 */
import type { Socket } from "socket.io";
import { mayJoin, memberId, type Principal } from "../auth.js";
import { DsError } from "../errors.js";
import type { GroupSnapshot, WireEntry } from "../protocol.js";
import type { DsInternals } from "../server.js";
import { parse } from "../validate.js";
import { READ_PAGE } from "./hub.js";
import type { PeerLink } from "./link.js";
import type { DeviceChange } from "./protocol.js";
import { rosterOf, type RosterEntry } from "./roster.js";
import type { LinkSchemas } from "./schemas.js";

interface MirrorMeta {
  readonly epoch: number;
  readonly groupInfo: Uint8Array;
  readonly tree: Uint8Array;
  readonly roster: readonly RosterEntry[];
}

class Mirror {
  room: string | undefined;
  suite = 0;
  /** Entries base+1..head, contiguous. */
  readonly entries: WireEntry[] = [];
  base: number;
  head: number;
  /** The group's epoch after `head`. */
  epoch = 0;
  meta: MirrorMeta | undefined;
  /** The hub streams to this mirror on the current link. */
  live = false;
  following: Promise<void> | undefined;
  /** Local sockets following the group, by member ("user/device"). */
  readonly local = new Map<string, Set<Socket>>();
  /** Each local member's acknowledged seq: the `since` of its forwarded sends. */
  readonly acks = new Map<string, number>();
  duplicates = 0;

  constructor(
    readonly groupId: string,
    readonly hub: string,
    after: number,
  ) {
    this.base = after;
    this.head = after;
  }

  get fanoutRoom(): string {
    return `fed:${this.groupId}`;
  }
}

export interface FollowerOptions {
  readonly ds: DsInternals;
  readonly domain: string;
  readonly schemas: LinkSchemas;
  readonly link: (peer: string) => PeerLink;
  readonly peers: () => readonly string[];
  /** Most entries a mirror keeps; older ones are read from the hub when a late subscriber needs them. */
  readonly mirrorEntries: number;
  readonly log: (line: string) => void;
}

/** Remote groups remembered without a mirror (seen by a room:join or a Welcome). */
const MAX_KNOWN_GROUPS = 10_000;

const SOCKET_MIRRORS = Symbol("federated groups");
type TrackedSocket = Socket & { [SOCKET_MIRRORS]?: Set<string> };

export class FollowerRole {
  private readonly mirrors = new Map<string, Mirror>();
  /** Hub of every remote group a local user has seen, by group id. */
  private readonly hubs = new Map<string, string>();
  /** Mirror group of each remote room. */
  private readonly rooms = new Map<string, string>();

  constructor(private readonly o: FollowerOptions) {}

  /** The hub of a remote group this DS knows of. */
  hubOf(groupId: string): string | undefined {
    return this.hubs.get(groupId);
  }

  learnHub(groupId: string, hub: string): void {
    // Groups seen in passing (a room:join, a Welcome) are remembered a while; mirrored ones until they end.
    this.hubs.delete(groupId);
    this.hubs.set(groupId, hub);
    if (this.hubs.size > MAX_KNOWN_GROUPS) {
      for (const id of this.hubs.keys()) {
        if (this.hubs.size <= MAX_KNOWN_GROUPS) break;
        if (!this.mirrors.has(id)) this.hubs.delete(id);
      }
    }
  }

  /** Metadata of a followed group (for tests and operators). */
  metadata(groupId: string): { hub: string; head: number; epoch: number; roster: readonly RosterEntry[]; duplicates: number; live: boolean } | undefined {
    const m = this.mirrors.get(groupId);
    return m && { hub: m.hub, head: m.head, epoch: m.epoch, roster: m.meta?.roster ?? [], duplicates: m.duplicates, live: m.live };
  }

  /** Every followed group with a leaf of `user`, with its hub. */
  groupsOf(user: string): { groupId: string; hub: string }[] {
    return [...this.mirrors.values()].filter((m) => m.meta?.roster.some((r) => r.user === user)).map((m) => ({ groupId: m.groupId, hub: m.hub }));
  }

  /** Asks the peers which one hosts a group this DS does not know (e.g. after a restart). */
  async locate(groupId: string): Promise<string | undefined> {
    const answers = await Promise.all(
      this.o.peers().map((peer) =>
        this.o
          .link(peer)
          .request("fed:locate", { groupId }, { timeoutMs: 5000 })
          .then((r) => (r.hosted === true ? peer : undefined))
          .catch(() => undefined),
      ),
    );
    const hub = answers.find((a) => a !== undefined);
    if (hub) this.learnHub(groupId, hub);
    return hub;
  }

  private act(hub: string, principal: Principal, event: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.o.link(hub).request("fed:act", { user: principal.user, device: principal.device, event, payload }, { once: true });
  }

  /** Remembers the hub of a group named in a reply (a snapshot, or a refusal carrying one). */
  private learn(hub: string, group: unknown): void {
    const snapshot = parse(this.o.schemas.optionalSnapshot, group);
    if (snapshot) this.learnHub(snapshot.groupId, hub);
  }

  private async actLearning(hub: string, principal: Principal, event: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    try {
      const reply = await this.act(hub, principal, event, payload);
      this.learn(hub, reply.group);
      return reply;
    } catch (e) {
      if (e instanceof DsError && e.extra.group !== undefined) this.learn(hub, e.extra.group);
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Client requests for remote rooms and groups

  async roomJoin(principal: Principal, room: string, hub: string): Promise<Record<string, unknown>> {
    if (!mayJoin(principal, room)) throw new DsError("forbidden-room", "the token does not grant this room");
    const id = this.rooms.get(room);
    const m = id === undefined ? undefined : this.mirrors.get(id);
    // The mirror serves joiners while it is live and its GroupInfo is the epoch's at its head.
    if (m && m.live && this.o.link(m.hub).ready && m.meta && m.meta.epoch === m.epoch && m.room === room) {
      const group: GroupSnapshot = { groupId: m.groupId, room, suite: m.suite, epoch: m.epoch, seq: m.head, groupInfo: m.meta.groupInfo, tree: m.meta.tree };
      return { group };
    }
    return this.actLearning(hub, principal, "room:join", { room });
  }

  /** The hub's external sender, for a room it hosts. */
  async externalSender(principal: Principal, hub: string, room: string, suite: number): Promise<Record<string, unknown>> {
    if (!mayJoin(principal, room)) throw new DsError("forbidden-room", "the token does not grant this room");
    return this.act(hub, principal, "ds:external-sender", { suite, room });
  }

  create(principal: Principal, hub: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (!mayJoin(principal, String(payload.room))) throw new DsError("forbidden-room", "the token does not grant this room");
    return this.actLearning(hub, principal, "group:create", payload);
  }

  async subscribe(principal: Principal, socket: Socket, groupId: string, after: number): Promise<Record<string, unknown>> {
    const m = await this.mirror(groupId, after);
    if (m.room !== undefined && !mayJoin(principal, m.room)) throw new DsError("forbidden-room", "the token does not grant this room");
    const member = memberId(principal);
    // Out of the fan-out until the replay is done, so live entries cannot overtake it.
    await socket.leave(m.fanoutRoom);
    let sockets = m.local.get(member);
    const announce = !sockets;
    if (!sockets) m.local.set(member, (sockets = new Set()));
    sockets.add(socket);
    ((socket as TrackedSocket)[SOCKET_MIRRORS] ??= new Set()).add(groupId);
    try {
      if (announce) await this.act(m.hub, principal, "group:subscribe", { groupId, after: 0 });
    } catch (e) {
      this.dropSocket(m, member, socket);
      throw e;
    }
    const older: WireEntry[] = [];
    let from = after;
    while (from < m.base) {
      const page = parse(this.o.schemas.entries, await this.o.link(m.hub).request("fed:read", { groupId, after: from, limit: READ_PAGE })).entries;
      const last = page[page.length - 1]?.seq;
      // A hub whose page does not advance would keep this loop reading (and buffering) forever.
      if (last === undefined || last <= from) break;
      older.push(...page);
      from = last;
    }
    for (const e of older) socket.emit("group:msg", e);
    for (const e of m.entries) if (e.seq > from) socket.emit("group:msg", e);
    await socket.join(m.fanoutRoom);
    return { epoch: m.epoch, seq: m.head };
  }

  async unsubscribe(principal: Principal, socket: Socket, groupId: string): Promise<Record<string, unknown>> {
    const m = this.mirrors.get(groupId);
    if (m) await this.release(m, principal, socket);
    return {};
  }

  async leave(principal: Principal, socket: Socket, groupId: string, hub: string): Promise<Record<string, unknown>> {
    const m = this.mirrors.get(groupId);
    if (m) {
      await socket.leave(m.fanoutRoom);
      this.dropSocket(m, memberId(principal), socket);
    }
    await this.act(hub, principal, "group:leave", { groupId });
    if (m) this.retireIfIdle(m);
    return {};
  }

  send(principal: Principal, hub: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    const m = this.mirrors.get(String(payload.groupId));
    const since = payload.since ?? m?.acks.get(memberId(principal));
    return this.actLearning(hub, principal, "group:send", since === undefined ? payload : { ...payload, since });
  }

  ack(principal: Principal, groupId: string, seq: number): Record<string, unknown> {
    const m = this.mirrors.get(groupId);
    if (!m) throw new DsError("unknown-group", "no such group");
    if (seq > m.head) throw new DsError("invalid-payload", "ack beyond the end of the log");
    const member = memberId(principal);
    m.acks.set(member, Math.max(seq, m.acks.get(member) ?? 0));
    return {};
  }

  report(principal: Principal, hub: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.act(hub, principal, "group:report", payload);
  }

  /** A local connection closed: its members' presence at the hub ends where it was their last socket. */
  socketGone(principal: Principal, socket: Socket): void {
    for (const groupId of (socket as TrackedSocket)[SOCKET_MIRRORS] ?? []) {
      const m = this.mirrors.get(groupId);
      if (m) void this.release(m, principal, socket).catch((e) => this.o.log(`federation: presence update for ${groupId.slice(0, 16)} failed: ${String(e)}`));
    }
  }

  /** The socket stops following the group; the hub hears it when it was the member's last one here. */
  private async release(m: Mirror, principal: Principal, socket: Socket): Promise<void> {
    await socket.leave(m.fanoutRoom);
    const last = this.dropSocket(m, memberId(principal), socket);
    try {
      if (last) await this.act(m.hub, principal, "group:unsubscribe", { groupId: m.groupId });
    } finally {
      this.retireIfIdle(m);
    }
  }

  /** Forgets the socket; true when it was the member's last one here. */
  private dropSocket(m: Mirror, member: string, socket: Socket): boolean {
    (socket as TrackedSocket)[SOCKET_MIRRORS]?.delete(m.groupId);
    const sockets = m.local.get(member);
    if (!sockets?.delete(socket)) return false;
    if (sockets.size > 0) return false;
    m.local.delete(member);
    return true;
  }

  // -------------------------------------------------------------------------------------------------------
  // Mirrors

  private async mirror(groupId: string, after: number): Promise<Mirror> {
    const hub = this.hubs.get(groupId);
    if (!hub) throw new DsError("unknown-group", "no such group");
    let m = this.mirrors.get(groupId);
    if (!m) {
      m = new Mirror(groupId, hub, after);
      this.mirrors.set(groupId, m);
    }
    await this.follow(m);
    if (this.mirrors.get(groupId) !== m) throw new DsError("group-closed", "the call has ended");
    return m;
  }

  /** Asks the hub to stream the group from the mirror's head; shared by concurrent callers. */
  private follow(m: Mirror): Promise<void> {
    if (m.live) return Promise.resolve();
    m.following ??= (async () => {
      try {
        const reply = parse(this.o.schemas.followReply, await this.o.link(m.hub).request("fed:follow", { groupId: m.groupId, after: m.head }));
        const g = reply.group;
        // A mirror started after the end of the hub's log (a subscriber's bogus `after`) would drop real
        // entries as duplicates: it starts at the hub's head instead. Live entries may overtake this answer,
        // so a mirror that holds entries is right by construction and kept.
        if (m.entries.length === 0 && m.head > reply.head) m.base = m.head = reply.head;
        m.room = g.room;
        m.suite = g.suite;
        this.rooms.set(g.room, m.groupId);
        // Commits replayed before this answer carry no GroupInfo; the snapshot is the hub's at (or after) them.
        if (g.epoch >= m.epoch) m.epoch = g.epoch;
        if (g.epoch >= (m.meta?.epoch ?? -1)) m.meta = { epoch: g.epoch, groupInfo: g.groupInfo, tree: g.tree, roster: rosterOf(g.tree) };
        m.live = true;
      } catch (e) {
        if (e instanceof DsError && (e.code === "group-closed" || e.code === "unknown-group")) this.close(m);
        throw e;
      } finally {
        m.following = undefined;
      }
    })();
    return m.following;
  }

  /** The link to `peer` is (again) authenticated: follow again from each mirror's head, re-announce members. */
  linkReady(peer: string): void {
    for (const m of this.mirrors.values()) {
      if (m.hub !== peer) continue;
      m.live = false;
      this.follow(m).catch((e) => this.o.log(`federation: following ${m.groupId.slice(0, 16)} at ${peer} failed: ${String(e)}`));
      for (const sockets of m.local.values()) {
        const principal = [...sockets][0]?.data.principal as Principal | undefined;
        if (!principal) continue;
        this.act(peer, principal, "group:subscribe", { groupId: m.groupId, after: 0 }).catch((e) => this.o.log(`federation: re-announcing a member failed: ${String(e)}`));
      }
    }
  }

  linkDown(peer: string): void {
    for (const m of this.mirrors.values()) if (m.hub === peer) m.live = false;
  }

  /** A `fed:entry` push from `peer`. */
  entry(peer: string, payload: unknown): void {
    const { groupId, entry, next } = parse(this.o.schemas.entryPush, payload);
    const m = this.mirrors.get(groupId);
    if (!m || m.hub !== peer || entry.groupId !== groupId) return;
    if (entry.seq <= m.head) {
      m.duplicates++;
      return;
    }
    if (entry.seq !== m.head + 1) {
      // Cannot happen on one ordered stream; if it does, the hub's log is the authority: read it again.
      m.live = false;
      this.follow(m).catch((e) => this.o.log(`federation: re-following ${groupId.slice(0, 16)} failed: ${String(e)}`));
      return;
    }
    m.entries.push(entry);
    m.head = entry.seq;
    if (m.entries.length > this.o.mirrorEntries) {
      const dropped = m.entries.splice(0, m.entries.length - this.o.mirrorEntries);
      m.base = dropped[dropped.length - 1]!.seq;
    }
    if (entry.kind === "commit") {
      m.epoch = entry.epoch + 1;
      if (next) m.meta = { epoch: m.epoch, groupInfo: next.groupInfo, tree: next.tree, roster: rosterOf(next.tree) };
    }
    this.o.ds.io.to(m.fanoutRoom).emit("group:msg", entry);
    if (entry.kind === "commit") this.retireIfIdle(m);
  }

  /** A `fed:closed` push from `peer`. */
  closed(peer: string, payload: unknown): void {
    const { groupId } = parse(this.o.schemas.closedPush, payload);
    const m = this.mirrors.get(groupId);
    if (m && m.hub === peer) this.close(m);
  }

  /** A `fed:device` push from `peer` for a group it hosts. */
  device(peer: string, change: DeviceChange): void {
    const m = this.mirrors.get(change.groupId);
    if (m && m.hub === peer) this.o.ds.io.to(m.fanoutRoom).emit("user:device", change);
  }

  private close(m: Mirror): void {
    if (this.mirrors.get(m.groupId) !== m) return;
    this.forget(m);
    this.hubs.delete(m.groupId);
    this.o.ds.io.to(m.fanoutRoom).emit("group:closed", { groupId: m.groupId });
    this.o.ds.io.in(m.fanoutRoom).socketsLeave(m.fanoutRoom);
  }

  private forget(m: Mirror): void {
    this.mirrors.delete(m.groupId);
    if (m.room !== undefined && this.rooms.get(m.room) === m.groupId) this.rooms.delete(m.room);
  }

  /** Stops following a group nobody here follows and no member of this provider is in. */
  private retireIfIdle(m: Mirror): void {
    if (m.local.size > 0 || m.following || this.mirrors.get(m.groupId) !== m) return;
    if (m.meta?.roster.some((r) => r.provider === this.o.domain)) return;
    this.forget(m);
    this.o.link(m.hub).notify("fed:unfollow", { groupId: m.groupId });
  }
}
