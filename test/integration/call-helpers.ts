/**
 * For the call-session tests: product participants (client/CallSession over client/DsConnection) against
 * a real DS on loopback, with every event they emit recorded, and waits that poll a condition (never a
 * timing assertion: the timeout only turns a hang into a readable failure).
 */
import { toHex } from "../../keying/codec/bytes.js";
import type { CallEpoch } from "../../keying/call/keyring.js";
import { CallSession, type CallErrorEvent, type CallSessionOptions, type CloseReason, type EpochEvent, type MessageEvent } from "../../client/call-session.js";
import { DsConnection } from "../../client/ds-connection.js";
import type { LogEntry, Store } from "../../sfu-signaling/store/store.js";
import type { TestDs } from "./ds-helpers.js";

export const WAIT_MS = 120_000;

export interface Peer {
  readonly name: string;
  readonly session: CallSession;
  readonly connection: DsConnection;
  readonly epochs: EpochEvent[];
  readonly errors: CallErrorEvent[];
  readonly messages: MessageEvent[];
  closed: CloseReason | undefined;
}

/** A CallSession of `name` over an open connection (to any DS: its own, or a hub for client fan-out). */
export function sessionPeer(connection: DsConnection, name: string, room: string, options: Partial<CallSessionOptions> = {}): Peer {
  const session = new CallSession({ connection, room, ...options });
  const peer: Peer = { name, session, connection, epochs: [], errors: [], messages: [], closed: undefined };
  session.on("epoch", (e) => peer.epochs.push(e));
  session.on("error", (e) => peer.errors.push(e));
  session.on("message", (m) => peer.messages.push(m));
  session.on("closed", ({ reason }) => (peer.closed = reason));
  return peer;
}

export async function connectPeer(t: TestDs, name: string, room: string, options: Partial<CallSessionOptions> = {}): Promise<Peer> {
  const connection = await DsConnection.connect({ url: t.ds.url, token: await t.token({ user: name, device: "d1" }), transports: ["websocket"] });
  return sessionPeer(connection, name, room, options);
}

export async function joinPeer(t: TestDs, name: string, room: string, options: Partial<CallSessionOptions> = {}): Promise<Peer> {
  const peer = await connectPeer(t, name, room, options);
  await peer.session.join();
  return peer;
}

export function epochOf(p: Peer): bigint {
  return p.session.currentEpoch?.epoch ?? -1n;
}

/** Polls `condition` until it holds; fails with `describe()` after `timeoutMs`. */
export async function until(condition: () => boolean, describe: () => string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function describePeers(peers: readonly Peer[]): string {
  return peers.map((p) => `${p.name}@${epochOf(p)}${p.errors.length ? ` errors: ${p.errors.map((e) => `${e.code} ${String(e.error)}`).join("; ")}` : ""}`).join(", ");
}

/** Waits until every peer is in `epoch`. */
export async function allAt(peers: readonly Peer[], epoch: bigint): Promise<void> {
  await until(() => peers.every((p) => epochOf(p) === epoch), () => `waiting for epoch ${epoch}: ${describePeers(peers)}`);
}

/** What must agree across the call for one epoch: keys and roster. */
export function fingerprint(e: CallEpoch): string {
  const roster = e.members.map((m) => `${m.leafIndex}:${m.identity}`).join(",");
  return `${e.epoch}|${toHex(e.epochAuthenticator)}|${toHex(e.baseKey)}|${e.safetyCode}|${roster}`;
}

/** A group's whole log in a store. */
export async function fullLog(store: Store, groupId: string): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for (;;) {
    const page = await store.readLog(groupId, out.length === 0 ? 0 : out[out.length - 1]!.seq, 500);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

export function groupLog(t: TestDs, groupId: string): Promise<LogEntry[]> {
  return fullLog(t.store, groupId);
}
