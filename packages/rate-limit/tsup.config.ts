import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/RateLimit.ts", "src/Estimator.ts", "src/IoRedis.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
