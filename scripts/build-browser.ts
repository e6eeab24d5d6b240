/**
 * Bundles the browser-side code (the frame-transform worker and the test/bench pages) into dist/browser/.
 * Runnable alone (`tsx scripts/build-browser.ts`) and called by the browser test harness before tests.
 */
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
export const browserDist = join(repoRoot, "dist", "browser");

/** Entry points, by output name (dist/browser/<name>.js). */
const entries: Record<string, string> = {
  "frame-transform": "client/worker/frame-transform.ts",
  "loopback-page": "test/browser/pages/loopback.ts",
  "record-page": "test/browser/pages/record.ts",
  "record-worker": "test/browser/pages/record-worker.ts",
  "bench-page": "test/browser/pages/bench.ts",
  "bench-worker": "test/browser/pages/bench-worker.ts",
};

/** Builds all bundles, or only the named ones. Returns the output folder. */
export async function buildBrowser(only?: string[]): Promise<string> {
  const names = only ?? Object.keys(entries);
  await build({
    entryPoints: Object.fromEntries(names.map((out) => [out, join(repoRoot, entries[out] ?? unknownEntry(out))])),
    outdir: browserDist,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    sourcemap: "linked",
    // keying/ reaches node:crypto only behind a runtime guard; browsers take the WebCrypto path.
    external: ["node:*"],
    logLevel: "warning",
  });
  return browserDist;
}

function unknownEntry(name: string): never {
  throw new Error(`unknown browser bundle ${name}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildBrowser();
  console.log(`built ${Object.keys(entries).length} bundles into ${browserDist}`);
}
