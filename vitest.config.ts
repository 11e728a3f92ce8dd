import { defineConfig } from "vitest/config";

/**
 * Test files that measure time, latency or memory under load (faults,
 * races, HTTP/2 abuse, fuzzing, watch lag, deadlines, connection limits,
 * shutdown), or bound how long Redis clients take to fail over, retry or
 * wait for replicas (Cluster, Sentinel, WAIT): they run one at a time,
 * after the rest, so no other file's load skews what they measure.
 */
const ALONE = [
  "test/faults/**/*.test.ts",
  "test/races/**/*.test.ts",
  "test/store/redis-cluster-session-store.test.ts",
  "test/store/redis-sentinel-*.test.ts",
  "test/store/redis-replicated-writes.test.ts",
  "test/process/h2-abuse.test.ts",
  "test/process/shutdown.test.ts",
  "test/server/fuzz.test.ts",
  "test/server/watch.test.ts",
  "test/server/max-deadline.test.ts",
  "test/server/connection-limits.test.ts",
  "test/store/redis-heavy-user.test.ts",
];

/**
 * Globs of test files to leave out of this run, comma-separated: .ci/run's
 * Node 24 pass names the Redis suites here. (Vitest's --exclude reaches
 * only a root project, not the two below.)
 */
const EXCLUDE = (process.env.TEST_EXCLUDE ?? "").split(",").filter((glob) => glob !== "");

export default defineConfig({
  // Tests import the client package (@sessionstore/client, the workspace
  // that npm links into node_modules) from its TypeScript sources, through
  // the package's "@sessionstore/source" export condition, as `npm run
  // typecheck` does: no build of the client is needed first, and a change to
  // it is tested at once. Test files run in Vite's server (SSR) environment;
  // Vitest adds its own default conditions (node, development) to this list.
  ssr: { resolve: { conditions: ["@sessionstore/source"] } },
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // Two groups, one after the other. Most files wait on sockets, child
    // processes and Redis far more than they compute, so three run at once
    // (Vitest's default on two cores is one): the whole suite took 402 s
    // instead of 582 on a two-core machine. Those in ALONE run alone.
    projects: [
      {
        extends: true,
        test: {
          name: "together",
          include: ["test/**/*.test.ts"],
          exclude: [...ALONE, ...EXCLUDE],
          maxWorkers: 3,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "alone",
          include: ALONE,
          exclude: EXCLUDE,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
