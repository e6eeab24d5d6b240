/**
 * Providers as they are deployed: each a `sfu-signaling/main.ts` child process (tsx) with its own SQLite file,
 * its own token secret and its own provider key, configured only through main.ts's public settings (flags and
 * the DS_FEDERATION_* variables). Each DS reaches each peer through its own TCP proxy (a "wire"), so a test can
 * cut one provider's link to another and keep it down while everything else carries on. Ports are all 0
 * (chosen by the system), so files running in parallel never collide.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { TokenAuthority, type Principal } from "../../sfu-signaling/auth.js";
import { exportProviderKey, generateProviderKey, type ProviderKey } from "../../sfu-signaling/federation/index.js";
import type { LogKind } from "../../sfu-signaling/protocol.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

export interface ProcessSpec {
  readonly domain: string;
  /** Domains it lists as trusted peers (default: every other provider of the set). */
  readonly trusts?: readonly string[];
}

/** The proxy one DS reaches a peer through (the URL it is configured with for that peer). */
export interface Wire {
  readonly url: string;
  /** While true, new connections are refused (the link stays down). */
  down: boolean;
  /** Cuts the open connections, as a network failure would. */
  cut(): void;
}

export interface LogRow {
  readonly seq: number;
  readonly epoch: number;
  readonly kind: LogKind;
  readonly sender: string;
}

export interface DsProcess {
  readonly domain: string;
  /** Where its own users connect. */
  readonly url: string;
  readonly key: ProviderKey;
  token(p: Partial<Principal> & { user: string }): Promise<string>;
  /** Everything it printed. */
  output(): string;
  /** A counter or gauge of its /metrics (0 when the series does not exist yet). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** A group's log as its SQLite file holds it (read-only, beside the running DS). */
  log(groupId: string): LogRow[];
}

export interface ProviderProcesses {
  get(domain: string): DsProcess;
  wire(from: string, to: string): Wire;
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const START_MS = 60_000;

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  readonly dataDir: string;
}

export async function startProviderProcesses(specs: readonly ProcessSpec[], options: { leaveGraceMs?: number } = {}): Promise<ProviderProcesses> {
  const keys = new Map(specs.map((s) => [s.domain, generateProviderKey()]));
  const ports = new Map<string, number>();
  const wires = new Map<string, Wire & { proxy: TcpProxy }>();
  const children: Child[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill("SIGTERM");
        const timer = setTimeout(() => c.process.kill("SIGKILL"), 5000);
        await c.exited;
        clearTimeout(timer);
        rmSync(c.dataDir, { recursive: true, force: true });
      }),
    );
    await Promise.all([...wires.values()].map((w) => w.proxy.close()));
  };
  const trusts = (s: ProcessSpec) => s.trusts ?? specs.map((x) => x.domain).filter((d) => d !== s.domain);
  for (const s of specs) {
    for (const to of trusts(s)) {
      const state = { down: false };
      const proxy = await startTcpProxy(() => (state.down ? undefined : ports.get(to)));
      wires.set(`${s.domain}>${to}`, {
        url: `http://127.0.0.1:${proxy.port}`,
        proxy,
        get down() {
          return state.down;
        },
        set down(v: boolean) {
          state.down = v;
        },
        cut: () => proxy.cut(),
      });
    }
  }
  const started = await Promise.allSettled(
    specs.map(async (s): Promise<DsProcess> => {
      const key = keys.get(s.domain)!;
      const secret = `federation-process-secret-${s.domain}-0123456789`;
      // A peer it trusts but that is not part of the set gets a key nobody holds.
      const peers = trusts(s).map((to) => ({ domain: to, url: wires.get(`${s.domain}>${to}`)!.url, publicKey: (keys.get(to) ?? generateProviderKey()).publicKey }));
      const dataDir = mkdtempSync(join(tmpdir(), `conclave-${s.domain}-`));
      const env = { ...process.env, DS_FEDERATION_DOMAIN: s.domain, DS_FEDERATION_KEY: exportProviderKey(key), DS_FEDERATION_PEERS: JSON.stringify(peers) };
      const args = ["--import", "tsx", "sfu-signaling/main.ts", "--port", "0", "--data-dir", dataDir, "--no-dev", "--jwt-secret", secret];
      if (options.leaveGraceMs !== undefined) args.push("--leave-grace-ms", String(options.leaveGraceMs));
      const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      children.push({ process: child, exited, dataDir });
      let output = "";
      child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${s.domain} did not start:\n${output.slice(-3000)}`)), START_MS);
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`${s.domain} exited (${code}):\n${output.slice(-3000)}`));
        });
        child.stdout!.on("data", () => {
          const m = /Conclave DS listening on (http:\/\/\S+)/.exec(output);
          if (!m) return;
          clearTimeout(timer);
          resolve(m[1]!);
        });
      });
      ports.set(s.domain, Number(new URL(url).port));
      const tokens = new TokenAuthority(new TextEncoder().encode(secret));
      const dbPath = join(dataDir, "ds.sqlite");
      return {
        domain: s.domain,
        url,
        key,
        token: (p) => tokens.issue({ device: "d1", rooms: ["*"], ...p }, 3600),
        output: () => output,
        async metric(name, labels = {}) {
          const text = await (await fetch(`${url}/metrics`)).text();
          const key = Object.keys(labels)
            .sort()
            .map((k) => `${k}="${labels[k]}"`)
            .join(",");
          const series = `${name}${key ? `{${key}}` : ""} `;
          const line = text.split("\n").find((l) => l.startsWith(series));
          return line === undefined ? 0 : Number(line.slice(series.length));
        },
        log(groupId) {
          const db = new Database(dbPath, { readonly: true, fileMustExist: true });
          try {
            return db.prepare("SELECT seq, epoch, kind, sender FROM log WHERE group_id = ? ORDER BY seq").all(groupId) as LogRow[];
          } finally {
            db.close();
          }
        },
      };
    }),
  );
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  const byDomain = new Map(started.map((r) => [(r as PromiseFulfilledResult<DsProcess>).value.domain, (r as PromiseFulfilledResult<DsProcess>).value]));
  return {
    get: (domain) => byDomain.get(domain)!,
    wire: (from, to) => wires.get(`${from}>${to}`)!,
    stop,
  };
}
