/**
 * Federation on the wire. Two parts:
 *
 * 1. What clients see in addition to the DS protocol (../protocol.ts), on their usual connection:
 *    - request `federation:hub-token { room }` -> `{ hub, url, token }`: a token the room's hub accepts,
 *      to connect to it directly (client fan-out);
 *    - request `devices:remove { device }` -> `{}`: the user retires one of its devices;
 *    - push `user:device` (DeviceChange) to every subscriber of a group the user is in.
 *
 * 2. The DS-to-DS link: a Socket.IO connection from one DS (initiator) to the other's `/federation`
 *    namespace. Handshake auth `{ from, to, nonce }`; the acceptor emits `fed:challenge { nonce, signature }`;
 *    the initiator answers `fed:prove { signature }` (ack). Then every request is `emit(event, payload, ack)`
 *    with `{ ok: true, ...reply }` or `{ ok: false, error: { code, message, ... } }`.
 *
 * This file imports nothing, so a browser client can use its types.
 */

/** The `user:device` push: a user gained or retired a device (its home DS says so). */
export interface DeviceChange {
  readonly groupId: string;
  readonly user: string;
  readonly device: string;
  readonly change: "added" | "removed";
}

export interface HubToken {
  /** The provider hosting the room's call. */
  readonly hub: string;
  /** Where to connect; absent when the room's hub is the DS that answered. */
  readonly url?: string;
  /** A connection token of the hub, for this user and device, valid for this room only. */
  readonly token: string;
}

/**
 * Requests an initiator sends on a link, with their payloads. Those sent `once` also carry an `id` (added by
 * the link), which the acceptor keeps for a while: a copy sent again after a dropped link gets the first
 * copy's answer instead of acting twice.
 */
export interface LinkRequests {
  /**
   * Runs a client request at the hub for a user of the initiator's provider (never another's): room:join,
   * ds:external-sender, group:create, group:send, group:subscribe / group:unsubscribe (the device's
   * presence: it follows the call at its own DS), group:leave, group:report. Once.
   */
  "fed:act": { user: string; device: string; event: string; payload: Record<string, unknown> };
  /**
   * Replays the group's log after `after` as `fed:entry` pushes, then pushes live entries; reply
   * `{ group, head }` (the snapshot, and the log's head as far as the stream has reached it).
   */
  "fed:follow": { groupId: string; after: number };
  "fed:unfollow": { groupId: string };
  /** Log entries after `after` (at most `limit`, at most 8); reply `{ entries }`. */
  "fed:read": { groupId: string; after: number; limit: number };
  /** Whether the acceptor hosts this open group; reply `{ hosted }`. */
  "fed:locate": { groupId: string };
  /** A KeyPackage claim for a user of the acceptor's provider; reply: the DS's ClaimResult. Once. */
  "fed:claim": { requester: string; user: string; suites: number[] };
  /** A Welcome for devices whose KeyPackages the acceptor handed to the initiator; reply `{ delivered }`. Once. */
  "fed:welcome": { groupId: string; hub: string; seq: number; welcome: Uint8Array };
  /** A device change of a user of the initiator's provider, for a group the acceptor hosts. Once. */
  "fed:device": DeviceChange;
  /** A hub token for a user of the initiator's provider; reply `{ token, url? }`. Once. */
  "fed:token": { user: string; device: string; room: string };
}

export type LinkRequestEvent = keyof LinkRequests;

/** What the hub pushes to a follower on the follower's link. */
export interface LinkPushes {
  /** One accepted log entry; a commit carries the GroupInfo and tree of the epoch it starts (live only). */
  "fed:entry": { groupId: string; entry: unknown; next?: { groupInfo: Uint8Array; tree: Uint8Array } };
  "fed:closed": { groupId: string };
  "fed:device": DeviceChange;
}

export type LinkPushEvent = keyof LinkPushes;
