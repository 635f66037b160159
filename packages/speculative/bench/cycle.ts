/**
 * Where a speculative cycle's time goes, at real sizes: the synthetic pair (`--shape`, default
 * 110M, with its 4M draft; random weights of real shapes, timing only) through `Local.layer`'s
 * TokenModel as the bench runs it, every sequence operation of target and draft timed (CPU
 * seconds of this process, all threads; and wall), beside plain greedy decoding with
 * node-llama-cpp alone and Hasten's lean greedy (γ = 0), interleaved request by request.
 *
 *   pnpm bench:cycle [--shape=110M|1024x24] [--gamma=4,adaptive] [--rounds=2] [--tokens=128] [--ab]
 * (`--shape`: a name in `SyntheticModel.shapes` or `<embedding>x<layers>`, see `parseShape`)
 * (`--ab`: each γ also with the draft model drafting one `appendGreedy` call per token)
 *   pnpm bench:cycle --passes [--repeats=6]
 * (only the target's forward passes of 1, 2, 3, 5, 9 tokens, and of 2 and 5 with the last output only, flash attention on and off, taking turns)
 *
 * Prints, per configuration, CPU milliseconds per request split into: target appendGreedy by
 * batch length, target truncate, draft appendGreedy, draft truncate, generateGreedy, and the
 * rest (the loop, Effect, bookkeeping); then the same per cycle.
 */
import { CompletionRequest, Llm, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { SyntheticModel } from "@hasten/testkit"
import { Context, Effect, Layer, ManagedRuntime } from "effect"
import { getLlama, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import { atPrompt, cpuMillis, parseShape, storyPrompts } from "./support.js"

const option = (name: string): string | undefined => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const shape = option("shape") ?? "110M"
const gammaOption = option("gamma") ?? "4"
const gammas: Array<number | "adaptive"> = gammaOption.split(",").map((g) => (g === "adaptive" ? "adaptive" : Number(g)))
const rounds = Number(option("rounds") ?? 2)
const maxTokens = Number(option("tokens") ?? 128)
const contextSize = 1024
const prompts = storyPrompts

const cpu = cpuMillis

/** Accumulated CPU and wall milliseconds and calls, by label. */
class Ledger {
  readonly cpu = new Map<string, number>()
  readonly wall = new Map<string, number>()
  readonly calls = new Map<string, number>()
  add(label: string, cpuMs: number, wallMs: number) {
    this.cpu.set(label, (this.cpu.get(label) ?? 0) + cpuMs)
    this.wall.set(label, (this.wall.get(label) ?? 0) + wallMs)
    this.calls.set(label, (this.calls.get(label) ?? 0) + 1)
  }
}

let active: Ledger | undefined

const timed = <A, E, R>(label: () => string, effect: () => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const name = label()
    const c0 = cpu()
    const w0 = performance.now()
    return Effect.tap(effect(), () =>
      Effect.sync(() => {
        active?.add(name, cpu() - c0, performance.now() - w0)
      }))
  })

const wrap = (who: string, model: TokenModel.TokenModelService, hideGenerate = false): TokenModel.TokenModelService => ({
  ...model,
  sequence: () =>
    Effect.map(model.sequence(), (sequence) => {
      const extended = sequence as TokenModel.TokenSequence & Drafter.SequenceExtensions
      const wrapped: TokenModel.TokenSequence & Drafter.SequenceExtensions = {
        tokens: () => sequence.tokens(),
        append: (tokens) => timed(() => `${who}.append(${tokens.length})`, () => sequence.append(tokens)),
        truncate: (length) => timed(() => `${who}.truncate(-${sequence.tokens().length - length})`, () => sequence.truncate(length)),
        ...(extended.appendGreedy !== undefined
          ? {
            appendGreedy: (tokens, from) =>
              timed(
                () => `${who}.appendGreedy(${tokens.length}${from !== undefined && from > 0 ? `,from ${from}` : ""})`,
                () => extended.appendGreedy!(tokens, from)
              )
          }
          : {}),
        ...(extended.generateGreedy !== undefined && !hideGenerate
          ? {
            generateGreedy: (tokens, count, stopAt) =>
              timed(() => `${who}.generateGreedy(${tokens.length},${count})`, () => extended.generateGreedy!(tokens, count, stopAt))
          }
          : {})
      }
      return wrapped
    })
})

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
const pair = await SyntheticModel.pair({ target: parseShape(shape) })
const pools: Array<ManagedRuntime.ManagedRuntime<ModelPool.ModelPool, never>> = []
const tokenModel = async (path: string, who: string, hideGenerate = false) => {
  const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
  pools.push(poolRuntime)
  const pool = Layer.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
  return Layer.effect(TokenModel.TokenModel, Effect.map(Effect.service(TokenModel.TokenModel), (model) => wrap(who, model, hideGenerate)))
    .pipe(
      Layer.provide(Local.layerWithPool({ model: path, contextSize, sequences: 1, threads: 1 })),
      Layer.provide(pool)
    )
}

interface Config {
  readonly name: string
  readonly ledger: Ledger
  readonly run: (prompt: string) => Promise<ReadonlyArray<number>>
  readonly close: () => Promise<void>
  cycles: number
  tokens: number
  cpu: number
  wall: number
}

const nodePlain = async (model: LlamaModel): Promise<Config> => {
  const context = await model.createContext({
    contextSize,
    threads: 1,
    sequences: 1,
    flashAttention: ModelPool.defaultFlashAttention(model)
  })
  const sequence: LlamaContextSequence = context.getSequence()
  return {
    name: `node-llama-cpp plain (flash ${ModelPool.defaultFlashAttention(model)})`,
    ledger: new Ledger(),
    cycles: 0,
    tokens: 0,
    cpu: 0,
    wall: 0,
    run: async (text) => {
      const prompt = [model.tokens.bos!, ...model.tokenize(text, false)]
      const keep = Math.min(Drafter.commonPrefix(sequence.contextTokens, prompt), prompt.length - 1)
      if (sequence.nextTokenIndex > keep) await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }])
      const out: Array<number> = []
      for await (const token of sequence.evaluate(prompt.slice(keep) as Array<Token>, { temperature: 0 })) {
        out.push(token)
        if (out.length >= maxTokens) break
      }
      return out
    },
    close: () => context.dispose()
  }
}

/** `stepwise`: the draft model without `generateGreedy`, so `Drafter.model` drafts one `appendGreedy` call per token (the A/B of `--ab`). */
const hasten = async (gamma: number | "adaptive", stepwise = false): Promise<Config> => {
  const target = await tokenModel(pair.target.path, "target")
  const drafter = gamma === 0 ? Drafter.promptLookup() : Drafter.modelLayer(await tokenModel(pair.draft.path, "draft", stepwise))
  const runtime = ManagedRuntime.make(Speculative.layer({ drafter, gamma }).pipe(Layer.provide(target)))
  const llm = await runtime.runPromise(Effect.service(Llm.Llm))
  const config: Config = {
    name: gamma === 0 ? "hasten lean greedy (γ=0)" : `hasten draft model γ=${gamma}${stepwise ? " (drafting step by step)" : ""}`,
    ledger: new Ledger(),
    cycles: 0,
    tokens: 0,
    cpu: 0,
    wall: 0,
    run: async (prompt) => {
      const completion = await runtime.runPromise(
        llm.complete(CompletionRequest.makeUnsafe({ model: "target", messages: [], prompt, temperature: 0, maxTokens }))
      )
      const stats = completion.facts!.speculative as Speculative.RequestStats
      config.cycles += stats.targetEvaluations - (gamma === 0 ? stats.plainSteps : 0)
      return completion.metadata!["tokens"] as ReadonlyArray<number>
    },
    close: () => runtime.dispose()
  }
  return config
}

/**
 * `--passes`: the CPU cost of the target's forward passes alone, with flash attention on (the
 * default at this size) and off: consecutive passes of k tokens (k = 1: steps of a greedy loop,
 * as plain decoding runs them; k > 1: passes as verification runs them, each keeping one token),
 * the two contexts taking turns. Then exits.
 */
if (process.argv.includes("--passes")) {
  const lengths = [1, 2, 3, 5, 9]
  /** Passes with the greedy token of every position (verification), and of the last one only. */
  const kinds = [...lengths.map((k) => [k, 0] as const), [2, 1] as const, [5, 4] as const]
  const runtime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
  const lines = await runtime.runPromise(Effect.scoped(Effect.gen(function*() {
    const sequences: Array<TokenModel.TokenSequence & Drafter.SequenceExtensions> = []
    for (const flash of [true, false]) {
      const built = yield* Layer.build(
        Local.layerWithPool({ model: pair.target.path, contextSize, sequences: 1, threads: 1, flashAttention: flash })
      )
      sequences.push((yield* Context.get(built, TokenModel.TokenModel).sequence()) as TokenModel.TokenSequence & Drafter.SequenceExtensions)
    }
    const samples = sequences.map(() => new Map<string, Array<number>>())
    const prefix = Array.from({ length: 64 }, (_, j) => 1000 + ((j * 37) % 20000))
    for (let repeat = 0; repeat < Number(option("repeats") ?? 6); repeat++) {
      for (const [k, from] of kinds) {
        for (const [f, sequence] of sequences.entries()) {
          yield* sequence.truncate(0)
          yield* sequence.appendGreedy!(prefix, prefix.length - 1)
          const start = cpu()
          if (k === 1) {
            yield* sequence.generateGreedy!([5000], 24)
          } else {
            for (let pass = 0; pass < 24; pass++) {
              const length = sequence.tokens().length
              yield* sequence.appendGreedy!(Array.from({ length: k }, (_, j) => 5000 + pass * 7 + j), from)
              yield* sequence.truncate(length + 1)
            }
          }
          const key = `${k}/${from}`
          const list = samples[f]!.get(key) ?? []
          list.push((cpu() - start) / 24)
          samples[f]!.set(key, list)
        }
      }
    }
    const median = (list: Array<number>) => list.sort((x, y) => x - y)[list.length >> 1]!
    return ["on", "off"].map((flash, f) => {
      const one = median(samples[f]!.get("1/0")!)
      return `flash ${flash}: ${
        kinds.map(([k, from]) => {
          const ms = median(samples[f]!.get(`${k}/${from}`)!)
          return `${k} token${k > 1 ? "s" : ""}${from > 0 ? " (last output only)" : ""} ${ms.toFixed(2)} (${(ms / one).toFixed(2)}x)`
        }).join(", ")
      }`
    })
  })))
  console.log(
    `${shape} target, CPU ms per pass after 64 tokens (k = 1: a greedy loop step; k > 1: consecutive passes, each keeping one token; median), load ${
      (await import("node:os")).loadavg().map((l) => l.toFixed(2)).join(" ")
    }`
  )
  for (const line of lines) console.log(line)
  await runtime.dispose()
  process.exit(0)
}

const target = await llama.loadModel({ modelPath: pair.target.path, gpuLayers: 0 })
const configs: Array<Config> = [await nodePlain(target), await hasten(0)]
for (const gamma of gammas) {
  configs.push(await hasten(gamma))
  if (process.argv.includes("--ab")) configs.push(await hasten(gamma, true))
}
const reference: Array<ReadonlyArray<number>> = []
const identical = configs.map(() => 0)
for (let round = -1; round < rounds; round++) {
  for (const [i, prompt] of prompts.entries()) {
    const order = configs.map((_, c) => c).sort(() => Math.random() - 0.5)
    for (const c of order) {
      const config = configs[c]!
      const measuring = round >= 0
      active = measuring ? config.ledger : undefined
      const c0 = cpu()
      const w0 = performance.now()
      const cyclesBefore = config.cycles
      const out = await config.run(prompt)
      if (!measuring) config.cycles = cyclesBefore
      active = undefined
      if (measuring) {
        config.cpu += cpu() - c0
        config.wall += performance.now() - w0
        config.tokens += out.length
        if (c === 0 && round === 0) reference[i] = out
      }
      if (round === rounds - 1 && c > 0 && reference[i] !== undefined && out.every((t, j) => t === reference[i]![j])) identical[c]!++
    }
  }
}

const plain = configs[0]!
console.log(
  `${shape} pair, ${maxTokens} tokens, ${prompts.length} prompts × ${rounds} rounds; load ${
    (await import("node:os")).loadavg().map((l) => l.toFixed(2)).join(" ")
  }`
)
for (const [c, config] of configs.entries()) {
  const requests = prompts.length * rounds
  console.log(
    `\n${config.name}: ${(config.tokens / (config.cpu / 1000)).toFixed(1)} tok/CPU-s (${(plain.cpu / config.cpu).toFixed(3)}x plain), ${
      (config.tokens / (config.wall / 1000)).toFixed(1)
    } tok/s wall; ${(config.cpu / requests).toFixed(1)} CPU ms/request; cycles/request ${
      (config.cycles / requests).toFixed(1)
    }; identical ${identical[c]}/${prompts.length}`
  )
  let accounted = 0
  const labels = [...config.ledger.cpu.keys()].sort()
  for (const label of labels) {
    const cpuMs = config.ledger.cpu.get(label)!
    const calls = config.ledger.calls.get(label)!
    accounted += cpuMs
    console.log(
      `  ${label.padEnd(34)} calls/req ${(calls / requests).toFixed(2).padStart(6)}  CPU ms/call ${
        (cpuMs / calls).toFixed(3).padStart(7)
      }  wall ms/call ${(config.ledger.wall.get(label)! / calls).toFixed(3).padStart(7)}  CPU ms/req ${
        (cpuMs / requests).toFixed(2).padStart(7)
      }`
    )
  }
  if (labels.length > 0) {
    console.log(
      `  ${"rest (loop, Effect, JS)".padEnd(34)} CPU ms/req ${((config.cpu - accounted) / requests).toFixed(2)}; per cycle ${
        ((config.cpu - accounted) / Math.max(1, config.cycles)).toFixed(3)
      } ms`
    )
  }
  // the share of forward passes (evaluations and greedy runs of target and draft) in the
  // configuration's CPU time, and the factor over lean greedy were nothing else paid
  const passes = (who: string) =>
    [...config.ledger.cpu].filter(([label]) => label.startsWith(`${who}.`) && !label.includes("truncate")).reduce(
      (sum, [, ms]) => sum + ms,
      0
    )
  if (c >= 2 && labels.length > 0) {
    const target = passes("target")
    const draft = passes("draft")
    const lean = configs[1]!
    console.log(
      `  forward passes: target ${(target / requests).toFixed(1)} + draft ${(draft / requests).toFixed(1)} CPU ms/req = ${
        ((100 * (target + draft)) / config.cpu).toFixed(1)
      }% of the total; rollback + the rest ${
        ((100 * (config.cpu - target - draft)) / config.cpu).toFixed(1)
      }%. Speculation factor over lean greedy ${
        (lean.cpu / lean.tokens / (config.cpu / config.tokens)).toFixed(3)
      }; were the forward passes all it paid: ${(lean.cpu / lean.tokens / ((target + draft) / config.tokens)).toFixed(3)}`
    )
  }
}
/** As the bench's `verifyCosts`: median CPU ms of appendGreedy(k) then truncate, interleaved over k, after the first prompt. */
const isolated = async (path: string, lengths: ReadonlyArray<number>, repeats: number) =>
  atPrompt(await tokenModel(path, "isolated"), (sequence, base) =>
    Effect.gen(function*() {
      const samples = new Map<number, Array<number>>(lengths.map((k) => [k, []]))
      for (let repeat = 0; repeat < repeats; repeat++) {
        for (const k of lengths) {
          const tokens = Array.from({ length: k }, (_, j) => 1000 + ((repeat * 31 + j * 7) % 20000))
          const start = cpu()
          yield* sequence.appendGreedy!(tokens)
          samples.get(k)!.push(cpu() - start)
          yield* sequence.truncate(base)
        }
      }
      // a greedy loop of 64 steps, per step
      const loop: Array<number> = []
      for (let repeat = 0; repeat < 5; repeat++) {
        const start = cpu()
        yield* sequence.generateGreedy!([1234], 64)
        loop.push((cpu() - start) / 64)
        yield* sequence.truncate(base)
      }
      const median = (list: Array<number>) => list.sort((a, b) => a - b)[list.length >> 1]!
      return { ...Object.fromEntries([...samples].map(([k, list]) => [k, median(list)])), loop: median(loop) } as Record<string, number>
    }))
const targetCosts = await isolated(pair.target.path, [1, 3, 5, 9], 30)
const draftCosts = await isolated(pair.draft.path, [1], 60)
console.log(
  `\nisolated (as the bench's verifyCosts): target appendGreedy(k) CPU ms ${JSON.stringify(targetCosts)}; draft ${
    JSON.stringify(draftCosts)
  }`
)
for (const config of configs) await config.close()
for (const pool of pools) await pool.dispose()
await target.dispose()
