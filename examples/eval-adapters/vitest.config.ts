import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["@hasten/source"] },
  ssr: { resolve: { conditions: ["@hasten/source"] } },
  test: { include: ["test/**/*.test.ts"], testTimeout: 120_000, hookTimeout: 60_000 }
})
