/**
 * The DS process (`main.ts`, SQLite on disk) is killed with SIGKILL mid-call and started again on the same
 * port: clients reconnect and resume, nothing acknowledged is lost, no accepted commit is accepted again,
 * members that do not come back are removed after the grace, and the next join and leave work.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TokenAuthority } from "../../sfu-signaling/auth.js";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import { TOKEN_KEY, errorCode, ok, request } from "./ds-helpers.js";
import { Participant } from "./ds-participant.js";

const ROOT = new URL("../..", import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface DsProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly output: string[];
}

async function startProcess(port: number, dataDir: string, graceMs: number): Promise<DsProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "sfu-signaling/main.ts", "--no-dev"], {
    cwd: ROOT,
    env: {
      ...process.env,
      DS_PORT: String(port),
      DS_DATA_DIR: dataDir,
      DS_JWT_SECRET: new TextDecoder().decode(TOKEN_KEY),
      DS_LEAVE_GRACE_MS: String(graceMs),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      const m = /listening on (http:\/\/\S+)/.exec(output.join(""));
      if (m) resolve(m[1]!);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => output.push(c.toString()));
    child.once("exit", (code) => reject(new Error(`DS exited with ${code}: ${output.join("")}`)));
  });
  return { child, url, output };
}

function stop(p: DsProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
    p.child.once("exit", () => resolve());
    p.child.kill(signal);
  });
}

describe("DS restart", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "conclave-ds-restart-"));
  const authority = new TokenAuthority(TOKEN_KEY);
  const token = (user: string) => authority.issue({ user, device: "d1", rooms: ["*"] }, 3600);
  const processes: DsProcess[] = [];
  const participants: Participant[] = [];
  afterAll(async () => {
    for (const p of participants) p.close();
    for (const p of processes) await stop(p, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("survives SIGKILL mid-call with nothing acknowledged lost and no commit accepted twice", async () => {
    const port = await freePort();
    const first = await startProcess(port, dataDir, 60_000);
    processes.push(first);
    const enter = async (user: string, url: string) => {
      const p = await Participant.connect(url, await token(user), `${user}/d1`);
      participants.push(p);
      await p.join("restart-room");
      return p;
    };
    const a = await enter("a", first.url);
    const b = await enter("b", first.url);
    const c = await enter("c", first.url);
    const gone = await enter("gone", first.url);
    await Promise.all([a, b, c, gone].map((p) => p.waitForEpoch(3n)));
    const groupId = a.groupId!;

    // c drops out; a chats and b commits while it is away. Every one of these is acknowledged with a seq.
    c.socket.disconnect();
    const acked: number[] = [];
    for (const text of ["one", "two", "three"]) {
      const r = await a.send(text);
      acked.push(ok(r).seq);
    }
    const winner = await b.inQueue(async () => {
      const out = await b.group!.commit({});
      const r = await request<{ seq: number }>(b.socket, "group:send", { groupId, message: out.commit, groupInfo: out.groupInfo });
      return { ...out, seq: ok(r).seq };
    });
    acked.push(winner.seq);
    await a.waitForEpoch(4n);

    await stop(first, "SIGKILL");
    gone.close();

    // Same port, same data directory; a shorter grace so the member that never returns is removed.
    const second = await startProcess(port, dataDir, 3000);
    processes.push(second);
    for (const p of [a, b, c]) await p.reconnect(second.url, await token(p.name.split("/")[0]!));

    await c.waitUntil(() => c.messages.length === 3, "the three acknowledged messages");
    expect(c.messages).toEqual(["one", "two", "three"]);
    await c.waitForEpoch(4n);

    // The commit accepted before the crash is not accepted a second time.
    const replay = await request(b.socket, "group:send", { groupId, message: winner.commit, groupInfo: winner.groupInfo });
    expect(errorCode(replay)).toBe("wrong-epoch");

    // "gone" never reconnects: after the grace the DS proposes its removal and a member commits it.
    await Promise.all([a, b, c].map((p) => p.waitForEpoch(5n)));
    expect(a.memberNames()).toEqual(["a/d1", "b/d1", "c/d1"]);

    // The next join and the next leave work.
    const d = await enter("d", second.url);
    await Promise.all([a, b, c, d].map((p) => p.waitForEpoch(6n)));
    await c.leave();
    await Promise.all([a, b, d].map((p) => p.waitForEpoch(7n)));
    const auths = await Promise.all([a, b, d].map((p) => p.authenticator()));
    expect(new Set(auths).size).toBe(1);
    expect(a.memberNames()).toEqual(["a/d1", "b/d1", "d/d1"]);
    for (const p of [a, b, c, d]) expect(p.errors).toEqual([]);

    await stop(second, "SIGTERM");
    const store = new SqliteStore({ path: join(dataDir, "ds.sqlite") });
    try {
      const log = await store.readLog(groupId, 0, 10_000);
      expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
      for (const seq of acked) expect(log.some((e) => e.seq === seq)).toBe(true);
      expect(log.filter((e) => e.kind === "commit").map((e) => e.epoch)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    } finally {
      await store.close();
    }
  });
});
