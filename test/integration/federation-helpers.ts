/**
 * For the federation tests: several providers on loopback, each a real DS with the federation extension.
 * Every DS-to-DS link goes through a TCP proxy in front of the accepting DS, so a test can cut a provider's
 * incoming links and keep them down (`down = true`) while its users carry on; clients connect to their DS
 * directly. Or several providers as processes (startProviderProcesses), as they are deployed.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { TokenAuthority, type Principal } from "../../sfu-signaling/auth.js";
import { createFederation, exportProviderKey, generateProviderKey, type Federation, type ProviderKey, type TrustedPeer } from "../../sfu-signaling/federation/index.js";
import { startDs, type RunningDs } from "../../sfu-signaling/server.js";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import type { LogEntry, Store } from "../../sfu-signaling/store/store.js";
import { DsConnection } from "../../client/ds-connection.js";
import { CallSession, type CallSessionOptions } from "../../client/call-session.js";
import type { Peer } from "./call-helpers.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

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
      log: options.log ? (l) => console.log(`[${s.domain}] ${l}`) : undefined,
    });
    const ds = await startDs({ store, tokenKey, leaveGraceMs: options.leaveGraceMs ?? 5000, extension: federation, log: options.log ? (l) => console.log(`[${s.domain} ds] ${l}`) : undefined });
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

/** A CallSession of `name` over an open connection (to its own DS, or to the hub for client fan-out). */
export function sessionPeer(connection: DsConnection, name: string, room: string, options: Partial<CallSessionOptions> = {}): Peer {
  const session = new CallSession({ connection, room, ...options });
  const peer: Peer = { name, session, connection, epochs: [], errors: [], messages: [], closed: undefined };
  session.on("epoch", (e) => peer.epochs.push(e));
  session.on("error", (e) => peer.errors.push(e));
  session.on("message", (m) => peer.messages.push(m));
  session.on("closed", ({ reason }) => (peer.closed = reason));
  return peer;
}

export async function connectTo(provider: Provider, user: string, device = "d1"): Promise<DsConnection> {
  return DsConnection.connect({ url: provider.ds.url, token: await provider.token({ user, device }), transports: ["websocket"] });
}

/** `user@domain` on its own DS (server fan-out). */
export async function homePeer(provider: Provider, user: string, room: string, options: Partial<CallSessionOptions> = {}, device = "d1"): Promise<Peer> {
  return sessionPeer(await connectTo(provider, user, device), user, room, options);
}

export async function fullLog(store: Store, groupId: string): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for (;;) {
    const page = await store.readLog(groupId, out.length === 0 ? 0 : out[out.length - 1]!.seq, 500);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

export interface DsProcess {
  readonly domain: string;
  readonly url: string;
  readonly linkUrl: string;
  readonly tokens: TokenAuthority;
  token(p: Partial<Principal> & { user: string }): Promise<string>;
  output(): string;
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Providers as separate processes (`npm start`'s main.ts, configured through the DS_FEDERATION_* variables),
 * each behind a proxy whose port the others are configured with.
 */
export async function startProviderProcesses(domains: readonly string[], leaveGraceMs = 5000): Promise<DsProcess[]> {
  const keys = new Map(domains.map((d) => [d, generateProviderKey()]));
  const ports = new Map<string, number>();
  const proxies = new Map<string, TcpProxy>();
  for (const d of domains) proxies.set(d, await startTcpProxy(() => ports.get(d)));
  const started = await Promise.all(
    domains.map(async (d) => {
      const secret = `federation-process-secret-${d}-0123456789`;
      const peers = domains.filter((x) => x !== d).map((x) => ({ domain: x, url: `http://127.0.0.1:${proxies.get(x)!.port}`, publicKey: keys.get(x)!.publicKey }));
      const env = { ...process.env, DS_FEDERATION_DOMAIN: d, DS_FEDERATION_KEY: exportProviderKey(keys.get(d)!), DS_FEDERATION_PEERS: JSON.stringify(peers) };
      const child = spawn(process.execPath, ["--import", "tsx", "sfu-signaling/main.ts", "--port", "0", "--data-dir", ":memory:", "--no-dev", "--jwt-secret", secret, "--leave-grace-ms", String(leaveGraceMs)], {
        cwd: ROOT,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          reject(new Error(`${d} did not start:\n${output.slice(-3000)}`));
        }, 60_000);
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`${d} exited (${code}):\n${output.slice(-3000)}`));
        });
        child.stdout!.on("data", () => {
          const m = /Conclave DS listening on (http:\/\/\S+)/.exec(output);
          if (!m) return;
          clearTimeout(timer);
          resolve(m[1]!);
        });
      });
      ports.set(d, Number(new URL(url).port));
      const tokens = new TokenAuthority(new TextEncoder().encode(secret));
      const proxy = proxies.get(d)!;
      const ds: DsProcess = {
        domain: d,
        url,
        linkUrl: `http://127.0.0.1:${proxy.port}`,
        tokens,
        token: (p) => tokens.issue({ device: "d1", rooms: ["*"], ...p }, 3600),
        output: () => output,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          await exited;
          await proxy.close();
        },
      };
      return ds;
    }),
  );
  return started;
}
