import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/Batcher.ts", "src/Adaptive.ts", "src/BatcherError.ts", "src/OpenAiBatch.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
