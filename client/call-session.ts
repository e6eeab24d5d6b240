/**
 * One participant in one call: the MLS side of issue 5, without media (Node and browsers alike).
 *
 *   const connection = await DsConnection.connect({ url, token });
 *   const session = new CallSession({ connection, room: "standup", onEpochKeys: (k) => worker.setEpoch(k) });
 *   session.on("epoch", (e) => showSafetyCode(e.safetyCode));
 *   await session.join();          // creates the room's group, or joins it by external commit
 *   await session.chat("hello");   // an MLS application message (PrivateMessage)
 *   await session.leave();         // the DS proposes our removal; the others commit it
 *
 * Everything that touches the MLS group runs in one serial queue: the group log's entries in seq order,
 * our commits, our chat messages, timer expiries. So the group is only ever read or changed between
 * whole steps. Our own commits are not awaited in that queue: the log decides them. When the DS
 * sequences our commit the log echoes it and processing merges it; when another commit won the epoch,
 * processing that one drops ours. Every epoch the keyring derives the SFrame base key and safety code;
 * the media layer's hook gets them before anything else sees the epoch.
 *
 * Recovery: a sequenced commit this member cannot process (its state diverged) is reported to the DS
 * (`group:report`) and the member rejoins by external commit, removing its old leaf (a resync). The
 * `error` event says `recovering: true`, and the next `epoch` event has cause "rejoined". A member the
 * call removed without its asking (its connection was gone longer than the DS's grace) rejoins likewise.
 */
import { utf8 } from "../keying/codec/bytes.js";
import { decode } from "../keying/codec/reader.js";
import { CallKeyring, callMemberOf, membershipChangeOf, type CallEpoch, type CallMember } from "../keying/call/keyring.js";
import { DEFAULT_COMMIT_POLICY, decideCommit, type CommitPolicyOptions } from "../keying/call/commit-policy.js";
import type { CipherSuiteId, CryptoProvider } from "../keying/crypto/index.js";
import { MlsValidationError } from "../keying/mls/errors.js";
import { externalSendersExtension } from "../keying/mls/external.js";
import { MlsGroup, type ProcessedMessage, type SigningIdentity } from "../keying/mls/group.js";
import { ProposalType, decodeExternalSender } from "../keying/mls/messages.js";
import type { SFrameSuiteId } from "../keying/sframe/index.js";
import type { DsConnection, GroupSubscriber } from "./ds-connection.js";
import { Emitter } from "./emitter.js";
import { DsRequestError, DsUnavailableError, bytesOf, memberIdentity, numberField, parseSnapshot, type GroupSnapshot, type WireEntry } from "./protocol.js";

/** What the media layer needs at every epoch (the frame-transform worker's EpochUpdate). */
export interface EpochKeyUpdate {
  readonly epoch: bigint;
  /** SFrame base_key of the epoch (a copy: the receiver may keep or wipe it). Secret. */
  readonly baseKey: Uint8Array;
  readonly myLeafIndex: number;
}

export type EpochKeyHandler = (update: EpochKeyUpdate) => void | Promise<void>;

export type EpochCause = "created" | "joined" | "commit" | "rejoined";

export interface EpochEvent extends CallEpoch {
  readonly cause: EpochCause;
}

export interface MemberEvent {
  readonly member: CallMember;
  readonly epoch: bigint;
  /** The member is this session. */
  readonly self: boolean;
}

export interface MessageEvent {
  readonly seq: number;
  readonly epoch: bigint;
  /** The sender as its MLS credential names it (undefined if its epoch's roster is no longer held). */
  readonly sender: CallMember | undefined;
  readonly data: Uint8Array;
  /** `data` as UTF-8 text (chat). */
  readonly text: string;
}

export type CallErrorCode =
  | "commit-rejected" // a sequenced commit failed validation here: the session rejoins
  | "proposal-rejected" // a sequenced proposal failed validation here
  | "message-undecryptable" // an application message could not be opened
  | "commit-refused" // the DS refused our commit for a reason other than losing the epoch
  | "rejoin-failed" // recovery failed: the session is closed
  | "connection"; // the DS connection reported a problem

export interface CallErrorEvent {
  readonly code: CallErrorCode;
  readonly error: unknown;
  /** The log position concerned, when there is one. */
  readonly seq?: number;
  /** The session is recovering on its own (by rejoining). */
  readonly recovering: boolean;
}

export type CloseReason = "left" | "removed" | "group-closed" | "connection-closed" | "failed";

export interface CallSessionEvents {
  epoch: EpochEvent;
  "member-joined": MemberEvent;
  "member-left": MemberEvent;
  message: MessageEvent;
  error: CallErrorEvent;
  closed: { readonly reason: CloseReason };
}

export interface CallSessionOptions {
  readonly connection: DsConnection;
  readonly room: string;
  /** This device's MLS identity; default: a fresh one named by the connection token ("user/device"). */
  readonly identity?: SigningIdentity;
  /** MLS cipher suite when this session creates the group (default 1). Joiners take the group's. */
  readonly cipherSuite?: CipherSuiteId;
  /** SFrame suite of the call's media keys (default 4). */
  readonly sframeSuite?: SFrameSuiteId;
  readonly provider?: CryptoProvider;
  readonly commitPolicy?: Partial<CommitPolicyOptions>;
  /** Rejoin when a commit removed us though we did not leave (default true). */
  readonly rejoinWhenRemoved?: boolean;
  /** External-commit attempts before join() gives up (each lost race is one). Default 100. */
  readonly maxJoinAttempts?: number;
  /** Most chat messages waiting for pending proposals to be committed (default 256). */
  readonly maxOutbox?: number;
  /** Awaited at every epoch before the `epoch` event (see setEpochKeyHandler). */
  readonly onEpochKeys?: EpochKeyHandler;
  /** Uniform [0, 1) source for the commit back-off jitter (default Math.random). */
  readonly random?: () => number;
}

type State = "idle" | "joining" | "joined" | "closed";

interface InFlightCommit {
  readonly epoch: bigint;
  /** The request ended without an answer: the log (or the next resubscription) decides. */
  unanswered: boolean;
}

interface Backoff {
  readonly epoch: bigint;
  readonly timer: ReturnType<typeof setTimeout>;
  elapsed: boolean;
}

interface OutgoingMessage {
  readonly data: Uint8Array;
  readonly resolve: (r: { seq: number }) => void;
  readonly reject: (e: unknown) => void;
}

const textDecoder = new TextDecoder("utf-8", { fatal: false });

export class CallSession extends Emitter<CallSessionEvents> {
  readonly room: string;
  readonly connection: DsConnection;
  private readonly options: CallSessionOptions;
  private readonly policy: CommitPolicyOptions;
  private readonly keyring: CallKeyring;
  private readonly identities = new Map<number, Promise<SigningIdentity>>();
  private epochKeyHandler: EpochKeyHandler | undefined;

  private state: State = "idle";
  private group: MlsGroup | undefined;
  private subscribedGroup: string | undefined;
  /** Seq of the last log entry processed (or skipped as older than our membership). */
  private lastSeq = 0;
  private inFlight: InFlightCommit | undefined;
  private backoff: Backoff | undefined;
  private leaving = false;
  private readonly outbox: OutgoingMessage[] = [];
  private queuedEntries = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly offConnection: () => void;

  constructor(options: CallSessionOptions) {
    super();
    this.options = options;
    this.room = options.room;
    this.connection = options.connection;
    this.policy = { ...DEFAULT_COMMIT_POLICY, ...options.commitPolicy };
    this.keyring = new CallKeyring(options.sframeSuite ? { sframeSuite: options.sframeSuite } : {});
    this.epochKeyHandler = options.onEpochKeys;
    const offClosed = this.connection.on("closed", () => this.close("connection-closed"));
    const offError = this.connection.on("error", ({ error }) => this.emit("error", { code: "connection", error, recovering: true }));
    this.offConnection = () => {
      offClosed();
      offError();
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading

  /** The current epoch's keys, safety code and roster (undefined before join). */
  get currentEpoch(): CallEpoch | undefined {
    return this.keyring.current;
  }

  get groupId(): string | undefined {
    return this.subscribedGroup;
  }

  get joined(): boolean {
    return this.state === "joined";
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /** This member's leaf, or undefined when not in a group. */
  get leafIndex(): number | undefined {
    return this.state === "joined" ? this.group?.leafIndex : undefined;
  }

  /**
   * The media layer's hook: awaited with every new epoch's key before the `epoch` event, so frames are
   * encrypted under an epoch only once the media side holds it. Set after join, it is called at once
   * with the current epoch, so no epoch is missed either way.
   */
  async setEpochKeyHandler(handler: EpochKeyHandler | undefined): Promise<void> {
    this.epochKeyHandler = handler;
    const current = this.keyring.current;
    if (handler && current) await handler(keyUpdateOf(current));
  }

  // -------------------------------------------------------------------------------------------------------
  // Joining and leaving

  /** Joins the room's call (creating it when there is none). Resolves with the first epoch's keys. */
  async join(): Promise<CallEpoch> {
    if (this.state !== "idle") throw new Error("join() can be called once");
    this.state = "joining";
    try {
      await this.run(() => this.joinRoom("joined", false));
    } catch (e) {
      this.close("failed");
      throw e;
    }
    if ((this.state as State) !== "joined") throw new Error("the session closed while joining");
    return this.keyring.current!;
  }

  /** Leaves the call: the DS proposes our removal and the remaining members commit it. */
  async leave(): Promise<void> {
    if (this.state === "closed" || this.leaving) return;
    this.leaving = true;
    this.cancelBackoff();
    // Let a join in progress finish first, so the DS knows what we are leaving.
    await this.run(async () => undefined);
    const groupId = this.subscribedGroup;
    try {
      if (groupId && this.state === "joined") await this.connection.request("group:leave", { groupId });
    } finally {
      this.close("left");
    }
  }

  /** Sends an application message to the call (encrypted under the current epoch). */
  send(data: Uint8Array): Promise<{ seq: number }> {
    if (this.state === "closed" || this.leaving) return Promise.reject(new Error("the session is closed"));
    if (this.outbox.length >= (this.options.maxOutbox ?? 256)) return Promise.reject(new Error("too many messages waiting to be sent"));
    return new Promise((resolve, reject) => {
      this.outbox.push({ data: data.slice(), resolve, reject });
      void this.run(() => this.flushOutbox());
    });
  }

  chat(text: string): Promise<{ seq: number }> {
    return this.send(utf8(text));
  }

  // -------------------------------------------------------------------------------------------------------
  // The serial queue

  private run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** The identity for a group of this suite (one signature key per suite; a given identity is used as is). */
  private identityFor(suite: number): Promise<SigningIdentity> {
    if (this.options.identity) return Promise.resolve(this.options.identity);
    let id = this.identities.get(suite);
    if (!id) {
      const name = memberIdentity(this.connection.principal);
      id = MlsGroup.generateIdentity(utf8(name), { cipherSuite: suite as CipherSuiteId, provider: this.options.provider });
      this.identities.set(suite, id);
    }
    return id;
  }

  private async roomSnapshot(): Promise<GroupSnapshot | undefined> {
    const reply = await this.connection.request("room:join", { room: this.room });
    return reply.group === null || reply.group === undefined ? undefined : parseSnapshot(reply.group);
  }

  /**
   * Joins the room's current group by external commit (a resync when we may still have a leaf in it), or
   * creates the group when the room has none. A lost race (another commit took the epoch, another
   * participant created the group first, the group closed meanwhile) is retried from a fresh snapshot.
   */
  private async joinRoom(cause: "joined" | "rejoined", mayHaveLeaf: boolean): Promise<void> {
    let snapshot = await this.roomSnapshot();
    let resync = mayHaveLeaf;
    const attempts = this.options.maxJoinAttempts ?? 100;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (!snapshot) {
        const created = await this.createGroup(cause);
        if (created === "created") return;
        snapshot = created;
        continue;
      }
      await this.subscribeTo(snapshot.groupId, snapshot.seq);
      const joined = await this.externalCommit(snapshot, resync);
      try {
        const reply = await this.connection.request("group:send", { groupId: snapshot.groupId, message: joined.commit, groupInfo: joined.groupInfo });
        await this.adopt(joined.group, numberField(reply, "seq", "group:send"), cause);
        return;
      } catch (e) {
        if (e instanceof DsRequestError && e.code === "wrong-epoch") {
          snapshot = e.extra.group ? parseSnapshot(e.extra.group) : await this.roomSnapshot();
          continue;
        }
        if (e instanceof DsRequestError && e.code === "group-closed") {
          snapshot = await this.roomSnapshot();
          continue;
        }
        if (!(e instanceof DsUnavailableError)) throw e;
        // No answer: the commit may have been sequenced, leaving a leaf of ours behind; the next attempt removes it.
        resync = true;
        snapshot = await this.roomSnapshot();
      }
    }
    throw new Error(`could not join room ${this.room} after ${attempts} attempts`);
  }

  /** An external commit into the snapshot's epoch; with `resync`, removing our earlier leaf if the tree has one. */
  private async externalCommit(snapshot: GroupSnapshot, resync: boolean): ReturnType<typeof MlsGroup.joinByExternalCommit> {
    const identity = await this.identityFor(snapshot.suite);
    const join = (r: boolean) => MlsGroup.joinByExternalCommit({ groupInfo: snapshot.groupInfo, ratchetTree: snapshot.tree, identity, resync: r, provider: this.options.provider });
    if (!resync) return join(false);
    try {
      return await join(true);
    } catch (e) {
      if (e instanceof MlsValidationError && e.code === "resync-leaf-not-found") return join(false);
      throw e;
    }
  }

  /**
   * Creates the room's group with the DS as external sender. When another participant created it first,
   * returns that group's snapshot instead (undefined if it closed again meanwhile).
   */
  private async createGroup(cause: "joined" | "rejoined"): Promise<"created" | GroupSnapshot | undefined> {
    const suite = this.options.cipherSuite ?? 1;
    const identity = await this.identityFor(suite);
    const reply = await this.connection.request("ds:external-sender", { suite, room: this.room });
    const sender = decode(decodeExternalSender, bytesOf(reply.externalSender, "ds:external-sender"));
    const group = await MlsGroup.create({ identity, cipherSuite: suite, extensions: [externalSendersExtension([sender])], provider: this.options.provider });
    let snapshot: GroupSnapshot;
    try {
      snapshot = parseSnapshot((await this.connection.request("group:create", { room: this.room, groupInfo: await group.groupInfo(), tree: group.ratchetTree() })).group);
    } catch (e) {
      if (!(e instanceof DsRequestError) || e.code !== "group-exists") throw e;
      return e.extra.group ? parseSnapshot(e.extra.group) : this.roomSnapshot();
    }
    await this.subscribeTo(snapshot.groupId, snapshot.seq);
    await this.adopt(group, snapshot.seq, cause === "joined" ? "created" : cause);
    return "created";
  }

  private async subscribeTo(groupId: string, after: number): Promise<void> {
    if (this.subscribedGroup === groupId) return;
    if (this.subscribedGroup) this.connection.unsubscribe(this.subscribedGroup);
    this.subscribedGroup = undefined;
    const subscriber: GroupSubscriber = {
      entry: (e) => this.onEntry(e),
      closed: () => void this.run(async () => this.close("group-closed")),
      resubscribed: () => void this.run(() => this.afterResubscribe()),
    };
    // Entries delivered before this resolves wait in the queue behind the current step, which adopts the group.
    await this.connection.subscribe(groupId, after, subscriber);
    this.subscribedGroup = groupId;
  }

  private async adopt(group: MlsGroup, seq: number, cause: EpochCause): Promise<void> {
    this.group = group;
    this.lastSeq = seq;
    this.inFlight = undefined;
    this.cancelBackoff();
    if (this.state === "closed") return;
    this.state = "joined";
    await this.publishEpoch(cause);
    await this.flushOutbox();
  }

  private async publishEpoch(cause: EpochCause): Promise<CallEpoch | undefined> {
    const keys = await this.keyring.advance(this.group!);
    if (!keys) return undefined;
    if (this.epochKeyHandler) await this.epochKeyHandler(keyUpdateOf(keys));
    this.emit("epoch", { ...keys, cause });
    return keys;
  }

  private close(reason: CloseReason): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.cancelBackoff();
    if (this.subscribedGroup) this.connection.unsubscribe(this.subscribedGroup);
    this.offConnection();
    for (const m of this.outbox.splice(0)) m.reject(new Error(`the session closed (${reason})`));
    this.emit("closed", { reason });
  }

  // -------------------------------------------------------------------------------------------------------
  // The log

  private onEntry(entry: WireEntry): void {
    this.queuedEntries++;
    void this.run(async () => {
      this.queuedEntries--;
      await this.processEntry(entry);
      // Decide only once the burst that arrived together is processed, so its proposals share one commit.
      if (this.queuedEntries === 0) await this.considerCommit();
    });
  }

  private async processEntry(entry: WireEntry): Promise<void> {
    const group = this.group;
    if (this.state !== "joined" || !group || entry.groupId !== this.subscribedGroup || entry.seq <= this.lastSeq) return;
    this.lastSeq = entry.seq;
    let result: ProcessedMessage;
    try {
      result = await group.processMessage(entry.message);
    } catch (e) {
      await this.processingFailed(entry, e);
      return;
    } finally {
      this.connection.ack(entry.groupId, entry.seq);
    }
    switch (result.kind) {
      case "application":
        this.emit("message", {
          seq: entry.seq,
          epoch: result.epoch,
          sender: this.keyring.memberAt(result.epoch, result.sender),
          data: result.data,
          text: textDecoder.decode(result.data),
        });
        return;
      case "commit":
        await this.committed(result);
        return;
      default:
        return;
    }
  }

  private async committed(result: Extract<ProcessedMessage, { kind: "commit" }>): Promise<void> {
    const group = this.group!;
    this.inFlight = undefined;
    this.cancelBackoff();
    if (result.removedSelf) {
      const me = group.member(group.leafIndex);
      if (me) this.emit("member-left", { member: callMemberOf(me), epoch: result.epoch, self: true });
      if (this.leaving || this.options.rejoinWhenRemoved === false) return this.close("removed");
      return this.rejoin();
    }
    await this.publishEpoch("commit");
    const { joined, left } = membershipChangeOf(result, group);
    for (const member of left) this.emit("member-left", { member, epoch: result.epoch, self: false });
    for (const member of joined) this.emit("member-joined", { member, epoch: result.epoch, self: member.leafIndex === group.leafIndex });
    await this.flushOutbox();
  }

  private async processingFailed(entry: WireEntry, error: unknown): Promise<void> {
    if (entry.kind === "application") {
      this.emit("error", { code: "message-undecryptable", error, seq: entry.seq, recovering: false });
      return;
    }
    if (entry.kind === "proposal") {
      this.emit("error", { code: "proposal-rejected", error, seq: entry.seq, recovering: false });
      return;
    }
    // Our state and the group's diverged: tell the DS, then rejoin by external commit.
    const reason = error instanceof Error ? error.message : String(error);
    this.connection.request("group:report", { groupId: entry.groupId, seq: entry.seq, reason: reason.slice(0, 500) }).catch(() => undefined);
    this.emit("error", { code: "commit-rejected", error, seq: entry.seq, recovering: true });
    await this.rejoin();
  }

  private async rejoin(): Promise<void> {
    this.inFlight = undefined;
    this.cancelBackoff();
    try {
      await this.joinRoom("rejoined", true);
    } catch (e) {
      this.emit("error", { code: "rejoin-failed", error: e, recovering: false });
      this.close("failed");
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Committing the DS's proposals

  private async considerCommit(): Promise<void> {
    const group = this.group;
    if (this.state !== "joined" || this.leaving || !group?.active) return;
    const proposals = group.pendingProposals();
    if (proposals.length === 0) return this.cancelBackoff();
    const epoch = group.epoch;
    const decision = decideCommit(
      {
        myLeafIndex: group.leafIndex,
        members: group.members().map((m) => m.leafIndex),
        proposals: proposals.map((p) => (p.proposal.proposalType === ProposalType.remove ? { removes: p.proposal.remove.removed } : {})),
        commitInFlight: this.inFlight?.epoch === epoch,
        backoffElapsed: this.backoff?.epoch === epoch && this.backoff.elapsed,
      },
      (this.options.random ?? Math.random)(),
      this.policy,
    );
    if (decision.action === "commit-now") return this.sendCommit(group);
    if (decision.action === "wait" && this.backoff?.epoch !== epoch) {
      this.cancelBackoff();
      const backoff: Backoff = {
        epoch,
        elapsed: false,
        timer: setTimeout(() => {
          backoff.elapsed = true;
          void this.run(() => this.considerCommit());
        }, decision.delayMs),
      };
      this.backoff = backoff;
    }
  }

  private async sendCommit(group: MlsGroup): Promise<void> {
    const epoch = group.epoch;
    const { commit, groupInfo } = await group.commit({});
    const inFlight: InFlightCommit = { epoch, unanswered: false };
    this.inFlight = inFlight;
    const groupId = this.subscribedGroup!;
    this.connection.request("group:send", { groupId, message: commit, groupInfo, since: this.lastSeq }).then(
      () => undefined, // sequenced: the log brings it back and processing merges it
      (e: unknown) => void this.run(() => this.commitRefused(group, inFlight, e)),
    );
  }

  private async commitRefused(group: MlsGroup, inFlight: InFlightCommit, error: unknown): Promise<void> {
    // Settled already: the log moved the epoch on (our commit or another one).
    if (this.inFlight !== inFlight || this.group !== group || group.epoch !== inFlight.epoch || this.state !== "joined") return;
    if (error instanceof DsUnavailableError) {
      inFlight.unanswered = true;
      return;
    }
    this.inFlight = undefined;
    group.clearPendingCommit();
    if (!(error instanceof DsRequestError)) return;
    switch (error.code) {
      case "wrong-epoch":
        return; // the winning commit is on its way through the log
      case "group-closed":
        return this.close("group-closed");
      case "rate-limited":
        return this.considerCommit();
      default:
        // The DS judged our commit invalid against its view of the group: our state has diverged.
        this.emit("error", { code: "commit-refused", error, recovering: true });
        return this.rejoin();
    }
  }

  /** After a reconnect every entry the DS had is processed: an unanswered commit not among them was lost. */
  private async afterResubscribe(): Promise<void> {
    const group = this.group;
    const inFlight = this.inFlight;
    if (!group || !inFlight?.unanswered || group.epoch !== inFlight.epoch) return;
    this.inFlight = undefined;
    group.clearPendingCommit();
    await this.considerCommit();
  }

  private cancelBackoff(): void {
    if (this.backoff) clearTimeout(this.backoff.timer);
    this.backoff = undefined;
  }

  // -------------------------------------------------------------------------------------------------------
  // Application messages

  /** Sends what waits in the outbox, unless proposals are pending (RFC 9420 §12.4: commit them first). */
  private async flushOutbox(): Promise<void> {
    const group = this.group;
    while (this.outbox.length > 0 && this.state === "joined" && group?.active && group.pendingProposals().length === 0) {
      const m = this.outbox.shift()!;
      try {
        const message = await group.encryptApplicationMessage(m.data);
        this.connection.request("group:send", { groupId: this.subscribedGroup!, message }).then((reply) => m.resolve({ seq: numberField(reply, "seq", "group:send") }), m.reject);
      } catch (e) {
        m.reject(e);
      }
    }
  }
}

function keyUpdateOf(keys: CallEpoch): EpochKeyUpdate {
  return { epoch: keys.epoch, baseKey: keys.baseKey.slice(), myLeafIndex: keys.myLeafIndex };
}
