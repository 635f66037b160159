import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/EvaluatorError.ts",
    "src/Dataset.ts",
    "src/Evaluator.ts",
    "src/Sampling.ts",
    "src/Scorer.ts",
    "src/Stats.ts",
    "src/ItemRecord.ts",
    "src/Report.ts",
    "src/Progress.ts",
    "src/Stack.ts",
    "src/Command.ts",
    "src/Distributed.ts",
    "src/WorkerCommand.ts",
    "src/Paired.ts",
    "src/MultipleChoice.ts",
    "src/cli.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24",
  // Providers and SDKs are loaded on demand by the CLI; never bundle them.
  external: [/^@hasten\//, "bullmq", "ioredis", /^effect/, "node-llama-cpp", "openai", "@anthropic-ai/sdk", "replicate"]
})
