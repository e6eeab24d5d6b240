import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import type { Store } from "../../sfu-signaling/store/store.js";
import { storeContract } from "./store-contract.js";

const dir = mkdtempSync(join(tmpdir(), "conclave-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const paths = new WeakMap<Store, string>();

storeContract("sqlite (file, WAL)", {
  async create() {
    const path = join(dir, `store-${n++}.db`);
    const store = new SqliteStore({ path });
    paths.set(store, path);
    return store;
  },
  async reopen(store) {
    const path = paths.get(store)!;
    await store.close();
    const again = new SqliteStore({ path });
    paths.set(again, path);
    return again;
  },
});

storeContract("sqlite (:memory:)", { create: async () => new SqliteStore({ path: ":memory:" }) });

describe("SqliteStore specifics", () => {
  it("keeps its file in WAL mode, and refuses a schema newer than it knows", async () => {
    const path = join(dir, "wal.db");
    const store = new SqliteStore({ path });
    const other = new Database(path, { readonly: true });
    expect(other.pragma("journal_mode", { simple: true })).toBe("wal");
    other.close();
    await store.close();
    const newer = new Database(path);
    newer.pragma("user_version = 99");
    newer.close();
    expect(() => new SqliteStore({ path })).toThrow(/newer/);
  });
});
