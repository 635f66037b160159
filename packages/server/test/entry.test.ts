import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const src = Path.resolve(import.meta.dirname, "../src")

/** Bare packages a module imports statically at runtime, following relative imports (type-only imports excluded). */
const runtimeImports = (entry: string): Array<string> => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    const text = Fs.readFileSync(file, "utf8")
    for (const match of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+"([^"]+)"/gm)) {
      const specifier = match[1]!
      if (specifier.startsWith(".")) visit(Path.join(Path.dirname(file), specifier.replace(/\.js$/, ".ts")))
      else if (!specifier.startsWith("node:")) packages.add(specifier)
    }
  }
  visit(Path.join(src, entry))
  return [...packages].sort()
}

describe("entry points", () => {
  it("importing @hasten/server loads no SDK and no node-llama-cpp: providers are imported when a plan needs them", () => {
    const imports = runtimeImports("index.ts")
    for (
      const heavy of [
        "openai",
        "node-llama-cpp",
        "@anthropic-ai/sdk",
        "@hasten/providers/openai",
        "@hasten/providers/local",
        "@hasten/providers/anthropic"
      ]
    ) {
      assert.notInclude(imports, heavy)
    }
    assert.include(imports, "@hasten/providers/router")
    const gateway = Fs.readFileSync(Path.join(src, "Gateway.ts"), "utf8")
    assert.match(gateway, /import\("@hasten\/providers\/local"\)/)
    assert.match(gateway, /import\("@hasten\/providers\/openai"\)/)
  })
})
