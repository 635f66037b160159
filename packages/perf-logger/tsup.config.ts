import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/PerfLoggerError.ts",
    "src/PerfLogger.ts",
    "src/Exporter.ts",
    "src/Measure.ts",
    "src/Metrics.ts",
    "src/Middleware.ts",
    "src/Price.ts",
    "src/Recorder.ts",
    "src/RunFiles.ts",
    "src/RunLog.ts",
    "src/Stage.ts",
    "src/Summary.ts",
    "src/cli.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
