import type { CryptoProvider } from "../../keying/crypto/cipher-suite.js";

/**
 * One kind of official test vector. Each file in ./kinds/ default-exports one of these; the runner
 * loads them all, so adding a kind never touches shared code.
 */
export interface VectorKind {
  /** Name printed in reports, e.g. "tree-math". */
  readonly kind: string;
  /** Does this file belong to this kind? Official MLS files are recognised by name, others by content. */
  matches(file: VectorFile): boolean;
  /** Kinds that need no cryptography ignore the provider and run once. */
  readonly usesProvider: boolean;
  /** Run every case of the file. Never throws for a failing case: a failure is a CaseResult. */
  run(file: VectorFile, provider: CryptoProvider): Promise<CaseResult[]>;
  /** When set, the kind is recognised but not yet implemented: the runner reports `skipped`. */
  readonly skipped?: string;
}

export interface VectorFile {
  /** Path relative to the folder given to the runner, with "/" separators (e.g. "interop-passive/commit.json"). */
  readonly relPath: string;
  /** Base name, e.g. "tree-math.json". */
  readonly name: string;
  /** Raw text, for kinds whose numbers exceed 2^53 (SFrame KID/CTR) and must be parsed as BigInt. */
  readonly text: string;
  /** JSON.parse of the text. */
  readonly json: unknown;
}

export interface CaseResult {
  readonly index: number;
  readonly ok: boolean;
  /** Why it failed: which field differed. Never key material. */
  readonly reason?: string;
}

/** Run each case, turning an exception into a failed result with its message. */
export async function eachCase<T>(cases: readonly T[], check: (c: T, index: number) => Promise<void> | void): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (let i = 0; i < cases.length; i++) {
    try {
      await check(cases[i]!, i);
      results.push({ index: i, ok: true });
    } catch (e) {
      results.push({ index: i, ok: false, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return results;
}

/** Throws with the field name when two byte strings differ. */
export function expectBytes(field: string, actual: Uint8Array, expectedHex: string): void {
  let hex = "";
  for (const b of actual) hex += b.toString(16).padStart(2, "0");
  if (hex !== expectedHex.toLowerCase()) throw new Error(`${field} mismatch`);
}

export function expectEqual<T>(field: string, actual: T, expected: T): void {
  if (actual !== expected) throw new Error(`${field} mismatch: got ${String(actual)}, want ${String(expected)}`);
}
