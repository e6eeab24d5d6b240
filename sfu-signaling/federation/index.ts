/**
 * Federation of delivery services (BRIEF decision 11, MIMI's hub/follower model), as one DS extension:
 *
 *   const federation = createFederation({ domain: "a.example", key, peers: [{ domain: "b.example", url, publicKey }] });
 *   const ds = await startDs({ store, tokenKey, extension: federation });
 *
 * Routing rules. A room named "name@b.example" is hosted by provider b.example (its hub); any other room is
 * this DS's own. A user id "bob@b.example" belongs to provider b.example. This DS:
 * - serves its own rooms as before; users of other providers may be in them through their DS (the hub
 *   role, hub.ts) or connected here directly with a token this DS issued them (client fan-out);
 * - forwards its users' requests for rooms of another provider to that hub and delivers the hub's log to
 *   them (the follower role, follower.ts);
 * - forwards KeyPackage claims for users of another provider to that provider (keypackages.ts);
 * - tells every DS sharing a group with one of its users when the user adds or retires a device.
 * Everything between two DSes goes over links authenticated by provider keys (link.ts, acceptor.ts).
 */
import type { KeyObject } from "node:crypto";
import type { Socket } from "socket.io";
import { mayJoin, type Principal } from "../auth.js";
import { DsError, toWireError } from "../errors.js";
import type { DsRequestEvent } from "../protocol.js";
import { DEFAULT_RATE_LIMITS, type RateLimitOptions } from "../rate-limit.js";
import type { DsExtension, DsInternals } from "../server.js";
import type { Store } from "../store/store.js";
import { ROOM, obj, parse, str } from "../validate.js";
import { LinkAcceptor, type InboundLink, type LinkHandler } from "./acceptor.js";
import { FederationError, toUserError } from "./errors.js";
import { FollowerRole } from "./follower.js";
import { HubRole } from "./hub.js";
import { importPublicKey, isDomain, providerOfRoom, providerOfUser, type ProviderKey } from "./identity.js";
import { KeyPackageFederation } from "./keypackages.js";
import { PeerLink, type TrustedPeer } from "./link.js";
import type { DeviceChange, HubToken, LinkPushEvent, LinkRequestEvent } from "./protocol.js";
import type { RosterEntry } from "./roster.js";
import { DEVICE, linkSchemas, type LinkSchemas } from "./schemas.js";

export { FederationError } from "./errors.js";
export { exportProviderKey, generateProviderKey, loadProviderKey, type ProviderKey } from "./identity.js";
export type { TrustedPeer } from "./link.js";
export type { DeviceChange, HubToken } from "./protocol.js";

export interface FederationConfig {
  /** This provider's domain, e.g. "a.example". */
  readonly domain: string;
  /** This provider's signature key (Ed25519). */
  readonly key: ProviderKey;
  /** The providers this DS links with, and only those. */
  readonly peers: readonly TrustedPeer[];
  /** Where clients of other providers reach this DS (put in hub tokens). Default: the URL peers configured. */
  readonly publicUrl?: string;
  /** Deadline of a request to a peer, waits for a dropped link included. Default 20 s. */
  readonly requestTimeoutMs?: number;
  /** Log entries a follower keeps per remote group. Default 4096. */
  readonly mirrorEntries?: number;
  /** Largest MLS message, GroupInfo or tree on a link (as the DS's own limit). Default 1 MiB. */
  readonly maxPayloadBytes?: number;
  /** Most devices of one peer's users present in calls hosted here at a time. Default 10 000. */
  readonly maxRemoteDevices?: number;
  /** Lifetime of a hub token. Default 1 h. */
  readonly hubTokenTtlSeconds?: number;
  /** Per-link limits (a link carries many users). */
  readonly linkRateLimits?: Partial<RateLimitOptions>;
  readonly log?: (line: string) => void;
}

export class FederationConfigError extends Error {
  override readonly name = "FederationConfigError";
}

const LINK_LIMITS: RateLimitOptions = { eventsPerSecond: 2000, eventBurst: 10_000, bytesPerSecond: 64 << 20, byteBurst: 256 << 20, disconnectAfter: 5000 };
const ONCE: ReadonlySet<LinkRequestEvent> = new Set<LinkRequestEvent>(["fed:act", "fed:claim", "fed:welcome", "fed:device", "fed:token"]);
const GROUP_EVENTS: ReadonlySet<string> = new Set<DsRequestEvent>(["group:subscribe", "group:unsubscribe", "group:send", "group:ack", "group:leave", "group:report"]);

interface Peer extends TrustedPeer {
  readonly key: KeyObject;
}

export function createFederation(config: FederationConfig): Federation {
  return new Federation(config);
}

export class Federation implements DsExtension {
  readonly domain: string;
  private readonly peers = new Map<string, Peer>();
  private readonly links = new Map<string, PeerLink>();
  private readonly schemas: LinkSchemas;
  private readonly log: (line: string) => void;
  private ds: DsInternals | undefined;
  private hubRole: HubRole | undefined;
  private followerRole: FollowerRole | undefined;
  private keyPackages: KeyPackageFederation | undefined;
  private acceptor: LinkAcceptor | undefined;
  private closing = false;

  constructor(private readonly config: FederationConfig) {
    if (!isDomain(config.domain)) throw new FederationConfigError(`"${config.domain}" is not a lower-case domain name`);
    this.domain = config.domain;
    for (const p of config.peers) {
      if (!isDomain(p.domain)) throw new FederationConfigError(`peer "${p.domain}" is not a lower-case domain name`);
      if (p.domain === config.domain) throw new FederationConfigError(`${p.domain} is this provider itself`);
      if (this.peers.has(p.domain)) throw new FederationConfigError(`peer ${p.domain} is listed twice`);
      if (!/^https?:\/\/[^\s]+$/.test(p.url)) throw new FederationConfigError(`peer ${p.domain}: the URL must be http(s)`);
      let key: KeyObject;
      try {
        key = importPublicKey(p.publicKey);
      } catch (e) {
        throw new FederationConfigError(`peer ${p.domain}: ${(e as Error).message}`);
      }
      this.peers.set(p.domain, { ...p, key });
    }
    this.schemas = linkSchemas(config.maxPayloadBytes ?? 1 << 20);
    this.log = config.log ?? (() => {});
  }

  // -------------------------------------------------------------------------------------------------------
  // DsExtension

  /** Every entry the store accepts reaches the hub role in log order (the DS appends one at a time per group). */
  wrapStore(store: Store): Store {
    const append: Store["append"] = async (groupId, entry, expect, next) => {
      const r = await store.append(groupId, entry, expect, next);
      if (r.ok) this.observe(() => this.hubRole?.appended(groupId, { ...entry, seq: r.seq }, next));
      return r;
    };
    const closeGroup: Store["closeGroup"] = async (groupId) => {
      await store.closeGroup(groupId);
      this.observe(() => this.hubRole?.closed(groupId));
    };
    return new Proxy(store, {
      get(target, key) {
        if (key === "append") return append;
        if (key === "closeGroup") return closeGroup;
        const v: unknown = Reflect.get(target, key, target);
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  private observe(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log(`federation: fan-out to followers failed: ${String(e)}`);
    }
  }

  attach(ds: DsInternals): void {
    this.ds = ds;
    const hub = (this.hubRole = new HubRole(ds, { domain: this.domain, maxRemoteDevices: this.config.maxRemoteDevices ?? 10_000 }));
    const follower = (this.followerRole = new FollowerRole({
      ds,
      domain: this.domain,
      schemas: this.schemas,
      link: (peer) => this.link(peer),
      peers: () => [...this.peers.keys()],
      mirrorEntries: this.config.mirrorEntries ?? 4096,
      log: this.log,
    }));
    const keyPackages = (this.keyPackages = new KeyPackageFederation({
      ds,
      domain: this.domain,
      schemas: this.schemas,
      link: (peer) => this.link(peer),
      learnHub: (groupId, hubDomain) => follower.learnHub(groupId, hubDomain),
      log: this.log,
    }));
    const s = this.schemas;
    const handlers: Record<LinkRequestEvent, LinkHandler> = {
      "fed:act": (link, payload) => {
        const x = parse(s.act, payload);
        return hub.act(link, x.user, x.device, x.event, x.payload);
      },
      "fed:follow": (link, payload) => {
        const x = parse(s.follow, payload);
        return hub.follow(link, x.groupId, x.after);
      },
      "fed:unfollow": async (link, payload) => {
        hub.unfollow(link, parse(s.unfollow, payload).groupId);
        return {};
      },
      "fed:read": (_link, payload) => {
        const x = parse(s.read, payload);
        return hub.read(x.groupId, x.after, x.limit);
      },
      "fed:locate": async (_link, payload) => ({ hosted: await hub.hosts(parse(s.locate, payload).groupId) }),
      "fed:claim": (link, payload) => keyPackages.serveClaim(link, payload),
      "fed:welcome": async (link, payload) => keyPackages.serveWelcome(link, payload, (d) => d === this.domain || this.peers.has(d)),
      "fed:device": (link, payload) => this.serveDeviceChange(link, payload),
      "fed:token": (link, payload) => this.serveHubToken(link, payload),
    };
    this.acceptor = new LinkAcceptor({
      io: ds.io,
      domain: this.domain,
      key: this.config.key.privateKey,
      trusted: new Map([...this.peers].map(([d, p]) => [d, p.key])),
      handlers,
      once: ONCE,
      onLinkLost: (link) => hub.linkLost(link),
      rateLimits: { ...LINK_LIMITS, ...this.config.linkRateLimits },
      log: this.log,
    });
    ds.io.on("connection", (socket) => this.clientConnected(socket));
  }

  handle(event: DsRequestEvent, principal: Principal, socket: Socket, payload: unknown): Promise<Record<string, unknown>> | undefined {
    const follower = this.followerRole!;
    const p = payload as Record<string, unknown>;
    if (GROUP_EVENTS.has(event)) {
      const groupId = p.groupId as string;
      const hub = follower.hubOf(groupId);
      return userFacing(hub ? this.remoteGroup(event, principal, socket, p, hub) : this.localGroup(event, principal, socket, p));
    }
    switch (event) {
      case "room:join": {
        const hub = this.hubOfRoom(p.room as string);
        return hub ? userFacing(follower.roomJoin(principal, p.room as string, hub)) : undefined;
      }
      case "ds:external-sender": {
        // Without a room (older clients) the answer is this DS's own sender, as before federation.
        const hub = p.room === undefined ? undefined : this.hubOfRoom(p.room as string);
        return hub ? userFacing(follower.externalSender(principal, hub, p.room as string, p.suite as number)) : undefined;
      }
      case "group:create": {
        const hub = this.hubOfRoom(p.room as string);
        return hub ? userFacing(Promise.resolve().then(() => follower.create(principal, hub, p))) : undefined;
      }
      case "kp:claim": {
        const provider = providerOfUser(p.user as string);
        if (!provider || !this.peers.has(provider)) return undefined;
        // Providers vouch only for their own users: a guest here (client fan-out) claims through its own DS.
        const home = providerOfUser(principal.user);
        if (home !== undefined && this.peers.has(home)) return Promise.reject(new DsError("unauthorized", `claims of ${principal.user} go through ${home}`));
        return userFacing(this.keyPackages!.claimRemote(principal, provider, p.user as string, p.suites as number[]).then((r) => ({ ...r })));
      }
      case "kp:upload":
        return this.upload(principal, socket, p);
      default:
        return undefined;
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    this.acceptor?.close();
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  // -------------------------------------------------------------------------------------------------------
  // Routing

  /** The remote provider hosting a room, or undefined when the room is this DS's own. */
  hubOfRoom(room: string): string | undefined {
    const provider = providerOfRoom(room);
    return provider && this.peers.has(provider) ? provider : undefined;
  }

  /** The (lazily connected) link to a trusted peer. */
  link(peer: string): PeerLink {
    let link = this.links.get(peer);
    if (link) return link;
    const p = this.peers.get(peer);
    if (!p) throw new FederationError("unknown-provider", `${peer} is not a configured peer of ${this.domain}`);
    link = new PeerLink({
      domain: this.domain,
      key: this.config.key.privateKey,
      peer: p,
      peerKey: p.key,
      requestTimeoutMs: this.config.requestTimeoutMs ?? 20_000,
      onReady: () => this.followerRole?.linkReady(peer),
      onDown: () => this.followerRole?.linkDown(peer),
      onPush: (event, payload) => this.push(peer, event, payload),
      log: this.log,
    });
    this.links.set(peer, link);
    return link;
  }

  private push(peer: string, event: LinkPushEvent, payload: unknown): void {
    try {
      if (event === "fed:entry") this.followerRole?.entry(peer, payload);
      else if (event === "fed:closed") this.followerRole?.closed(peer, payload);
      else if (event === "fed:device") this.followerRole?.device(peer, parse(this.schemas.device, payload));
    } catch (e) {
      this.log(`federation: ignored a malformed ${event} from ${peer}: ${String(e)}`);
    }
  }

  private async remoteGroup(event: DsRequestEvent, principal: Principal, socket: Socket, p: Record<string, unknown>, hub: string): Promise<Record<string, unknown>> {
    const follower = this.followerRole!;
    const groupId = p.groupId as string;
    switch (event) {
      case "group:subscribe":
        return follower.subscribe(principal, socket, groupId, p.after as number);
      case "group:unsubscribe":
        return follower.unsubscribe(principal, socket, groupId);
      case "group:ack":
        return follower.ack(principal, groupId, p.seq as number);
      case "group:leave":
        return follower.leave(principal, socket, groupId, hub);
      case "group:report":
        return follower.report(principal, hub, p);
      default: {
        const reply = await follower.send(principal, hub, p);
        this.afterSend(p, hub, reply);
        return reply;
      }
    }
  }

  /**
   * A group request the DS answers itself, unless it does not know the group: then a peer may host it (this
   * DS forgot its remote groups in a restart) and the request goes there.
   */
  private async localGroup(event: DsRequestEvent, principal: Principal, socket: Socket, p: Record<string, unknown>): Promise<Record<string, unknown>> {
    try {
      const reply = await this.ds!.dispatch(event, principal, socket, p);
      if (event === "group:send") this.afterSend(p, this.domain, reply);
      return reply;
    } catch (e) {
      if (!(e instanceof DsError) || e.code !== "unknown-group" || this.peers.size === 0) throw e;
      const hub = await this.followerRole!.locate(p.groupId as string);
      if (!hub) throw e;
      return this.remoteGroup(event, principal, socket, p, hub);
    }
  }

  /** A sequenced commit's Welcome also goes to the providers of the devices it adds. */
  private afterSend(p: Record<string, unknown>, hub: string, reply: Record<string, unknown>): void {
    if (!(p.welcome instanceof Uint8Array) || typeof reply.seq !== "number") return;
    void this.keyPackages!.routeWelcome(p.groupId as string, hub, reply.seq, p.welcome);
  }

  // -------------------------------------------------------------------------------------------------------
  // Devices

  private upload(principal: Principal, socket: Socket, p: Record<string, unknown>): Promise<Record<string, unknown>> {
    const ds = this.ds!;
    return (async () => {
      // A user of another provider (connected here for client fan-out) publishes at its own provider.
      const home = providerOfUser(principal.user);
      if (home !== undefined && this.peers.has(home)) throw new DsError("unauthorized", `KeyPackages of ${principal.user} are published at ${home}`);
      const before = await ds.store.keyPackageInventory(principal.user, Math.floor(Date.now() / 1000));
      const reply = await ds.dispatch("kp:upload", principal, socket, p);
      if (!before.some((d) => d.device === principal.device)) this.deviceChanged(principal.user, principal.device, "added");
      return reply;
    })();
  }

  /**
   * A user of this DS added or retired a device: every group it is in hears of it, through the group's hub
   * (this DS for its own groups). A retired device also leaves those calls (the hub proposes its removal).
   */
  deviceChanged(user: string, device: string, change: DeviceChange["change"]): void {
    void (async () => {
      for (const groupId of await this.hubRole!.groupsOf(user)) await this.announceHere({ groupId, user, device, change });
      if (providerOfUser(user) !== this.domain) return;
      for (const { groupId, hub } of this.followerRole!.groupsOf(user)) {
        await this.link(hub)
          .request("fed:device", { groupId, user, device, change }, { once: true })
          .catch((e) => this.log(`federation: device change for ${groupId.slice(0, 16)} not sent to ${hub}: ${String(e)}`));
      }
    })().catch((e) => this.log(`federation: device change of ${user} failed: ${String(e)}`));
  }

  private async announceHere(change: DeviceChange): Promise<void> {
    this.hubRole!.announce(change);
    if (change.change === "removed") {
      await this.hubRole!.retire(change.groupId, change.user, change.device).catch((e) => this.log(`federation: removing a retired device failed: ${String(e)}`));
    }
  }

  private async serveDeviceChange(link: InboundLink, payload: unknown): Promise<Record<string, unknown>> {
    const { groupId, user, device, change } = parse(this.schemas.device, payload);
    if (providerOfUser(user) !== link.peer) throw new FederationError("forbidden-user", `${link.peer} cannot speak for ${user}`);
    if (!(await this.hubRole!.groupsOf(user)).includes(groupId)) throw new DsError("not-a-member", "the user has no device in that group here");
    await this.announceHere({ groupId, user, device, change });
    return {};
  }

  // -------------------------------------------------------------------------------------------------------
  // Client-facing additions

  private clientConnected(socket: Socket): void {
    const principal = socket.data.principal as Principal;
    const on = <T>(event: string, schema: (v: unknown, path: string) => T, fn: (x: T) => Promise<Record<string, unknown>>) => {
      socket.on(event, (payload: unknown, ack: unknown) => {
        const reply = typeof ack === "function" ? (ack as (r: unknown) => void) : () => undefined;
        Promise.resolve()
          .then(() => fn(parse(schema, payload)))
          .then(
            (r) => reply({ ok: true, ...r }),
            (e: unknown) => reply({ ok: false, error: toWireError(toUserError(e)) }),
          );
      });
    };
    on("federation:hub-token", obj({ room: ROOM }), async ({ room }) => ({ ...(await this.hubToken(principal, room)) }));
    on("devices:remove", obj({ device: DEVICE }), async ({ device }) => {
      this.deviceChanged(principal.user, device, "removed");
      return {};
    });
    socket.on("disconnect", () => !this.closing && this.followerRole?.socketGone(principal, socket));
  }

  private async hubToken(principal: Principal, room: string): Promise<HubToken> {
    if (!mayJoin(principal, room)) throw new DsError("forbidden-room", "the token does not grant this room");
    const hub = this.hubOfRoom(room);
    const ttl = this.config.hubTokenTtlSeconds ?? 3600;
    if (!hub) return { hub: this.domain, ...(this.config.publicUrl ? { url: this.config.publicUrl } : {}), token: await this.ds!.tokens.issue({ user: principal.user, device: principal.device, rooms: [room] }, ttl) };
    if (providerOfUser(principal.user) !== this.domain) throw new DsError("unauthorized", `only users of ${this.domain} get tokens of other providers here`);
    const r = await this.link(hub).request("fed:token", { user: principal.user, device: principal.device, room }, { once: true });
    const token = parse(str({ min: 1, max: 8192 }), r.token);
    const url = r.url === undefined ? this.peers.get(hub)!.url : parse(str({ min: 1, max: 2048, pattern: /^https?:\/\/\S+$/ }), r.url);
    return { hub, url, token };
  }

  private async serveHubToken(link: InboundLink, payload: unknown): Promise<Record<string, unknown>> {
    const { user, device, room } = parse(this.schemas.token, payload);
    if (providerOfUser(user) !== link.peer) throw new FederationError("forbidden-user", `${link.peer} cannot ask for tokens of ${user}`);
    if (this.hubOfRoom(room) !== undefined || providerOfRoom(room) !== this.domain) throw new DsError("forbidden-room", `${room} is not a room of ${this.domain}`);
    const token = await this.ds!.tokens.issue({ user, device, rooms: [room] }, this.config.hubTokenTtlSeconds ?? 3600);
    return this.config.publicUrl ? { token, url: this.config.publicUrl } : { token };
  }

  // -------------------------------------------------------------------------------------------------------
  // Inspection (tests, operators)

  /** What this DS holds of a remote group it follows. */
  followed(groupId: string): { hub: string; head: number; epoch: number; roster: readonly RosterEntry[]; duplicates: number; live: boolean } | undefined {
    return this.followerRole?.metadata(groupId);
  }

  /** The devices of `peer`'s users this DS, as a hub, tracks as present in its calls ("user/device"). */
  remoteDevices(peer: string): string[] {
    return this.hubRole?.remoteDevices(peer) ?? [];
  }
}

function userFacing(p: Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
  return p.catch((e: unknown) => {
    throw toUserError(e);
  });
}
