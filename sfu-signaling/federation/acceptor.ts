/**
 * The accepting end of DS-to-DS links: the `/federation` namespace of this DS's Socket.IO server.
 *
 * The handshake check refuses a peer that is not in the trusted list (`untrusted-peer`) or that asks for
 * another provider (`wrong-provider`) before any state exists for it; a connected peer must then prove
 * its key within 10 s (`bad-signature` otherwise), and until it has, every request is refused. One link
 * per peer: a newer authenticated link replaces the older one, so a peer's state (its follows, its
 * devices' presence) always belongs to exactly one connection.
 */
import type { KeyObject } from "node:crypto";
import type { Namespace, Server, Socket } from "socket.io";
import { DsError } from "../errors.js";
import { ConnectionRateLimiter, payloadBytes, type RateLimitOptions } from "../rate-limit.js";
import { FederationError, linkError } from "./errors.js";
import { freshNonce, isDomain, isNonce, signTranscript, verifyTranscript, type LinkTranscript } from "./identity.js";
import type { LinkRequestEvent } from "./protocol.js";

export interface InboundLink {
  /** The authenticated provider at the other end. */
  readonly peer: string;
  readonly socket: Socket;
}

export type LinkHandler = (link: InboundLink, payload: unknown) => Promise<Record<string, unknown>>;

export interface AcceptorOptions {
  readonly io: Server;
  readonly domain: string;
  readonly key: KeyObject;
  /** Public keys of the trusted providers, by domain. */
  readonly trusted: ReadonlyMap<string, KeyObject>;
  readonly handlers: Readonly<Record<LinkRequestEvent, LinkHandler>>;
  /** Events whose payload `id` names an action to perform at most once per peer. */
  readonly once: ReadonlySet<LinkRequestEvent>;
  readonly onLinkLost: (link: InboundLink) => void;
  readonly rateLimits: RateLimitOptions;
  readonly log: (line: string) => void;
}

const PROOF_TIMEOUT_MS = 10_000;
/**
 * Answers remembered per peer for retried `once` requests: longer than any initiator keeps resending (its
 * request deadline), and at most this many, so a busy link cannot grow the memory without bound.
 */
const REMEMBER_MS = 120_000;
const REMEMBERED_REPLIES = 4096;

export class LinkAcceptor {
  readonly namespace: Namespace;
  private readonly current = new Map<string, InboundLink>();
  private readonly replies = new Map<string, Map<string, { readonly at: number; readonly result: Promise<Record<string, unknown>> }>>();

  constructor(private readonly o: AcceptorOptions) {
    this.namespace = o.io.of("/federation");
    this.namespace.use((socket, next) => {
      const auth = (socket.handshake.auth ?? {}) as Record<string, unknown>;
      const refuse = (e: FederationError) => next(Object.assign(new Error(e.code), { data: linkError(e) }));
      if (!isDomain(auth.from) || !isDomain(auth.to) || !isNonce(auth.nonce)) return refuse(new FederationError("invalid-payload", "the handshake needs from, to (domains) and a nonce"));
      if (auth.to !== o.domain) return refuse(new FederationError("wrong-provider", `this is ${o.domain}, not ${auth.to}`));
      if (!o.trusted.has(auth.from)) return refuse(new FederationError("untrusted-peer", `${auth.from} is not a trusted provider of ${o.domain}`));
      socket.data.peer = auth.from;
      socket.data.initiatorNonce = auth.nonce;
      next();
    });
    this.namespace.on("connection", (socket) => this.accept(socket));
  }

  /** The peer's current authenticated link, if any. */
  link(peer: string): InboundLink | undefined {
    return this.current.get(peer);
  }

  close(): void {
    this.namespace.disconnectSockets(true);
  }

  private accept(socket: Socket): void {
    const peer = socket.data.peer as string;
    const t: LinkTranscript = { initiator: peer, acceptor: this.o.domain, initiatorNonce: socket.data.initiatorNonce as string, acceptorNonce: freshNonce() };
    let link: InboundLink | undefined;
    const timer = setTimeout(() => {
      if (!link) socket.disconnect(true);
    }, PROOF_TIMEOUT_MS);
    timer.unref();
    const limiter = new ConnectionRateLimiter(this.o.rateLimits);

    socket.use((packet, next) => {
      const [event, ...args] = packet;
      const ack = args[args.length - 1];
      const answer = (e: FederationError) => typeof ack === "function" && ack({ ok: false, error: linkError(e) });
      const decision = limiter.check(payloadBytes(args));
      if (decision === "disconnect") return void socket.disconnect(true);
      if (decision === "refuse") return answer(new FederationError("link-down", "too many requests; slow down"));
      if (event === "fed:prove" || link) return next();
      answer(new FederationError("not-authenticated", "prove the provider key first"));
    });

    socket.on("fed:prove", (payload: unknown, ack: unknown) => {
      if (typeof ack !== "function" || link) return;
      const signature = typeof payload === "object" && payload !== null ? (payload as Record<string, unknown>).signature : undefined;
      if (!verifyTranscript(this.o.trusted.get(peer)!, "initiator", t, signature)) {
        ack({ ok: false, error: linkError(new FederationError("bad-signature", `the proof does not verify under the key configured for ${peer}`)) });
        this.o.log(`federation: refused a link claiming to be ${peer}: bad signature`);
        setTimeout(() => socket.disconnect(true), 100).unref();
        return;
      }
      clearTimeout(timer);
      link = { peer, socket };
      const previous = this.current.get(peer);
      this.current.set(peer, link);
      if (previous) {
        previous.socket.disconnect(true);
        this.o.onLinkLost(previous);
      }
      ack({ ok: true });
      this.o.log(`federation: ${peer} linked`);
    });
    socket.emit("fed:challenge", { nonce: t.acceptorNonce, signature: signTranscript(this.o.key, "acceptor", t) });

    for (const [event, handler] of Object.entries(this.o.handlers) as [LinkRequestEvent, LinkHandler][]) {
      socket.on(event, (payload: unknown, ack: unknown) => {
        if (!link || this.current.get(peer) !== link) return;
        const reply = typeof ack === "function" ? (ack as (r: unknown) => void) : () => undefined;
        this.run(link, event, handler, payload).then(
          (result) => reply({ ok: true, ...result }),
          (e: unknown) => {
            if (!(e instanceof FederationError) && !(e instanceof DsError)) this.o.log(`federation ${event} from ${peer} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
            reply({ ok: false, error: linkError(e) });
          },
        );
      });
    }

    socket.on("disconnect", () => {
      clearTimeout(timer);
      if (link && this.current.get(peer) === link) {
        this.current.delete(peer);
        this.o.log(`federation: link from ${peer} lost`);
        this.o.onLinkLost(link);
      }
    });
  }

  /** Runs the handler; a repeated `once` request (same peer, same id) gets the first answer. */
  private run(link: InboundLink, event: LinkRequestEvent, handler: LinkHandler, payload: unknown): Promise<Record<string, unknown>> {
    const id = this.o.once.has(event) && typeof payload === "object" && payload !== null ? (payload as Record<string, unknown>).id : undefined;
    if (typeof id !== "string" || id.length > 64) return invoke(handler, link, payload);
    let seen = this.replies.get(link.peer);
    if (!seen) this.replies.set(link.peer, (seen = new Map()));
    const now = Date.now();
    for (const [k, v] of seen) {
      if (now - v.at <= REMEMBER_MS && seen.size < REMEMBERED_REPLIES) break;
      seen.delete(k);
    }
    const key = `${event}\n${id}`;
    const earlier = seen.get(key);
    if (earlier) return earlier.result;
    const result = invoke(handler, link, payload);
    seen.set(key, { at: now, result });
    return result;
  }
}

/**
 * Handlers that validate before their first await throw synchronously; inside a Socket.IO listener that
 * throw would be an uncaught exception and end the process, so it becomes the request's refusal instead.
 */
function invoke(handler: LinkHandler, link: InboundLink, payload: unknown): Promise<Record<string, unknown>> {
  try {
    return handler(link, payload);
  } catch (e) {
    return Promise.reject(e);
  }
}
