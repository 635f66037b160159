import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/CompletionRequest.ts",
    "src/Completion.ts",
    "src/Facts.ts",
    "src/Boundary.ts",
    "src/LlmError.ts",
    "src/Llm.ts",
    "src/Embedder.ts",
    "src/TokenModel.ts",
    "src/RateLimitHeaders.ts",
    "src/RateLimitPolicy.ts",
    "src/RequestKey.ts",
    "src/AiLanguageModel.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
