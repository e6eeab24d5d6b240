/**
 * The DS process: one HTTP server carrying Socket.IO (the client protocol), `/metrics` (Prometheus),
 * `/healthz`, and in development mode `/dev/token`.
 *
 * The client protocol (request events, payloads, replies, pushes, limits) is typed and documented in
 * protocol.ts; every payload is checked here against a schema before a handler sees it, every connection
 * is authenticated in the handshake and rate-limited per event and per byte.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Server, type ServerOptions, type Socket } from "socket.io";
import { nativeProvider, type CryptoProvider } from "../keying/crypto/index.js";
import { DEVICE, TokenAuthority, USER, memberId, type Principal, type TokenOptions } from "./auth.js";
import { ExternalSenderKeys } from "./ds/external-sender.js";
import { GroupService, memberRoom } from "./ds/groups.js";
import { DEFAULT_CLAIM_QUOTA, localClaimer, type ClaimQuotaOptions } from "./ds/claim-quota.js";
import { KeyPackageDirectory } from "./ds/keypackages.js";
import { dropConnection, queuedBytes } from "./ds/socket-queue.js";
import { DsError, toWireError } from "./errors.js";
import { DsMetrics } from "./metrics.js";
import { ConnectionRateLimiter, DEFAULT_RATE_LIMITS, payloadBytes, type RateLimitOptions } from "./rate-limit.js";
import type { DsRequestEvent } from "./protocol.js";
import type { Store } from "./store/store.js";
import { GROUP_ID, ROOM, SEQ, SUITE, arr, bytes, obj, optional, parse, str, type Schema } from "./validate.js";

/** How often connections are checked for a backlog over `maxQueuedBytes`. */
const BACKLOG_SWEEP_MS = 500;

export interface DsOptions {
  readonly store: Store;
  /** HS256 key for connection tokens (at least 32 bytes). */
  readonly tokenKey: Uint8Array;
  readonly tokenOptions?: TokenOptions;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0: any free port. */
  readonly port?: number;
  /** Serve `/dev/token`, which issues a token for any display name. Default off. */
  readonly devMode?: boolean;
  readonly devTokenTtlSeconds?: number;
  /** The identity in the DS's external-sender credential. */
  readonly name?: string;
  /** Disconnect time before the DS proposes a member's removal. Default 10 s. */
  readonly leaveGraceMs?: number;
  /** Largest MLS message, GroupInfo or tree accepted in one field. Default 1 MiB. */
  readonly maxPayloadBytes?: number;
  readonly rateLimits?: Partial<RateLimitOptions>;
  readonly maxKeyPackagesPerDevice?: number;
  /**
   * Claims of another user's KeyPackages that took single-use ones, per claimer (a user here, or a remote
   * provider's user) and target user, within a sliding window; more are refused with `claim-quota-exceeded`.
   * A user's claims of its own devices are exempt. Default 6 per 60 s.
   */
  readonly keyPackageClaimQuota?: Partial<ClaimQuotaOptions>;
  /**
   * A `group:subscribe` replay sends the next log entry only while the connection has less than this queued
   * (bytes not yet handed to the kernel). Default 1 MiB.
   */
  readonly replayWindowBytes?: number;
  /** Long (paced) log replays one device may run at once on this node; more are refused with `rate-limited`. Default 4. */
  readonly maxReplaysPerDevice?: number;
  /**
   * A connection with more than this waiting to be written to it (it stopped reading: live fan-out piles up) is
   * dropped, checked twice a second; its client reconnects and resumes from the last entry it got. Default 16 MiB.
   */
  readonly maxQueuedBytes?: number;
  /**
   * Bearer token `/metrics` requires (`Authorization: Bearer <token>`). Unset: `/metrics` answers only
   * requests from a loopback address that did not come through a proxy (no Forwarded / X-Forwarded-For).
   */
  readonly metricsToken?: string;
  /** CORS origin for Socket.IO and /dev/token (the demo runs on another port). Default: none. */
  readonly corsOrigin?: string;
  readonly provider?: CryptoProvider;
  readonly log?: (line: string) => void;
  /** Extra Socket.IO options: a cluster adapter and connection-state recovery (see redis-backplane.ts). */
  readonly socketIo?: Pick<Partial<ServerOptions>, "adapter" | "connectionStateRecovery">;
  /** Called for each authenticated connection, before its first event. */
  readonly onConnection?: (socket: Socket, principal: Principal) => void;
  /** A device subscribed to a group of `room` (main.ts lets it use the room's SFU from then on). */
  readonly onSubscribed?: (socket: Socket, principal: Principal, room: string) => void;
  /** A device left the call or stayed away past the grace (main.ts cuts its media). */
  readonly onDeparted?: (room: string, member: string) => void;
  /** Answers HTTP requests the DS has no route for (main.ts: the demo's files); false lets the DS answer 404. */
  readonly httpFallback?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Runs inside the DS with access to its parts (federation/ is one); see DsExtension. */
  readonly extension?: DsExtension;
}

/** What an extension of the DS (federation/) works with. */
export interface DsInternals {
  readonly io: Server;
  readonly service: GroupService;
  readonly directory: KeyPackageDirectory;
  readonly tokens: TokenAuthority;
  /** The store as the DS uses it (the extension's wrapper, if it made one). */
  readonly store: Store;
  readonly provider: CryptoProvider;
  readonly log: (line: string) => void;
  /** Runs a request for `principal` exactly as for the DS's own connections, schema check included. */
  dispatch(event: DsRequestEvent, principal: Principal, socket: Socket, payload: unknown): Promise<Record<string, unknown>>;
}

export interface DsExtension {
  /** Called first: may return a wrapper of the store (e.g. to observe appends). */
  wrapStore?(store: Store): Store;
  /** Called once the DS's parts exist, before it listens. */
  attach(ds: DsInternals): void | Promise<void>;
  /** Answers a schema-checked request before the DS does; undefined lets the DS answer it. */
  handle?(event: DsRequestEvent, principal: Principal, socket: Socket, payload: unknown): Promise<Record<string, unknown>> | undefined;
  /** Called on close, before the DS's own parts stop. */
  close?(): Promise<void>;
}

export interface RunningDs {
  readonly url: string;
  readonly port: number;
  readonly metrics: DsMetrics;
  close(): Promise<void>;
}

type Handler = (principal: Principal, socket: Socket, payload: never) => Promise<Record<string, unknown>>;

interface Route {
  readonly schema: Schema<unknown>;
  readonly handle: Handler;
}

function route<T>(schema: Schema<T>, handle: (principal: Principal, socket: Socket, payload: T) => Promise<Record<string, unknown>>): Route {
  return { schema, handle: handle as Handler };
}

export async function startDs(options: DsOptions): Promise<RunningDs> {
  const log = options.log ?? (() => {});
  const provider = options.provider ?? nativeProvider;
  const maxPayload = options.maxPayloadBytes ?? 1 << 20;
  const limits: RateLimitOptions = { ...DEFAULT_RATE_LIMITS, ...options.rateLimits };
  const tokens = new TokenAuthority(options.tokenKey, options.tokenOptions);
  const extension = options.extension;
  const store = extension?.wrapStore?.(options.store) ?? options.store;
  const http = createServer();
  const io = new Server(http, {
    serveClient: false,
    // Three maximal fields (a commit, its GroupInfo, a Welcome) plus framing; beyond this the engine drops the connection.
    maxHttpBufferSize: 3 * maxPayload + (64 << 10),
    ...(options.corsOrigin ? { cors: { origin: options.corsOrigin } } : {}),
    ...options.socketIo,
  });
  const metrics: DsMetrics = new DsMetrics({
    connections: () => io.of("/").sockets.size,
    groups: (): number => service.openGroupCount,
    replays: (): number => service.replayCount,
  });
  const senders = new ExternalSenderKeys(store, provider, options.name ?? "conclave-ds");
  const service = new GroupService({
    store,
    io,
    senders,
    metrics,
    leaveGraceMs: options.leaveGraceMs ?? 10_000,
    maxPastEpochs: 2,
    maxMissed: 8,
    replayWindowBytes: options.replayWindowBytes ?? 1 << 20,
    maxReplaysPerDevice: options.maxReplaysPerDevice ?? 4,
    log,
    onSubscribed: options.onSubscribed,
    onDeparted: options.onDeparted,
  });
  const directory = new KeyPackageDirectory(store, provider, {
    maxPerDevice: options.maxKeyPackagesPerDevice ?? 100,
    claimQuota: { ...DEFAULT_CLAIM_QUOTA, ...options.keyPackageClaimQuota },
  });

  const mls = bytes({ max: maxPayload });
  const routes: Record<DsRequestEvent, Route> = {
    "room:join": route(obj({ room: ROOM }), async (p, _s, { room }) => ({ group: await service.roomInfo(p, room) })),
    // `room` names the call the sender is for: this DS signs for all its own rooms alike (federation routes rooms of other providers to their hub).
    "ds:external-sender": route(obj({ suite: SUITE, room: optional(ROOM) }), async (_p, _s, { suite }) => ({ externalSender: await service.externalSender(suite) })),
    "group:create": route(obj({ room: ROOM, groupInfo: mls, tree: optional(mls) }), async (p, _s, x) => ({
      group: await service.create(p, x.room, x.groupInfo, x.tree),
    })),
    "group:subscribe": route(obj({ groupId: GROUP_ID, after: SEQ }), (p, s, x) => service.subscribe(p, s, x.groupId, x.after)),
    "group:send": route(obj({ groupId: GROUP_ID, message: mls, groupInfo: optional(mls), welcome: optional(mls), since: optional(SEQ) }), (p, _s, x) =>
      service.send(p, x),
    ),
    "group:unsubscribe": route(obj({ groupId: GROUP_ID }), async (p, s, x) => {
      await service.unsubscribe(p, s, x.groupId);
      return {};
    }),
    "group:ack": route(obj({ groupId: GROUP_ID, seq: SEQ }), async (p, _s, x) => {
      await service.ack(p, x.groupId, x.seq);
      return {};
    }),
    "group:leave": route(obj({ groupId: GROUP_ID }), async (p, s, x) => {
      await service.leave(p, s, x.groupId);
      return {};
    }),
    "group:report": route(obj({ groupId: GROUP_ID, seq: SEQ, reason: str({ max: 500 }) }), async (p, _s, x) => {
      await service.report(p, x.groupId, x.seq, x.reason);
      return {};
    }),
    "kp:upload": route(obj({ keyPackages: arr(bytes({ max: 64 << 10 }), { min: 1, max: 10 }) }), async (p, _s, x) => {
      const stored = await directory.upload(p, x.keyPackages);
      metrics.keyPackagesUploaded.inc({}, stored);
      return { stored, inventory: await directory.inventory(p) };
    }),
    "kp:claim": route(obj({ user: USER, suites: arr(SUITE, { min: 1, max: 16 }) }), async (p, _s, x) => {
      const claimed = await directory.claim(x.user, x.suites, p.user === x.user ? undefined : localClaimer(p.user));
      for (const d of claimed.devices) metrics.keyPackagesClaimed.inc({ kind: d.lastResort ? "last-resort" : "single-use" });
      return { ...claimed };
    }),
    "kp:status": route(obj({}), async (p) => ({ inventory: await directory.inventory(p) })),
  };

  io.use((socket, next) => {
    tokens.verify(socket.handshake.auth?.token).then(
      (principal) => {
        socket.data.principal = principal;
        next();
      },
      (e: unknown) => {
        const wire = toWireError(e instanceof DsError ? e : new DsError("unauthorized", "invalid token"));
        next(Object.assign(new Error(wire.code), { data: wire }));
      },
    );
  });

  io.on("connection", (socket) => {
    const principal = socket.data.principal as Principal;
    const limiter = new ConnectionRateLimiter(limits);
    const refuse = (event: string, ack: unknown, e: DsError) => {
      metrics.refusals.inc({ event: Object.hasOwn(routes, event) ? event : "other", code: e.code });
      if (typeof ack === "function") ack({ ok: false, error: toWireError(e) });
    };

    // Runs before any handler: unknown events and floods are refused without touching state.
    socket.use((packet, next) => {
      const [event, ...args] = packet;
      const ack = args[args.length - 1];
      const decision = limiter.check(payloadBytes(args));
      if (decision === "disconnect") {
        log(`disconnecting ${principal.user}/${principal.device}: sustained flood`);
        socket.disconnect(true);
        return;
      }
      if (decision === "refuse") return refuse(String(event), ack, new DsError("rate-limited", "too many requests; slow down"));
      // Events of other modules on the same socket (the SFU's sfu:*) pass if someone listens for them.
      if (typeof event !== "string" || socket.listeners(event).length === 0) return refuse(String(event), ack, new DsError("invalid-payload", "unknown event"));
      next();
    });

    for (const [event, r] of Object.entries(routes)) {
      socket.on(event, (...args: unknown[]) => {
        const ack = typeof args[args.length - 1] === "function" ? (args.pop() as (reply: unknown) => void) : undefined;
        let payload: unknown;
        try {
          if (args.length !== 1) throw new DsError("invalid-payload", "expected exactly one payload argument");
          payload = parse(r.schema, args[0]);
        } catch (e) {
          return refuse(event, ack, e as DsError);
        }
        Promise.resolve()
          .then(() => extension?.handle?.(event as DsRequestEvent, principal, socket, payload) ?? r.handle(principal, socket, payload as never))
          .then(
            (result) => ack?.({ ok: true, ...result }),
            (e: unknown) => {
              if (!(e instanceof DsError)) log(`${event} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
              refuse(event, ack, e instanceof DsError ? e : new DsError("internal", "internal error"));
            },
          );
      });
    }

    socket.on("disconnect", () => service.disconnected(principal, socket));
    void socket.join(memberRoom(memberId(principal)));
    options.onConnection?.(socket, principal);
  });

  http.on("request", (req: IncomingMessage, res: ServerResponse) => {
    // Socket.IO answers its own path; everything else is ours.
    if (req.url?.startsWith("/socket.io/")) return;
    handleHttp(req, res, { metrics, metricsToken: options.metricsToken, tokens, devMode: options.devMode ?? false, ttl: options.devTokenTtlSeconds ?? 12 * 3600, cors: options.corsOrigin, fallback: options.httpFallback }).catch(
      (e: unknown) => {
        log(`http ${req.method} ${req.url} failed: ${String(e)}`);
        if (!res.headersSent) res.writeHead(500).end();
      },
    );
  });

  await extension?.attach({
    io,
    service,
    directory,
    tokens,
    store,
    provider,
    log,
    dispatch: async (event, principal, socket, payload) => routes[event].handle(principal, socket, parse(routes[event].schema, payload) as never),
  });
  await service.startup();
  // Live fan-out cannot wait for a slow reader (the call goes on), so what piles up for one is capped here.
  const maxQueued = options.maxQueuedBytes ?? 16 << 20;
  const backlogSweep = setInterval(() => {
    for (const socket of io.of("/").sockets.values()) {
      if (queuedBytes(socket) <= maxQueued) continue;
      const principal = socket.data.principal as Principal;
      log(`disconnecting ${principal.user}/${principal.device}: more than ${maxQueued} bytes queued (not reading)`);
      metrics.backlogDisconnects.inc();
      dropConnection(socket);
    }
  }, BACKLOG_SWEEP_MS);
  backlogSweep.unref();
  await listen(http, options.port ?? 0, options.host ?? "127.0.0.1");
  const port = (http.address() as AddressInfo).port;
  const host = options.host ?? "127.0.0.1";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url,
    port,
    metrics,
    async close() {
      clearInterval(backlogSweep);
      await extension?.close?.();
      await service.close();
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}

function listen(http: HttpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => {
      http.off("error", reject);
      resolve();
    });
  });
}

interface HttpContext {
  readonly metrics: DsMetrics;
  readonly metricsToken: string | undefined;
  readonly tokens: TokenAuthority;
  readonly devMode: boolean;
  readonly ttl: number;
  readonly cors: string | undefined;
  readonly fallback: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
}

async function handleHttp(req: IncomingMessage, res: ServerResponse, ctx: HttpContext): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (req.method === "GET" && url.pathname === "/metrics") {
    const denied = metricsAccess(req, ctx.metricsToken);
    if (denied) {
      res.writeHead(denied, { "content-type": "text/plain", ...(denied === 401 ? { "www-authenticate": 'Bearer realm="metrics"' } : {}) }).end(denied === 401 ? "unauthorized\n" : "forbidden\n");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(ctx.metrics.registry.render());
    return;
  }
  if (req.method === "GET" && url.pathname === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    return;
  }
  if (url.pathname === "/dev/token" && ctx.devMode) {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (ctx.cors) Object.assign(headers, { "access-control-allow-origin": ctx.cors, "access-control-allow-headers": "content-type" });
    if (req.method === "OPTIONS") {
      res.writeHead(204, headers).end();
      return;
    }
    if (req.method !== "GET" && req.method !== "POST") {
      res.writeHead(405, headers).end();
      return;
    }
    try {
      const fields = req.method === "GET" ? Object.fromEntries(url.searchParams) : await readJson(req, 4096);
      const principal = devPrincipal(fields);
      const token = await ctx.tokens.issue(principal, ctx.ttl);
      res.writeHead(200, headers).end(JSON.stringify({ token, ...principal, expiresAt: Math.floor(Date.now() / 1000) + ctx.ttl }));
    } catch (e) {
      res.writeHead(400, headers).end(JSON.stringify({ error: toWireError(e) }));
    }
    return;
  }
  if (ctx.fallback?.(req, res)) return;
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
}

/**
 * Who may read /metrics (the numbers reveal call sizes and activity): with a token, whoever presents it;
 * without one, only a client on this host, and not one relaying for others (a reverse proxy on the same
 * host adds forwarding headers). Returns the refusal status, or undefined to serve.
 */
function metricsAccess(req: IncomingMessage, token: string | undefined): 401 | 403 | undefined {
  if (token !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    // Compared as digests so neither the length nor the content leaks through timing.
    const digest = (s: string) => createHash("sha256").update(s).digest();
    return m && timingSafeEqual(digest(m[1]!), digest(token)) ? undefined : 401;
  }
  const forwarded = req.headers.forwarded !== undefined || req.headers["x-forwarded-for"] !== undefined || req.headers["x-real-ip"] !== undefined;
  return !forwarded && isLoopback(req.socket.remoteAddress) ? undefined : 403;
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return address === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** `name` (required), `device` (default: a fresh id), `rooms` (comma-separated; default every room). */
function devPrincipal(fields: Record<string, unknown>): Principal {
  const user = parse(USER, typeof fields.name === "string" ? fields.name.trim() : fields.name);
  const device = fields.device === undefined ? randomBytes(9).toString("base64url") : parse(DEVICE, fields.device);
  const rooms = fields.rooms === undefined ? ["*"] : String(fields.rooms).split(",").map((r) => parse(ROOM, r.trim()));
  if (rooms.length === 0 || rooms.length > 64) throw new DsError("invalid-payload", "between 1 and 64 rooms");
  return { user, device, rooms };
}

async function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new DsError("payload-too-large", "request body too large");
    chunks.push(chunk);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through to the refusal below
  }
  throw new DsError("invalid-payload", "expected a JSON object");
}
