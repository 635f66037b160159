import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/TestkitError.ts",
    "src/Simulator.ts",
    "src/SimulatorOptions.ts",
    "src/SimulatorCounters.ts",
    "src/Fakes.ts",
    "src/RedisServer.ts",
    "src/SyntheticModel.ts",
    "src/cli.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
