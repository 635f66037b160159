/**
 * Benchmarks of the local provider (node-llama-cpp, stories260K on CPU, threads 1):
 *   (a) model reload per call vs ModelPool (20 prompts)
 *   (d) repeat/frequency/presence penalties on vs off: tokens/s (goal: within 5%)
 * The OpenAI-compatible server's overhead and concurrency are measured by @hasten/server's bench.
 * Run from packages/providers after `tsup`: `node bench/local.ts [--quick]`.
 * Prints a table, then ONE JSON line, last.
 */
import { CompletionRequest, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, ManagedRuntime } from "effect"
import { LlamaCompletion } from "node-llama-cpp"
import { alternate, cpuMs, nodeLlamaCppAlone, penalties } from "./penalties.js"
import { prompts } from "./prompts.js"

const quick = process.argv.includes("--quick")
const modelName = "stories260K.gguf"

const now = (): number => performance.now()
const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const round = (value: number, digits = 2): number => Number(value.toFixed(digits))

const request = (prompt: string, maxTokens: number, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt, temperature: 0, maxTokens, ...extra })

const modelPath = await Effect.runPromise(Local.resolveModelPath(modelName))
const rows: Array<[string, string, string, string]> = []
const result: Record<string, unknown> = { bench: "providers-local", quick, model: modelName }

// (a) reload per call vs pool ---------------------------------------------------------
{
  const count = quick ? 10 : 20
  const maxTokens = 32
  // both sides use the same process-wide llama.cpp binding, loaded before timing
  const llama = await Effect.runPromise(ModelPool.getLlama(false))
  const baselineStart = now()
  for (const prompt of prompts.slice(0, count)) {
    const model = await llama.loadModel({ modelPath })
    const context = await model.createContext({ contextSize: 256, threads: 1 })
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() })
    await completion.generateCompletion(prompt, { temperature: 0, maxTokens, repeatPenalty: false })
    completion.dispose()
    await context.dispose()
    await model.dispose()
  }
  const baselineMs = now() - baselineStart
  const runtime = ManagedRuntime.make(Local.layer({ model: modelPath, contextSize: 256 }))
  const pooledStart = now()
  await runtime.runPromise(Effect.forEach(prompts.slice(0, count), (prompt) => Llm.complete(request(prompt, maxTokens)), { discard: true }))
  const pooledMs = now() - pooledStart
  await runtime.dispose()
  const speedup = baselineMs / pooledMs
  rows.push([
    `(a) ${count} prompts x ${maxTokens} tokens`,
    `reload per call ${round(baselineMs, 0)} ms`,
    `ModelPool ${round(pooledMs, 0)} ms (load included)`,
    `${round(speedup, 1)}x faster`
  ])
  result.a = { prompts: count, reloadMs: round(baselineMs, 1), poolMs: round(pooledMs, 1), speedup: round(speedup, 2) }
}

// one runtime for (d): a 4-sequence model ------------------------------------------------
const runtime = ManagedRuntime.make(Local.layer({ model: modelPath, contextSize: 512, sequences: 4 }))

// Wall-clock rates swing several-fold on a shared machine, so (d) and (e) also measure this
// process's CPU time (process.cpuUsage covers llama.cpp's threads too): tokens per CPU
// second is what penalties or batching change, and it is far less disturbed by neighbours.

// (d) penalties on vs off ----------------------------------------------------------------
{
  const rounds = quick ? 8 : 20
  const maxTokens = 200
  const measure = async (extra: Partial<CompletionRequest.CompletionRequestInput>) => {
    const wall = now()
    const cpu = cpuMs()
    const completion = await runtime.runPromise(Llm.complete(request("Once upon a time", maxTokens, extra)))
    const tokens = completion.usage.outputTokens
    return { wall: (tokens / (now() - wall)) * 1000, cpu: (tokens / (cpuMs() - cpu)) * 1000 }
  }
  const { off, on } = await alternate(rounds, (penalized) => measure(penalized ? penalties : {}))
  const wallRatio = median(on.map((x) => x.wall)) / median(off.map((x) => x.wall))
  const cpuRatio = median(on.map((x) => x.cpu)) / median(off.map((x) => x.cpu))
  rows.push([
    `(d) ${rounds} x ${maxTokens} tokens, alternating`,
    `off ${round(median(off.map((x) => x.cpu)), 0)} tok/cpu-s, ${round(median(off.map((x) => x.wall)), 0)} tok/s`,
    `on ${round(median(on.map((x) => x.cpu)), 0)} tok/cpu-s, ${round(median(on.map((x) => x.wall)), 0)} tok/s`,
    `cpu ${round(cpuRatio * 100, 1)}%, wall ${round(wallRatio * 100, 1)}% (goal >= 95%)`
  ])
  // The same comparison on node-llama-cpp alone (LlamaCompletion, no Hasten code), to tell
  // what the native penalty path costs by itself from what Hasten adds.
  const { off: bareOff, on: bareOn } = await nodeLlamaCppAlone({
    modelPath,
    prompt: "Once upon a time",
    maxTokens,
    rounds,
    // the same context as Hasten's runtime above: llama.cpp attends over all of its cells
    contextSize: 512,
    sequences: 4
  })
  const bareCpuRatio = median(bareOn.map((x) => x.cpu)) / median(bareOff.map((x) => x.cpu))
  rows.push([
    `(d) node-llama-cpp alone, same`,
    `off ${round(median(bareOff.map((x) => x.cpu)), 0)} tok/cpu-s`,
    `on ${round(median(bareOn.map((x) => x.cpu)), 0)} tok/cpu-s`,
    `cpu ${round(bareCpuRatio * 100, 1)}% (the native penalty path by itself)`
  ])
  result.d = {
    nodeLlamaCppAloneCpuRatio: round(bareCpuRatio, 3),
    offTokensPerCpuSecond: round(median(off.map((x) => x.cpu)), 1),
    onTokensPerCpuSecond: round(median(on.map((x) => x.cpu)), 1),
    cpuRatio: round(cpuRatio, 3),
    offTokensPerSecond: round(median(off.map((x) => x.wall)), 1),
    onTokensPerSecond: round(median(on.map((x) => x.wall)), 1),
    wallRatio: round(wallRatio, 3),
    withinFivePercent: cpuRatio >= 0.95
  }
}

await runtime.dispose()

const widths = [0, 1, 2, 3].map((column) => Math.max(...rows.map((row) => row[column]!.length), 10))
const line = (cells: ReadonlyArray<string>) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")
console.log(line(["benchmark", "baseline", "hasten", "result"]))
console.log(widths.map((width) => "-".repeat(width)).join("-|-"))
for (const row of rows) console.log(line(row))
console.log(JSON.stringify(result))
