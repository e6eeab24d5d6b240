/**
 * For the federation tests: several providers on loopback, each a real DS with the federation extension.
 * Every DS-to-DS link goes through a TCP proxy in front of the accepting DS, so a test can cut a provider's
 * incoming links and keep them down (`down = true`) while its users carry on; clients connect to their DS
 * directly. Providers as separate processes: provider-processes.ts.
 */
import { TokenAuthority, type Principal } from "../../sfu-signaling/auth.js";
import { createFederation, generateProviderKey, type Federation, type FederationConfig, type ProviderKey, type TrustedPeer } from "../../sfu-signaling/federation/index.js";
import { startDs, type DsOptions, type RunningDs } from "../../sfu-signaling/server.js";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import type { Store } from "../../sfu-signaling/store/store.js";
import { DsConnection } from "../../client/ds-connection.js";
import type { CallSessionOptions } from "../../client/call-session.js";
import { sessionPeer, type Peer } from "./call-helpers.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";
import type { WireEntry } from "../../sfu-signaling/protocol.js";

export interface Provider {
  readonly domain: string;
  readonly key: ProviderKey;
  readonly proxy: TcpProxy;
  /** The URL peers use (through the proxy). */
  readonly linkUrl: string;
  ds: RunningDs;
  federation: Federation;
  readonly store: Store;
  readonly tokens: TokenAuthority;
  /** While true, the proxy refuses new links to this provider. */
  down: boolean;
  token(p: Partial<Principal> & { user: string }): Promise<string>;
}

export interface ProviderSpec {
  readonly domain: string;
  /** Domains it trusts (default: every other provider of the set). */
  readonly trusts?: readonly string[];
  /** Overrides of what it believes a peer's key is (misconfiguration tests). */
  readonly wrongKeys?: readonly string[];
}

export interface FederationOptions {
  readonly leaveGraceMs?: number;
  readonly requestTimeoutMs?: number;
  readonly log?: boolean;
  /** Further federation settings of every provider. */
  readonly federation?: Partial<Pick<FederationConfig, "maxRemoteDevices">>;
  /** Further DS settings of every provider. */
  readonly ds?: Partial<DsOptions>;
}

/** Starts one DS per spec, all linked (per their trust lists), each with its own token key. */
export async function startProviders(specs: readonly ProviderSpec[], options: FederationOptions = {}): Promise<Map<string, Provider>> {
  const keys = new Map(specs.map((s) => [s.domain, generateProviderKey()]));
  const ports = new Map<string, number>();
  const proxies = new Map<string, TcpProxy>();
  const downs = new Map<string, { down: boolean }>();
  for (const s of specs) {
    const state = { down: false };
    downs.set(s.domain, state);
    proxies.set(s.domain, await startTcpProxy(() => (state.down ? undefined : ports.get(s.domain))));
  }
  const out = new Map<string, Provider>();
  for (const s of specs) {
    const key = keys.get(s.domain)!;
    const trusts = s.trusts ?? specs.map((x) => x.domain).filter((d) => d !== s.domain);
    const peers: TrustedPeer[] = trusts.map((d) => ({
      domain: d,
      url: `http://127.0.0.1:${proxies.get(d)!.port}`,
      publicKey: s.wrongKeys?.includes(d) ? generateProviderKey().publicKey : keys.get(d)!.publicKey,
    }));
    const tokenKey = new TextEncoder().encode(`federation-test-key-${s.domain}-0123456789abcdef`);
    const store = new SqliteStore({ path: ":memory:" });
    const federation = createFederation({
      domain: s.domain,
      key,
      peers,
      requestTimeoutMs: options.requestTimeoutMs ?? 20_000,
      ...options.federation,
      log: options.log ? (l) => console.log(`[${s.domain}] ${l}`) : undefined,
    });
    const ds = await startDs({ ...options.ds, store, tokenKey, leaveGraceMs: options.leaveGraceMs ?? 5000, extension: federation, log: options.log ? (l) => console.log(`[${s.domain} ds] ${l}`) : undefined });
    ports.set(s.domain, ds.port);
    const tokens = new TokenAuthority(tokenKey);
    const proxy = proxies.get(s.domain)!;
    const state = downs.get(s.domain)!;
    out.set(s.domain, {
      domain: s.domain,
      key,
      proxy,
      linkUrl: `http://127.0.0.1:${proxy.port}`,
      ds,
      federation,
      store,
      tokens,
      get down() {
        return state.down;
      },
      set down(v: boolean) {
        state.down = v;
      },
      token: (p) => tokens.issue({ device: "d1", rooms: ["*"], ...p }, 3600),
    });
  }
  return out;
}

export async function stopProviders(providers: Map<string, Provider>): Promise<void> {
  for (const p of providers.values()) {
    await p.ds.close();
    await p.proxy.close();
    await p.store.close();
  }
}

export async function connectTo(provider: Provider, user: string, device = "d1"): Promise<DsConnection> {
  return DsConnection.connect({ url: provider.ds.url, token: await provider.token({ user, device }), transports: ["websocket"] });
}

/** `user@domain` on its own DS (server fan-out). */
export async function homePeer(provider: Provider, user: string, room: string, options: Partial<CallSessionOptions> = {}, device = "d1"): Promise<Peer> {
  return sessionPeer(await connectTo(provider, user, device), user, room, options);
}


/** The peers of a test and the raw group:msg seqs each one's connection received (once-and-in-order checks). */
export class TrackedPeers {
  readonly peers: Peer[] = [];
  readonly received = new Map<Peer, number[]>();

  add(p: Peer): Peer {
    const seqs: number[] = [];
    this.received.set(p, seqs);
    p.connection.socket.on("group:msg", (e: WireEntry) => seqs.push(e.seq));
    this.peers.push(p);
    return p;
  }
}
