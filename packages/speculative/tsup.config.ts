import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/Speculative.ts", "src/Drafter.ts", "src/Sampling.ts", "src/SpeculativeError.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
