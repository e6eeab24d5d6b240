/**
 * What `npm start` runs, for browser tests of whole calls: the built demo (vite build into a temporary
 * folder) served by the real DS (SQLite in memory, development tokens), with the werift SFU mounted on its
 * connections exactly as sfu-signaling/main.ts wires them.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "vite";
import { memberId } from "../../sfu-signaling/auth.js";
import { serveDemo } from "../../sfu-signaling/demo-files.js";
import { startDs, type RunningDs } from "../../sfu-signaling/server.js";
import { createSfu, type Sfu } from "../../sfu-signaling/sfu/index.js";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import { repoRoot } from "../../scripts/build-browser.js";

export interface CallServer {
  readonly ds: RunningDs;
  readonly sfu: Sfu;
  close(): Promise<void>;
}

/** Builds the demo and starts the DS with the SFU; DS and SFU log lines go to `log`. */
export async function startCallServer(log: string[]): Promise<CallServer> {
  const demoDir = await mkdtemp(join(tmpdir(), "conclave-demo-"));
  let store: SqliteStore | undefined;
  let sfu: Sfu | undefined;
  try {
    await build({ configFile: join(repoRoot, "demo", "vite.config.ts"), build: { outDir: demoDir, emptyOutDir: true, sourcemap: false } });
    store = new SqliteStore({ path: ":memory:" });
    const media = createSfu({ log: (event, detail) => log.push(`sfu ${event} ${JSON.stringify(detail)}`) });
    sfu = media;
    const ds = await startDs({
      store,
      tokenKey: randomBytes(32),
      devMode: true,
      log: (line) => log.push(line),
      onSubscribed: (socket, principal, room) => media.attach(socket, { participantId: memberId(principal), room }),
      onDeparted: (room, member) => void media.removeParticipant(room, member),
      httpFallback: serveDemo(demoDir),
    });
    const db = store;
    return {
      ds,
      sfu: media,
      async close() {
        media.close();
        await ds.close();
        await db.close();
        await rm(demoDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    sfu?.close();
    await store?.close();
    await rm(demoDir, { recursive: true, force: true });
    throw e;
  }
}
