/**
 * The default Store: one SQLite file (better-sqlite3, WAL). better-sqlite3 is synchronous, so every method
 * runs to completion before any other JavaScript does; transactions are IMMEDIATE so a second process on the
 * same file (not a supported setup, but a possible mistake) cannot interleave a write.
 *
 * Durability: `synchronous = FULL` by default, so an accepted commit is on disk before the DS answers or
 * fans it out, and a killed process (or a power cut) loses nothing it acknowledged.
 */
import Database from "better-sqlite3";
import type {
  AppendCondition,
  AppendResult,
  CreateGroupResult,
  DeviceInventory,
  GroupHead,
  GroupRecord,
  LogEntry,
  LogKind,
  NewGroup,
  NewLogEntry,
  NextEpoch,
  Store,
  StoredKeyPackage,
} from "./store.js";

export interface SqliteStoreOptions {
  /** A file path, or ":memory:" for a throwaway store. */
  readonly path: string;
  /** SQLite `synchronous` level; FULL unless the operator trades durability for speed. */
  readonly synchronous?: "FULL" | "NORMAL";
}

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS groups (
  group_id   TEXT PRIMARY KEY,
  room       TEXT NOT NULL,
  suite      INTEGER NOT NULL,
  epoch      INTEGER NOT NULL,
  seq        INTEGER NOT NULL,
  epoch_seq  INTEGER NOT NULL,
  group_info BLOB NOT NULL,
  tree       BLOB NOT NULL,
  closed     INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS groups_open_room ON groups(room) WHERE closed = 0;
CREATE TABLE IF NOT EXISTS log (
  group_id TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  epoch    INTEGER NOT NULL,
  kind     TEXT NOT NULL,
  sender   TEXT NOT NULL,
  message  BLOB NOT NULL,
  at       INTEGER NOT NULL,
  PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
  group_id TEXT NOT NULL,
  member   TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  PRIMARY KEY (group_id, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
  user   TEXT NOT NULL,
  device TEXT NOT NULL,
  PRIMARY KEY (user, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_packages (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  ref          TEXT NOT NULL UNIQUE,
  user         TEXT NOT NULL,
  device       TEXT NOT NULL,
  suite        INTEGER NOT NULL,
  last_resort  INTEGER NOT NULL,
  not_after    INTEGER NOT NULL,
  key_package  BLOB NOT NULL,
  identity_key BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_device ON key_packages(user, device, suite, last_resort, id);
CREATE TABLE IF NOT EXISTS secrets (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
`;

interface GroupRow {
  group_id: string;
  room: string;
  suite: number;
  epoch: number;
  seq: number;
  epoch_seq: number;
  group_info: Buffer;
  tree: Buffer;
  closed: number;
  created_at: number;
}

interface LogRow {
  seq: number;
  epoch: number;
  kind: string;
  sender: string;
  message: Buffer;
  at: number;
}

interface KeyPackageRow {
  id: number;
  ref: string;
  user: string;
  device: string;
  suite: number;
  last_resort: number;
  not_after: number;
  key_package: Buffer;
  identity_key: Buffer;
}

/** Plain Uint8Array views, so callers never depend on Buffer's extra behaviour. */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** better-sqlite3 binds Buffers, not plain Uint8Arrays. */
function blob(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function groupOf(r: GroupRow): GroupRecord {
  return {
    groupId: r.group_id,
    room: r.room,
    suite: r.suite,
    epoch: r.epoch,
    seq: r.seq,
    epochSeq: r.epoch_seq,
    groupInfo: bytes(r.group_info),
    tree: bytes(r.tree),
    closed: r.closed !== 0,
    createdAt: r.created_at,
  };
}

function keyPackageOf(r: KeyPackageRow): StoredKeyPackage {
  return {
    ref: r.ref,
    user: r.user,
    device: r.device,
    suite: r.suite,
    lastResort: r.last_resort !== 0,
    notAfter: r.not_after,
    keyPackage: bytes(r.key_package),
    identityKey: bytes(r.identity_key),
  };
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly q;

  constructor(options: SqliteStoreOptions) {
    this.db = new Database(options.path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`);
    this.db.pragma("busy_timeout = 5000");
    const version = this.db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      this.db.close();
      throw new Error(`store schema version ${version} is newer than this DS (${SCHEMA_VERSION})`);
    }
    this.db.exec(SCHEMA);
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    const db = this.db;
    this.q = {
      groupById: db.prepare<[string], GroupRow>("SELECT * FROM groups WHERE group_id = ?"),
      groupHead: db.prepare<[string], { epoch: number; seq: number; closed: number }>("SELECT epoch, seq, closed FROM groups WHERE group_id = ?"),
      openGroupOfRoom: db.prepare<[string], GroupRow>("SELECT * FROM groups WHERE room = ? AND closed = 0"),
      openGroups: db.prepare<[], GroupRow>("SELECT * FROM groups WHERE closed = 0 ORDER BY created_at, group_id"),
      insertGroup: db.prepare(
        "INSERT INTO groups (group_id, room, suite, epoch, seq, epoch_seq, group_info, tree, closed, created_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?, 0, ?)",
      ),
      closeGroup: db.prepare("UPDATE groups SET closed = 1 WHERE group_id = ?"),
      insertLog: db.prepare("INSERT INTO log (group_id, seq, epoch, kind, sender, message, at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
      bumpSeq: db.prepare("UPDATE groups SET seq = ? WHERE group_id = ?"),
      advance: db.prepare("UPDATE groups SET seq = ?, epoch = ?, epoch_seq = ?, group_info = ?, tree = ? WHERE group_id = ?"),
      readLog: db.prepare<[string, number, number], LogRow>("SELECT seq, epoch, kind, sender, message, at FROM log WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?"),
      ack: db.prepare(
        "INSERT INTO acks (group_id, member, seq) VALUES (?, ?, ?) ON CONFLICT (group_id, member) DO UPDATE SET seq = max(seq, excluded.seq)",
      ),
      acked: db.prepare<[string, string], { seq: number }>("SELECT seq FROM acks WHERE group_id = ? AND member = ?"),
      insertDevice: db.prepare("INSERT OR IGNORE INTO devices (user, device) VALUES (?, ?)"),
      deleteLastResort: db.prepare("DELETE FROM key_packages WHERE user = ? AND device = ? AND suite = ? AND last_resort = 1"),
      insertKeyPackage: db.prepare(
        "INSERT OR IGNORE INTO key_packages (ref, user, device, suite, last_resort, not_after, key_package, identity_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      devicesOf: db.prepare<[string], { device: string }>("SELECT device FROM devices WHERE user = ? ORDER BY device"),
      inventory: db.prepare<[string, number], { device: string; suite: number; available: number; last_resort: number }>(
        `SELECT device, suite, sum(1 - last_resort) AS available, max(last_resort) AS last_resort
         FROM key_packages WHERE user = ? AND not_after >= ? GROUP BY device, suite ORDER BY device, suite`,
      ),
      deleteExpired: db.prepare("DELETE FROM key_packages WHERE user = ? AND device = ? AND suite = ? AND not_after < ?"),
      firstSingleUse: db.prepare<[string, string, number], KeyPackageRow>(
        "SELECT * FROM key_packages WHERE user = ? AND device = ? AND suite = ? AND last_resort = 0 ORDER BY id LIMIT 1",
      ),
      lastResort: db.prepare<[string, string, number], KeyPackageRow>(
        "SELECT * FROM key_packages WHERE user = ? AND device = ? AND suite = ? AND last_resort = 1 LIMIT 1",
      ),
      deleteKeyPackage: db.prepare("DELETE FROM key_packages WHERE id = ?"),
      insertSecret: db.prepare("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)"),
      secret: db.prepare<[string], { value: Buffer }>("SELECT value FROM secrets WHERE name = ?"),
    };
  }

  async createGroup(g: NewGroup): Promise<CreateGroupResult> {
    return this.db
      .transaction((): CreateGroupResult => {
        const byRoom = this.q.openGroupOfRoom.get(g.room);
        if (byRoom) return { ok: false, existing: groupOf(byRoom) };
        const byId = this.q.groupById.get(g.groupId);
        if (byId) return { ok: false, existing: groupOf(byId) };
        this.q.insertGroup.run(g.groupId, g.room, g.suite, g.epoch, blob(g.groupInfo), blob(g.tree), g.createdAt);
        return { ok: true };
      })
      .immediate();
  }

  async getGroup(groupId: string): Promise<GroupRecord | undefined> {
    const r = this.q.groupById.get(groupId);
    return r && groupOf(r);
  }

  async groupHead(groupId: string): Promise<GroupHead | undefined> {
    const r = this.q.groupHead.get(groupId);
    return r && { epoch: r.epoch, seq: r.seq, closed: r.closed !== 0 };
  }

  async openGroupOfRoom(room: string): Promise<GroupRecord | undefined> {
    const r = this.q.openGroupOfRoom.get(room);
    return r && groupOf(r);
  }

  async openGroups(): Promise<GroupRecord[]> {
    return this.q.openGroups.all().map(groupOf);
  }

  async closeGroup(groupId: string): Promise<void> {
    this.q.closeGroup.run(groupId);
  }

  async append(groupId: string, entry: NewLogEntry, expect?: AppendCondition, next?: NextEpoch): Promise<AppendResult> {
    if (next && entry.kind !== "commit") throw new TypeError("only a commit moves the group to a new epoch");
    return this.db
      .transaction((): AppendResult => {
        const row = this.q.groupById.get(groupId);
        if (!row) return { ok: false, reason: "unknown-group" };
        const group = groupOf(row);
        if (group.closed) return { ok: false, reason: "closed", group };
        if (expect && (expect.epoch !== group.epoch || (expect.seq !== undefined && expect.seq !== group.seq))) return { ok: false, reason: "conflict", group };
        const seq = group.seq + 1;
        this.q.insertLog.run(groupId, seq, entry.epoch, entry.kind, entry.sender, blob(entry.message), entry.at);
        if (next) this.q.advance.run(seq, group.epoch + 1, seq, blob(next.groupInfo), blob(next.tree), groupId);
        else this.q.bumpSeq.run(seq, groupId);
        return { ok: true, seq };
      })
      .immediate();
  }

  async readLog(groupId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
    return this.q.readLog.all(groupId, afterSeq, limit).map((r) => ({
      seq: r.seq,
      epoch: r.epoch,
      kind: r.kind as LogKind,
      sender: r.sender,
      message: bytes(r.message),
      at: r.at,
    }));
  }

  async ack(groupId: string, member: string, seq: number): Promise<void> {
    this.q.ack.run(groupId, member, seq);
  }

  async acked(groupId: string, member: string): Promise<number> {
    return this.q.acked.get(groupId, member)?.seq ?? 0;
  }

  async putKeyPackages(list: readonly StoredKeyPackage[]): Promise<number> {
    return this.db
      .transaction(() => {
        let stored = 0;
        for (const kp of list) {
          this.q.insertDevice.run(kp.user, kp.device);
          if (kp.lastResort) this.q.deleteLastResort.run(kp.user, kp.device, kp.suite);
          const r = this.q.insertKeyPackage.run(kp.ref, kp.user, kp.device, kp.suite, kp.lastResort ? 1 : 0, kp.notAfter, blob(kp.keyPackage), blob(kp.identityKey));
          stored += r.changes;
        }
        return stored;
      })
      .immediate();
  }

  async keyPackageInventory(user: string, now: number): Promise<DeviceInventory[]> {
    const byDevice = new Map<string, { suite: number; available: number; lastResort: boolean }[]>();
    for (const { device } of this.q.devicesOf.all(user)) byDevice.set(device, []);
    for (const r of this.q.inventory.all(user, now)) {
      byDevice.get(r.device)?.push({ suite: r.suite, available: r.available, lastResort: r.last_resort !== 0 });
    }
    return [...byDevice].map(([device, suites]) => ({ device, suites }));
  }

  async takeKeyPackage(user: string, device: string, suite: number, now: number): Promise<StoredKeyPackage | undefined> {
    return this.db
      .transaction((): StoredKeyPackage | undefined => {
        this.q.deleteExpired.run(user, device, suite, now);
        const single = this.q.firstSingleUse.get(user, device, suite);
        if (single) {
          this.q.deleteKeyPackage.run(single.id);
          return keyPackageOf(single);
        }
        const last = this.q.lastResort.get(user, device, suite);
        return last && keyPackageOf(last);
      })
      .immediate();
  }

  async ensureSecret(name: string, candidate: Uint8Array): Promise<Uint8Array> {
    this.q.insertSecret.run(name, blob(candidate));
    return bytes(this.q.secret.get(name)!.value);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
