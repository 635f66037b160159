import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.ts"

// The examples run whole pipelines (local models, simulators): longer per-test timeout.
export default mergeConfig(shared, defineConfig({ test: { testTimeout: 120_000 } }))
