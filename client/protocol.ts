/**
 * The client's side of the DS socket protocol (documented at the top of sfu-signaling/server.ts). The
 * payload types are the DS's own, imported as types only (nothing of the server is loaded); binary fields
 * arrive as Buffer in Node and ArrayBuffer in browsers, so every payload from the DS is checked and
 * normalised here before use, as the DS does with ours.
 */
import type { GroupSnapshot, WireEntry } from "../sfu-signaling/ds/groups.js";
import type { DsErrorCode } from "../sfu-signaling/errors.js";

export type { DsErrorCode, GroupSnapshot, WireEntry };

/** The DS refused a request: `code` is its stable reason, `extra` the structured data some codes carry. */
export class DsRequestError extends Error {
  override readonly name = "DsRequestError";
  constructor(
    readonly event: string,
    readonly code: DsErrorCode,
    message: string,
    readonly extra: Readonly<Record<string, unknown>> = {},
  ) {
    super(`${event}: ${code}: ${message}`);
  }
}

/**
 * No answer: the request timed out or the connection closed first. Unlike a refusal, the DS may or may
 * not have acted on it; for a commit, the group's log tells.
 */
export class DsUnavailableError extends Error {
  override readonly name = "DsUnavailableError";
  constructor(
    readonly event: string,
    readonly reason: "timeout" | "disconnected" | "closed",
  ) {
    super(`${event}: ${reason === "timeout" ? "no answer from the DS in time" : reason === "disconnected" ? "the connection dropped before the answer" : "the connection is closed"}`);
  }
}

/** The DS sent something that does not follow the protocol. */
export class DsProtocolError extends Error {
  override readonly name = "DsProtocolError";
}

const MAX_ID_LENGTH = 256;

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new DsProtocolError(`${what}: expected an object`);
  return v as Record<string, unknown>;
}

export function bytesOf(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new DsProtocolError(`${what}: expected binary data`);
}

function count(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new DsProtocolError(`${what}: expected a non-negative integer`);
  return v;
}

function text(v: unknown, what: string, max = MAX_ID_LENGTH): string {
  if (typeof v !== "string" || v.length > max) throw new DsProtocolError(`${what}: expected a string of at most ${max} characters`);
  return v;
}

const LOG_KINDS: ReadonlySet<string> = new Set<WireEntry["kind"]>(["commit", "proposal", "application"]);

/** A `group:msg` payload. */
export function parseEntry(v: unknown): WireEntry {
  const o = record(v, "group:msg");
  const kind = text(o.kind, "group:msg kind");
  if (!LOG_KINDS.has(kind)) throw new DsProtocolError(`group:msg: unknown kind`);
  return {
    groupId: text(o.groupId, "group:msg groupId"),
    seq: count(o.seq, "group:msg seq"),
    epoch: count(o.epoch, "group:msg epoch"),
    kind: kind as WireEntry["kind"],
    sender: text(o.sender, "group:msg sender"),
    message: bytesOf(o.message, "group:msg message"),
    at: count(o.at, "group:msg at"),
  };
}

/** A GroupSnapshot (from `room:join`, `group:create`, or a joiner's `wrong-epoch` refusal). */
export function parseSnapshot(v: unknown): GroupSnapshot {
  const o = record(v, "group snapshot");
  return {
    groupId: text(o.groupId, "snapshot groupId"),
    room: text(o.room, "snapshot room"),
    suite: count(o.suite, "snapshot suite"),
    epoch: count(o.epoch, "snapshot epoch"),
    seq: count(o.seq, "snapshot seq"),
    groupInfo: bytesOf(o.groupInfo, "snapshot groupInfo"),
    tree: bytesOf(o.tree, "snapshot tree"),
  };
}

/** The ack of a request: its result, or the refusal as a DsRequestError. */
export function parseReply(event: string, v: unknown): Record<string, unknown> {
  const o = record(v, `${event} reply`);
  if (o.ok === true) return o;
  if (o.ok === false) {
    const e = record(o.error, `${event} error`);
    const { code, message, ...extra } = e;
    throw new DsRequestError(event, text(code, `${event} error code`, 64) as DsErrorCode, text(message ?? "", `${event} error message`, 1000), extra);
  }
  throw new DsProtocolError(`${event} reply: missing ok`);
}

export function numberField(o: Record<string, unknown>, key: string, what: string): number {
  return count(o[key], `${what} ${key}`);
}

/** Who a connection token names: the `sub` and `device` claims, read (not verified: the DS does that). */
export interface TokenPrincipal {
  readonly user: string;
  readonly device: string;
}

export function principalOfToken(token: string): TokenPrincipal {
  const part = token.split(".")[1];
  if (!part) throw new DsProtocolError("the token is not a JWT");
  let claims: Record<string, unknown>;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    claims = record(JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))), "token claims");
  } catch (e) {
    if (e instanceof DsProtocolError) throw e;
    throw new DsProtocolError("the token's claims are not JSON");
  }
  return { user: text(claims.sub, "token sub"), device: text(claims.device, "token device", 64) };
}

/** The basic-credential identity the DS requires of a device's leaves. */
export function memberIdentity(p: TokenPrincipal): string {
  return `${p.user}/${p.device}`;
}
