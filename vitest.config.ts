import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: vector-heavy files run in parallel forks, one per core.
    pool: "forks",
    maxWorkers: 2,
  },
});
