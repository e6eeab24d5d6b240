/**
 * Who may read the DS's /metrics: without a configured token only clients on this host (loopback, not
 * relayed by a proxy); with one, whoever presents it as a bearer token. Also what the load test's scraper
 * and the DS process's configuration do with the token.
 */
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scrapeMetrics } from "../../bench/loadtest/ds-process.js";
import { ConfigError, parseConfig } from "../../sfu-signaling/config.js";
import { startTestDs, type TestDs } from "./ds-helpers.js";

const TOKEN = "metrics-token-0123456789abcdef";

/** An address of this host that is not loopback, if it has one. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && !i.internal && i.family === "IPv4")?.address;

function get(url: string, headers: Record<string, string> = {}) {
  return fetch(new URL("/metrics", url), { headers });
}

describe("/metrics without a token", () => {
  let t: TestDs;
  beforeAll(async () => {
    t = await startTestDs({ host: external ?? "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("answers loopback clients", async () => {
    const local = await startTestDs();
    try {
      const res = await get(local.ds.url);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^# TYPE conclave_ds_connections gauge$/m);
      expect(await scrapeMetrics(local.ds.url)).toBeDefined();
      // A reverse proxy on this host relays others' requests: it says so, and is refused.
      expect((await get(local.ds.url, { "x-forwarded-for": "203.0.113.7" })).status).toBe(403);
      expect((await get(local.ds.url, { forwarded: "for=203.0.113.7" })).status).toBe(403);
      // The rest of the HTTP side is unchanged.
      expect((await fetch(new URL("/healthz", local.ds.url))).status).toBe(200);
    } finally {
      await local.close();
    }
  });

  it.skipIf(external === undefined)("refuses clients from another address", async () => {
    const res = await get(t.ds.url);
    expect(res.status).toBe(403);
    expect(await res.text()).not.toMatch(/conclave_ds/);
    expect(await scrapeMetrics(t.ds.url)).toBeUndefined();
    expect((await fetch(new URL("/healthz", t.ds.url))).status).toBe(200);
  });
});

describe("/metrics with a token", () => {
  let t: TestDs;
  beforeAll(async () => {
    t = await startTestDs({ host: external ?? "127.0.0.1", metricsToken: TOKEN });
  });
  afterAll(async () => t.close());

  it("requires the bearer token from anyone, loopback included", async () => {
    const missing = await get(t.ds.url);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await get(t.ds.url, { authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
    expect((await get(t.ds.url, { authorization: `Basic ${TOKEN}` })).status).toBe(401);
    const ok = await get(t.ds.url, { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/^conclave_ds_connections \d+$/m);
    const local = await startTestDs({ metricsToken: TOKEN });
    try {
      expect((await get(local.ds.url)).status).toBe(401);
    } finally {
      await local.close();
    }
  });

  it("is what the load test's scraper sends with --metrics-token", async () => {
    expect(await scrapeMetrics(t.ds.url)).toBeUndefined();
    const scrape = await scrapeMetrics(t.ds.url, TOKEN);
    expect(scrape?.get("conclave_ds_connections")).toBeGreaterThanOrEqual(0);
  });

  it("comes from DS_METRICS_TOKEN or --metrics-token, and a weak one is refused", () => {
    expect(parseConfig([], { DS_METRICS_TOKEN: TOKEN }, true).metricsToken).toBe(TOKEN);
    expect(parseConfig(["--metrics-token", TOKEN], {}, true).metricsToken).toBe(TOKEN);
    expect(parseConfig([], {}, true).metricsToken).toBeUndefined();
    expect(() => parseConfig([], { DS_METRICS_TOKEN: "short" }, true)).toThrow(ConfigError);
  });
});
