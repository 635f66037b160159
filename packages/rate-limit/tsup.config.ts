import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/RateLimit.ts",
    "src/Options.ts",
    "src/Retry.ts",
    "src/Metrics.ts",
    "src/Limiter.ts",
    "src/Middleware.ts",
    "src/Config.ts",
    "src/Async.ts",
    "src/Estimator.ts",
    "src/IoRedis.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
