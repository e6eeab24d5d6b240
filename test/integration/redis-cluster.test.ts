/**
 * Issue 9: one provider, two DS nodes (separate processes) on one Redis, clients behind a round-robin
 * balancer, participants being the product client (CallSession over DsConnection). One call across both
 * nodes; Redis crashes and comes back from its AOF; a node is killed and its participants carry on
 * through the other. Every epoch must be the same on every screen and once in the log.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from "vitest";
import { CallSession } from "../../client/call-session.js";
import { DsConnection } from "../../client/ds-connection.js";
import { TokenAuthority } from "../../sfu-signaling/auth.js";
import { RedisStore } from "../../sfu-signaling/store/redis.js";
import type { LogEntry } from "../../sfu-signaling/store/store.js";
import { allAt, describePeers, epochOf, fingerprint, until, type Peer } from "./call-helpers.js";
import { CLUSTER_JWT_SECRET, dsSupportsRedis, startCluster, type TestCluster } from "./redis-cluster.js";

const ROOM = "all-hands";
const GRACE_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Slow back-offs, so "the lowest member commits" stays true however loaded the machine is. */
const SLOW_BACKOFF = { commitPolicy: { backoffStepMs: 5000, maxBackoffMs: 20_000 } };

describe.skipIf(!dsSupportsRedis())("two DS nodes on one Redis", () => {
  let cluster: TestCluster;
  let store: RedisStore;
  const tokens = new TokenAuthority(new TextEncoder().encode(CLUSTER_JWT_SECRET));
  const peers: Peer[] = [];
  /** Node index of each peer's first connection. */
  const nodeOf = new Map<Peer, number>();
  /** How often each peer's connection dropped and came back. */
  const drops = new Map<Peer, { lost: number; back: number }>();
  let groupId: string;
  let chats = 0;
  let outageJoiner: Peer | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2, leaveGraceMs: GRACE_MS });
    store = await RedisStore.connect({ url: cluster.redis.url, keyPrefix: cluster.keyPrefix });
  });
  beforeEach(() => {
    onTestFailed(() => {
      console.log(`peers: ${describePeers(present())}`);
      for (const n of cluster.nodes) console.log(`--- ${n.name} (${n.alive ? "alive" : "dead"}):\n${n.output().slice(-4000)}`);
    });
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    await store?.close();
    await cluster?.close();
  });

  async function connect(name: string): Promise<Peer> {
    const token = await tokens.issue({ user: name, device: "d1", rooms: [ROOM] }, 3600);
    const before = cluster.placements.length;
    const connection = await DsConnection.connect({ url: cluster.url, token, transports: ["websocket"], reconnectionDelayMs: 200, reconnectionDelayMaxMs: 1000 });
    const session = new CallSession({ connection, room: ROOM, ...SLOW_BACKOFF });
    const peer: Peer = { name, session, connection, epochs: [], errors: [], messages: [], closed: undefined };
    session.on("epoch", (e) => peer.epochs.push(e));
    session.on("error", (e) => peer.errors.push(e));
    session.on("message", (m) => peer.messages.push(m));
    session.on("closed", ({ reason }) => (peer.closed = reason));
    nodeOf.set(peer, cluster.placements[before]!);
    const d = { lost: 0, back: 0 };
    drops.set(peer, d);
    connection.on("disconnected", () => d.lost++);
    connection.on("connected", ({ reconnect }) => reconnect && d.back++);
    peers.push(peer);
    return peer;
  }

  const present = () => peers.filter((p) => p.closed === undefined);

  async function agreeAt(epoch: bigint): Promise<void> {
    const live = present();
    await allAt(live, epoch);
    const prints = new Set(live.map((p) => fingerprint(p.session.currentEpoch!)));
    expect(prints.size, describePeers(live)).toBe(1);
  }

  async function fullLog(): Promise<LogEntry[]> {
    return store.readLog(groupId, 0, 100_000);
  }

  /** No fork: seqs 1..n without gaps, one commit per epoch 0..epoch-1, and the group at `epoch`. */
  async function oneHistory(epoch: bigint): Promise<void> {
    const log = await fullLog();
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    expect(log.filter((e) => e.kind === "commit").map((e) => e.epoch)).toEqual(Array.from({ length: Number(epoch) }, (_, i) => i));
    expect((await store.getGroup(groupId))!.epoch).toBe(Number(epoch));
  }

  /**
   * Errors but one that is not: a chat encrypted in the epoch before `joiner`'s join and sequenced after
   * it, which the joiner cannot read (it was not a member then) while everyone else does.
   */
  function errors(joiner?: Peer): unknown[] {
    return peers.flatMap((p) =>
      p.errors.filter((e) => !(p === joiner && e.code === "message-undecryptable" && String(e.error).includes("wrong-epoch"))),
    );
  }

  /** Entries the DS itself sent (its Remove proposals) after `from` entries. */
  async function dsProposalsAfter(from: number): Promise<LogEntry[]> {
    return (await fullLog()).slice(from).filter((e) => e.sender === "ds");
  }

  /** Waits until every peer whose connection dropped is connected again. */
  async function reconnected(): Promise<void> {
    await until(
      () => present().every((p) => drops.get(p)!.back >= drops.get(p)!.lost && p.connection.connected),
      () => `reconnections: ${present().map((p) => `${p.name} ${drops.get(p)!.lost}/${drops.get(p)!.back}`).join(", ")}`,
    );
  }

  async function commitsAccepted(nodeUrl: string): Promise<number> {
    const text = await (await fetch(`${nodeUrl}/metrics`)).text();
    return Number(/^conclave_ds_commits_accepted_total(?:\{\})? (\d+)/m.exec(text)?.[1] ?? 0);
  }

  /** Sends one uniquely named chat from `p`; resolves with its text once the DS acknowledged it. */
  async function chat(p: Peer): Promise<string> {
    const text = `chat-${chats++}-${p.name}`;
    await p.session.chat(text);
    return text;
  }

  /** Every present peer (but the sender) has `texts`, each exactly once; nobody has any text twice. */
  async function delivered(texts: readonly { from: Peer; text: string }[], among: readonly Peer[] = present()): Promise<void> {
    const live = among;
    const missing = () => live.flatMap((p) => texts.filter((t) => t.from !== p && !p.messages.some((m) => m.text === t.text)).map((t) => `${p.name} lacks ${t.text}`));
    await until(() => missing().length === 0, () => missing().slice(0, 5).join(", "));
    for (const p of live) expect(new Set(p.messages.map((m) => m.text)).size, `${p.name} got a duplicate`).toBe(p.messages.length);
  }

  it("puts participants of different nodes in one call: 20 concurrent joins end in one history", async () => {
    for (let i = 0; i < 20; i++) await connect(`p${i}`);
    // The balancer alternates, so each node carries half of the call.
    expect([...nodeOf.values()].filter((n) => n === 0)).toHaveLength(10);
    await peers[0]!.session.join();
    groupId = peers[0]!.session.groupId!;
    await Promise.all(peers.slice(1).map((p) => p.session.join()));
    await agreeAt(19n);
    expect(peers[0]!.session.currentEpoch!.members.map((m) => m.identity).sort()).toEqual(peers.map((p) => `${p.name}/d1`).sort());
    await oneHistory(19n);
    // Both nodes sequenced commits: the ordering really was decided across processes.
    for (const node of cluster.nodes) expect(await commitsAccepted(node.url), node.name).toBeGreaterThan(0);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
  });

  it("fans chat out across nodes, in order, to everyone", async () => {
    const sent: { from: Peer; text: string }[] = [];
    for (const p of [peers[0]!, peers[1]!, peers[2]!, peers[3]!]) sent.push({ from: p, text: await chat(p) });
    await delivered(sent);
    for (const p of present().filter((x) => x !== peers[0]!)) {
      const order = p.messages.map((m) => m.text).filter((t) => sent.some((s) => s.text === t && s.from !== p));
      expect(order).toEqual(sent.filter((s) => s.from !== p).map((s) => s.text));
    }
  });

  it("survives a Redis crash mid-call: the nodes reconnect, the call goes on, no fork", async () => {
    const before = epochOf(peers[0]!);
    const joiner = await connect("during-outage");
    await cluster.redis.stop("SIGKILL");
    // Issued while Redis is down: a join (an external commit, a rekey) and chat from both nodes.
    const join = joiner.session.join();
    const chatting = Promise.all([peers[4]!, peers[5]!].map(async (p) => ({ from: p, text: await chat(p) })));
    await cluster.redis.start();
    await until(() => joiner.session.joined, () => `the joiner to get in: ${describePeers([joiner])}`);
    await join;
    await agreeAt(before + 1n);
    await delivered(await chatting, present().filter((p) => p !== joiner));
    await oneHistory(before + 1n);
    expect(errors(joiner)).toEqual([]);
    outageJoiner = joiner;
  });

  it("keeps participants whose connections broke and who came back through the other node", async () => {
    const epoch = epochOf(peers[0]!);
    const logBefore = (await fullLog()).length;
    const placed = cluster.placements.length;
    // A network failure between the balancer and node 2, which stays up: its participants reconnect, and
    // the round-robin sends about half of them to node 1.
    cluster.balancer.cut(cluster.nodes[1]!.port);
    await until(() => present().some((p) => drops.get(p)!.lost > 0), () => "the cut to be noticed");
    await reconnected();
    expect(cluster.placements.slice(placed)).toContain(0);
    // Node 2 started their grace when they dropped; when it runs out they are present on node 1.
    await sleep(2 * GRACE_MS + 1000);
    const barrier = { from: peers[3]!, text: await chat(peers[3]!) };
    await delivered([barrier]);
    expect(await dsProposalsAfter(logBefore)).toEqual([]);
    expect(present()).toHaveLength(peers.length);
    expect(epochOf(peers[0]!)).toBe(epoch);
  });

  it("keeps a call going when a node is killed: its participants resume on the other node, nothing acknowledged lost or duplicated", async () => {
    const victim = 0;
    const onVictim = present().filter((p) => nodeOf.get(p) === victim);
    expect(onVictim.length).toBeGreaterThan(5);
    const epoch = epochOf(peers[0]!);

    // Chat from both nodes while the node dies: whatever the DS acknowledged must reach everyone once.
    const inFlight = present()
      .slice(0, 8)
      .map((p) =>
        chat(p).then(
          (text) => ({ from: p, text }),
          () => undefined,
        ),
      );
    await cluster.nodes[victim]!.kill("SIGKILL");
    const acknowledged = (await Promise.all(inFlight)).filter((x) => x !== undefined);

    await until(() => onVictim.every((p) => p.connection.connected), () => "the victim's participants to reconnect");
    expect(cluster.placements.slice(-onVictim.length).every((n) => n !== victim)).toBe(true);
    // A participant formerly on the dead node speaks; everyone, on the surviving node now, hears it.
    const after = { from: onVictim[0]!, text: await chat(onVictim[0]!) };
    await delivered([...acknowledged, after]);
    expect(present()).toHaveLength(peers.length);
    expect(epochOf(peers[0]!)).toBe(epoch);

    // The next rekeys work: a join, then a leave (the DS's Remove proposal, committed by a member).
    const late = await connect("after-kill");
    await late.session.join();
    await agreeAt(epoch + 1n);
    const leaver = onVictim[1]!;
    await leaver.session.leave();
    await agreeAt(epoch + 2n);
    expect(peers[0]!.session.currentEpoch!.members.map((m) => m.identity)).not.toContain(`${leaver.name}/d1`);
    await oneHistory(epoch + 2n);
    expect(errors(outageJoiner)).toEqual([]);
  });

  it("lets a restarted node serve the running call without removing anyone", async () => {
    const epoch = epochOf(present()[0]!);
    const logBefore = (await fullLog()).length;
    await cluster.replaceNode(0);
    // Its start gave every member of the call a grace period; all of them are on the other node.
    await sleep(2 * GRACE_MS + 1000);
    const joiners = [await connect("after-restart-1"), await connect("after-restart-2")];
    expect(joiners.map((p) => nodeOf.get(p))).toContain(0);
    for (const p of joiners) await p.session.join();
    await agreeAt(epoch + 2n);
    expect(await dsProposalsAfter(logBefore)).toEqual([]);
    await oneHistory(epoch + 2n);
    expect(errors(outageJoiner)).toEqual([]);
  });
});
