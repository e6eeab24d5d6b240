import { expect, it } from "vitest";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { CryptoProvider } from "../../keying/crypto/cipher-suite.js";
import { formatReport, runConformance } from "./runner.js";

export const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));

/** One test per vector folder: every file some kind recognises must run clean with each provider. */
export function vectorFolderTest(folder: string, providers: readonly CryptoProvider[]): void {
  it(`every recognised file in ../shared/${folder} passes with ${providers.map((p) => p.name).join(", ")}`, async () => {
    expect(existsSync(SHARED + folder)).toBe(true);
    const reports = await runConformance(SHARED + folder, providers);
    // Every file of these folders has a kind now: a skipped one would hide a gap, so it fails here too.
    const bad = reports.filter((r) => r.failed > 0 || r.status !== "ran").map(formatReport);
    expect(bad).toEqual([]);
    expect(reports.filter((r) => r.status === "ran").length).toBeGreaterThan(0);
  }, 600_000);
}
