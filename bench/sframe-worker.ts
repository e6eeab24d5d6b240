/**
 * npm run bench:sframe-worker -- [--json <file>] [--seconds <s per size>] [--sizes 1024,51200] [--in-flight <n>] [--all-cores]
 *
 * Frames per second the frame-transform worker's frame path encrypts and decrypts in headless Chromium
 * (Debian's /usr/bin/chromium, a module worker, WebCrypto AES-128-GCM, suite 0x0004, VP8 delta frames).
 * By default the whole run (Node, Chromium and its threads) is pinned to one CPU with taskset, so the
 * number is what one core does; --all-cores lifts that. Target: >= 4000 frames/s decrypted at 1 KB.
 */
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname } from "node:path";
import { DEFAULT_FRAME_CRYPTO_OPTIONS } from "../client/worker/protocol.js";
import { startBrowserSession } from "../test/browser/harness.js";
import type { BenchRequest, BenchResult } from "../test/browser/pages/bench-worker.js";

const PINNED_ENV = "CONCLAVE_BENCH_PINNED";
const TARGET_1K_DECRYPT = 4000;

interface Args {
  json: string;
  seconds: number;
  sizes: number[];
  inFlight: number;
  allCores: boolean;
}

const USAGE = "usage: npm run bench:sframe-worker -- [--json <file>] [--seconds <s>] [--sizes 1024,51200] [--in-flight <n>] [--all-cores]";

function parseArgs(argv: string[]): Args {
  const args: Args = { json: "bench-results/sframe-worker.json", seconds: 3, sizes: [1024, 50 * 1024], inFlight: DEFAULT_FRAME_CRYPTO_OPTIONS.maxInFlight, allCores: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--json") args.json = argv[++i] ?? args.json;
    else if (a === "--seconds") args.seconds = Number(argv[++i]);
    else if (a === "--sizes") args.sizes = (argv[++i] ?? "").split(",").map(Number);
    else if (a === "--in-flight") args.inFlight = Number(argv[++i]);
    else if (a === "--all-cores") args.allCores = true;
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  if (!(args.seconds > 0)) throw new Error(`--seconds must be positive\n${USAGE}`);
  if (!Number.isInteger(args.inFlight) || args.inFlight < 1) throw new Error(`--in-flight must be a positive integer\n${USAGE}`);
  if (args.sizes.length === 0 || !args.sizes.every((s) => Number.isInteger(s) && s >= 16 && s <= 1 << 20)) {
    throw new Error(`--sizes must be frame sizes in 16..1048576 bytes\n${USAGE}`);
  }
  return args;
}

/** Re-runs this script under `taskset -c 0`; returns its exit code, or undefined if taskset is missing. */
function rerunPinned(): number | undefined {
  if (spawnSync("taskset", ["-V"], { stdio: "ignore" }).status !== 0) return undefined;
  const r = spawnSync("taskset", ["-c", "0", process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, [PINNED_ENV]: "1" },
  });
  return r.status ?? 1;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!args.allCores && process.env[PINNED_ENV] !== "1") {
    const code = rerunPinned();
    if (code !== undefined) process.exit(code);
    console.warn("taskset not found: running on all cores");
  }
  const pinned = process.env[PINNED_ENV] === "1";

  const session = await startBrowserSession(["bench-page", "bench-worker"]);
  const rows: (BenchResult & { decryptTargetMet?: boolean })[] = [];
  let browserVersion = "";
  try {
    const page = await session.open("bench-page");
    browserVersion = session.browser.context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent));
    for (const size of args.sizes) {
      const req: BenchRequest = { size, seconds: args.seconds, maxBytes: 256 * 1024 * 1024, maxInFlight: args.inFlight };
      const result = await page.evaluate(
        (r) => (globalThis as unknown as { runWorkerBench: (r: BenchRequest) => Promise<BenchResult> }).runWorkerBench(r),
        req,
      );
      rows.push(size === 1024 ? { ...result, decryptTargetMet: result.decrypt.framesPerSecond >= TARGET_1K_DECRYPT } : result);
    }
  } finally {
    await session.close();
  }

  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  console.log(`frame-transform worker in headless Chromium ${browserVersion}, ${pinned ? "pinned to 1 core" : "all cores"}, suite 0x0004, VP8 delta frames, ${args.inFlight} in flight per stream`);
  console.log("size (B)  | encrypt frames/s | decrypt frames/s | decrypt MB/s | frames decrypted | failures");
  console.log("----------|------------------|------------------|--------------|------------------|---------");
  for (const r of rows) {
    const mbs = (r.decrypt.framesPerSecond * r.size) / 1e6;
    console.log(
      `${String(r.size).padEnd(9)} | ${fmt(r.encrypt.framesPerSecond).padStart(16)} | ${fmt(r.decrypt.framesPerSecond).padStart(16)} | ${mbs.toFixed(1).padStart(12)} | ${String(r.decrypt.frames).padStart(16)} | ${r.decryptFailures}`,
    );
  }
  const oneK = rows.find((r) => r.size === 1024);
  if (oneK) console.log(`1 KB decrypt target >= ${TARGET_1K_DECRYPT} frames/s: ${oneK.decryptTargetMet ? "met" : "NOT met"}`);

  const report = {
    benchmark: "sframe-worker",
    browser: `Chromium ${browserVersion}`,
    pinnedToOneCore: pinned,
    cpu: cpus()[0]?.model ?? "unknown",
    secondsPerSize: args.seconds,
    framesInFlightPerStream: args.inFlight,
    targetDecryptFramesPerSecondAt1KB: TARGET_1K_DECRYPT,
    rows: rows.map((r) => ({
      size: r.size,
      encrypt_frames_s: Math.round(r.encrypt.framesPerSecond),
      decrypt_frames_s: Math.round(r.decrypt.framesPerSecond),
      frames: r.decrypt.frames,
      decrypt_failures: r.decryptFailures,
      ...(r.decryptTargetMet === undefined ? {} : { decrypt_target_met: r.decryptTargetMet }),
    })),
  };
  await mkdir(dirname(args.json), { recursive: true });
  await writeFile(args.json, JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${args.json}`);
  if (rows.some((r) => r.decryptFailures > 0)) process.exitCode = 1;
}

await main();
