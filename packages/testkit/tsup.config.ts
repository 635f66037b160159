import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts","src/Simulator.ts","src/OpenAiSimulator.ts","src/AnthropicSimulator.ts","src/ReplicateSimulator.ts","src/Fakes.ts","src/cli.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
