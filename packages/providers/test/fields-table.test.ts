import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { readmePath, render, update } from "../scripts/fieldsTable.js"

describe("the README's field table", () => {
  it("is the one the providers' mappings generate (run `pnpm --filter @hasten/providers readme:fields`)", () => {
    const readme = readFileSync(readmePath, "utf8")
    assert.include(readme, render(), "README.md's field table is stale: run `pnpm --filter @hasten/providers readme:fields`")
    assert.strictEqual(update(readme), readme)
  })

  it("changes when a mapping changes (the check can fail)", () => {
    const readme = readFileSync(readmePath, "utf8")
    const stale = readme.replace("| `topK` | refused |", "| `topK` | `top_k` |")
    assert.notStrictEqual(stale, readme)
    assert.notInclude(stale, render())
  })
})
