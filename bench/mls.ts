/**
 * npm run bench:mls -- [--members 10,100,1000] [--json <file>] [--iterations <n>] [--impl conclave|ts-mls|all]
 *
 * MLS group operations at growing sizes, Conclave (native provider, suite 1) beside the npm package ts-mls,
 * on the same plan (bench/mls/scenario.ts): a Remove committed and processed in a blank tree (a path
 * encrypted to about every member) and in a full tree (every leaf has committed), joining by Welcome, and
 * an external join. Prints a table and writes the rows { impl, members, scenario, op, ms, bytes } as JSON.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname } from "node:path";
import { conclave } from "./mls/conclave.js";
import { buildFixture } from "./mls/fixture.js";
import type { Implementation, Row } from "./mls/scenario.js";
import { tsMls } from "./mls/ts-mls.js";

const USAGE = "usage: npm run bench:mls -- [--members 10,100,1000] [--json <file>] [--iterations <n>] [--impl conclave|ts-mls|all]";

function parseArgs(argv: string[]): { members: number[]; json: string; iterations: number; impls: Implementation[] } {
  let members = [10, 100, 1000];
  let json = "bench-results/mls.json";
  let iterations = 3;
  let impls = [conclave, tsMls];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => argv[++i] ?? fail(`${a} needs a value`);
    if (a === "--members") members = value().split(",").map(Number);
    else if (a === "--json") json = value();
    else if (a === "--iterations") iterations = Number(value());
    else if (a === "--impl") {
      const v = value();
      impls = v === "all" ? impls : impls.filter((impl) => impl.name === v);
      if (impls.length === 0) fail(`unknown implementation ${v}`);
    } else fail(`unknown argument ${a}`);
  }
  if (members.some((m) => !Number.isInteger(m) || m < 3)) fail("--members takes group sizes of at least 3, comma-separated");
  if (!Number.isInteger(iterations) || iterations < 1) fail("--iterations must be a positive integer");
  return { members, json, iterations, impls };
}

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function printTable(rows: readonly Row[], impls: readonly string[]): void {
  // One line per (members, scenario, op), one column per implementation, and how many times faster Conclave is.
  const keys = [...new Map(rows.map((r) => [`${r.members}|${r.scenario}|${r.op}`, r])).values()];
  const header = ["members", "scenario", "op", ...impls.flatMap((i) => [`${i} ms`, `${i} bytes`]), ...(impls.length === 2 ? [`${impls[1]}/${impls[0]}`] : [])];
  const lines = keys.map((k) => {
    const cells = impls.map((impl) => rows.find((r) => r.impl === impl && r.members === k.members && r.scenario === k.scenario && r.op === k.op));
    const ratio = cells.length === 2 && cells[0] && cells[1] ? `${(cells[1].ms / cells[0].ms).toFixed(1)}x` : "";
    return [
      String(k.members),
      k.scenario,
      k.op,
      ...cells.flatMap((c) => (c ? [c.ms.toFixed(c.ms < 10 ? 2 : 1), String(c.bytes)] : ["-", "-"])),
      ...(impls.length === 2 ? [ratio] : []),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const l of lines) console.log(line(l));
}

const { members, json, iterations, impls } = parseArgs(process.argv.slice(2));
console.log(`MLS benchmark: suite 1, ${cpus().length} CPUs (${cpus()[0]?.model ?? "unknown"}), node ${process.versions.node}, median of ${iterations} runs after a warm-up\n`);
const rows: Row[] = [];
const log = (line: string) => console.log(`  ${line}`);
for (const n of members) {
  const fixture = await buildFixture(n, log);
  for (const impl of impls) {
    const start = performance.now();
    await impl.run(fixture, { iterations, log }, (scenario, op, m) => {
      rows.push({ impl: impl.name, members: n, scenario, op, ms: Math.round(m.ms * 1000) / 1000, bytes: m.bytes });
    });
    log(`${n} members: ${impl.name} measured in ${(performance.now() - start).toFixed(0)} ms`);
  }
}
console.log();
printTable(
  rows,
  impls.map((i) => i.name),
);
await mkdir(dirname(json), { recursive: true });
await writeFile(json, JSON.stringify(rows, null, 2) + "\n");
console.log(`\nwrote ${json}`);
