/**
 * Everything the DS must keep across restarts, behind one async interface so the SQLite default and a Redis
 * implementation (several DS nodes) are interchangeable. Both must pass test/unit/store-contract.ts.
 *
 * The ordering guarantee lives here: `append` is an atomic compare-and-set on the group's (epoch, head seq),
 * so of two commits vetted against the same epoch exactly one is stored, on one node or on many.
 */
import type { LogKind, SuiteInventory } from "../protocol.js";

export type { LogKind, SuiteInventory } from "../protocol.js";

export interface LogEntry {
  /** 1, 2, 3... per group, without gaps. */
  readonly seq: number;
  /** The epoch the message was sent in (a commit's epoch is the one it ends). */
  readonly epoch: number;
  readonly kind: LogKind;
  /** "user/device" of the submitter, or "ds" for the DS's own external proposals. */
  readonly sender: string;
  /** The MLSMessage bytes, as accepted. */
  readonly message: Uint8Array;
  /** Acceptance time, milliseconds since the Unix epoch. */
  readonly at: number;
}

export type NewLogEntry = Omit<LogEntry, "seq">;

/** The public side of a group: enough to serve external joiners and to rebuild the DS's observer. */
export interface GroupRecord {
  /** Hex of the MLS group_id. */
  readonly groupId: string;
  readonly room: string;
  readonly suite: number;
  readonly epoch: number;
  /** Seq of the newest log entry (0 when the log is empty). */
  readonly seq: number;
  /** Seq of the commit that opened the current epoch (0 for the creator's epoch). */
  readonly epochSeq: number;
  /** The current epoch's GroupInfo as an MLSMessage. */
  readonly groupInfo: Uint8Array;
  /** The current epoch's ratchet tree, encoded as the ratchet_tree extension payload. */
  readonly tree: Uint8Array;
  readonly closed: boolean;
  readonly createdAt: number;
}

export type NewGroup = Omit<GroupRecord, "seq" | "epochSeq" | "closed">;

/** Where a group's log stands, without the (possibly large) GroupInfo and tree. */
export type GroupHead = Pick<GroupRecord, "epoch" | "seq" | "closed">;

export type CreateGroupResult = { readonly ok: true } | { readonly ok: false; readonly existing?: GroupRecord };

/** The state a commit moves the group to. */
export interface NextEpoch {
  readonly groupInfo: Uint8Array;
  readonly tree: Uint8Array;
}

export interface AppendCondition {
  /** The group's current epoch must be this. */
  readonly epoch: number;
  /** And, when given, its head seq must be this (the state the message was vetted against). */
  readonly seq?: number;
}

export type AppendResult =
  | { readonly ok: true; readonly seq: number }
  | { readonly ok: false; readonly reason: "conflict" | "closed" | "unknown-group"; readonly group?: GroupRecord };

export interface StoredKeyPackage {
  /** Hex KeyPackageRef: the de-duplication key. */
  readonly ref: string;
  readonly user: string;
  readonly device: string;
  readonly suite: number;
  readonly lastResort: boolean;
  /** The leaf's lifetime.not_after, seconds since the Unix epoch. */
  readonly notAfter: number;
  /** The KeyPackage as an MLSMessage. */
  readonly keyPackage: Uint8Array;
  /** The leaf's signature public key. */
  readonly identityKey: Uint8Array;
}

export interface DeviceInventory {
  readonly device: string;
  readonly suites: readonly SuiteInventory[];
}

export interface Store {
  // Groups and their logs ---------------------------------------------------------------------------------

  /** Refused when the room already has an open group or the group id was ever used. */
  createGroup(group: NewGroup): Promise<CreateGroupResult>;
  getGroup(groupId: string): Promise<GroupRecord | undefined>;
  /** Cheap check a node runs before every operation: has anyone (another node) appended since? */
  groupHead(groupId: string): Promise<GroupHead | undefined>;
  openGroupOfRoom(room: string): Promise<GroupRecord | undefined>;
  openGroups(): Promise<GroupRecord[]>;
  /** Frees the room; the log stays readable. Idempotent. */
  closeGroup(groupId: string): Promise<void>;
  /**
   * Atomically: check `expect`, give the entry the next seq, and with `next` (commits only) move the group
   * to epoch + 1 with that GroupInfo and tree. Without `expect` only the group's existence and openness are checked.
   */
  append(groupId: string, entry: NewLogEntry, expect?: AppendCondition, next?: NextEpoch): Promise<AppendResult>;
  /** Entries with seq > afterSeq in order, at most `limit`. */
  readLog(groupId: string, afterSeq: number, limit: number): Promise<LogEntry[]>;

  // Delivery cursors -------------------------------------------------------------------------------------

  /** Records that `member` ("user/device") has processed the group's log up to seq; never moves backwards. */
  ack(groupId: string, member: string, seq: number): Promise<void>;
  /** The highest seq acknowledged, 0 when none. */
  acked(groupId: string, member: string): Promise<number>;

  // KeyPackage directory ---------------------------------------------------------------------------------

  /**
   * Stores new KeyPackages (known refs are skipped) and remembers their devices. A last-resort KeyPackage
   * replaces the device's previous one for that suite. Returns how many were stored.
   */
  putKeyPackages(list: readonly StoredKeyPackage[]): Promise<number>;
  /** Every device the user ever uploaded for, with what it has left that is valid at `now` (seconds). */
  keyPackageInventory(user: string, now: number): Promise<DeviceInventory[]>;
  /**
   * Atomically takes the device's oldest unexpired single-use KeyPackage of the suite (deleting it), or
   * else returns its last-resort one (kept), or undefined.
   */
  takeKeyPackage(user: string, device: string, suite: number, now: number): Promise<StoredKeyPackage | undefined>;

  // Server secrets ---------------------------------------------------------------------------------------

  /** Stores `candidate` under `name` unless a value exists; returns the stored value (so all nodes agree). */
  ensureSecret(name: string, candidate: Uint8Array): Promise<Uint8Array>;

  close(): Promise<void>;
}
