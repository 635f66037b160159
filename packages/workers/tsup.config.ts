import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/WorkersError.ts",
    "src/RedisConnection.ts",
    "src/WorkQueue.ts",
    "src/FleetSingleFlight.ts",
    "src/FleetConcurrency.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
