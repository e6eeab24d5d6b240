/**
 * A private redis-server for one test file: a free loopback port, its own temporary directory (AOF on,
 * fsync on every write), stopped and deleted at the end. It can be restarted on the same port and data,
 * gracefully (SIGTERM: Redis flushes and exits) or abruptly (SIGKILL: only what was fsynced survives).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REDIS_SERVER = process.env.REDIS_SERVER ?? "redis-server";

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Stops the server (SIGTERM by default) and waits for its exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and directory (after stop). */
  start(): Promise<void>;
  /** Stops it for good and deletes its directory. */
  destroy(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function launch(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER,
    [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--dir", dir,
      "--appendonly", "yes",
      "--appendfsync", "always",
      "--save", "",
      "--daemonize", "no",
      "--logfile", "",
      "--databases", "1",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ready to accept connections")) {
        child.stdout!.off("data", onData);
        child.off("exit", onExit);
        child.stdout!.resume();
        resolve(child);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output.slice(-2000)}`));
    child.once("error", (e) => reject(new Error(`cannot run ${REDIS_SERVER} (install Debian's redis-server): ${e.message}`)));
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    child.once("exit", onExit);
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function startRedis(): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), "conclave-redis-"));
  let child: ChildProcess | undefined;
  let port = 0;
  // Another process may take the port between our probe and redis-server's bind: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir);
      break;
    } catch (e) {
      if (attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
  const t: TestRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    async stop(signal = "SIGTERM") {
      if (!child) return;
      const c = child;
      child = undefined;
      c.kill(signal);
      await exited(c);
    },
    async start() {
      if (child) throw new Error("redis-server is already running");
      child = await launch(port, dir);
    },
    async destroy() {
      await t.stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
