/**
 * One device's connection to the delivery service, in Node and browsers (socket.io-client, no node:
 * imports). It carries the auth token, turns acks into promises (DsRequestError for a refusal,
 * DsUnavailableError when no answer came), and keeps group subscriptions alive across reconnects:
 * each subscription remembers the last seq it delivered and, after a reconnect, asks the DS for
 * everything after it. Entries reach a subscriber exactly once and in seq order.
 */
import { io, type Socket } from "socket.io-client";
import { Emitter } from "./emitter.js";
import {
  DsProtocolError,
  DsRequestError,
  DsUnavailableError,
  parseEntry,
  parseReply,
  principalOfToken,
  type TokenPrincipal,
  type WireEntry,
} from "./protocol.js";

export type TokenSource = string | (() => Promise<string>);

export interface DsConnectionOptions {
  /** The DS's base URL, e.g. http://127.0.0.1:8787. */
  readonly url: string;
  /** The connection token, or a function fetching a fresh one (called at every (re)connect). */
  readonly token: TokenSource;
  /** How long a request waits for its ack (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** How long connect() keeps trying to reach the DS (default 30 s). */
  readonly connectTimeoutMs?: number;
  /** Reconnection back-off (socket.io's, with jitter): first delay and cap (defaults 300 ms, 5 s). */
  readonly reconnectionDelayMs?: number;
  readonly reconnectionDelayMaxMs?: number;
  /** Engine transports (default socket.io's: polling, upgraded to websocket). */
  readonly transports?: ("polling" | "websocket")[];
}

/** What a group subscription is told, in order. */
export interface GroupSubscriber {
  /** The next log entry (seq = last delivered + 1). */
  entry(entry: WireEntry): void;
  /** The DS closed the group (every member left) or no longer knows it. */
  closed(reason: "group-closed" | "unknown-group"): void;
  /** A reconnect's resubscription was acknowledged: every entry the DS had by then was delivered before. */
  resubscribed?(): void;
}

export interface DsConnectionEvents {
  connected: { readonly reconnect: boolean };
  disconnected: { readonly reason: string };
  /** Something went wrong outside any request: a refused reconnect, a malformed push. */
  error: { readonly error: Error };
  closed: Record<string, never>;
}

interface Subscription {
  readonly subscriber: GroupSubscriber;
  /** Highest seq delivered to the subscriber. */
  delivered: number;
  /** A (re)subscription is being requested: pushes beyond `delivered + 1` are replays still to come. */
  resyncing: boolean;
  /**
   * Highest seq pushed during a resync beyond `delivered + 1` (0: none). Nodes of a multi-node DS publish
   * after their own appends, so such a push may be one the replay does not cover: the resync that ends
   * short of it asks again.
   */
  droppedDuringResync: number;
  ackWanted: number;
  ackSent: number;
  acking: boolean;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const ACK_DELAY_MS = 100;

export class DsConnection extends Emitter<DsConnectionEvents> {
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly timeoutMs: number;
  private isClosed = false;
  private everConnected = false;

  private constructor(
    /** The underlying socket: for the media layer's own events (sfu:*) and for tests. */
    readonly socket: Socket,
    readonly principal: TokenPrincipal,
    options: DsConnectionOptions,
  ) {
    super();
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    socket.on("connect", () => this.onConnect());
    socket.on("disconnect", (reason) => this.onDisconnect(reason, options));
    socket.on("connect_error", (e) => {
      // socket.io retries transport failures itself; a refusal by the DS's auth middleware it does not.
      if (this.everConnected && !socket.active) this.emit("error", { error: e });
    });
    socket.on("group:msg", (payload: unknown) => this.onEntry(payload));
    socket.on("group:closed", (payload: unknown) => this.onGroupClosed(payload));
  }

  /** Connects and resolves once the DS accepted the token; rejects with the DS's refusal otherwise. */
  static async connect(options: DsConnectionOptions): Promise<DsConnection> {
    const firstToken = typeof options.token === "string" ? options.token : await options.token();
    const principal = principalOfToken(firstToken);
    const source = options.token;
    // The first connect uses the token already fetched; reconnects fetch a fresh one (it may have expired).
    let first: string | undefined = firstToken;
    const socket = io(options.url, {
      auth: (cb: (data: object) => void) => {
        const token = first ?? (typeof source === "string" ? source : undefined);
        first = undefined;
        if (token !== undefined || typeof source === "string") return cb({ token });
        source().then(
          (fresh) => cb({ token: fresh }),
          () => cb({}),
        );
      },
      autoConnect: false,
      forceNew: true,
      reconnectionDelay: options.reconnectionDelayMs ?? 300,
      reconnectionDelayMax: options.reconnectionDelayMaxMs ?? 5000,
      ...(options.transports ? { transports: options.transports } : {}),
    });
    const connection = new DsConnection(socket, principal, options);
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        socket.off("connect", onConnect);
        socket.off("connect_error", onError);
      };
      const fail = (e: Error) => {
        cleanup();
        socket.close();
        reject(e);
      };
      const timer = setTimeout(() => fail(new DsUnavailableError("connect", "timeout")), options.connectTimeoutMs ?? 30_000);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      const onError = (e: Error & { data?: { code?: string; message?: string } }) => {
        if (socket.active) return; // a transport error: socket.io keeps trying
        fail(e.data?.code ? new DsRequestError("connect", e.data.code as DsRequestError["code"], e.data.message ?? e.message) : e);
      };
      socket.on("connect", onConnect);
      socket.on("connect_error", onError);
      socket.connect();
    });
    return connection;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends a request; resolves with the DS's result fields, or rejects (DsRequestError, DsUnavailableError). */
  async request(event: string, payload: Record<string, unknown>, timeoutMs = this.timeoutMs): Promise<Record<string, unknown>> {
    if (this.isClosed) throw new DsUnavailableError(event, "closed");
    let reply: unknown;
    try {
      reply = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new DsUnavailableError(event, this.isClosed || !this.socket.active ? "closed" : this.socket.connected ? "timeout" : "disconnected");
    }
    return parseReply(event, reply);
  }

  /**
   * Subscribes to a group's log after `after`; entries go to `subscriber` in seq order, across reconnects,
   * until unsubscribe(). Resolves with where the log stood.
   */
  async subscribe(groupId: string, after: number, subscriber: GroupSubscriber): Promise<{ epoch: number; seq: number }> {
    if (this.subscriptions.has(groupId)) throw new Error(`already subscribed to group ${groupId.slice(0, 16)}`);
    const sub: Subscription = { subscriber, delivered: after, resyncing: true, droppedDuringResync: 0, ackWanted: 0, ackSent: 0, acking: false };
    this.subscriptions.set(groupId, sub);
    try {
      return await this.requestSubscription(groupId, sub);
    } catch (e) {
      if (this.subscriptions.get(groupId) === sub) this.subscriptions.delete(groupId);
      throw e;
    }
  }

  /** Stops delivering the group's entries here (the DS keeps the socket in the group until it disconnects). */
  unsubscribe(groupId: string): void {
    this.subscriptions.delete(groupId);
  }

  /**
   * Acknowledges the group's log up to `seq` (processed). Coalesced: an ack leaves ACK_DELAY_MS after the
   * first entry it covers, at most one is in flight per group, and it carries the highest seq by then, so a
   * proposal and the commit that follows it cost the DS one write, not two, per member.
   */
  ack(groupId: string, seq: number): void {
    const sub = this.subscriptions.get(groupId);
    if (!sub || seq <= sub.ackWanted) return;
    sub.ackWanted = seq;
    if (sub.acking) return;
    sub.acking = true;
    setTimeout(() => void this.flushAcks(groupId, sub), ACK_DELAY_MS);
  }

  /** Closes the connection for good (no reconnect); the DS sees a disconnect. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.subscriptions.clear();
    this.socket.close();
    this.emit("closed", {});
  }

  private async requestSubscription(groupId: string, sub: Subscription): Promise<{ epoch: number; seq: number }> {
    sub.resyncing = true;
    const reply = await this.request("group:subscribe", { groupId, after: sub.delivered });
    sub.resyncing = false;
    if (sub.droppedDuringResync > sub.delivered) {
      queueMicrotask(() => this.subscriptions.get(groupId) === sub && this.resubscribe(groupId, sub));
    }
    sub.droppedDuringResync = 0;
    const epoch = reply.epoch;
    const seq = reply.seq;
    if (typeof epoch !== "number" || typeof seq !== "number") throw new DsProtocolError("group:subscribe reply: missing epoch or seq");
    return { epoch, seq };
  }

  private async flushAcks(groupId: string, sub: Subscription): Promise<void> {
    sub.acking = true;
    try {
      while (sub.ackWanted > sub.ackSent && this.subscriptions.get(groupId) === sub && this.socket.connected) {
        const seq = sub.ackWanted;
        await this.request("group:ack", { groupId, seq });
        sub.ackSent = Math.max(sub.ackSent, seq);
      }
    } catch {
      // The next ack (or the next reconnect) carries the position again; an ack is only an optimisation
      // of what a wrong-epoch answer lists, never needed for correctness.
    } finally {
      sub.acking = false;
    }
  }

  private onConnect(): void {
    const reconnect = this.everConnected;
    this.everConnected = true;
    this.emit("connected", { reconnect });
    if (!reconnect) return;
    for (const [groupId, sub] of this.subscriptions) this.resubscribe(groupId, sub);
  }

  private resubscribe(groupId: string, sub: Subscription): void {
    this.requestSubscription(groupId, sub).then(
      () => {
        if (this.subscriptions.get(groupId) === sub) sub.subscriber.resubscribed?.();
        if (sub.ackWanted > sub.ackSent && !sub.acking) void this.flushAcks(groupId, sub);
      },
      (e: unknown) => {
        if (this.subscriptions.get(groupId) !== sub) return;
        if (e instanceof DsRequestError && (e.code === "group-closed" || e.code === "unknown-group")) {
          this.subscriptions.delete(groupId);
          sub.subscriber.closed(e.code);
          return;
        }
        // Disconnected again (the next connect retries) or refused for a passing reason: retry if still connected.
        if (this.socket.connected) setTimeout(() => this.subscriptions.get(groupId) === sub && this.socket.connected && this.resubscribe(groupId, sub), 1000);
        if (!(e instanceof DsUnavailableError)) this.emit("error", { error: e as Error });
      },
    );
  }

  private onDisconnect(reason: string, options: DsConnectionOptions): void {
    this.emit("disconnected", { reason });
    if (this.isClosed) return;
    // socket.io does not reconnect after a server-side disconnect (a DS shutting down or restarting).
    if (reason === "io server disconnect") {
      setTimeout(() => {
        if (!this.isClosed && !this.socket.connected) this.socket.connect();
      }, options.reconnectionDelayMs ?? 300);
    }
  }

  private onEntry(payload: unknown): void {
    let entry: WireEntry;
    try {
      entry = parseEntry(payload);
    } catch (e) {
      this.emit("error", { error: e as Error });
      return;
    }
    const sub = this.subscriptions.get(entry.groupId);
    if (!sub || entry.seq <= sub.delivered) return;
    if (entry.seq !== sub.delivered + 1) {
      // A gap: live entries overtook a replay still to come (or one was lost): ask again from where we are.
      if (!sub.resyncing) this.resubscribe(entry.groupId, sub);
      else sub.droppedDuringResync = Math.max(sub.droppedDuringResync, entry.seq);
      return;
    }
    sub.delivered = entry.seq;
    sub.subscriber.entry(entry);
  }

  private onGroupClosed(payload: unknown): void {
    const groupId = typeof payload === "object" && payload !== null ? (payload as { groupId?: unknown }).groupId : undefined;
    if (typeof groupId !== "string") return;
    const sub = this.subscriptions.get(groupId);
    if (!sub) return;
    this.subscriptions.delete(groupId);
    sub.subscriber.closed("group-closed");
  }
}
