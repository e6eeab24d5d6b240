/**
 * The interop scenario scripts of ../shared/mls-interop/configs (all but deep_random, which has its own
 * `npm run interop:deep`) between two instances of our own interop server on loopback, every cipher suite,
 * PublicMessage and PrivateMessage handshakes, the actor->client assignment rotated between runs.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, formatOutcome, parseConfig, runConfig, type InteropClient } from "../../interop/runner.js";
import { startInteropServer, type RunningInteropServer } from "../../interop/server.js";

const CONFIGS = fileURLToPath(new URL("../../../shared/mls-interop/configs/", import.meta.url));
const configFiles = readdirSync(CONFIGS)
  .filter((f) => f.endsWith(".json") && f !== "deep_random.json")
  .sort();

describe("interop scripts between two of our servers", () => {
  const servers: RunningInteropServer[] = [];
  const clients: InteropClient[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 2; i++) servers.push(await startInteropServer({ port: 0, host: "127.0.0.1" }));
    for (const s of servers) clients.push(await connectClient(s.address));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  it("found the shared configs", () => {
    expect(configFiles.length).toBeGreaterThanOrEqual(7);
  });

  for (const file of configFiles) {
    it(`${file}: every script passes`, async () => {
      const scripts = parseConfig(JSON.parse(readFileSync(CONFIGS + file, "utf8")));
      const outcomes = await runConfig(scripts, clients);
      expect(outcomes.length).toBe(scripts.size);
      expect(outcomes.filter((o) => o.failures.length > 0 || o.runs === 0).map(formatOutcome)).toEqual([]);
      // Both servers took part: with two clients the rotation maps some actor of every run to each.
      for (const o of outcomes) expect(o.runs).toBeGreaterThan(0);
    }, 600_000);
  }
});
