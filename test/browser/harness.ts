/**
 * Shared launch/serve helpers for tests and scripts that drive Debian's Chromium through playwright-core.
 * Nothing is downloaded at run time: the browser is /usr/bin/chromium (override with CHROMIUM_PATH) and the
 * pages are esbuild bundles served from 127.0.0.1 (a secure context, so WebCrypto and workers are available).
 */
import { createServer, type Server } from "node:http";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { extname, join, normalize, sep } from "node:path";
import type { AddressInfo } from "node:net";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { browserDist, buildBrowser } from "../../scripts/build-browser.js";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  // On a host whose only interface is lo, Chromium gathers no ICE candidate without this.
  "--allow-loopback-in-peer-connection",
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Headless Chromium with a fresh profile that is deleted on close. */
export async function launchChromium(): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), "conclave-chromium-"));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    // A loaded 2-core machine can take far longer than Playwright's 30 s default to start a page.
    context.setDefaultTimeout(120_000);
    return {
      context,
      async close() {
        await context.close().catch(() => undefined);
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
}

const MIME: Record<string, string> = {
  ".js": "text/javascript",
  ".map": "application/json",
  ".html": "text/html; charset=utf-8",
};

export interface StaticServer {
  origin: string;
  close(): Promise<void>;
}

/**
 * Serves `root` on 127.0.0.1 with a free port, plus `/page/<entry>`: an empty HTML page that loads the
 * module bundle `<entry>.js`.
 */
export async function serveStatic(root: string): Promise<StaticServer> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const page = /^\/page\/([\w-]+)$/.exec(path);
    if (page) {
      res.writeHead(200, { "content-type": MIME[".html"], "cache-control": "no-store" });
      res.end(`<!doctype html><meta charset="utf-8"><title>${page[1]}</title><script type="module" src="/${page[1]}.js"></script>`);
      return;
    }
    const file = normalize(join(root, path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => {
        res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
        res.end(body);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const built = new Map<string, Promise<string>>();
/** Builds the browser bundles (all, or only the named ones) once per process. */
export function ensureBuilt(only?: string[]): Promise<string> {
  const key = only?.join(",") ?? "*";
  let b = built.get(key);
  if (!b) built.set(key, (b = buildBrowser(only)));
  return b;
}

export interface BrowserSession {
  browser: Browser;
  server: StaticServer;
  /** Page console lines and uncaught errors, for failure diagnostics. */
  log: string[];
  /** Opens `/page/<entry>` in a new tab and waits until the bundle sets `globalThis.conclaveReady`. */
  open(entry: string): Promise<Page>;
  close(): Promise<void>;
}

export async function startBrowserSession(bundles?: string[]): Promise<BrowserSession> {
  const root = await ensureBuilt(bundles);
  const server = await serveStatic(root);
  const browser = await launchChromium().catch(async (e) => {
    await server.close();
    throw e;
  });
  const log: string[] = [];
  return {
    browser,
    server,
    log,
    async open(entry) {
      const page = await browser.context.newPage();
      page.on("console", (m) => log.push(`[${entry}] ${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => log.push(`[${entry}] pageerror: ${e.message}`));
      await page.goto(`${server.origin}/page/${entry}`);
      await page.waitForFunction(() => (globalThis as { conclaveReady?: boolean }).conclaveReady === true);
      return page;
    },
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

export { browserDist };

/** Polls `probe` until `done` accepts its value or the deadline passes; returns the last value either way. */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  { timeoutMs = 60_000, intervalMs = 500 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
