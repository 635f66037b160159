/**
 * Model pool vs reload per call at real sizes (testkit's SyntheticModel: synthetic weights of
 * real shapes with the 32k Llama-2 vocabulary, timing only; the text is meaningless and never
 * ends early, so every answer is exactly `maxTokens` greedy tokens).
 *
 * Reload baseline (as seed 003 did it): for each prompt a new process (`process.execPath`,
 * the same NODE_OPTIONS, so the source runs) loads the model through `Local.layer`, answers
 * one prompt, prints its timing (startup, load, generate) and exits. Hasten: one process,
 * `Local.layer` (the ModelPool) loaded once, the same prompts. The two modes alternate per
 * prompt. The pool's one load is reported apart (a server pays it once at start).
 *
 *   speedup            = reload total (child wall, spawn to exit) / pool total
 *   loadAmortizedPct   = 100 × (reload total − pool total) / (children's measured load total)
 *   implied 4B speedup = (load_4B + gen_4B) / gen_4B, load_4B assumed 5 s and 30 s (the range
 *                        the issue cites), gen_4B = the measured ms/token × 4e9 / parameters
 *
 * Run from packages/providers: `node bench/pool-size.ts [--quick] [--shapes 42M,110M]`
 * (default `110M`; `--quick` → `15M`, 3 prompts). Prints a table, then ONE JSON line last.
 * Child mode (internal): `node bench/pool-size.ts --child <model path> <prompt> <maxTokens>`.
 */
import { CompletionRequest, Llm } from "@hasten/core"
import { Local } from "@hasten/providers/local"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, ManagedRuntime } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { prompts as allPrompts } from "./prompts.js"

const startupMs = performance.now() // process start → imports done
const now = (): number => performance.now()
const round = (value: number, digits = 2): number => Number(value.toFixed(digits))
const settings = { contextSize: 256, threads: 1 } as const
const request = (prompt: string, maxTokens: number) =>
  CompletionRequest.makeUnsafe({ model: "synthetic", messages: [], prompt, temperature: 0, maxTokens })

interface ChildTiming {
  readonly startupMs: number
  readonly loadMs: number
  readonly generateMs: number
  readonly tokens: number
}

const argv = process.argv.slice(2)
const childAt = argv.indexOf("--child")

if (childAt >= 0) {
  // one question in a fresh process: load (model + context), answer, exit
  const [modelPath, prompt, maxTokens] = argv.slice(childAt + 1)
  const loadStart = now()
  const runtime = ManagedRuntime.make(Local.layer({ model: modelPath!, ...settings }))
  await runtime.runPromise(Effect.service(Llm.Llm))
  const loadMs = now() - loadStart
  const generateStart = now()
  const completion = await runtime.runPromise(Llm.complete(request(prompt!, Number(maxTokens))))
  const generateMs = now() - generateStart
  await runtime.dispose()
  const timing: ChildTiming = { startupMs, loadMs, generateMs, tokens: completion.usage.outputTokens }
  console.log(JSON.stringify(timing))
  process.exit(0)
}

const quick = argv.includes("--quick")
const shapesAt = argv.indexOf("--shapes")
const shapes = shapesAt >= 0 ? argv[shapesAt + 1]!.split(",") : [quick ? "15M" : "110M"]
const count = quick ? 3 : 8
const maxTokens = 32
const script = fileURLToPath(import.meta.url)
const prompts = allPrompts.slice(0, 8)

const reloadOnce = (modelPath: string, prompt: string) =>
  new Promise<ChildTiming & { wallMs: number }>((resolve, reject) => {
    const start = now()
    const child = spawn(process.execPath, [script, "--child", modelPath, prompt, String(maxTokens)], {
      env: process.env,
      stdio: ["ignore", "pipe", "inherit"]
    })
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString("utf8")))
    child.on("close", (code) => {
      const wallMs = now() - start
      const last = stdout.trim().split("\n").reverse().find((line) => line.startsWith("{"))
      if (code !== 0 || last === undefined) return reject(new Error(`reload child exited ${code} without timing`))
      resolve({ ...(JSON.parse(last) as ChildTiming), wallMs })
    })
  })

const sum = (values: ReadonlyArray<number>): number => values.reduce((a, b) => a + b, 0)
const rows: Array<[string, string, string, string]> = []
const poolBySize: Record<string, unknown> = {}

for (const shape of shapes) {
  if (!(shape in SyntheticModel.shapes)) {
    throw new Error(`--shapes: unknown shape ${shape} (${Object.keys(SyntheticModel.shapes).join(", ")})`)
  }
  const file = await SyntheticModel.ensure({ shape: shape as SyntheticModel.ShapeName })
  // warm-up child: the OS file cache and tsx's transform cache, untimed
  await reloadOnce(file.path, prompts[0]!)
  const poolLoadStart = now()
  const runtime = ManagedRuntime.make(Local.layer({ model: file.path, ...settings }))
  await runtime.runPromise(Effect.service(Llm.Llm))
  const poolLoadMs = now() - poolLoadStart
  const reload: Array<ChildTiming & { wallMs: number }> = []
  const pool: Array<number> = []
  const pooled = async (prompt: string) => {
    const start = now()
    const completion = await runtime.runPromise(Llm.complete(request(prompt, maxTokens)))
    pool.push(now() - start)
    if (completion.usage.outputTokens !== maxTokens) {
      throw new Error(`${shape}: pool answer ended at ${completion.usage.outputTokens} tokens`)
    }
  }
  for (let i = 0; i < count; i++) {
    const prompt = prompts[i % prompts.length]!
    // alternate which mode goes first, so drift hits both
    if (i % 2 === 1) await pooled(prompt)
    const child = await reloadOnce(file.path, prompt)
    if (child.tokens !== maxTokens) throw new Error(`${shape}: reload answer ended at ${child.tokens} tokens`)
    reload.push(child)
    if (i % 2 === 0) await pooled(prompt)
  }
  await runtime.dispose()

  const reloadMs = sum(reload.map((r) => r.wallMs))
  const poolMs = sum(pool)
  const loadMs = sum(reload.map((r) => r.loadMs))
  const childStartupMs = sum(reload.map((r) => r.startupMs))
  const childGenerateMs = sum(reload.map((r) => r.generateMs))
  const speedup = reloadMs / poolMs
  const loadAmortizedPct = (100 * (reloadMs - poolMs)) / loadMs
  // the stricter reading: only the child's load + generate, no process startup
  const inChildPct = (100 * (loadMs + childGenerateMs - poolMs)) / loadMs
  const msPerToken = poolMs / (count * maxTokens)
  const gen4BMs = msPerToken * (4e9 / file.parameters) * maxTokens
  const implied = (load4BMs: number) => (load4BMs + gen4BMs) / gen4BMs
  poolBySize[shape] = {
    speedup: round(speedup),
    loadAmortizedPct: round(loadAmortizedPct, 1),
    loadAmortizedPctWithoutStartup: round(inChildPct, 1),
    prompts: count,
    maxTokens,
    parameters: file.parameters,
    reloadMs: round(reloadMs, 1),
    poolMs: round(poolMs, 1),
    poolLoadOnceMs: round(poolLoadMs, 1),
    childStartupMsPerCall: round(childStartupMs / count, 1),
    loadMsPerCall: round(loadMs / count, 1),
    childGenerateMsPerCall: round(childGenerateMs / count, 1),
    poolGenerateMsPerCall: round(poolMs / count, 1),
    msPerToken: round(msPerToken, 2),
    implied4B: {
      assumption: "load 5 s / 30 s (the issue's 5-30 s); gen = measured ms/token x 4e9/parameters, 32 tokens",
      genMs: round(gen4BMs, 0),
      speedupLoad5s: round(implied(5_000)),
      speedupLoad30s: round(implied(30_000))
    },
    removesLoad: loadAmortizedPct >= 95
  }
  rows.push(
    [
      `(g) ${shape} ${count} prompts x ${maxTokens} tok`,
      `reload ${round(reloadMs / count, 0)} ms/call (startup ${round(childStartupMs / count, 0)}, load ${round(loadMs / count, 0)}, gen ${
        round(childGenerateMs / count, 0)
      })`,
      `pool ${round(poolMs / count, 0)} ms/call (load once ${round(poolLoadMs, 0)} ms, apart)`,
      `${round(speedup, 2)}x, load removed ${round(loadAmortizedPct, 0)}% (${round(inChildPct, 0)}% w/o startup; goal >= 95%)`
    ],
    [
      `(g) ${shape} implied for 4B`,
      `assumes load 5 s / 30 s, gen ${round(gen4BMs / 1000, 1)} s`,
      `(= ${round(msPerToken, 1)} ms/tok x 4e9/${round(file.parameters / 1e6, 0)}M x ${maxTokens})`,
      `${round(implied(5_000), 2)}x / ${round(implied(30_000), 2)}x`
    ]
  )
}

const widths = [0, 1, 2, 3].map((column) => Math.max(...rows.map((row) => row[column]!.length), 10))
const line = (cells: ReadonlyArray<string>) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")
console.log(line(["benchmark", "baseline", "hasten", "result"]))
console.log(widths.map((width) => "-".repeat(width)).join("-|-"))
for (const row of rows) console.log(line(row))
console.log(JSON.stringify({ bench: "providers-pool-size", quick, poolBySize }))
