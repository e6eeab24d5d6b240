/**
 * The DS's client protocol as types, plus the one naming rule both sides share. This file imports nothing,
 * so the browser client can use it without pulling in any server code.
 *
 * Every request is `socket.emit(event, request, ack)`; the ack receives `{ ok: true, ...reply }` or
 * `{ ok: false, error }`. Binary fields are sent as Uint8Array and arrive as Buffer (Node) or ArrayBuffer
 * (browsers). No packet carries more than 10 binary fields (socket.io-parser's default, enforced by every
 * receiver): hence at most 10 KeyPackages per upload, 10 devices per user, 8 `missed` entries.
 */

/** The basic-credential identity of a device's leaves, and its member id at the DS: "user/device". */
export function memberId(principal: { readonly user: string; readonly device: string }): string {
  return `${principal.user}/${principal.device}`;
}

export type DsErrorCode =
  | "unauthorized"
  | "forbidden-room"
  | "invalid-payload"
  | "payload-too-large"
  | "rate-limited"
  | "malformed-message"
  | "invalid-message"
  | "invalid-key-package"
  | "wrong-identity"
  | "too-many-key-packages"
  | "too-many-devices"
  | "no-common-suite"
  | "unknown-user"
  | "key-packages-exhausted"
  /** The requester claimed this user's KeyPackages too often (extra: `retryAfterMs`). */
  | "claim-quota-exceeded"
  | "unsupported-suite"
  | "unknown-group"
  | "group-exists"
  | "group-closed"
  | "wrong-group"
  | "wrong-epoch"
  | "not-a-member"
  | "internal";

/** The wire form of a refusal: `{ code, message, ...extra }`. */
export interface WireError {
  code: DsErrorCode;
  message: string;
  [k: string]: unknown;
}

/**
 * The extra fields of `wrong-epoch`. A member gets the entries it missed after `since` (at most 8, `more`
 * when there are further ones; it also receives them all through `group:msg`). A joiner (external commit)
 * gets `group`, the current snapshot, to retry from.
 */
export interface WrongEpoch {
  readonly epoch: number;
  readonly missed: WireEntry[];
  readonly more?: boolean;
  readonly group?: GroupSnapshot;
}

/** What a log entry carries; `proposal` and `commit` are PublicMessages, `application` a PrivateMessage. */
export type LogKind = "commit" | "proposal" | "application";

/** The `group:msg` push: one log entry, to every subscriber (its sender included), in seq order. */
export interface WireEntry {
  readonly groupId: string;
  /** 1, 2, 3... per group, without gaps. */
  readonly seq: number;
  /** The epoch the message was sent in (a commit's is the epoch it ends). */
  readonly epoch: number;
  readonly kind: LogKind;
  /** "user/device" of the sender, or "ds" for the DS's own Remove proposals. */
  readonly sender: string;
  /** The MLSMessage. */
  readonly message: Uint8Array;
  /** Acceptance time, milliseconds since the Unix epoch. */
  readonly at: number;
}

/** What a client needs to join a group by external commit, or to know where the log stands. */
export interface GroupSnapshot {
  /** Hex of the MLS group_id. */
  readonly groupId: string;
  readonly room: string;
  readonly suite: number;
  readonly epoch: number;
  /** Head of the log: subscribe after this seq to see everything from now on. */
  readonly seq: number;
  /** The current epoch's GroupInfo (MLSMessage, with external_pub). */
  readonly groupInfo: Uint8Array;
  /** The current epoch's ratchet tree, encoded as the ratchet_tree extension payload. */
  readonly tree: Uint8Array;
}

/** The `group:send` request. */
export interface SendRequest {
  readonly groupId: string;
  /** An MLSMessage: a PublicMessage proposal or commit, or a PrivateMessage with application data. */
  readonly message: Uint8Array;
  /** Commits: the GroupInfo of the epoch the commit starts (signed by the committer, with external_pub). */
  readonly groupInfo?: Uint8Array;
  /** Commits that add members: the Welcome, pushed to the added devices once the commit is accepted. */
  readonly welcome?: Uint8Array;
  /** The sender's last processed seq: where the `missed` list of a wrong-epoch answer starts. */
  readonly since?: number;
}

export interface SuiteInventory {
  readonly suite: number;
  /** Unexpired single-use KeyPackages. */
  readonly available: number;
  /** Whether an unexpired last-resort KeyPackage exists. */
  readonly lastResort: boolean;
}

export interface DeviceBundle {
  readonly device: string;
  /** The KeyPackage as an MLSMessage. */
  readonly keyPackage: Uint8Array;
  /** The device's signature public key (its leaf's signature_key), hex. */
  readonly identityKey: string;
  readonly lastResort: boolean;
}

/** The `kp:claim` reply: one bundle per device of the user, all in `suite`. */
export interface ClaimResult {
  readonly user: string;
  readonly suite: number;
  readonly devices: DeviceBundle[];
  /** Devices of the user that had nothing left in that suite. */
  readonly exhausted: string[];
}

type Empty = Record<string, never>;

/** Every request event with its payload and its reply (without the `ok` field). */
export interface DsRequests {
  "room:join": { request: { room: string }; reply: { group: GroupSnapshot | null } };
  /**
   * The DS's ExternalSender struct (bytes) for a suite: what a group creator lists in external_senders.
   * `room` (optional, sent by current clients): the call it is for; with federation, a room of another
   * provider gets that provider's (the hub's) sender. Without it, this DS's own.
   */
  "ds:external-sender": { request: { suite: number; room?: string }; reply: { externalSender: Uint8Array } };
  /** Refused with `group-exists` (extra: `group`) when the room already has a call. */
  "group:create": { request: { room: string; groupInfo: Uint8Array; tree?: Uint8Array }; reply: { group: GroupSnapshot } };
  /**
   * Replays every entry after `after` (before this reply), then keeps pushing live entries. A long replay is
   * paced by the connection's reading; `rate-limited` while this connection's replay of the group still runs
   * or the device runs the most long replays allowed.
   */
  "group:subscribe": { request: { groupId: string; after: number }; reply: { epoch: number; seq: number } };
  /** Stops the pushes without leaving the call (the leave grace starts if no other connection listens). */
  "group:unsubscribe": { request: { groupId: string }; reply: Empty };
  "group:send": { request: SendRequest; reply: { seq: number; epoch: number } };
  "group:ack": { request: { groupId: string; seq: number }; reply: Empty };
  "group:leave": { request: { groupId: string }; reply: Empty };
  /** A sequenced commit this member could not process (it rejoins by external commit). */
  "group:report": { request: { groupId: string; seq: number; reason: string }; reply: Empty };
  "kp:upload": { request: { keyPackages: Uint8Array[] }; reply: { stored: number; inventory: SuiteInventory[] } };
  /** `claim-quota-exceeded` when the requester took another user's single-use KeyPackages too often. */
  "kp:claim": { request: { user: string; suites: number[] }; reply: ClaimResult };
  "kp:status": { request: Empty; reply: { inventory: SuiteInventory[] } };
}

export type DsRequestEvent = keyof DsRequests;

export type DsReply<E extends DsRequestEvent> = ({ ok: true } & DsRequests[E]["reply"]) | { ok: false; error: WireError };

/** Events the DS pushes. */
export interface DsPushes {
  "group:msg": WireEntry;
  /** To the devices a commit added, if connected (offline devices join by external commit instead). */
  "group:welcome": { groupId: string; seq: number; welcome: Uint8Array };
  "group:closed": { groupId: string };
}
