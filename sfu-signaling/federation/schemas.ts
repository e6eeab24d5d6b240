/**
 * Schemas of what crosses a link, in both directions: a peer is trusted with its own users, not with
 * well-formedness, so everything it sends is checked and size-limited like a client's payload.
 */
import type { ClaimResult, GroupSnapshot, LogKind, WireEntry } from "../protocol.js";
import { GROUP_ID, ROOM, SEQ, SUITE, arr, bool, bytes, obj, optional, str, type Schema } from "../validate.js";
import { DEVICE, USER } from "../auth.js";
import { DsError } from "../errors.js";

export { DEVICE, USER };

const DOMAIN = str({ min: 1, max: 253, pattern: /^[a-z0-9.-]+$/ });
const ID = str({ min: 8, max: 64, pattern: /^[A-Za-z0-9_-]+$/ });
const EVENT = str({ min: 1, max: 32, pattern: /^[a-z:-]+$/ });
const KINDS: ReadonlySet<string> = new Set<LogKind>(["commit", "proposal", "application"]);
const LOG_KIND: Schema<LogKind> = (v, path) => {
  if (typeof v !== "string" || !KINDS.has(v)) throw new DsError("invalid-payload", `${path}: unknown log kind`);
  return v as LogKind;
};
const CHANGE: Schema<"added" | "removed"> = (v, path) => {
  if (v !== "added" && v !== "removed") throw new DsError("invalid-payload", `${path}: expected added or removed`);
  return v;
};
const PAYLOAD: Schema<Record<string, unknown>> = (v, path) => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new DsError("invalid-payload", `${path}: expected an object`);
  return v as Record<string, unknown>;
};

export function linkSchemas(maxPayload: number) {
  const mls = bytes({ max: maxPayload });
  const entry: Schema<WireEntry> = obj({ groupId: GROUP_ID, seq: SEQ, epoch: SEQ, kind: LOG_KIND, sender: str({ min: 1, max: 300 }), message: mls, at: SEQ });
  const snapshot: Schema<GroupSnapshot> = obj({ groupId: GROUP_ID, room: ROOM, suite: SUITE, epoch: SEQ, seq: SEQ, groupInfo: mls, tree: mls });
  const bundle = obj({ device: DEVICE, keyPackage: bytes({ max: 64 << 10 }), identityKey: str({ max: 300, pattern: /^[0-9a-f]*$/ }), lastResort: bool() });
  const claimResult: Schema<ClaimResult> = obj({ user: USER, suite: SUITE, devices: arr(bundle, { max: 10 }), exhausted: arr(DEVICE, { max: 10 }) });
  return {
    entry,
    snapshot,
    claimResult,
    // Initiator -> acceptor.
    act: obj({ id: ID, user: USER, device: DEVICE, event: EVENT, payload: PAYLOAD }),
    follow: obj({ groupId: GROUP_ID, after: SEQ }),
    unfollow: obj({ groupId: GROUP_ID }),
    read: obj({ groupId: GROUP_ID, after: SEQ, limit: SEQ }),
    locate: obj({ groupId: GROUP_ID }),
    claim: obj({ id: ID, requester: USER, user: USER, suites: arr(SUITE, { min: 1, max: 16 }) }),
    welcome: obj({ id: ID, groupId: GROUP_ID, hub: DOMAIN, seq: SEQ, welcome: mls }),
    device: obj({ id: optional(ID), groupId: GROUP_ID, user: USER, device: DEVICE, change: CHANGE }),
    token: obj({ id: ID, user: USER, device: DEVICE, room: ROOM }),
    // Acceptor -> initiator.
    entryPush: obj({ groupId: GROUP_ID, entry, next: optional(obj({ groupInfo: mls, tree: mls })) }),
    closedPush: obj({ groupId: GROUP_ID }),
    entries: obj({ entries: arr(entry, { max: 64 }) }),
    followReply: obj({ group: snapshot, head: SEQ }),
    optionalSnapshot: optional(snapshot),
  };
}

export type LinkSchemas = ReturnType<typeof linkSchemas>;
