/**
 * `hasten-eval` starts in V8's memory-saver mode (internal/memory.ts): the process
 * re-executes itself with the flag, keeping its pid and arguments; `--memory default` opts out.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import * as Memory from "../src/internal/memory.js"

const probe = fileURLToPath(new URL("./fixtures/memory-probe.ts", import.meta.url))
const run = (...args: Array<string>) =>
  JSON.parse(
    execFileSync(process.execPath, ["--conditions=@hasten/source", "--import", "tsx", probe, ...args], {
      env: { ...process.env, NODE_OPTIONS: "" },
      encoding: "utf8"
    })
  ) as { readonly execArgv: ReadonlyArray<string>; readonly argv: ReadonlyArray<string> }

describe("memory-saver mode", () => {
  it("reads --memory from raw arguments", () => {
    assert.strictEqual(Memory.modeOf(["--dataset", "x"]), "saver")
    assert.strictEqual(Memory.modeOf(["--memory", "default"]), "default")
    assert.strictEqual(Memory.modeOf(["--memory=default"]), "default")
    assert.strictEqual(Memory.modeOf(["--memory", "saver"]), "saver")
  })

  it("re-executes the process with --memory-saver-mode, keeping its arguments and loaders; --memory default does not", () => {
    const saver = run("--dataset", "gsm8k")
    assert.include(saver.execArgv, "--memory-saver-mode")
    assert.include(saver.execArgv, "--max-semi-space-size=4")
    assert.include(saver.execArgv, "--conditions=@hasten/source")
    assert.deepStrictEqual(saver.argv, ["--dataset", "gsm8k"])
    const plain = run("--memory", "default")
    assert.notInclude(plain.execArgv, "--memory-saver-mode")
    assert.deepStrictEqual(plain.argv, ["--memory", "default"])
  }, 30_000)
})
