import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { CryptoProvider } from "../../keying/crypto/cipher-suite.js";
import type { CaseResult, VectorFile, VectorKind } from "./kind.js";

export interface FileReport {
  readonly relPath: string;
  readonly kind: string;
  /** Provider name, or "-" for kinds that use no cryptography. */
  readonly provider: string;
  readonly status: "ran" | "skipped" | "unreadable";
  readonly passed: number;
  readonly failed: number;
  readonly failures: readonly CaseResult[];
  readonly note?: string;
  /** Wall time of this file run, for spotting slow kinds. */
  readonly ms?: number;
}

/** Loads every kind module in ./kinds (each default-exports a VectorKind). */
export async function loadKinds(): Promise<VectorKind[]> {
  const dir = fileURLToPath(new URL("./kinds/", import.meta.url));
  const names = (await readdir(dir)).filter((n) => /\.ts$/.test(n) && !n.endsWith(".d.ts")).sort();
  const kinds: VectorKind[] = [];
  for (const n of names) {
    const mod = (await import(new URL(`./kinds/${n}`, import.meta.url).href)) as { default?: VectorKind };
    if (mod.default) kinds.push(mod.default);
  }
  return kinds;
}

async function listJson(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const p = join(dir, e.name);
      // stat() follows symlinks, so a folder of links to vector files works like the files themselves.
      const s = e.isSymbolicLink() ? await stat(p) : e;
      if (s.isDirectory()) await walk(p);
      else if (s.isFile() && e.name.endsWith(".json")) out.push(p);
    }
  };
  await walk(root);
  return out;
}

/**
 * Runs every vector file under `root` that some kind recognises, once per provider for kinds that
 * use cryptography. Files no kind recognises are reported as skipped; files that cannot be read or parsed fail.
 */
export async function runConformance(
  root: string,
  providers: readonly CryptoProvider[],
  onReport?: (r: FileReport) => void,
): Promise<FileReport[]> {
  const kinds = await loadKinds();
  const reports: FileReport[] = [];
  const emit = (r: FileReport): void => {
    reports.push(r);
    onReport?.(r);
  };
  for (const path of await listJson(root)) {
    const relPath = relative(root, path).split(sep).join("/");
    const name = relPath.slice(relPath.lastIndexOf("/") + 1);
    let file: VectorFile;
    try {
      const text = await readFile(path, "utf8");
      file = { relPath, name, text, json: JSON.parse(text) as unknown };
    } catch (e) {
      emit({ relPath, kind: "?", provider: "-", status: "unreadable", passed: 0, failed: 1, failures: [], note: e instanceof Error ? e.message : String(e) });
      continue;
    }
    const kind = kinds.find((k) => k.matches(file));
    if (!kind) {
      // Said on its own line, so a vector kind we do not run yet is never mistaken for a pass.
      emit({ relPath, kind: "?", provider: "-", status: "skipped", passed: 0, failed: 0, failures: [], note: "no kind recognises this file" });
      continue;
    }
    if (kind.skipped) {
      emit({ relPath, kind: kind.kind, provider: "-", status: "skipped", passed: 0, failed: 0, failures: [], note: kind.skipped });
      continue;
    }
    for (const provider of kind.usesProvider ? providers : providers.slice(0, 1)) {
      const started = performance.now();
      const results = await kind.run(file, provider);
      const failures = results.filter((r) => !r.ok);
      emit({
        relPath,
        kind: kind.kind,
        provider: kind.usesProvider ? provider.name : "-",
        status: "ran",
        passed: results.length - failures.length,
        failed: failures.length,
        failures,
        ms: performance.now() - started,
      });
    }
  }
  return reports;
}

export function formatReport(r: FileReport): string {
  const who = r.provider === "-" ? "" : ` [${r.provider}]`;
  if (r.status === "skipped") return `${r.relPath}${who}: skipped (${r.note ?? ""})`;
  if (r.status === "unreadable") return `${r.relPath}: unreadable (${r.note ?? ""})`;
  const took = r.ms === undefined ? "" : ` (${Math.round(r.ms)} ms)`;
  const head = `${r.relPath}${who}: ${r.passed} passed, ${r.failed} failed${took}`;
  const shown = r.failures.slice(0, 5).map((f) => `\n    case ${f.index}: ${f.reason ?? "failed"}`);
  return head + shown.join("") + (r.failures.length > 5 ? `\n    ... ${r.failures.length - 5} more` : "");
}
