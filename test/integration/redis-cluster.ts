/**
 * Several DS nodes on one Redis, as separate processes (`sfu-signaling/main.ts` with REDIS_URL), behind a
 * round-robin loopback balancer, for the multi-node tests and the load test. A node can be killed with a
 * signal like a crashed process; the balancer then sends new connections to the nodes still alive.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../sfu-signaling/config.js";
import { startRedis, type TestRedis } from "./redis-server.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLUSTER_JWT_SECRET = "cluster-test-secret-0123456789abcdef";

/** Whether main.ts can run on Redis yet (the DS's configuration knows REDIS_URL). */
export function dsSupportsRedis(): boolean {
  return "redisUrl" in parseConfig([], { REDIS_URL: "redis://127.0.0.1:1" }, true);
}

export interface DsNode {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Everything the process printed (for failure messages). */
  output(): string;
  readonly alive: boolean;
  /** Sends the signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface DsNodeOptions {
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly name: string;
  readonly leaveGraceMs: number;
  /** Development mode (GET /dev/token, the token key shared through Redis) instead of CLUSTER_JWT_SECRET. */
  readonly devMode?: boolean;
}

export function startDsNode(o: DsNodeOptions): Promise<DsNode> {
  const child: ChildProcess = spawn(
    process.execPath,
    // A node that ignored REDIS_URL must not leave a SQLite file behind: hence ":memory:".
    [
      ...["--import", "tsx", "sfu-signaling/main.ts", "--port", "0", "--data-dir", ":memory:"],
      ...(o.devMode ? ["--dev"] : ["--no-dev", "--jwt-secret", CLUSTER_JWT_SECRET]),
      ...["--leave-grace-ms", String(o.leaveGraceMs), "--name", o.name],
    ],
    { cwd: ROOT, env: { ...process.env, REDIS_URL: o.redisUrl, DS_REDIS_PREFIX: o.keyPrefix }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail("did not start within 60 s"), 60_000);
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`DS node ${o.name} ${why}:\n${output.slice(-3000)}`));
    };
    const onExit = (code: number | null) => fail(`exited (${code})`);
    child.once("exit", onExit);
    const onData = () => {
      const m = /Conclave DS listening on (http:\/\/\S+) \(store ([^)]*)\)/.exec(output);
      if (!m) return;
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      clearTimeout(timer);
      if (!m[2]!.startsWith("redis")) return fail(`runs on another store: ${m[2]}`);
      const url = m[1]!;
      resolve({
        name: o.name,
        url,
        port: Number(new URL(url).port),
        output: () => output,
        get alive() {
          return child.exitCode === null && child.signalCode === null;
        },
        async kill(signal = "SIGTERM") {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    };
    child.stdout!.on("data", onData);
  });
}

export interface TestCluster {
  readonly redis: TestRedis;
  readonly nodes: DsNode[];
  /** The balancer's address: what clients connect to. */
  readonly url: string;
  readonly keyPrefix: string;
  /** Node index of each connection the balancer placed, in order. */
  readonly placements: number[];
  readonly balancer: TcpProxy;
  /** Starts a fresh process in place of node `i` (after it was killed). */
  replaceNode(i: number): Promise<DsNode>;
  close(): Promise<void>;
}

export async function startCluster(options: { nodes: number; leaveGraceMs: number; keyPrefix?: string; devMode?: boolean }): Promise<TestCluster> {
  const redis = await startRedis();
  const keyPrefix = options.keyPrefix ?? "conclave:";
  const nodes: DsNode[] = [];
  const start = (i: number) => startDsNode({ redisUrl: redis.url, keyPrefix, name: `node-${i + 1}`, leaveGraceMs: options.leaveGraceMs, devMode: options.devMode });
  let proxy: TcpProxy | undefined;
  const placements: number[] = [];
  try {
    for (let i = 0; i < options.nodes; i++) {
      nodes.push(await start(i));
    }
    let turn = 0;
    proxy = await startTcpProxy(() => {
      for (let k = 0; k < nodes.length; k++) {
        const i = (turn + k) % nodes.length;
        if (nodes[i]!.alive) {
          turn = i + 1;
          placements.push(i);
          return nodes[i]!.port;
        }
      }
      return undefined;
    });
  } catch (e) {
    for (const n of nodes) await n.kill("SIGKILL");
    await redis.destroy();
    throw e;
  }
  const balancer = proxy;
  return {
    redis,
    nodes,
    url: `http://127.0.0.1:${balancer.port}`,
    keyPrefix,
    placements,
    balancer,
    async replaceNode(i) {
      await nodes[i]!.kill("SIGKILL");
      nodes[i] = await start(i);
      return nodes[i]!;
    },
    async close() {
      await balancer.close();
      for (const n of nodes) await n.kill("SIGTERM");
      await redis.destroy();
    },
  };
}
