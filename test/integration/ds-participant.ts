/**
 * A minimal call participant for the DS tests: real MLS (MlsGroup) over a real socket.io-client connection.
 * It joins by creating the room's group or by external commit (retrying on wrong-epoch), processes the log
 * in seq order, acks, and commits the DS's Remove proposals when it holds the lowest remaining leaf.
 * The product's participant logic lives in client/; this one exists so the DS is tested against real peers.
 */
import type { Socket } from "socket.io-client";
import { decode } from "../../keying/codec/reader.js";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { externalSendersExtension } from "../../keying/mls/external.js";
import { MlsGroup, type SigningIdentity } from "../../keying/mls/group.js";
import { SenderType, decodeExternalSender } from "../../keying/mls/messages.js";
import type { GroupSnapshot, WireEntry } from "../../sfu-signaling/ds/groups.js";
import { bytesOf, connectSocket, ok, request, type Reply } from "./ds-helpers.js";

type Snapshot = Omit<GroupSnapshot, "groupInfo" | "tree"> & { groupInfo: unknown; tree: unknown };

export class Participant {
  group: MlsGroup | undefined;
  groupId: string | undefined;
  /** Highest seq processed (or skipped as predating this member). */
  lastSeq = 0;
  readonly processed: { seq: number; kind: string }[] = [];
  /** Application messages received, decrypted. */
  readonly messages: string[] = [];
  readonly errors: unknown[] = [];
  removed = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly buffered: WireEntry[] = [];
  private waiters: (() => boolean)[] = [];

  private constructor(
    public socket: Socket,
    readonly name: string,
    readonly identity: SigningIdentity,
  ) {
    this.listen();
  }

  /** `name` is the credential identity, "user/device", which must match the token. */
  static async connect(url: string, token: string, name: string): Promise<Participant> {
    const identity = await MlsGroup.generateIdentity(utf8(name));
    return new Participant(await connectSocket(url, token), name, identity);
  }

  private listen(): void {
    this.socket.on("group:msg", (e: WireEntry) => {
      if (!this.group) this.buffered.push(e);
      else this.enqueue(e);
    });
  }

  /** Replaces the connection (after a DS restart) and resumes the log after the last processed seq. */
  async reconnect(url: string, token: string): Promise<void> {
    this.socket.disconnect();
    this.socket = await connectSocket(url, token);
    this.listen();
    if (this.groupId) ok(await request(this.socket, "group:subscribe", { groupId: this.groupId, after: this.lastSeq }));
  }

  get epoch(): bigint {
    return this.group?.epoch ?? -1n;
  }

  /** Joins the room's call: creates it when there is none, else joins by external commit. */
  async join(room: string): Promise<void> {
    let snap = ok(await request<{ group: Snapshot | null }>(this.socket, "room:join", { room })).group;
    if (!snap) {
      const sender = decode(decodeExternalSender, bytesOf(ok(await request<{ externalSender: unknown }>(this.socket, "ds:external-sender", { suite: 1 })).externalSender));
      const group = await MlsGroup.create({ identity: this.identity, extensions: [externalSendersExtension([sender])] });
      const created = await request<{ group: Snapshot }>(this.socket, "group:create", { room, groupInfo: await group.groupInfo(), tree: group.ratchetTree() });
      if (created.ok) {
        this.adoptGroup(group, created.group.groupId, 0);
        ok(await request(this.socket, "group:subscribe", { groupId: created.group.groupId, after: 0 }));
        return;
      }
      if (created.error.code !== "group-exists") throw new Error(`create refused: ${created.error.code}`);
      snap = created.error.group as Snapshot;
    }
    ok(await request(this.socket, "group:subscribe", { groupId: snap.groupId, after: snap.seq }));
    for (let attempt = 0; attempt < 50; attempt++) {
      const joined = await MlsGroup.joinByExternalCommit({ groupInfo: bytesOf(snap.groupInfo), ratchetTree: bytesOf(snap.tree), identity: this.identity });
      const reply = await request<{ seq: number }>(this.socket, "group:send", { groupId: snap.groupId, message: joined.commit, groupInfo: joined.groupInfo });
      if (reply.ok) {
        this.adoptGroup(joined.group, snap.groupId, reply.seq);
        return;
      }
      if (reply.error.code !== "wrong-epoch") throw new Error(`join refused: ${reply.error.code}: ${reply.error.message}`);
      snap = reply.error.group as Snapshot;
    }
    throw new Error("could not join after 50 attempts");
  }

  private adoptGroup(group: MlsGroup, groupId: string, joinedAt: number): void {
    this.group = group;
    this.groupId = groupId;
    this.lastSeq = joinedAt;
    for (const e of this.buffered.splice(0)) this.enqueue(e);
    this.notify();
  }

  private enqueue(e: WireEntry): void {
    this.queue = this.queue.then(() => this.process(e));
  }

  private async process(e: WireEntry): Promise<void> {
    if (e.seq <= this.lastSeq || !this.group || this.removed) return;
    if (e.seq !== this.lastSeq + 1) this.errors.push(new Error(`${this.name}: gap in the log: expected ${this.lastSeq + 1}, got ${e.seq}`));
    this.lastSeq = e.seq;
    try {
      const r = await this.group.processMessage(bytesOf(e.message));
      this.processed.push({ seq: e.seq, kind: r.kind });
      if (r.kind === "commit" && r.removedSelf) this.removed = true;
      if (r.kind === "application") this.messages.push(new TextDecoder().decode(r.data));
      if (r.kind === "proposal" && r.sender.senderType === SenderType.external) await this.commitIfLowest();
    } catch (err) {
      this.errors.push(err);
    }
    this.notify();
    if (e.seq % 5 === 0) this.socket.emit("group:ack", { groupId: this.groupId, seq: e.seq });
  }

  /** The member with the lowest leaf among those not being removed commits the DS's proposals at once. */
  private async commitIfLowest(): Promise<void> {
    const g = this.group!;
    const removing = new Set(g.pendingProposals().flatMap((p) => (p.proposal.proposalType === 3 ? [p.proposal.remove.removed] : [])));
    const lowest = g.members().find((m) => !removing.has(m.leafIndex));
    if (lowest?.leafIndex !== g.leafIndex) return;
    await this.commitNow();
  }

  /** Commits what is pending (or an empty commit); lost races are simply dropped. */
  async commitNow(): Promise<Reply<{ seq: number }>> {
    const g = this.group!;
    const { commit, groupInfo } = await g.commit({});
    const reply = await request<{ seq: number }>(this.socket, "group:send", { groupId: this.groupId, message: commit, groupInfo, since: this.lastSeq });
    if (!reply.ok) g.clearPendingCommit();
    return reply;
  }

  /** Runs `fn` in the processing queue, i.e. against the state after every entry received so far. */
  inQueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async send(text: string): Promise<Reply<{ seq: number }>> {
    return this.inQueue(async () => {
      const message = await this.group!.encryptApplicationMessage(utf8(text));
      return request<{ seq: number }>(this.socket, "group:send", { groupId: this.groupId, message });
    });
  }

  async leave(): Promise<void> {
    ok(await request(this.socket, "group:leave", { groupId: this.groupId }));
  }

  waitForEpoch(epoch: bigint, timeoutMs = 60_000): Promise<void> {
    return this.waitUntil(() => this.epoch >= epoch, `epoch ${epoch}`, timeoutMs);
  }

  /** Resolves once `done()` holds after some processed entry (or now). */
  waitUntil(done: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.name} at epoch ${this.epoch}, seq ${this.lastSeq}: still waiting for ${what}; errors: ${this.errors.map(String).join("; ")}`));
      }, timeoutMs);
      const waiter = () => {
        if (!done()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      this.waiters.push(waiter);
    });
  }

  private notify(): void {
    this.waiters = this.waiters.filter((w) => !w());
  }

  async authenticator(): Promise<string> {
    return this.inQueue(async () => toHex(this.group!.epochAuthenticator));
  }

  async sframeBaseKey(): Promise<string> {
    return this.inQueue(async () => toHex(await this.group!.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16)));
  }

  memberNames(): string[] {
    return this.group!.members().map((m) => new TextDecoder().decode(m.identity)).sort();
  }

  close(): void {
    this.socket.disconnect();
  }
}
