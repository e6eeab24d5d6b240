/**
 * npm run bench:crypto -- [--json <file>] [--time <ms per operation>]
 * Cost of the operations a large commit multiplies (HPKE seal/open, sign, verify, ExpandWithLabel)
 * per provider and suite, measured one awaited call after another (latency, not throughput).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname } from "node:path";
import { utf8 } from "../keying/codec/bytes.js";
import { CipherSuite, SUITES, nativeProvider, portableProvider, type CipherSuiteId, type CryptoProvider } from "../keying/crypto/index.js";
import { createNativeProvider } from "../keying/crypto/native.js";

interface Result {
  provider: string;
  suite: CipherSuiteId;
  operation: string;
  iterations: number;
  usPerOp: number;
  opsPerSec: number;
}

function parseArgs(argv: string[]): { json: string; timeMs: number } {
  let json = "bench-results/crypto.json";
  let timeMs = 400;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--json") json = argv[++i] ?? json;
    else if (a === "--time") timeMs = Number(argv[++i] ?? timeMs);
    else throw new Error(`unknown argument ${a}\nusage: npm run bench:crypto -- [--json <file>] [--time <ms>]`);
  }
  if (!(timeMs > 0)) throw new Error("--time must be a positive number of milliseconds");
  return { json, timeMs };
}

/** Runs `op` until `timeMs` has passed (after a short warm-up) and returns the mean cost. */
async function measure(op: () => Promise<unknown>, timeMs: number): Promise<{ iterations: number; usPerOp: number }> {
  const warmUntil = performance.now() + Math.min(100, timeMs / 4);
  while (performance.now() < warmUntil) await op();
  let iterations = 0;
  const start = performance.now();
  const end = start + timeMs;
  let now = start;
  while (now < end || iterations < 5) {
    await op();
    iterations++;
    now = performance.now();
  }
  return { iterations, usPerOp: ((now - start) * 1000) / iterations };
}

async function operations(suite: CipherSuite): Promise<[string, () => Promise<unknown>][]> {
  const p = suite.primitives;
  const hpkeKey = await p.hpkeGenerateKeyPair();
  const sigKey = await p.signatureGenerateKeyPair();
  const context = utf8("group context");
  // A path secret's size: what UpdatePath encrypts to each copath node.
  const plaintext = suite.randomBytes(suite.params.Nh);
  const sealed = await suite.encryptWithLabel(hpkeKey.publicKey, "UpdatePathNode", context, plaintext);
  const content = suite.randomBytes(200);
  const signature = await suite.signWithLabel(sigKey.privateKey, "FramedContentTBS", content);
  const secret = suite.randomBytes(suite.params.Nh);
  return [
    ["HPKE seal", () => suite.encryptWithLabel(hpkeKey.publicKey, "UpdatePathNode", context, plaintext)],
    ["HPKE open", () => suite.decryptWithLabel(hpkeKey.privateKey, "UpdatePathNode", context, sealed.kemOutput, sealed.ciphertext)],
    ["sign", () => suite.signWithLabel(sigKey.privateKey, "FramedContentTBS", content)],
    ["verify", () => suite.verifyWithLabel(sigKey.publicKey, "FramedContentTBS", content, signature)],
    ["ExpandWithLabel", () => suite.expandWithLabel(secret, "key", context, suite.params.Nk)],
  ];
}

const { json, timeMs } = parseArgs(process.argv.slice(2));
const providers: [string, CryptoProvider][] = [
  ["native (node:crypto)", nativeProvider],
  ["native (WebCrypto path)", createNativeProvider({ runtime: "web" })],
  ["portable (noble, hpke-js)", portableProvider],
];
const suites: CipherSuiteId[] = [1, 2];

const results: Result[] = [];
for (const [name, provider] of providers) {
  for (const id of suites) {
    const suite = new CipherSuite(await provider.primitives(id));
    for (const [operation, op] of await operations(suite)) {
      const { iterations, usPerOp } = await measure(op, timeMs);
      results.push({ provider: name, suite: id, operation, iterations, usPerOp, opsPerSec: 1e6 / usPerOp });
    }
  }
}

const header = ["provider", "suite", "operation", "µs/op", "ops/s"];
const rows = results.map((r) => [r.provider, String(r.suite), r.operation, r.usPerOp.toFixed(1), Math.round(r.opsPerSec).toString()]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const row of rows) console.log(line(row));

await mkdir(dirname(json), { recursive: true });
await writeFile(
  json,
  JSON.stringify(
    {
      benchmark: "crypto",
      date: new Date().toISOString(),
      node: process.versions.node,
      cpu: cpus()[0]?.model ?? "unknown",
      cpus: cpus().length,
      timeMsPerOperation: timeMs,
      suites: Object.fromEntries(suites.map((id) => [id, SUITES[id].name])),
      results,
    },
    null,
    2,
  ) + "\n",
);
console.log(`\nwrote ${json}`);
