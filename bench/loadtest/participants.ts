/**
 * A load-test worker thread: hosts some of the call's participants, each a real CallSession over its own
 * DsConnection (socket.io-client over loopback), and reports what the coordinator measures: when each
 * participant installed each epoch's SFrame keys (the media hook), when its copy of each commit arrived,
 * and which departures it saw. Reports are batched per event-loop turn, so reporting stays cheap while
 * hundreds of participants process the same commit.
 */
import { writeFileSync } from "node:fs";
import { Session as InspectorSession } from "node:inspector";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { join as joinPath } from "node:path";
import { parentPort, threadId, workerData } from "node:worker_threads";
import { toHex } from "../../keying/codec/bytes.js";
import { CallSession } from "../../client/call-session.js";
import { DsConnection } from "../../client/ds-connection.js";
import { fetchDevToken } from "../../client/dev-token.js";
import { parseEntry } from "../../client/protocol.js";
import { inWindows, procStatCpuMs } from "./util.js";
import { DEVICE, now, participantName, type Command, type CommitSeen, type DepartureSeen, type FinalState, type Install, type Report, type SessionProblem, type WorkerSetup } from "./protocol.js";

interface Participant {
  readonly id: number;
  readonly connection: DsConnection;
  readonly session: CallSession;
  /** When this participant received the commit that starts each epoch, until that epoch is installed. */
  readonly commitReceived: Map<number, number>;
}

const port = parentPort;
if (!port) throw new Error("participants.ts runs as a worker thread");
const setup = workerData as WorkerSetup;
const participants = new Map<number, Participant>();

const installs: Install[] = [];
const commits: CommitSeen[] = [];
const departures: DepartureSeen[] = [];
const problems: SessionProblem[] = [];
/** Commits and departures are the same for every participant of the call: one report per worker is enough. */
const commitsSeen = new Set<number>();
const departuresSeen = new Set<string>();
let flushScheduled = false;
let shuttingDown = false;

function post(report: Report): void {
  port!.postMessage(report);
}

function scheduleFlush(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    post({ t: "events", installs: installs.splice(0), commits: commits.splice(0), departures: departures.splice(0), problems: problems.splice(0) });
  });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function prepare(id: number): Promise<void> {
  const { token } = await fetchDevToken(setup.url, { name: participantName(id), device: DEVICE, rooms: [setup.room] });
  const connection = await DsConnection.connect({ url: setup.url, token, transports: ["websocket"] });
  const commitReceived = new Map<number, number>();
  const session = new CallSession({
    connection,
    room: setup.room,
    // The media layer's hook: the moment this participant holds the epoch's SFrame keys.
    onEpochKeys: (update) => {
      const epoch = Number(update.epoch);
      const installedAt = now();
      const auth = session.currentEpoch?.epoch === update.epoch ? toHex(session.currentEpoch.epochAuthenticator) : "";
      installs.push([id, epoch, installedAt, commitReceived.get(epoch) ?? Number.NaN, auth]);
      for (const e of commitReceived.keys()) if (e <= epoch) commitReceived.delete(e);
      scheduleFlush();
    },
  });
  // After DsConnection's own listener: the arrival time of the participant's copy of each commit.
  connection.socket.on("group:msg", (payload: unknown) => {
    const receivedAt = now();
    let entry;
    try {
      entry = parseEntry(payload);
    } catch {
      return;
    }
    if (entry.kind !== "commit") return;
    commitReceived.set(entry.epoch + 1, receivedAt);
    if (commitsSeen.has(entry.seq)) return;
    commitsSeen.add(entry.seq);
    commits.push([entry.epoch + 1, entry.at, entry.message.byteLength, receivedAt]);
    scheduleFlush();
  });
  session.on("member-left", ({ member, epoch, self }) => {
    const key = `${member.identity}@${epoch}`;
    if (self || departuresSeen.has(key)) return;
    departuresSeen.add(key);
    departures.push([member.identity, Number(epoch)]);
    scheduleFlush();
  });
  session.on("error", ({ code, error, recovering }) => {
    problems.push({ id, code, message: errorText(error), recovering });
    scheduleFlush();
  });
  session.on("closed", ({ reason }) => {
    if (reason === "left" || shuttingDown) return;
    problems.push({ id, code: `closed:${reason}`, message: `the session closed (${reason})`, recovering: false });
    scheduleFlush();
  });
  participants.set(id, { id, connection, session, commitReceived });
}

function participant(id: number): Participant {
  const p = participants.get(id);
  if (!p) throw new Error(`participant ${id} is not prepared in this worker`);
  return p;
}

async function join(id: number): Promise<void> {
  const { session } = participant(id);
  const requestedAt = now();
  const epoch = await session.join();
  post({ t: "joined", id, epoch: Number(epoch.epoch), requestedAt, doneAt: now() });
}

async function leave(id: number): Promise<void> {
  const { session, connection } = participant(id);
  const requestedAt = now();
  await session.leave();
  const doneAt = now();
  connection.close();
  participants.delete(id);
  post({ t: "left", id, requestedAt, doneAt });
}

/** This thread's CPU time; where /proc is missing, its event loop's active time, which also counts time it was runnable but not running. */
function threadCpuMs(): { cpuMs: number; source: "thread" | "event-loop" } {
  const cpuMs = procStatCpuMs("/proc/thread-self/stat");
  return cpuMs === undefined ? { cpuMs: performance.eventLoopUtilization().active, source: "event-loop" } : { cpuMs, source: "thread" };
}

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

function finalStates(): FinalState[] {
  const out: FinalState[] = [];
  for (const p of participants.values()) {
    const current = p.session.currentEpoch;
    if (!p.session.joined || !current) continue;
    out.push({ id: p.id, epoch: Number(current.epoch), authenticator: toHex(current.epochAuthenticator) });
  }
  return out;
}

let profiler: InspectorSession | undefined;

function inspector<T>(method: string): Promise<T> {
  return new Promise((resolve, reject) => profiler!.post(method, (e, result) => (e ? reject(e) : resolve(result as T))));
}

async function startProfile(): Promise<void> {
  profiler = new InspectorSession();
  profiler.connect();
  await inspector("Profiler.enable");
  await inspector("Profiler.start");
}

async function stopProfile(dir: string, prefix: string): Promise<void> {
  if (!profiler) return;
  const { profile } = await inspector<{ profile: unknown }>("Profiler.stop");
  profiler.disconnect();
  profiler = undefined;
  writeFileSync(joinPath(dir, `${prefix}-${threadId}.cpuprofile`), JSON.stringify(profile));
}

function fail(id: number, what: "prepare" | "join" | "leave", e: unknown): void {
  post({ t: "failed", id, what, message: errorText(e) });
}

port.on("message", (command: Command) => {
  switch (command.t) {
    case "prepare":
      void inWindows(command.ids, setup.connectWindow, (id) =>
        prepare(id).then(
          () => post({ t: "prepared", id }),
          (e: unknown) => fail(id, "prepare", e),
        ),
      );
      return;
    case "join":
      join(command.id).catch((e: unknown) => fail(command.id, "join", e));
      return;
    case "leave":
      leave(command.id).catch((e: unknown) => fail(command.id, "leave", e));
      return;
    case "cpu": {
      const p99 = loopDelay.percentile(99) / 1e6;
      loopDelay.reset();
      post({ t: "cpu", ...threadCpuMs(), eventLoopDelayP99Ms: p99 });
      return;
    }
    case "final":
      post({ t: "final", states: finalStates() });
      return;
    case "profile-start":
      startProfile().then(() => post({ t: "profiled" }), () => post({ t: "profiled" }));
      return;
    case "profile-stop":
      stopProfile(command.dir, command.prefix).then(() => post({ t: "profiled" }), () => post({ t: "profiled" }));
      return;
    case "shutdown":
      shuttingDown = true;
      for (const p of participants.values()) p.connection.close();
      participants.clear();
      loopDelay.disable();
      post({ t: "shutdown" });
      return;
  }
});
