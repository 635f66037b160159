// The vitest settings every package and example shares; each `vitest.config.ts` merges its
// own specifics (longer timeouts for the examples) over these with `mergeConfig`.
import { defineConfig } from "vitest/config"

export default defineConfig({
  // Workspace packages resolve to their TypeScript sources (the `@hasten/source` export
  // condition), so tests run without building first.
  resolve: { conditions: ["@hasten/source"] },
  ssr: { resolve: { conditions: ["@hasten/source"] } },
  test: { include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 60_000 }
})
