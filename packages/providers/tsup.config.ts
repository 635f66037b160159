import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/openai.ts",
    "src/anthropic.ts",
    "src/replicate.ts",
    "src/local.ts",
    "src/router.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
