/**
 * Calls as MLS groups: creation, the sequencer, fan-out, resume, leaves.
 *
 * Ordering (BRIEF decision 4): every operation on a group runs in that group's FIFO queue; a handshake
 * message is vetted against the DS's public view of the current epoch, then stored with an atomic
 * compare-and-set on (epoch, head seq), and only then fanned out. So exactly one commit per epoch is ever
 * stored (the first valid one), every subscriber receives the log in seq order, and a crash between storing
 * and fanning out only delays delivery: the entry is in the log and resuming clients get it.
 *
 * Leaves (decision 3): an explicit leave, or a disconnect that outlasts the grace, marks the member's leaves
 * as departed; the DS then signs a Remove proposal for each, and again in every later epoch until a commit
 * removes them. A group whose members have all departed is closed, which frees its room.
 */
import type { Server, Socket } from "socket.io";
import { toHex } from "../../keying/codec/bytes.js";
import { MlsDecodeError } from "../../keying/codec/errors.js";
import { decode } from "../../keying/codec/reader.js";
import { isCipherSuiteId, type CipherSuiteId } from "../../keying/crypto/index.js";
import { MlsValidationError } from "../../keying/mls/errors.js";
import { ContentType, SenderType, WireFormat, decodeMLSMessage, type MLSMessage, type PublicMessage } from "../../keying/mls/messages.js";
import { mayJoin, memberId, type Principal } from "../auth.js";
import { DsError } from "../errors.js";
import type { DsMetrics } from "../metrics.js";
import type { GroupSnapshot, LogKind, SendRequest, WireEntry } from "../protocol.js";
import type { GroupRecord, LogEntry, NextEpoch, Store } from "../store/store.js";
import { signRemoveProposal, type ExternalSenderKeys } from "./external-sender.js";
import { GroupView } from "./group-vetting.js";
import { connectionGone, hasConnection, queuedBytes, whenDrained } from "./socket-queue.js";

export type { GroupSnapshot, SendRequest, WireEntry } from "../protocol.js";

export interface GroupServiceOptions {
  readonly store: Store;
  readonly io: Server;
  readonly senders: ExternalSenderKeys;
  readonly metrics: DsMetrics;
  /** How long a member may stay disconnected before the DS proposes its removal. */
  readonly leaveGraceMs: number;
  /** How many epochs back an application message may be (members keep that many past epochs' keys). */
  readonly maxPastEpochs: number;
  /** Most entries a wrong-epoch answer carries (each is a binary attachment; Socket.IO allows 10 per packet). */
  readonly maxMissed: number;
  /** A replay sends the next entry only while the socket has less than this queued (bytes). */
  readonly replayWindowBytes: number;
  /** Paced (long) replays one device may run at once, over all its connections and groups. */
  readonly maxReplaysPerDevice: number;
  readonly log: (line: string) => void;
  /** A device subscribed to a group of `room` (e.g. to let it use the room's media). */
  readonly onSubscribed?: (socket: Socket, principal: Principal, room: string) => void;
  /** A device left the call or stayed away past the grace (e.g. to cut its media at once). */
  readonly onDeparted?: (room: string, member: string) => void;
}

/** Departed leaves are remembered by signature key: leaf indices are reused, keys are not. */
interface Departure {
  readonly member: string;
  readonly cause: "leave" | "disconnect";
}

/**
 * What this node holds for one open group: the view of the current epoch (rebuilt from the store whenever
 * it may disagree with the log) and the presence state the store does not have (who is connected here,
 * grace timers, departures).
 */
class GroupRuntime {
  /** Set when the view may be ahead of or behind the log: the next operation rebuilds it. */
  stale = false;
  /** Departed leaves by signature key (hex). */
  readonly departed = new Map<string, Departure>();
  /** Leaves the DS has proposed to remove in the current epoch. */
  proposedRemovals = new Set<number>();
  /** Connected sockets on this node, by member. */
  readonly subscribers = new Map<string, Set<string>>();
  readonly graceTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    public record: GroupRecord,
    public view: GroupView,
  ) {}

  get room(): string {
    return `g:${this.record.groupId}`;
  }
}

const SOCKET_GROUPS = Symbol("groups");
/** Groups whose log the socket is being replayed (subscribe has not answered yet). */
const SOCKET_REPLAYS = Symbol("replays");
type TrackedSocket = Socket & { [SOCKET_GROUPS]?: Set<string>; [SOCKET_REPLAYS]?: Set<string> };

/** Log entries read per step of a replay; also how far behind the head a replay may finish in the group's queue. */
const REPLAY_PAGE = 64;
/** Paced catch-ups before a subscribe finishes in the queue whatever is left (a group appending faster than the socket reads). */
const MAX_PACED_ROUNDS = 3;

function wireEntry(groupId: string, e: LogEntry): WireEntry {
  return { groupId, seq: e.seq, epoch: e.epoch, kind: e.kind, sender: e.sender, message: e.message, at: e.at };
}

function snapshot(r: GroupRecord): GroupSnapshot {
  return { groupId: r.groupId, room: r.room, suite: r.suite, epoch: r.epoch, seq: r.seq, groupInfo: r.groupInfo, tree: r.tree };
}

function decodeMessage(bytes: Uint8Array): MLSMessage {
  try {
    return decode(decodeMLSMessage, bytes);
  } catch (e) {
    if (e instanceof MlsDecodeError) throw new DsError("malformed-message", e.message);
    throw e;
  }
}

/** MLS refusals keep their RFC-level reason next to the DS code. */
function vettingError(e: unknown): never {
  if (e instanceof MlsValidationError) throw new DsError("invalid-message", e.message, { reason: e.code });
  if (e instanceof MlsDecodeError) throw new DsError("malformed-message", e.message);
  throw e;
}

export class GroupService {
  private readonly runtimes = new Map<string, GroupRuntime>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Paced replays running, by member ("user/device"). */
  private readonly pacedReplays = new Map<string, number>();
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly o: GroupServiceOptions) {}

  /** Runs `fn` after every earlier operation on the group, in arrival order. */
  private exclusive<T>(groupId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(groupId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(groupId, tail);
    void tail.then(() => {
      if (this.queues.get(groupId) === tail) this.queues.delete(groupId);
    });
    return run;
  }

  /** The group's runtime, current with the store (another node may have appended). */
  private async runtime(groupId: string): Promise<GroupRuntime> {
    const head = await this.o.store.groupHead(groupId);
    if (!head) throw new DsError("unknown-group", "no such group");
    const cached = this.runtimes.get(groupId);
    if (head.closed) {
      if (cached) this.drop(cached);
      throw new DsError("group-closed", "the call has ended");
    }
    if (cached && !cached.stale && cached.record.seq === head.seq) return cached;
    const record = await this.o.store.getGroup(groupId);
    if (!record || record.closed) throw new DsError("group-closed", "the call has ended");
    const view = await this.restore(record);
    if (cached) {
      if (record.epoch !== cached.record.epoch) cached.proposedRemovals = new Set();
      cached.record = record;
      cached.view = view;
      cached.stale = false;
      return cached;
    }
    const rt = new GroupRuntime(record, view);
    this.runtimes.set(groupId, rt);
    return rt;
  }

  /**
   * The view of the record's epoch with the proposals already sequenced in it. A proposal that no longer
   * passes (a KeyPackage that expired since) is left out rather than making the whole call unusable.
   */
  private async restore(record: GroupRecord): Promise<GroupView> {
    const view = await GroupView.restore(await this.o.senders.forSuite(suiteId(record.suite)), record.groupInfo, record.tree);
    for (let after = record.epochSeq; after < record.seq; ) {
      const page = await this.o.store.readLog(record.groupId, after, 500);
      if (page.length === 0) break;
      for (const e of page) {
        if (e.kind !== "proposal") continue;
        await view.process(e.message, undefined).catch((err: unknown) => {
          if (!(err instanceof MlsValidationError || err instanceof MlsDecodeError)) throw err;
          this.o.log(`group ${record.groupId.slice(0, 16)}: proposal seq ${e.seq} no longer passes (${err.message}); left out`);
        });
      }
      after = page[page.length - 1]!.seq;
    }
    return view;
  }

  private authorize(principal: Principal, room: string): void {
    if (!mayJoin(principal, room)) throw new DsError("forbidden-room", "the token does not grant this room");
  }

  /** The room's open group, or null when the next participant must create one. */
  async roomInfo(principal: Principal, room: string): Promise<GroupSnapshot | null> {
    this.authorize(principal, room);
    const record = await this.o.store.openGroupOfRoom(room);
    return record ? snapshot(record) : null;
  }

  /** The DS's ExternalSender struct for a suite: what a creator lists in external_senders. */
  async externalSender(suite: number): Promise<Uint8Array> {
    if (!isCipherSuiteId(suite)) throw new DsError("unsupported-suite", `cipher suite ${suite}`);
    return (await this.o.senders.forSuite(suite)).encoded;
  }

  /**
   * A participant creates the room's group from its first GroupInfo. The DS vets it (signature, tree, the
   * creator as only member, the DS among external_senders); when the room already has a group the answer is
   * `group-exists` with that group's snapshot, so the client joins it instead.
   */
  async create(principal: Principal, room: string, groupInfo: Uint8Array, tree: Uint8Array | undefined): Promise<GroupSnapshot> {
    this.authorize(principal, room);
    const existing = await this.o.store.openGroupOfRoom(room);
    if (existing) throw new DsError("group-exists", "the room already has a call", { group: snapshot(existing) });
    const view = await GroupView.create((suite) => this.o.senders.forSuite(suite), groupInfo, tree).catch(vettingError);
    const members = view.members();
    if (members.length !== 1 || members[0]!.identity !== memberId(principal)) {
      throw new DsError("wrong-identity", "a new group must have exactly one member: the creating device");
    }
    const groupId = toHex(view.groupId);
    const record = { groupId, room, suite: view.suite, epoch: view.epoch, groupInfo: view.groupInfo(), tree: view.ratchetTree(), createdAt: Date.now() };
    const r = await this.o.store.createGroup(record);
    if (!r.ok) {
      if (r.existing && r.existing.room === room && !r.existing.closed) throw new DsError("group-exists", "the room already has a call", { group: snapshot(r.existing) });
      throw new DsError("group-exists", "this group id is already taken");
    }
    const created: GroupRecord = { ...record, seq: 0, epochSeq: 0, closed: false };
    // The view just built is the stored epoch's: keep it rather than rebuild it on the first subscribe.
    if (!this.runtimes.has(groupId)) this.runtimes.set(groupId, new GroupRuntime(created, view));
    this.o.log(`group ${groupId.slice(0, 16)} created in room ${room} by ${memberId(principal)}`);
    return snapshot(created);
  }

  /**
   * Subscribes the socket to the group's log: every entry after `after`, then live entries, with no gap.
   *
   * A long replay is paced by the socket (at most `replayWindowBytes` queued for it, the next page only as
   * it drains) and runs outside the group's queue, so a client that reads slowly holds up neither the DS's
   * memory nor the call. Only the last stretch, at most one page behind the head, runs in the queue: the
   * socket joins the fan-out room and the replay reads to the end of the log there, so an entry another node
   * appends meanwhile is replayed or pushed (possibly both: clients drop seqs they already have). A socket
   * already subscribed may get live pushes during the paced part; they are replayed again in the queue.
   * One replay per socket and group at a time, and at most `maxReplaysPerDevice` paced ones per device.
   */
  async subscribe(principal: Principal, socket: Socket, groupId: string, after: number): Promise<{ epoch: number; seq: number }> {
    // In-process stand-ins (federation/hub.ts) subscribe for presence only: they have no connection to pace.
    const t = (hasConnection(socket) ? socket : {}) as TrackedSocket;
    const replaying = (t[SOCKET_REPLAYS] ??= new Set());
    if (replaying.has(groupId)) throw new DsError("rate-limited", "this connection is still replaying the group's log; wait for that subscribe's answer");
    replaying.add(groupId);
    const member = memberId(principal);
    let paced = false;
    try {
      let head = after;
      for (let round = 0; ; round++) {
        const done = await this.exclusive(groupId, async () => {
          const rt = await this.runtime(groupId);
          this.authorize(principal, rt.record.room);
          if (rt.record.seq - head > REPLAY_PAGE && round < MAX_PACED_ROUNDS) return undefined;
          return this.finishSubscribe(principal, socket, rt, head);
        });
        if (done) return done;
        if (!paced) {
          const n = this.pacedReplays.get(member) ?? 0;
          if (n >= this.o.maxReplaysPerDevice) throw new DsError("rate-limited", `at most ${this.o.maxReplaysPerDevice} log replays per device at a time`);
          this.pacedReplays.set(member, n + 1);
          paced = true;
        }
        head = await this.replayPaced(socket, groupId, head);
      }
    } finally {
      replaying.delete(groupId);
      if (paced) {
        const n = this.pacedReplays.get(member)! - 1;
        if (n > 0) this.pacedReplays.set(member, n);
        else this.pacedReplays.delete(member);
      }
    }
  }

  /** In the group's queue: join the fan-out, replay the (short) rest of the log, register the subscriber. */
  private async finishSubscribe(principal: Principal, socket: Socket, rt: GroupRuntime, after: number): Promise<{ epoch: number; seq: number }> {
    const groupId = rt.record.groupId;
    const member = memberId(principal);
    if (connectionGone(socket)) throw replayAborted();
    await socket.join(rt.room);
    let head = after;
    for (;;) {
      const page = await this.o.store.readLog(groupId, head, REPLAY_PAGE);
      if (page.length === 0) break;
      for (const e of page) socket.emit("group:msg", wireEntry(groupId, e));
      head = page[page.length - 1]!.seq;
    }
    // Registered only while connected: a socket that went away meanwhile would otherwise count as present forever.
    if (connectionGone(socket)) {
      await socket.leave(rt.room);
      throw replayAborted();
    }
    const t = socket as TrackedSocket;
    (t[SOCKET_GROUPS] ??= new Set()).add(groupId);
    let sockets = rt.subscribers.get(member);
    if (!sockets) rt.subscribers.set(member, (sockets = new Set()));
    sockets.add(socket.id);
    this.cancelGrace(rt, member);
    this.forgetDeparture(rt, member);
    this.o.onSubscribed?.(socket, principal, rt.record.room);
    return { epoch: rt.record.epoch, seq: Math.max(head, rt.record.seq) };
  }

  /**
   * Outside the group's queue: replays whole pages after `after` while the socket keeps less than the window
   * queued; returns the last seq sent once a page comes back short (the head is near). The log is
   * append-only, so reading it beside the queue is safe.
   */
  private async replayPaced(socket: Socket, groupId: string, after: number): Promise<number> {
    let head = after;
    for (;;) {
      if (connectionGone(socket)) throw replayAborted();
      const page = await this.o.store.readLog(groupId, head, REPLAY_PAGE);
      for (const e of page) {
        if (queuedBytes(socket) >= this.o.replayWindowBytes && !(await whenDrained(socket, this.o.replayWindowBytes))) {
          throw replayAborted();
        }
        socket.emit("group:msg", wireEntry(groupId, e));
        head = e.seq;
      }
      if (page.length < REPLAY_PAGE) return head;
    }
  }

  /** Stops pushing the group's log to this socket; the member stays in the call (the grace starts). */
  unsubscribe(principal: Principal, socket: Socket, groupId: string): Promise<void> {
    return this.exclusive(groupId, async () => {
      const rt = await this.runtime(groupId);
      this.authorize(principal, rt.record.room);
      const member = memberId(principal);
      await socket.leave(rt.room);
      (socket as TrackedSocket)[SOCKET_GROUPS]?.delete(groupId);
      this.removeSubscriber(rt, member, socket);
      if (!rt.subscribers.has(member)) this.startGrace(rt, member);
    });
  }

  /**
   * A handshake (PublicMessage commit or proposal) or an application message (PrivateMessage) for the group.
   * Without `since`, a wrong-epoch answer lists what follows the member's acknowledged seq.
   */
  async send(principal: Principal, request: SendRequest): Promise<{ seq: number; epoch: number }> {
    const groupId = request.groupId;
    // No await before `exclusive`: the group's queue is entered in arrival order.
    const received = performance.now();
    const bytes = request.message;
    const message = decodeMessage(bytes);
    if (request.welcome && decodeMessage(request.welcome).wireFormat !== WireFormat.mlsWelcome) throw new DsError("invalid-payload", "welcome is not a Welcome");
    return this.exclusive(groupId, async () => {
      const rt = await this.runtime(groupId);
      this.authorize(principal, rt.record.room);
      if (message.wireFormat === WireFormat.mlsPrivateMessage) return this.sendApplication(principal, rt, message.privateMessage, bytes, received);
      if (message.wireFormat !== WireFormat.mlsPublicMessage) throw new DsError("invalid-message", "only PublicMessage and PrivateMessage are sequenced");
      const isCommit = message.publicMessage.content.contentType === ContentType.commit;
      try {
        return await this.sendHandshake(principal, rt, message.publicMessage, request, received);
      } catch (e) {
        if (isCommit && e instanceof DsError) this.o.metrics.commitsRejected.inc({ reason: e.code });
        throw e;
      }
    });
  }

  private checkGroupId(rt: GroupRuntime, groupId: Uint8Array): void {
    if (toHex(groupId) !== rt.record.groupId) throw new DsError("wrong-group", "the message belongs to another group");
  }

  private isMember(rt: GroupRuntime, member: string): boolean {
    return rt.view.members().some((m) => m.identity === member);
  }

  private async sendApplication(principal: Principal, rt: GroupRuntime, pm: { groupId: Uint8Array; epoch: bigint; contentType: number }, bytes: Uint8Array, received: number) {
    this.checkGroupId(rt, pm.groupId);
    if (pm.contentType !== ContentType.application) throw new DsError("invalid-message", "handshake messages must be PublicMessages so the DS can check them");
    const member = memberId(principal);
    if (!this.isMember(rt, member)) throw new DsError("not-a-member", "only members send application messages");
    const epoch = Number(pm.epoch);
    const current = rt.record.epoch;
    if (pm.epoch > BigInt(current) || epoch < current - this.o.maxPastEpochs) {
      throw new DsError("wrong-epoch", `application message for epoch ${pm.epoch}, current ${current}`, { epoch: current, missed: [] });
    }
    return this.append(rt, { kind: "application", epoch, sender: member, message: bytes }, undefined, received);
  }

  private async sendHandshake(principal: Principal, first: GroupRuntime, pm: PublicMessage, request: SendRequest, received: number): Promise<{ seq: number; epoch: number }> {
    const member = memberId(principal);
    const content = pm.content;
    const kind = content.contentType === ContentType.commit ? "commit" : content.contentType === ContentType.proposal ? "proposal" : undefined;
    if (!kind) throw new DsError("invalid-message", "application data must be a PrivateMessage");
    if (kind === "commit" && !request.groupInfo) throw new DsError("invalid-payload", "a commit needs the GroupInfo of the epoch it creates");
    if (kind === "proposal" && (request.groupInfo || request.welcome)) throw new DsError("invalid-payload", "only commits carry a GroupInfo or a Welcome");
    const joining = content.sender.senderType === SenderType.newMemberCommit;
    if (content.sender.senderType !== SenderType.member && !joining) {
      throw new DsError("invalid-message", "only members and external joiners send handshake messages; the DS is the only external sender");
    }
    let rt = first;
    this.checkGroupId(rt, content.groupId);
    for (let attempt = 1; ; attempt++) {
      if (content.sender.senderType === SenderType.member) {
        const leafIndex = content.sender.leafIndex;
        const leaf = rt.view.members().find((m) => m.leafIndex === leafIndex);
        if (!leaf || leaf.identity !== member) {
          throw new DsError("not-a-member", this.isMember(rt, member) ? "the sender leaf is not this device's" : "the device is not a member of the group");
        }
      }
      const current = rt.record.epoch;
      if (content.epoch !== BigInt(current)) throw await this.wrongEpoch(rt, member, joining, request.since);
      const { next, added } = await this.vet(rt, request.message, request.groupInfo, member);
      if (request.welcome && added.length === 0) {
        rt.stale = true;
        throw new DsError("invalid-payload", "a Welcome goes with a commit that adds members");
      }
      let result;
      try {
        result = await this.append(rt, { kind, epoch: current, sender: member, message: request.message }, { next }, received);
      } catch (e) {
        // Another node appended after this view was built: check the message again against the log as it is now.
        if (e instanceof StoreConflict && attempt < 3) {
          rt = await this.runtime(rt.record.groupId);
          continue;
        }
        if (e instanceof StoreConflict) throw await this.wrongEpoch(await this.runtime(rt.record.groupId), member, joining, request.since);
        throw e;
      }
      this.forgetDeparture(rt, member);
      if (request.welcome) {
        // Live delivery only: a device that is offline joins by external commit instead.
        const welcome = { groupId: rt.record.groupId, seq: result.seq, welcome: request.welcome };
        for (const m of new Set(added)) this.o.io.to(memberRoom(m)).emit("group:welcome", welcome);
      }
      // Leavers still in the tree need a Remove in the new epoch; queued, so the committer's answer does not wait.
      if (kind === "commit") this.afterCommit(rt.record.groupId);
      return result;
    }
  }

  /**
   * Runs the message through the group's view (which then already follows it) and returns, for a commit,
   * the state it moves the group to. `member` undefined: the DS's own proposal. A refusal after the view
   * moved discards the view, so the next operation rebuilds it from the store.
   */
  private async vet(
    rt: GroupRuntime,
    bytes: Uint8Array,
    groupInfo: Uint8Array | undefined,
    member: string | undefined,
  ): Promise<{ next: NextEpoch | undefined; added: string[] }> {
    try {
      const observed = await rt.view.process(bytes, groupInfo);
      if (member !== undefined && observed.senderIdentity !== member) throw new DsError("wrong-identity", "the sending leaf's credential does not name this device");
      if (observed.kind !== "commit") return { next: undefined, added: [] };
      const added = observed.added.flatMap((m) => rt.view.members().find((x) => x.leafIndex === m.leafIndex)?.identity ?? []);
      return { next: { groupInfo: rt.view.groupInfo(), tree: rt.view.ratchetTree() }, added };
    } catch (e) {
      if (rt.view.epoch !== rt.record.epoch || e instanceof DsError) rt.stale = true;
      return vettingError(e);
    }
  }

  private async wrongEpoch(rt: GroupRuntime, member: string, joining: boolean, since: number | undefined): Promise<DsError> {
    const current = rt.record.epoch;
    if (joining) {
      // A joiner cannot process commits of a group it is not in: it needs the current GroupInfo instead.
      return new DsError("wrong-epoch", `the group is at epoch ${current}`, { epoch: current, missed: [], group: snapshot(rt.record) });
    }
    const after = since ?? (await this.o.store.acked(rt.record.groupId, member));
    const missed = await this.o.store.readLog(rt.record.groupId, after, this.o.maxMissed);
    const more = missed.length > 0 && missed[missed.length - 1]!.seq < rt.record.seq;
    return new DsError("wrong-epoch", `the group is at epoch ${current}`, { epoch: current, missed: missed.map((e) => wireEntry(rt.record.groupId, e)), more });
  }

  /**
   * Stores and fans out one entry. A handshake is stored only if the group is still where the view vetted
   * it (same epoch and head); otherwise another node moved the group: the view is marked stale and
   * StoreConflict thrown, for the caller to vet again. Application messages need no such condition.
   */
  private async append(
    rt: GroupRuntime,
    entry: { kind: LogKind; epoch: number; sender: string; message: Uint8Array },
    handshake: { next: NextEpoch | undefined } | undefined,
    received: number,
  ): Promise<{ seq: number; epoch: number }> {
    const at = Date.now();
    const expect = handshake && { epoch: rt.record.epoch, seq: rt.record.seq };
    let r;
    try {
      r = await this.o.store.append(rt.record.groupId, { ...entry, at }, expect, handshake?.next);
    } catch (e) {
      rt.stale = true;
      throw e;
    }
    if (!r.ok) {
      rt.stale = true;
      if (r.reason === "closed") throw new DsError("group-closed", "the call has ended");
      if (r.reason === "unknown-group") throw new DsError("unknown-group", "no such group");
      throw new StoreConflict();
    }
    const seq = r.seq;
    const next = handshake?.next;
    if (next) {
      rt.record = { ...rt.record, seq, epoch: rt.record.epoch + 1, epochSeq: seq, groupInfo: next.groupInfo, tree: next.tree };
      rt.proposedRemovals = new Set();
      this.o.metrics.commitsAccepted.inc();
    } else {
      rt.record = { ...rt.record, seq };
    }
    this.o.metrics.messages.inc({ kind: entry.kind });
    this.o.io.to(rt.room).emit("group:msg", wireEntry(rt.record.groupId, { ...entry, seq, at }));
    this.o.metrics.fanoutSeconds.observe((performance.now() - received) / 1000);
    return { seq, epoch: rt.record.epoch };
  }

  /**
   * Not queued behind the group's commits: the store only ever raises a member's position, so acks need no
   * order among themselves or with appends, and in a large call they would otherwise delay every commit.
   */
  async ack(principal: Principal, groupId: string, seq: number): Promise<void> {
    const head = await this.o.store.groupHead(groupId);
    if (!head) throw new DsError("unknown-group", "no such group");
    if (head.closed) throw new DsError("group-closed", "the call has ended");
    const room = this.runtimes.get(groupId)?.record.room ?? (await this.o.store.getGroup(groupId))?.room;
    if (room === undefined) throw new DsError("unknown-group", "no such group");
    this.authorize(principal, room);
    if (seq > head.seq) throw new DsError("invalid-payload", "ack beyond the end of the log");
    await this.o.store.ack(groupId, memberId(principal), seq);
  }

  /** A member could not process a sequenced commit: it rejoins on its own; the DS only counts and logs it. */
  async report(principal: Principal, groupId: string, seq: number, reason: string): Promise<void> {
    const group = await this.o.store.getGroup(groupId);
    if (!group) throw new DsError("unknown-group", "no such group");
    this.authorize(principal, group.room);
    this.o.metrics.memberReports.inc();
    this.o.log(`member ${memberId(principal)} could not process seq ${seq} of group ${groupId.slice(0, 16)}: ${reason.slice(0, 200).replace(/\p{Cc}/gu, " ")}`);
  }

  /** An explicit leave: the DS proposes the removal at once. */
  leave(principal: Principal, socket: Socket, groupId: string): Promise<void> {
    return this.exclusive(groupId, async () => {
      const rt = await this.runtime(groupId);
      this.authorize(principal, rt.record.room);
      const member = memberId(principal);
      this.removeSubscriber(rt, member, socket);
      await socket.leave(rt.room);
      (socket as TrackedSocket)[SOCKET_GROUPS]?.delete(groupId);
      await this.depart(rt, member, "leave");
    });
  }

  /** Starts the grace period of every group the socket was subscribed to. */
  disconnected(principal: Principal, socket: Socket): void {
    const groups = (socket as TrackedSocket)[SOCKET_GROUPS];
    if (!groups || this.closed) return;
    const member = memberId(principal);
    for (const groupId of groups) {
      void this.exclusive(groupId, async () => {
        const rt = await this.runtime(groupId).catch(() => undefined);
        if (!rt) return;
        this.removeSubscriber(rt, member, socket);
        if (!rt.subscribers.has(member)) this.startGrace(rt, member);
      }).catch((e) => this.o.log(`disconnect handling failed for group ${groupId.slice(0, 16)}: ${String(e)}`));
    }
  }

  private removeSubscriber(rt: GroupRuntime, member: string, socket: Socket): void {
    const sockets = rt.subscribers.get(member);
    sockets?.delete(socket.id);
    if (sockets?.size === 0) rt.subscribers.delete(member);
  }

  private startGrace(rt: GroupRuntime, member: string): void {
    if (rt.graceTimers.has(member) || this.closed) return;
    const groupId = rt.record.groupId;
    const timer = setTimeout(() => {
      rt.graceTimers.delete(member);
      void this.exclusive(groupId, async () => {
        const current = await this.runtime(groupId).catch(() => undefined);
        if (!current || current.subscribers.has(member)) return;
        let present: boolean;
        try {
          present = (await this.presentMembers(current)).has(member);
        } catch {
          // A node did not answer (it may be dying): decide after another grace.
          this.startGrace(current, member);
          return;
        }
        if (!present) await this.depart(current, member, "disconnect");
      }).catch((e) => this.o.log(`grace expiry failed for group ${groupId.slice(0, 16)}: ${String(e)}`));
    }, this.o.leaveGraceMs);
    timer.unref();
    rt.graceTimers.set(member, timer);
  }

  /** Members with a socket in the group's fan-out room on any node (the adapter asks the other nodes). */
  private async presentMembers(rt: GroupRuntime): Promise<Set<string>> {
    const present = new Set(rt.subscribers.keys());
    for (const s of await this.o.io.in(rt.room).fetchSockets()) {
      const principal = s.data.principal as Principal | undefined;
      if (principal) present.add(memberId(principal));
    }
    return present;
  }

  /**
   * Members listening nowhere get the grace period, as if their connection had just dropped: anyone after
   * a restart, a member whose node died (its sockets vanish without a disconnect event anywhere), a joiner
   * that committed and never subscribed. Runs at startup and then every grace period.
   */
  private async sweep(): Promise<void> {
    for (const rt of [...this.runtimes.values()]) {
      const groupId = rt.record.groupId;
      // Asked outside the group's queue: a slow node must not hold up the call; expiry checks presence again.
      const present = await this.presentMembers(rt).catch(() => undefined);
      if (!present) continue;
      await this.exclusive(groupId, async () => {
        const current = await this.runtime(groupId);
        for (const m of current.view.members()) if (m.identity && !present.has(m.identity) && !current.subscribers.has(m.identity)) this.startGrace(current, m.identity);
      }).catch((e) => {
        if (!(e instanceof DsError)) this.o.log(`presence sweep failed for group ${groupId.slice(0, 16)}: ${String(e)}`);
      });
    }
  }

  private cancelGrace(rt: GroupRuntime, member: string): void {
    const t = rt.graceTimers.get(member);
    if (t) clearTimeout(t);
    rt.graceTimers.delete(member);
  }

  private forgetDeparture(rt: GroupRuntime, member: string): void {
    for (const [key, d] of rt.departed) if (d.member === member) rt.departed.delete(key);
  }

  private afterCommit(groupId: string): void {
    void this.exclusive(groupId, () => this.proposeDepartures(groupId)).catch((e) => {
      if (!(e instanceof DsError)) this.o.log(`proposing removals failed for group ${groupId.slice(0, 16)}: ${String(e)}`);
    });
  }

  private async depart(rt: GroupRuntime, member: string, cause: Departure["cause"]): Promise<void> {
    for (const m of rt.view.members()) if (m.identity === member) rt.departed.set(toHex(m.signatureKey), { member, cause });
    this.o.onDeparted?.(rt.record.room, member);
    await this.proposeDepartures(rt.record.groupId);
  }

  /** proposeDeparturesOf against the log as it stands, again if another node appended meanwhile. */
  private async proposeDepartures(groupId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const rt = await this.runtime(groupId);
      if (rt.departed.size === 0) return;
      try {
        return await this.proposeDeparturesOf(rt);
      } catch (e) {
        if (!(e instanceof StoreConflict) || attempt >= 3) throw e;
      }
    }
  }

  /**
   * Proposes the removal of every departed leaf still in the tree and not yet proposed this epoch, and
   * closes the group when nobody else is left to commit.
   */
  private async proposeDeparturesOf(rt: GroupRuntime): Promise<void> {
    const members = rt.view.members();
    const present = new Set(members.map((m) => toHex(m.signatureKey)));
    for (const key of rt.departed.keys()) if (!present.has(key)) rt.departed.delete(key);
    if (members.every((m) => rt.departed.has(toHex(m.signatureKey)))) {
      await this.closeGroup(rt);
      return;
    }
    const identity = await this.o.senders.forSuite(rt.view.suite);
    for (const m of members) {
      const departure = rt.departed.get(toHex(m.signatureKey));
      if (!departure || rt.proposedRemovals.has(m.leafIndex)) continue;
      const message = await signRemoveProposal(identity, rt.view.groupId, BigInt(rt.view.epoch), rt.view.externalSenderIndex, m.leafIndex);
      await this.vet(rt, message, undefined, undefined);
      await this.append(rt, { kind: "proposal", epoch: rt.record.epoch, sender: "ds", message }, { next: undefined }, performance.now());
      rt.proposedRemovals.add(m.leafIndex);
      this.o.metrics.externalProposals.inc({ cause: departure.cause });
      this.o.log(`proposed removal of ${departure.member} (leaf ${m.leafIndex}, ${departure.cause}) from group ${rt.record.groupId.slice(0, 16)}`);
    }
  }

  private async closeGroup(rt: GroupRuntime): Promise<void> {
    await this.o.store.closeGroup(rt.record.groupId);
    this.o.io.to(rt.room).emit("group:closed", { groupId: rt.record.groupId });
    this.o.io.in(rt.room).socketsLeave(rt.room);
    this.drop(rt);
    this.o.log(`group ${rt.record.groupId.slice(0, 16)} closed: every member left`);
  }

  private drop(rt: GroupRuntime): void {
    for (const t of rt.graceTimers.values()) clearTimeout(t);
    this.runtimes.delete(rt.record.groupId);
  }

  /**
   * Loads every open group and sweeps presence: after a restart nobody is connected here, so members present
   * on no node get the grace to come back. The sweep then repeats every grace period.
   */
  async startup(): Promise<void> {
    for (const record of await this.o.store.openGroups()) {
      await this.exclusive(record.groupId, () => this.runtime(record.groupId)).catch((e) => this.o.log(`could not restore group ${record.groupId.slice(0, 16)}: ${String(e)}`));
    }
    await this.sweep();
    this.sweeper = setInterval(() => void this.sweep(), Math.max(this.o.leaveGraceMs, 1000));
    this.sweeper.unref();
  }

  get openGroupCount(): number {
    return this.runtimes.size;
  }

  /** Paced log replays running on this node. */
  get replayCount(): number {
    let n = 0;
    for (const c of this.pacedReplays.values()) n += c;
    return n;
  }

  /** Stops timers and waits for queued operations. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const rt of this.runtimes.values()) for (const t of rt.graceTimers.values()) clearTimeout(t);
    await Promise.all([...this.queues.values()]);
  }
}

/** The store refused an append because the group moved on since the view was built (another node). */
class StoreConflict extends Error {
  override readonly name = "StoreConflict";
}

/** The Socket.IO room of every connection of one device ("user/device"). */
export function memberRoom(member: string): string {
  return `m:${member}`;
}

/** Nobody receives this answer (the connection is gone); it ends the replay and frees its slot. */
function replayAborted(): DsError {
  return new DsError("rate-limited", "the connection closed during the replay");
}

function suiteId(n: number): CipherSuiteId {
  if (!isCipherSuiteId(n)) throw new DsError("unsupported-suite", `cipher suite ${n}`);
  return n;
}

