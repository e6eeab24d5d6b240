/**
 * npm run conformance -- <folder> [--provider native|portable|all]
 * Runs every vector file it recognises under <folder>; one line per file (and provider); exit 1 on any failure.
 */
import { stat } from "node:fs/promises";
import { nativeProvider, portableProvider } from "../keying/crypto/index.js";
import type { CryptoProvider } from "../keying/crypto/cipher-suite.js";
import { formatReport, runConformance } from "../test/conformance/runner.js";

function usage(msg: string): never {
  console.error(`${msg}\nusage: npm run conformance -- <folder> [--provider native|portable|all]`);
  process.exit(2);
}

const args = process.argv.slice(2);
let folder: string | undefined;
let which = "all";
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "--provider") which = args[++i] ?? usage("--provider needs a value");
  else if (a.startsWith("--provider=")) which = a.slice("--provider=".length);
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else if (folder === undefined) folder = a;
  else usage(`unexpected argument ${a}`);
}
if (!folder) usage("missing <folder>");
const providers: CryptoProvider[] =
  which === "all" ? [nativeProvider, portableProvider] : which === "native" ? [nativeProvider] : which === "portable" ? [portableProvider] : usage(`unknown provider ${which}`);

try {
  if (!(await stat(folder)).isDirectory()) usage(`${folder} is not a folder`);
} catch {
  usage(`cannot read ${folder}`);
}

const reports = await runConformance(folder, providers, (r) => console.log(formatReport(r)));
const failed = reports.filter((r) => r.failed > 0 || r.status === "unreadable").length;
const skipped = reports.filter((r) => r.status === "skipped").length;
console.log(`\n${reports.length} file runs: ${reports.length - failed - skipped} clean, ${failed} with failures, ${skipped} skipped`);
if (reports.length === 0) {
  console.error("no recognised vector file in that folder");
  process.exit(1);
}
process.exit(failed > 0 ? 1 : 0);
