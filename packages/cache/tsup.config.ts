import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/Cache.ts",
    "src/LlmCache.ts",
    "src/EmbedderCache.ts",
    "src/CacheConfig.ts",
    "src/CacheError.ts",
    "src/CacheKey.ts",
    "src/CachePayload.ts",
    "src/CacheMetrics.ts",
    "src/CachedLlm.ts",
    "src/CacheStore.ts",
    "src/MemoryStore.ts",
    "src/SqliteStore.ts",
    "src/RedisStore.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24",
  // Keep `node:sqlite` as written: it has no bare-name alias.
  removeNodeProtocol: false
})
