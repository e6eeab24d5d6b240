import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { nativeProvider, portableProvider } from "../../keying/crypto/index.js";
import { formatReport, runConformance } from "./runner.js";

const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));

describe.each([
  ["mls-test-vectors", [nativeProvider, portableProvider]],
  ["sframe-test-vectors", [nativeProvider]],
] as const)("official vectors in ../shared/%s", (folder, providers) => {
  it("every recognised file passes with every provider", async () => {
    expect(existsSync(SHARED + folder)).toBe(true);
    const reports = await runConformance(SHARED + folder, providers);
    const bad = reports.filter((r) => r.failed > 0 || r.status === "unreadable").map(formatReport);
    expect(bad).toEqual([]);
    expect(reports.filter((r) => r.status === "ran").length).toBeGreaterThan(0);
  });
});
