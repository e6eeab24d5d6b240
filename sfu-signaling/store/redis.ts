/**
 * The Store for several DS nodes: one Redis server shared by all.
 * Every write that must be atomic is one Lua script (redis-scripts.ts), so the ordering guarantee of the
 * SQLite store holds across processes: of two commits vetted against the same (epoch, seq) on two nodes,
 * exactly one is stored, and seqs have no gaps.
 *
 * Keys (all under `keyPrefix`; variable parts URI-encoded so no value can forge a separator):
 *   g:<group>            hash: room, suite, epoch, seq, epochSeq, groupInfo, tree, closed, createdAt, token
 *   log:<group>          hash: seq -> entry (JSON header, "\n", the MLSMessage bytes)
 *   acks:<group>         hash: member -> seq
 *   tok:<group>          zset: recent append tokens -> seq (a bounded window, deleted when the group closes)
 *   room:<room>          string: the room's open group
 *   open                 zset: open groups by creation time
 *   kpq:<u>:<d>:<s>, kpd:<u>:<d>:<s>, kpsuites:<u>:<d>, kpdev:<u>, kprefs   KeyPackages (see the scripts)
 *   secret:<name>        string
 * So a group costs a fixed number of keys whatever its traffic; what grows is its log, which the DS
 * needs whole (a member may resume from any seq), exactly as in the SQLite store.
 *
 * Durability: the store is as durable as the server's persistence. For the guarantee of the SQLite
 * default (nothing acknowledged is lost on a crash) run Redis with `appendonly yes` and
 * `appendfsync always`; `durability()` reports what the server does. A lost acknowledged commit would let
 * the next commit take its seq and fork the group.
 *
 * Reconnection: the client reconnects by itself and queues commands meanwhile; a command whose reply
 * was lost with the connection is sent again, which the append and create scripts recognise by their
 * token (see APPEND). The other writes are idempotent, but for takeKeyPackage: its resend hands out the
 * next KeyPackage, and the first one, deleted but never delivered, is wasted.
 *
 * Not for Redis Cluster: scripts touch keys of several hash slots (a group and its room, the KeyPackage
 * indexes). Replicas (Sentinel) are untested here, and replication is asynchronous: a failover to a replica
 * that lacks the last writes loses them, with the same fork risk as a crash without fsync.
 */
import { createHash, randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import {
  ACK,
  APPEND,
  CLOSE_GROUP,
  CREATE_GROUP,
  KEY_PACKAGE_INVENTORY,
  PUT_KEY_PACKAGES,
  READ_LOG,
  TAKE_KEY_PACKAGE,
  type RedisScript,
} from "./redis-scripts.js";
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

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] (or rediss:// for TLS). */
  readonly url: string;
  /** Prepended to every key, so several deployments (or tests) can share a server. Default "conclave:". */
  readonly keyPrefix?: string;
  /** Reports connection trouble (the client keeps retrying on its own). Never given secrets. */
  readonly log?: (line: string) => void;
  /**
   * How many reconnection attempts a command waits through before it fails (ioredis's
   * maxRetriesPerRequest). Default 20, about 10 s with the default back-off.
   */
  readonly maxRetriesPerRequest?: number;
  /** Extra ioredis options (TLS, Sentinel...). */
  readonly redis?: RedisOptions;
}

/** Append tokens kept per group: a resend comes within one reconnect, while at most a few appends are in flight. */
const RECENT_TOKENS = 256;
/** Log entries per READ_LOG call (one HMGET). */
const READ_PAGE = 1000;
const KINDS: ReadonlySet<string> = new Set<LogKind>(["commit", "proposal", "application"]);
const NEWLINE = 0x0a;

type Reply = Buffer | number | null | Reply[];

function sha1(s: string): string {
  return createHash("sha1").update(s).digest("hex");
}

/** Plain Uint8Array views, so callers never depend on Buffer's extra behaviour. */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function blob(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function text(r: Reply | undefined): string {
  if (!Buffer.isBuffer(r)) throw new Error(`unexpected Redis reply: ${typeof r}`);
  return r.toString("utf8");
}

function integer(name: string, n: number): string {
  if (!Number.isSafeInteger(n)) throw new TypeError(`${name} must be a safe integer, got ${n}`);
  return String(n);
}

function encodeEntry(e: NewLogEntry): Buffer {
  const header = JSON.stringify({ e: e.epoch, k: e.kind, s: e.sender, t: e.at });
  return Buffer.concat([Buffer.from(header, "utf8"), Buffer.of(NEWLINE), blob(e.message)]);
}

function decodeEntry(seq: number, b: Buffer): LogEntry {
  const cut = b.indexOf(NEWLINE);
  if (cut < 0) throw new Error(`log entry ${seq} is corrupt`);
  const h = JSON.parse(b.subarray(0, cut).toString("utf8")) as { e: number; k: string; s: string; t: number };
  if (!KINDS.has(h.k)) throw new Error(`log entry ${seq} has an unknown kind`);
  return { seq, epoch: h.e, kind: h.k as LogKind, sender: h.s, message: bytes(b.subarray(cut + 1)), at: h.t };
}

/** A group from its hash's fields (HGETALL, or a script's reply through fieldsOf). */
function groupOf(groupId: string, fields: Record<string, Buffer>): GroupRecord {
  const need = (name: string): Buffer => {
    const v = fields[name];
    if (!v) throw new Error(`group ${groupId} is missing ${name}`);
    return v;
  };
  const num = (name: string) => Number(need(name).toString("utf8"));
  return {
    groupId,
    room: need("room").toString("utf8"),
    suite: num("suite"),
    epoch: num("epoch"),
    seq: num("seq"),
    epochSeq: num("epochSeq"),
    groupInfo: bytes(need("groupInfo")),
    tree: bytes(need("tree")),
    closed: num("closed") !== 0,
    createdAt: num("createdAt"),
  };
}

function fieldsOf(list: Reply | undefined): Record<string, Buffer> {
  if (!Array.isArray(list)) throw new Error("unexpected Redis reply: expected a field list");
  const out: Record<string, Buffer> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[text(list[i])] = list[i + 1] as Buffer;
  return out;
}

/**
 * QUIT lets queued commands finish first; a connection that cannot say goodbye in time (Redis is down,
 * commands wait for a reconnection) is cut instead.
 */
export async function quitOrCut(redis: Redis, timeoutMs = 2000): Promise<void> {
  const timer = setTimeout(() => redis.disconnect(), timeoutMs);
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  } finally {
    clearTimeout(timer);
  }
}

function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return "redis (unparsable URL)";
  }
}

export interface RedisDurability {
  readonly appendonly: string;
  readonly appendfsync: string;
  /** Whether an acknowledged write survives a crash of the Redis process or its machine. */
  readonly crashSafe: boolean;
}

export class RedisStore implements Store {
  private readonly prefix: string;
  /** Where the data is, for logs: the URL without credentials, and the key prefix. */
  readonly description: string;
  private readonly shas = new Map<RedisScript, string>();
  private closed = false;

  private constructor(
    /** The connection; the Socket.IO adapter may duplicate it for its own blocking reads. */
    readonly redis: Redis,
    options: RedisStoreOptions,
  ) {
    this.prefix = options.keyPrefix ?? "conclave:";
    this.description = `${withoutCredentials(options.url)} prefix ${this.prefix}`;
  }

  /** Connects, failing if Redis cannot be reached now; afterwards the connection heals itself. */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const log = options.log ?? (() => {});
    const redis = new Redis(options.url, {
      lazyConnect: true,
      maxRetriesPerRequest: options.maxRetriesPerRequest ?? 20,
      ...options.redis,
    });
    let lastError = "";
    redis.on("error", (e: Error) => {
      // One line per distinct failure, not one per retry.
      if (e.message !== lastError) log(`redis store: ${e.message}`);
      lastError = e.message;
    });
    redis.on("ready", () => {
      if (lastError) log("redis store: connected again");
      lastError = "";
    });
    try {
      await redis.connect();
    } catch (e) {
      redis.disconnect();
      throw e;
    }
    return new RedisStore(redis, options);
  }

  private key(kind: string, ...parts: (string | number)[]): string {
    return `${this.prefix}${kind}${parts.map((p) => `:${encodeURIComponent(String(p))}`).join("")}`;
  }

  private groupKeys(groupId: string) {
    return { meta: this.key("g", groupId), log: this.key("log", groupId), acks: this.key("acks", groupId), tokens: this.key("tok", groupId) };
  }

  /** EVALSHA, loading the script on NOSCRIPT (first use, or a Redis restart emptied its script cache). */
  private async run(script: RedisScript, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<Reply> {
    let sha = this.shas.get(script);
    if (!sha) this.shas.set(script, (sha = sha1(script.lua)));
    try {
      return (await this.redis.callBuffer("EVALSHA", sha, keys.length, ...keys, ...args)) as Reply;
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith("NOSCRIPT")) throw e;
      return (await this.redis.callBuffer("EVAL", script.lua, keys.length, ...keys, ...args)) as Reply;
    }
  }

  // Groups and their logs ---------------------------------------------------------------------------------

  async createGroup(g: NewGroup): Promise<CreateGroupResult> {
    const k = this.groupKeys(g.groupId);
    const token = randomBytes(12).toString("base64url");
    const args = [g.groupId, g.room, integer("suite", g.suite), integer("epoch", g.epoch), blob(g.groupInfo), blob(g.tree), integer("createdAt", g.createdAt), token];
    const r = (await this.run(CREATE_GROUP, [k.meta, this.key("room", g.room), this.key("open")], args)) as Reply[];
    switch (text(r[0])) {
      case "ok":
        return { ok: true };
      case "room": {
        const existing = await this.getGroup(text(r[1]));
        return existing ? { ok: false, existing } : { ok: false };
      }
      default: {
        const existing = await this.getGroup(g.groupId);
        return existing ? { ok: false, existing } : { ok: false };
      }
    }
  }

  async getGroup(groupId: string): Promise<GroupRecord | undefined> {
    const fields = await this.redis.hgetallBuffer(this.groupKeys(groupId).meta);
    return Object.keys(fields).length === 0 ? undefined : groupOf(groupId, fields);
  }

  async groupHead(groupId: string): Promise<GroupHead | undefined> {
    const [epoch, seq, closed] = await this.redis.hmget(this.groupKeys(groupId).meta, "epoch", "seq", "closed");
    if (epoch == null || seq == null) return undefined;
    return { epoch: Number(epoch), seq: Number(seq), closed: closed !== "0" };
  }

  async openGroupOfRoom(room: string): Promise<GroupRecord | undefined> {
    // The room's group can close (and a new one open) between the two reads: look again then.
    for (let attempt = 0; attempt < 3; attempt++) {
      const groupId = await this.redis.get(this.key("room", room));
      if (groupId === null) return undefined;
      const group = await this.getGroup(groupId);
      if (group && !group.closed) return group;
    }
    return undefined;
  }

  async openGroups(): Promise<GroupRecord[]> {
    const ids = await this.redis.zrange(this.key("open"), 0, -1);
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetallBuffer(this.groupKeys(id).meta);
    const replies = (await pipeline.exec()) ?? [];
    const out: GroupRecord[] = [];
    replies.forEach(([err, fields], i) => {
      if (err) throw err;
      const f = fields as Record<string, Buffer>;
      if (Object.keys(f).length > 0) {
        const g = groupOf(ids[i]!, f);
        if (!g.closed) out.push(g);
      }
    });
    return out;
  }

  async closeGroup(groupId: string): Promise<void> {
    const k = this.groupKeys(groupId);
    // A group's room never changes, so reading it first does not race with anything.
    const room = await this.redis.hget(k.meta, "room");
    if (room === null) return;
    await this.run(CLOSE_GROUP, [k.meta, this.key("room", room), this.key("open"), k.tokens], [groupId]);
  }

  async append(groupId: string, entry: NewLogEntry, expect?: AppendCondition, next?: NextEpoch): Promise<AppendResult> {
    if (next && entry.kind !== "commit") throw new TypeError("only a commit moves the group to a new epoch");
    integer("epoch", entry.epoch);
    integer("at", entry.at);
    const k = this.groupKeys(groupId);
    const token = randomBytes(12).toString("base64url");
    const r = (await this.run(
      APPEND,
      [k.meta, k.log, k.tokens],
      [
        token,
        expect ? integer("expected epoch", expect.epoch) : "",
        expect?.seq !== undefined ? integer("expected seq", expect.seq) : "",
        encodeEntry(entry),
        next ? "1" : "0",
        next ? blob(next.groupInfo) : "",
        next ? blob(next.tree) : "",
        String(RECENT_TOKENS),
      ],
    )) as Reply[];
    const status = text(r[0]);
    if (status === "ok") return { ok: true, seq: r[1] as number };
    if (status === "unknown-group") return { ok: false, reason: "unknown-group" };
    return { ok: false, reason: status === "closed" ? "closed" : "conflict", group: groupOf(groupId, fieldsOf(r[1])) };
  }

  async readLog(groupId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
    integer("afterSeq", afterSeq);
    integer("limit", limit);
    const k = this.groupKeys(groupId);
    const out: LogEntry[] = [];
    let after = Math.max(0, afterSeq);
    while (out.length < limit) {
      const want = Math.min(READ_PAGE, limit - out.length);
      const page = (await this.run(READ_LOG, [k.meta, k.log], [String(after), String(want)])) as Reply[];
      for (const item of page) {
        after += 1;
        if (!Buffer.isBuffer(item)) throw new Error(`log entry ${after} of group ${groupId} is missing`);
        out.push(decodeEntry(after, item));
      }
      if (page.length < want) break;
    }
    return out;
  }

  // Delivery cursors -------------------------------------------------------------------------------------

  async ack(groupId: string, member: string, seq: number): Promise<void> {
    await this.run(ACK, [this.groupKeys(groupId).acks], [member, integer("seq", seq)]);
  }

  async acked(groupId: string, member: string): Promise<number> {
    return Number((await this.redis.hget(this.groupKeys(groupId).acks, member)) ?? 0);
  }

  // KeyPackage directory ---------------------------------------------------------------------------------

  private kpKeys(user: string, device: string, suite: number) {
    return { queue: this.key("kpq", user, device, suite), data: this.key("kpd", user, device, suite), suites: this.key("kpsuites", user, device) };
  }

  async putKeyPackages(list: readonly StoredKeyPackage[]): Promise<number> {
    if (list.length === 0) return 0;
    const keys = [this.key("kprefs")];
    const args: (string | Buffer)[] = [];
    for (const kp of list) {
      const k = this.kpKeys(kp.user, kp.device, kp.suite);
      keys.push(k.queue, k.data, k.suites, this.key("kpdev", kp.user));
      args.push(kp.ref, kp.device, integer("suite", kp.suite), kp.lastResort ? "1" : "0", String(kp.notAfter), blob(kp.keyPackage), blob(kp.identityKey));
    }
    return (await this.run(PUT_KEY_PACKAGES, keys, args)) as number;
  }

  async keyPackageInventory(user: string, now: number): Promise<DeviceInventory[]> {
    const devices = (await this.redis.smembers(this.key("kpdev", user))).sort();
    if (devices.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const d of devices) pipeline.smembers(this.key("kpsuites", user, d));
    const suiteLists = ((await pipeline.exec()) ?? []).map(([err, suites]) => {
      if (err) throw err;
      return (suites as string[]).map(Number).sort((a, b) => a - b);
    });
    const pairs = devices.flatMap((device, i) => suiteLists[i]!.map((suite) => ({ device, suite })));
    const counts: Reply[] = [];
    if (pairs.length > 0) {
      const keys = [this.key("kprefs")];
      const args = [String(now)];
      for (const p of pairs) {
        const k = this.kpKeys(user, p.device, p.suite);
        keys.push(k.queue, k.data, k.suites);
        args.push(String(p.suite));
      }
      counts.push(...((await this.run(KEY_PACKAGE_INVENTORY, keys, args)) as Reply[]));
    }
    const byDevice = new Map<string, { suite: number; available: number; lastResort: boolean }[]>(devices.map((d) => [d, []]));
    pairs.forEach((p, i) => {
      const [available, lastResort] = counts[i] as [number, number];
      if (available > 0 || lastResort === 1) byDevice.get(p.device)!.push({ suite: p.suite, available, lastResort: lastResort === 1 });
    });
    return [...byDevice].map(([device, suites]) => ({ device, suites }));
  }

  async takeKeyPackage(user: string, device: string, suite: number, now: number): Promise<StoredKeyPackage | undefined> {
    const k = this.kpKeys(user, device, suite);
    const r = (await this.run(TAKE_KEY_PACKAGE, [this.key("kprefs"), k.queue, k.data, k.suites], [integer("suite", suite), String(now)])) as Reply[] | null;
    if (!r) return undefined;
    return {
      ref: text(r[1]),
      user,
      device,
      suite,
      lastResort: text(r[0]) === "l",
      notAfter: Number(text(r[2])),
      keyPackage: bytes(r[3] as Buffer),
      identityKey: bytes(r[4] as Buffer),
    };
  }

  // Server secrets ---------------------------------------------------------------------------------------

  async ensureSecret(name: string, candidate: Uint8Array): Promise<Uint8Array> {
    // SET NX GET answers the value that was there (then nothing is written), or nil when ours was stored.
    const existing = (await this.redis.callBuffer("SET", this.key("secret", name), blob(candidate), "NX", "GET")) as Buffer | null;
    return existing ? bytes(existing) : candidate.slice();
  }

  /** What the server's persistence guarantees, or undefined when CONFIG is not allowed (managed Redis). */
  async durability(): Promise<RedisDurability | undefined> {
    const get = async (name: string) => ((await this.redis.config("GET", name)) as string[])[1] ?? "";
    try {
      const appendonly = await get("appendonly");
      const appendfsync = await get("appendfsync");
      return { appendonly, appendfsync, crashSafe: appendonly === "yes" && appendfsync === "always" };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await quitOrCut(this.redis);
  }
}
