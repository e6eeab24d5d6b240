/**
 * npm run bench:sframe -- [--json <file>] [--clock cpu|wall] [--slice <ms per batch>] [--rounds <n>]
 *
 * SFrame encrypt and decrypt (suite 0x0004, AES_128_GCM_SHA256_128) next to a bare AES-128-GCM of the same
 * payload on the same backend, in the same run: node:crypto (the nodeCryptoAead backend against
 * createCipheriv) and WebCrypto (webCryptoAead against globalThis.crypto.subtle). One awaited call after
 * another, so the numbers are per-call cost, as a frame transform sees it (see compare() for the method).
 * ratio = sframe_ops_s / bare_ops_s (target >= 0.9). By default time is the process's CPU time (see now()).
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname } from "node:path";
import { nodeCryptoAead, SFrameContext, webCryptoAead, type AeadBackend } from "../keying/sframe/index.js";

interface Row {
  backend: string;
  size: number;
  op: "encrypt" | "decrypt";
  sframe_ops_s: number;
  bare_ops_s: number;
  ratio: number;
}

/** One benchmarked operation: `prepare(n)` (untimed) readies inputs for the next `n` calls of `run`. */
interface Op {
  prepare?(n: number): Promise<void>;
  run(i: number): unknown;
}

const SIZES = [100, 1024, 10 * 1024, 100 * 1024];
const KID = 0x15n;

function usage(problem: string): never {
  throw new Error(`${problem}\nusage: npm run bench:sframe -- [--json <file>] [--clock cpu|wall] [--slice <ms>] [--rounds <n>]`);
}

function parseArgs(argv: string[]): { json: string; sliceMs: number; rounds: number; clock: Clock } {
  let json = "bench-results/sframe.json";
  let sliceMs = 10;
  let rounds = 31;
  let clock: Clock = "cpu";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--json") json = argv[++i] ?? json;
    else if (a === "--slice") sliceMs = Number(argv[++i]);
    else if (a === "--rounds") rounds = Number(argv[++i]);
    else if (a === "--clock") {
      const c = argv[++i];
      clock = c === "cpu" || c === "wall" ? c : usage("--clock must be cpu or wall");
    }
    else usage(`unknown argument ${a}`);
  }
  if (!(sliceMs > 0)) usage("--slice must be a positive number of milliseconds");
  if (!Number.isInteger(rounds) || rounds < 1) usage("--rounds must be a positive integer");
  return { json, sliceMs, rounds, clock };
}

/**
 * Prepared inputs are made in chunks this small so that few of them are alive at once: a large live set
 * would make every garbage collection during the timed calls slower than a real receiver's.
 */
const CHUNK = 32;

type Clock = "cpu" | "wall";

/**
 * Seconds now. "cpu" is the CPU time of the whole process (every thread, so WebCrypto's worker threads
 * count too): on a shared machine it leaves out the time other processes held the core, which wall
 * time does not.
 */
function now(clock: Clock): number {
  if (clock === "wall") return performance.now() / 1000;
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Seconds taken by `n` calls of `op` (inputs prepared untimed). */
async function timeBatch(op: Op, n: number, clock: Clock): Promise<number> {
  let elapsed = 0;
  for (let done = 0; done < n; ) {
    const m = op.prepare ? Math.min(CHUNK, n - done) : n - done;
    await op.prepare?.(m);
    const start = now(clock);
    for (let i = 0; i < m; i++) {
      const r = op.run(i);
      if (r instanceof Promise) await r;
    }
    elapsed += now(clock) - start;
    done += m;
  }
  return elapsed;
}

/** Calls that take about `ms` (at least 4), from a short trial. */
async function callsFor(op: Op, ms: number, clock: Clock): Promise<number> {
  let n = 4;
  let t = await timeBatch(op, n, clock);
  while (t < 0.002) t = await timeBatch(op, (n *= 4), clock);
  return Math.max(4, Math.round((n * ms) / 1000 / t));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * SFrame and bare alternate batch by batch (about `sliceMs` each) for `rounds` rounds, and each side
 * reports its median batch rate: on a shared machine a slowdown hits neighbouring batches alike, so the
 * ratio stays meaningful even when the absolute rates wander.
 */
async function compare(sframe: Op, bare: Op, sliceMs: number, rounds: number, clock: Clock): Promise<{ sframe: number; bare: number }> {
  const ns = await callsFor(sframe, sliceMs, clock);
  const nb = await callsFor(bare, sliceMs, clock);
  const s: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    s.push(ns / (await timeBatch(sframe, ns, clock)));
    b.push(nb / (await timeBatch(bare, nb, clock)));
  }
  return { sframe: median(s), bare: median(b) };
}

/** The receiver refuses a CTR twice, so each decrypt batch gets fresh frames from the sender. */
async function sframeOps(aead: AeadBackend, payload: Uint8Array, baseKey: Uint8Array): Promise<{ encrypt: Op; decrypt: Op }> {
  const sender = new SFrameContext(4, { aead });
  const receiver = new SFrameContext(4, { aead });
  await sender.addSendKey(KID, baseKey);
  await receiver.addReceiveKey(KID, baseKey);
  let frames: Uint8Array[] = [];
  return {
    encrypt: { run: () => sender.encrypt(KID, payload) },
    decrypt: {
      async prepare(n) {
        frames = [];
        for (let i = 0; i < n; i++) frames.push(await sender.encrypt(KID, payload));
      },
      run: (i) => receiver.decrypt(frames[i]!),
    },
  };
}

function bareNodeOps(key: Uint8Array, payload: Uint8Array): { encrypt: Op; decrypt: Op } {
  const secret = createSecretKey(key);
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-128-gcm", secret, nonce);
  const ct = c.update(payload);
  c.final();
  const tag = c.getAuthTag();
  return {
    encrypt: {
      run() {
        const e = createCipheriv("aes-128-gcm", secret, nonce);
        const out = e.update(payload);
        e.final();
        return [out, e.getAuthTag()];
      },
    },
    decrypt: {
      run() {
        const d = createDecipheriv("aes-128-gcm", secret, nonce);
        d.setAuthTag(tag);
        const out = d.update(ct);
        d.final();
        return out;
      },
    },
  };
}

async function bareWebOps(key: Uint8Array, payload: Uint8Array): Promise<{ encrypt: Op; decrypt: Op }> {
  const subtle = globalThis.crypto.subtle;
  const ck = await subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, "AES-GCM", false, ["encrypt", "decrypt"]);
  const iv = randomBytes(12);
  const data = payload as Uint8Array<ArrayBuffer>;
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv }, ck, data);
  return {
    encrypt: { run: () => subtle.encrypt({ name: "AES-GCM", iv }, ck, data) },
    decrypt: { run: () => subtle.decrypt({ name: "AES-GCM", iv }, ck, sealed) },
  };
}

const { json, sliceMs, rounds, clock } = parseArgs(process.argv.slice(2));
const backends: [string, AeadBackend, (key: Uint8Array, payload: Uint8Array) => Promise<{ encrypt: Op; decrypt: Op }> | { encrypt: Op; decrypt: Op }][] = [
  ["node:crypto", await nodeCryptoAead(), bareNodeOps],
  ["webcrypto", webCryptoAead, bareWebOps],
];

const rows: Row[] = [];
for (const [backend, aead, bare] of backends) {
  for (const size of SIZES) {
    const payload = new Uint8Array(randomBytes(size));
    // The bare side gets a random key of the sframe_key's size; key values do not change AES-GCM's cost.
    const sf = await sframeOps(aead, payload, new Uint8Array(randomBytes(16)));
    const plain = await bare(new Uint8Array(randomBytes(16)), payload);
    for (const op of ["encrypt", "decrypt"] as const) {
      await compare(sf[op], plain[op], sliceMs, 3, clock); // warm-up
      const { sframe: sframe_ops_s, bare: bare_ops_s } = await compare(sf[op], plain[op], sliceMs, rounds, clock);
      rows.push({ backend, size, op, sframe_ops_s: Math.round(sframe_ops_s), bare_ops_s: Math.round(bare_ops_s), ratio: Number((sframe_ops_s / bare_ops_s).toFixed(3)) });
    }
  }
}

const header = ["backend", "size", "op", "sframe ops/s", "bare ops/s", "ratio"];
const cells = rows.map((r) => [r.backend, String(r.size), r.op, String(r.sframe_ops_s), String(r.bare_ops_s), r.ratio.toFixed(3)]);
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
const line = (c: string[]) => c.map((v, i) => (i >= 3 || i === 1 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join("  ");
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const c of cells) console.log(line(c));
const missed = rows.filter((r) => r.ratio < 0.9);
console.log(missed.length === 0 ? "\nratio >= 0.9 at every size" : `\nratio below 0.9: ${missed.map((r) => `${r.backend} ${r.size} ${r.op}`).join(", ")}`);

await mkdir(dirname(json), { recursive: true });
await writeFile(
  json,
  JSON.stringify(
    {
      benchmark: "sframe",
      suite: "AES_128_GCM_SHA256_128 (0x0004)",
      date: new Date().toISOString(),
      node: process.versions.node,
      cpu: cpus()[0]?.model ?? "unknown",
      cpus: cpus().length,
      clock,
      sliceMs,
      rounds,
      rows,
    },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${json}`);
