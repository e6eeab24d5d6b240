/**
 * The initiating end of a DS-to-DS link: socket.io-client to the peer's `/federation` namespace, the
 * challenge-response of identity.ts on every (re)connect, and requests that survive a dropped link.
 *
 * A request waits until the link is authenticated, then is sent; if the link drops before the answer it is
 * sent again once the link is back, until its deadline. Requests that act (`once`) carry an id the peer
 * keeps for a while, so the second copy gets the first one's answer instead of acting twice. Nothing is
 * ever sent before the handshake completed (socket.io-client would otherwise flush buffered packets
 * straight after reconnecting).
 */
import type { KeyObject } from "node:crypto";
import { randomBytes } from "node:crypto";
import { io, type Socket } from "socket.io-client";
import { FederationError, fromLinkError } from "./errors.js";
import { freshNonce, signTranscript, verifyTranscript, type LinkTranscript } from "./identity.js";
import type { LinkPushEvent, LinkRequestEvent, LinkRequests } from "./protocol.js";

export interface TrustedPeer {
  readonly domain: string;
  /** Base URL of the peer's DS (its `/federation` namespace is used). */
  readonly url: string;
  /** The peer's raw Ed25519 public key, base64url. */
  readonly publicKey: string;
}

export interface PeerLinkOptions {
  readonly domain: string;
  readonly key: KeyObject;
  readonly peer: TrustedPeer;
  readonly peerKey: KeyObject;
  /** Called after every successful handshake (the first and each reconnect). */
  readonly onReady: () => void;
  /** Called when an authenticated link drops (it reconnects on its own). */
  readonly onDown?: () => void;
  /** A push from the peer (only once authenticated). */
  readonly onPush: (event: LinkPushEvent, payload: unknown) => void;
  readonly log: (line: string) => void;
  /** Default deadline of a request, including waits for the link. */
  readonly requestTimeoutMs: number;
  /** After a refused handshake, requests fail at once with that refusal for this long. Default 2 s. */
  readonly refusalHoldMs?: number;
}

type State = "idle" | "connecting" | "ready" | "refused" | "closed";

const PUSHES: readonly LinkPushEvent[] = ["fed:entry", "fed:closed", "fed:device"];
const HANDSHAKE_TIMEOUT_MS = 10_000;

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

export class PeerLink {
  private socket: Socket | undefined;
  private state: State = "idle";
  private refusal: { error: FederationError; at: number } | undefined;
  private readonly waiters = new Set<Waiter>();

  constructor(private readonly o: PeerLinkOptions) {}

  get peer(): string {
    return this.o.peer.domain;
  }

  get ready(): boolean {
    return this.state === "ready" && this.socket?.connected === true;
  }

  /** Resolves once the link is authenticated (connecting if needed); rejects with the refusal or link-down. */
  async whenReady(deadline = Date.now() + this.o.requestTimeoutMs): Promise<void> {
    if (this.ready) return;
    if (this.state === "closed") throw new FederationError("link-down", "the link is closed", this.peer);
    if (this.state === "refused" && this.refusal && Date.now() - this.refusal.at < (this.o.refusalHoldMs ?? 2000)) throw this.refusal.error;
    if (this.state === "idle" || this.state === "refused") this.start();
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(e);
        },
      };
      const timer = setTimeout(() => waiter.reject(new FederationError("link-down", "no authenticated link before the deadline", this.peer)), Math.max(1, deadline - Date.now()));
      this.waiters.add(waiter);
    });
  }

  /**
   * Sends a request and returns the peer's reply fields; a refusal is re-raised as the peer's error
   * (DsError or FederationError). `once`: the peer must act at most once, even when this is sent again.
   */
  async request<E extends LinkRequestEvent>(event: E, payload: LinkRequests[E], options: { once?: boolean; timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
    const deadline = Date.now() + (options.timeoutMs ?? this.o.requestTimeoutMs);
    const body = options.once ? { ...payload, id: randomBytes(16).toString("base64url") } : payload;
    for (;;) {
      await this.whenReady(deadline);
      const socket = this.socket!;
      let reply: unknown;
      try {
        reply = await socket.timeout(Math.max(1, deadline - Date.now())).emitWithAck(event, body);
      } catch {
        if (Date.now() >= deadline) throw new FederationError("link-down", `no answer to ${event} before the deadline`, this.peer);
        // The link dropped before the answer: send again once it is back (the peer de-duplicates `once`).
        continue;
      }
      return unpack(this.peer, reply);
    }
  }

  /** Sends without waiting for an answer or a link; dropped when the link is down. */
  notify<E extends LinkRequestEvent>(event: E, payload: LinkRequests[E]): void {
    if (this.ready) this.socket!.emit(event, payload);
  }

  close(): void {
    this.state = "closed";
    this.socket?.disconnect();
    this.socket = undefined;
    for (const w of [...this.waiters]) w.reject(new FederationError("link-down", "the link is closed", this.peer));
  }

  private start(): void {
    this.socket?.disconnect();
    this.state = "connecting";
    let nonce = "";
    const socket = io(`${this.o.peer.url.replace(/\/+$/, "")}/federation`, {
      auth: (cb: (data: object) => void) => {
        nonce = freshNonce();
        cb({ from: this.o.domain, to: this.o.peer.domain, nonce });
      },
      transports: ["websocket"],
      forceNew: true,
      reconnectionDelay: 200,
      reconnectionDelayMax: 2000,
    });
    this.socket = socket;
    // A rejection left unhandled would end the process (Node 20): whatever fails here is logged instead.
    socket.on("fed:challenge", (payload: unknown) =>
      this.answerChallenge(socket, nonce, payload).catch((e: unknown) => this.o.log(`federation link to ${this.peer}: handshake failed: ${String(e)}`)),
    );
    socket.on("connect_error", (e: Error & { data?: { code?: unknown; message?: unknown } }) => {
      // A refusal by the peer's handshake check (socket.io does not retry those); transport errors are retried.
      if (!socket.active && this.socket === socket) this.refuse(socket, fromLinkError(this.peer, e.data ?? { code: "link-down", message: e.message }));
    });
    socket.on("disconnect", (reason) => {
      if (this.socket !== socket || this.state === "closed" || this.state === "refused") return;
      const wasReady = this.state === "ready";
      this.state = "connecting";
      if (wasReady) this.o.onDown?.();
      this.o.log(`federation link to ${this.peer} lost (${reason})`);
      // socket.io does not reconnect after a server-side disconnect (a restarting peer): do it here.
      if (reason === "io server disconnect") setTimeout(() => this.socket === socket && this.state === "connecting" && socket.connect(), 500);
    });
    for (const event of PUSHES) {
      socket.on(event, (payload: unknown) => {
        if (this.socket === socket && this.state === "ready") this.o.onPush(event, payload);
      });
    }
  }

  private async answerChallenge(socket: Socket, initiatorNonce: string, payload: unknown): Promise<void> {
    if (this.socket !== socket) return;
    const p = typeof payload === "object" && payload !== null ? (payload as Record<string, unknown>) : {};
    const t: LinkTranscript = { initiator: this.o.domain, acceptor: this.peer, initiatorNonce, acceptorNonce: typeof p.nonce === "string" ? p.nonce : "" };
    if (!verifyTranscript(this.o.peerKey, "acceptor", t, p.signature)) {
      this.refuse(socket, new FederationError("peer-authentication-failed", `the DS at ${this.o.peer.url} did not prove it holds the configured key`, this.peer));
      return;
    }
    let reply: unknown;
    try {
      reply = await socket.timeout(HANDSHAKE_TIMEOUT_MS).emitWithAck("fed:prove", { signature: signTranscript(this.o.key, "initiator", t) });
    } catch {
      return; // dropped during the handshake: the next connect starts over
    }
    if (this.socket !== socket) return;
    try {
      unpack(this.peer, reply);
    } catch (e) {
      this.refuse(socket, e instanceof FederationError ? e : new FederationError("bad-signature", (e as Error).message, this.peer));
      return;
    }
    this.state = "ready";
    this.refusal = undefined;
    this.o.log(`federation link to ${this.peer} authenticated`);
    for (const w of [...this.waiters]) w.resolve();
    this.o.onReady();
  }

  private refuse(socket: Socket, error: Error): void {
    const e = error instanceof FederationError ? error : new FederationError("link-down", error.message, this.peer);
    this.state = "refused";
    this.refusal = { error: e, at: Date.now() };
    socket.disconnect();
    this.o.log(`federation link to ${this.peer} refused: ${e.code}: ${e.message}`);
    for (const w of [...this.waiters]) w.reject(e);
  }
}

function unpack(peer: string, reply: unknown): Record<string, unknown> {
  if (typeof reply !== "object" || reply === null) throw new FederationError("invalid-payload", "malformed reply", peer);
  const { ok, error, ...rest } = reply as Record<string, unknown>;
  if (ok === true) return rest;
  throw fromLinkError(peer, error);
}
