import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real servers, real databases, real browsers: give them room, and keep files apart
    // so one suite's ports and databases never meet another's.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    // PGlite's initdb once per run, copied into each test's data folder (test/helpers/pglite-template-global.ts).
    globalSetup: ['./test/helpers/pglite-template-global.ts'],
    setupFiles: ['./test/helpers/pglite-template.ts'],
  },
});
