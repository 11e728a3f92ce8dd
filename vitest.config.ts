import { defineConfig } from "vitest/config";

export default defineConfig({
  // Tests import the client package (@sessionstore/client, the workspace
  // that npm links into node_modules) from its TypeScript sources, through
  // the package's "@sessionstore/source" export condition, as `npm run
  // typecheck` does: no build of the client is needed first, and a change to
  // it is tested at once. Test files run in Vite's server (SSR) environment;
  // Vitest adds its own default conditions (node, development) to this list.
  ssr: { resolve: { conditions: ["@sessionstore/source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
