import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Integration and boot tests drive real tools; keep parallelism modest on 2 cores.
    maxWorkers: 2,
    // compile the CLI once; one private Docker engine (dockerd on its own socket) for the whole run
    globalSetup: ["test/setup/tmpdir.global.ts", "test/setup/build.global.ts", "test/setup/dockerd.global.ts"],
    reporters: ["default", ["json", { outputFile: ".cache/vitest-results.json" }]],
  },
});
