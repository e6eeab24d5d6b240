import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: vector-heavy files run in parallel forks, one per core. `npm test` runs test/browser in a
    // second pass with one worker, so Chromium's encoders and the SFU never compete with the vector runs.
    pool: "forks",
    maxWorkers: 2,
  },
});
