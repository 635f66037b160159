import { defineConfig } from "tsup"

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/Server.ts",
    "src/OpenAiRequest.ts",
    "src/ServerConfig.ts",
    "src/ServerError.ts",
    "src/ServerMetrics.ts",
    "src/Gateway.ts",
    "src/serve.ts"
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node24"
})
