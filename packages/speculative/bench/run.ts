/**
 * Speculative decoding benchmark: plain greedy decoding, node-llama-cpp's own token
 * predictors, and Hasten's speculative layer with each drafter, fixed and adaptive γ, side
 * by side on the fixture models. Two workloads: free story continuation, and a repetitive
 * structuring workload (short records rewritten into one JSON shape, few-shot).
 *
 *   node bench/run.ts [--quick] [--model=stories260K] [--workload=story|structuring] [--config=ngram] [--rounds=3] [--pairs=48]
 *   (build @hasten/core and @hasten/speculative with tsup first)
 *
 * Every configuration runs the same requests, greedy, threads: 1, flash attention off,
 * reusing the KV state of the prompt prefix shared with the previous request (baselines
 * too), after a few seconds of warm-up. Configurations are interleaved over rounds
 * (alternating order); a configuration's speedup is plain's fastest round over its fastest
 * round (interference only ever adds time). The median and the range of the per-round ratios
 * (plain's CPU time in a round over the configuration's in the same round) are printed beside
 * it: on a shared machine they show how far one round can be off. On the story workload, a
 * free-text guard then pairs plain decoding with Hasten's γ=0 and each adaptive configuration
 * request by request on distinct openings (see `pairedWithPlain`). The last line is one JSON
 * object.
 */
import { CompletionRequest, Llm, LlmError, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { Effect, Layer, ManagedRuntime } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import {
  DraftSequenceTokenPredictor,
  getLlama,
  InputLookupTokenPredictor,
  LlamaLogLevel,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
  type TokenPredictor
} from "node-llama-cpp"

const quick = process.argv.includes("--quick")
const option = (name: string) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const modelFiles = ["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"].filter((file) => file.includes(option("model") ?? ""))
const onlyWorkload = option("workload")
const onlyConfig = option("config")
const rounds = Number(option("rounds") ?? (quick ? 1 : 3))
const contextSize = 1024

// ---------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------

const modelsDir = (): string => {
  const fromEnv = process.env["HASTEN_MODELS_DIR"]
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv
  let dir = process.cwd()
  for (;;) {
    for (const candidate of [NodePath.join(dir, "shared", "models"), NodePath.join(dir, "..", "shared", "models")]) {
      if (NodeFs.existsSync(NodePath.join(candidate, "stories260K.gguf"))) return candidate
    }
    const parent = NodePath.dirname(dir)
    if (parent === dir) throw new Error("shared/models not found; set HASTEN_MODELS_DIR")
    dir = parent
  }
}

const storyPrompts = [
  "Once upon a time",
  "Lily went to the park with her mom.",
  "Tom had a big red ball. One day,",
  "The little bird was sad because",
  "Ben and Mia wanted to build a house.",
  "There was a small cat named Kitty."
].slice(0, quick ? 3 : 6)

/**
 * Distinct story openings for the paired free-text guard, one per request: repeating a prompt
 * would let the n-gram cache learn its continuation, which is no longer free text.
 */
const guardPrompts = (count: number): Array<string> => {
  const heroes = ["Lily", "Tom", "Ben", "Mia", "Sue", "Max", "Anna", "Sam", "Tim", "Lucy", "Jack", "Emma"]
  const animals = ["dog", "cat", "bird", "fish", "frog", "bunny", "duck", "bear"]
  const templates = [
    (hero: string, animal: string) => `${hero} went to the park with a little ${animal}.`,
    (hero: string, animal: string) => `One day, ${hero} found a ${animal} in the garden.`,
    (hero: string, animal: string) => `The little ${animal} was sad because ${hero}`,
    (hero: string, animal: string) => `${hero} wanted to play with the ${animal}, but`,
    (hero: string, animal: string) => `There was a small ${animal} named ${hero}.`,
    (hero: string, animal: string) => `Once upon a time, ${hero} had a big ${animal}.`
  ]
  return Array.from({ length: count }, (_, i) =>
    templates[i % templates.length]!(heroes[(i * 5) % heroes.length]!, animals[(i * 3 + Math.floor(i / templates.length)) % animals.length]!))
}

const names = ["Lily", "Tom", "Ben", "Mia", "Sue", "Max", "Anna", "Sam", "Tim", "Lucy"]
const pets = ["dog", "cat", "bird", "fish", "frog"]
const colors = ["red", "blue", "green", "yellow", "pink", "brown"]
const toys = ["ball", "car", "doll", "kite", "truck", "book", "boat"]
const record = (i: number) => ({
  name: names[i % names.length]!,
  age: 2 + ((i * 7) % 6),
  pet: pets[(i * 3) % pets.length]!,
  color: colors[(i * 5) % colors.length]!,
  toy: toys[(i * 2 + 1) % toys.length]!
})
// Tiny story models cannot write JSON (TinyStories-656K's tokenizer even aborts on "{"), so
// the structuring task is a fixed story template per record, shown three times few-shot.
const fields = (r: ReturnType<typeof record>) => `Name: ${r.name}. Pet: ${r.pet}. Toy: ${r.toy}.\nStory:`
const filled = (r: ReturnType<typeof record>) => ` ${r.name} had a ${r.pet}. The ${r.pet} liked to play with the ${r.toy}. ${r.name} was happy.\n`
const fewShot = [100, 101, 102].map((i) => fields(record(i)) + filled(record(i))).join("")
const structuringPrompts = Array.from({ length: quick ? 16 : 50 }, (_, i) => fewShot + fields(record(i)))

interface Workload {
  readonly name: "story" | "structuring"
  readonly prompts: ReadonlyArray<string>
  readonly maxTokens: number
}
const workloads: ReadonlyArray<Workload> = [
  { name: "story", prompts: storyPrompts, maxTokens: quick ? 96 : 160 },
  { name: "structuring", prompts: structuringPrompts, maxTokens: 48 }
]

// ---------------------------------------------------------------------------------------
// runners
// ---------------------------------------------------------------------------------------

interface RunResult {
  /** Wall-clock seconds. */
  readonly seconds: number
  /** CPU seconds of this process (all threads): robust when the machine is shared. */
  readonly cpuSeconds: number
  readonly outputs: ReadonlyArray<ReadonlyArray<number>>
  readonly drafted: number
  readonly accepted: number
  readonly steps: number
}

const cpuNow = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

const commonPrefix = (left: ReadonlyArray<number>, right: ReadonlyArray<number>) => {
  let i = 0
  while (i < left.length && i < right.length && left[i] === right[i]) i++
  return i
}

/**
 * node-llama-cpp alone: `sequence.evaluate` greedy, optionally with a token predictor. Like
 * Hasten's layer it starts from the prompt text, so tokenizing is timed on both sides.
 */
const runNodeLlamaCpp = async (
  model: LlamaModel,
  prompts: ReadonlyArray<string>,
  maxTokens: number,
  predictor: () => Promise<{ predictor: TokenPredictor | undefined; dispose: () => Promise<void> }>
): Promise<RunResult> => {
  const { dispose, predictor: tokenPredictor } = await predictor()
  const context: LlamaContext = await model.createContext({ contextSize, threads: 1, sequences: 1, flashAttention: false })
  const sequence: LlamaContextSequence = context.getSequence(tokenPredictor !== undefined ? { tokenPredictor } : {})
  const ends = new Set([model.tokens.eos, model.tokens.eot].filter((token) => token !== null))
  const outputs: Array<Array<number>> = []
  const start = performance.now()
  const cpuStart = cpuNow()
  for (const text of prompts) {
    const prompt = [model.tokens.bos!, ...model.tokenize(text, false)]
    // reuse the KV state of the prefix shared with the previous request, as Hasten does
    const keep = Math.min(commonPrefix(sequence.contextTokens, prompt), prompt.length - 1)
    if (sequence.nextTokenIndex > keep) await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }])
    const out: Array<number> = []
    for await (const token of sequence.evaluate(prompt.slice(keep) as Array<Token>, { temperature: 0 })) {
      if (ends.has(token)) break
      out.push(token)
      if (out.length >= maxTokens) break
    }
    outputs.push(out)
  }
  const seconds = (performance.now() - start) / 1000
  const cpuSeconds = cpuNow() - cpuStart
  const predictions = sequence.tokenPredictions
  await context.dispose()
  await dispose()
  return { seconds, cpuSeconds, outputs, drafted: predictions.validated + predictions.refuted, accepted: predictions.validated, steps: 0 }
}

/** Hasten's speculative layer over `Local.layer`'s TokenModel (what a user of the library runs). */
const runHasten = async (
  target: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>,
  drafter: Drafter.Drafter<LlmError.LlmError>,
  gamma: number | "adaptive",
  prompts: ReadonlyArray<string>,
  maxTokens: number
): Promise<RunResult> => {
  const runtime = ManagedRuntime.make(
    Speculative.layer({ drafter, gamma }).pipe(Layer.provide(target))
  )
  const llm = await runtime.runPromise(Effect.service(Llm.Llm))
  const outputs: Array<ReadonlyArray<number>> = []
  let drafted = 0
  let accepted = 0
  let steps = 0
  const start = performance.now()
  const cpuStart = cpuNow()
  for (const prompt of prompts) {
    const completion = await runtime.runPromise(
      llm.complete(CompletionRequest.makeUnsafe({ model: "target", messages: [], prompt, temperature: 0, maxTokens }))
    )
    const stats = completion.metadata!["speculative"] as Speculative.RequestStats
    outputs.push(completion.metadata!["tokens"] as ReadonlyArray<number>)
    drafted += stats.draftTokens
    accepted += stats.acceptedTokens
    steps += stats.speculativeSteps
  }
  const seconds = (performance.now() - start) / 1000
  const cpuSeconds = cpuNow() - cpuStart
  await runtime.dispose()
  return { seconds, cpuSeconds, outputs, drafted, accepted, steps }
}

/**
 * The free-text guard, paired request by request: plain node-llama-cpp decoding and one Hasten
 * configuration take turns on the same prompts (order alternating), each keeping its own
 * context and KV state and, for Hasten, one runtime (its adaptive controller learns across
 * requests, as in a pipeline; its first requests are included). A request takes tens of
 * milliseconds, so both sides of a pair see nearly the same machine: the per-pair CPU ratios
 * resolve a few percent where whole rounds, seconds apart, differ by ±15%.
 */
const pairedWithPlain = async (
  model: LlamaModel,
  target: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>,
  drafter: Drafter.Drafter<LlmError.LlmError>,
  gamma: number | "adaptive",
  prompts: ReadonlyArray<string>,
  maxTokens: number
): Promise<{ readonly ratios: ReadonlyArray<number>; readonly plainCpu: number; readonly hastenCpu: number; readonly identical: number }> => {
  const context: LlamaContext = await model.createContext({ contextSize, threads: 1, sequences: 1, flashAttention: false })
  const sequence = context.getSequence()
  const ends = new Set([model.tokens.eos, model.tokens.eot].filter((token) => token !== null))
  const plainRequest = async (text: string) => {
    const prompt = [model.tokens.bos!, ...model.tokenize(text, false)]
    const keep = Math.min(commonPrefix(sequence.contextTokens, prompt), prompt.length - 1)
    if (sequence.nextTokenIndex > keep) await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }])
    const out: Array<number> = []
    for await (const token of sequence.evaluate(prompt.slice(keep) as Array<Token>, { temperature: 0 })) {
      if (ends.has(token)) break
      out.push(token)
      if (out.length >= maxTokens) break
    }
    return out
  }
  const runtime = ManagedRuntime.make(Speculative.layer({ drafter, gamma }).pipe(Layer.provide(target)))
  const llm = await runtime.runPromise(Effect.service(Llm.Llm))
  const hastenRequest = async (prompt: string) => {
    const completion = await runtime.runPromise(
      llm.complete(CompletionRequest.makeUnsafe({ model: "target", messages: [], prompt, temperature: 0, maxTokens }))
    )
    return completion.metadata!["tokens"] as ReadonlyArray<number>
  }
  const timed = async <A>(run: () => Promise<A>) => {
    const start = cpuNow()
    const value = await run()
    return { value, cpu: cpuNow() - start }
  }
  const ratios: Array<number> = []
  let plainCpu = 0
  let hastenCpu = 0
  let identical = 0
  for (let i = 0; i < prompts.length; i++) {
    const plainFirst = i % 2 === 0
    const a = await timed(() => plainFirst ? plainRequest(prompts[i]!) : hastenRequest(prompts[i]!))
    const b = await timed(() => plainFirst ? hastenRequest(prompts[i]!) : plainRequest(prompts[i]!))
    const [plain, hasten] = plainFirst ? [a, b] : [b, a]
    ratios.push(plain.cpu / hasten.cpu)
    plainCpu += plain.cpu
    hastenCpu += hasten.cpu
    if (plain.value.length === hasten.value.length && plain.value.every((token, j) => token === hasten.value[j])) identical++
  }
  await runtime.dispose()
  await context.dispose()
  return { ratios, plainCpu, hastenCpu, identical }
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

interface Row {
  readonly model: string
  readonly workload: string
  readonly config: string
  readonly family: "plain" | "node-llama-cpp" | "hasten"
  readonly tokens: number
  /** Output tokens per wall-clock second. */
  readonly tokPerS: number
  /** Output tokens per CPU second. */
  readonly cpuTokPerS: number
  /** Plain's fastest CPU time / this configuration's fastest CPU time. */
  readonly speedup: number
  /** Median over rounds of plain's CPU time / this configuration's CPU time in the same round. */
  readonly medianSpeedup: number
  /** The lowest and highest of those per-round ratios. */
  readonly speedupRange: readonly [number, number]
  /** The same ratio on wall-clock time (noisy on a shared machine). */
  readonly wallSpeedup: number
  readonly acceptance: number | undefined
  readonly meanAccepted: number | undefined
  /** Requests whose output equals plain greedy decoding token for token, in every round. */
  readonly identical: number
  readonly requests: number
}

/** The fastest round: interference from other processes only ever adds time. */
const fastest = (values: ReadonlyArray<number>) => Math.min(...values)
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
const rows: Array<Row> = []
/** Paired free-text guard results (see `pairedWithPlain`). */
interface Guard {
  readonly model: string
  readonly config: string
  readonly pairs: number
  /** Median over request pairs of plain CPU time / Hasten CPU time (> 1: Hasten is faster). */
  readonly median: number
  readonly quartiles: readonly [number, number]
  /** Plain's total CPU time over Hasten's: the workload's speedup, the headline. */
  readonly sum: number
  /** Pairs whose outputs are equal token for token. */
  readonly identical: number
}
const guards: Array<Guard> = []
/** Request pairs per configuration in the free-text guard (48 distinct openings; more pairs repeat them). */
const pairCount = Number(option("pairs") ?? (quick ? 12 : 48))

for (const file of quick && option("model") === undefined ? modelFiles.slice(0, 1) : modelFiles) {
  const path = NodePath.join(modelsDir(), file)
  const model = await llama.loadModel({ modelPath: path })
  const draftModel = await llama.loadModel({ modelPath: path }) // self-draft: the same file loaded twice
  // Local.layer's TokenModel, threads 1, flash attention off, one sequence; the self-draft gets
  // its own context (another size) of the same loaded model. One ModelPool for all runs keeps
  // the model and its contexts loaded between runs, as node-llama-cpp's baselines keep theirs.
  const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
  const pool = Layer.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
  const localTokenModel = (size: number) =>
    Layer.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(
      Layer.provide(Local.layerWithPool({ model: path, contextSize: size, sequences: 1, threads: 1, flashAttention: false })),
      Layer.provide(pool)
    )
  const target = localTokenModel(contextSize)
  const draft = Drafter.modelLayer(localTokenModel(contextSize - 64))
  for (const workload of workloads.filter((workload) => onlyWorkload === undefined || workload.name === onlyWorkload)) {
    type Config = { readonly name: string; readonly family: Row["family"]; readonly run: () => Promise<RunResult> }
    const none = async () => ({ predictor: undefined, dispose: async () => {} })
    const allConfigs: ReadonlyArray<Config> = [
      { name: "plain (node-llama-cpp evaluate)", family: "plain", run: () => runNodeLlamaCpp(model, workload.prompts, workload.maxTokens, none) },
      {
        name: "node-llama-cpp InputLookupTokenPredictor",
        family: "node-llama-cpp",
        run: () => runNodeLlamaCpp(model, workload.prompts, workload.maxTokens, async () => ({ predictor: new InputLookupTokenPredictor(), dispose: async () => {} }))
      },
      {
        name: "node-llama-cpp DraftSequenceTokenPredictor (self-draft)",
        family: "node-llama-cpp",
        run: () =>
          runNodeLlamaCpp(model, workload.prompts, workload.maxTokens, async () => {
            const draftContext = await draftModel.createContext({ contextSize, threads: 1, sequences: 1, flashAttention: false })
            return { predictor: new DraftSequenceTokenPredictor(draftContext.getSequence()), dispose: () => draftContext.dispose() }
          })
      },
      { name: "hasten plain (γ=0)", family: "hasten", run: () => runHasten(target, Drafter.promptLookup(), 0, workload.prompts, workload.maxTokens) },
      { name: "hasten prompt-lookup γ=4", family: "hasten", run: () => runHasten(target, Drafter.promptLookup(), 4, workload.prompts, workload.maxTokens) },
      { name: "hasten prompt-lookup γ=8", family: "hasten", run: () => runHasten(target, Drafter.promptLookup(), 8, workload.prompts, workload.maxTokens) },
      { name: "hasten prompt-lookup adaptive", family: "hasten", run: () => runHasten(target, Drafter.promptLookup(), "adaptive", workload.prompts, workload.maxTokens) },
      { name: "hasten ngram-cache γ=4", family: "hasten", run: () => runHasten(target, Drafter.ngramCache(), 4, workload.prompts, workload.maxTokens) },
      { name: "hasten ngram-cache adaptive", family: "hasten", run: () => runHasten(target, Drafter.ngramCache(), "adaptive", workload.prompts, workload.maxTokens) },
      {
        name: "hasten ngram-cache+prompt-lookup γ=4",
        family: "hasten",
        run: () => runHasten(target, Drafter.combine(Drafter.ngramCache(), Drafter.promptLookup()), 4, workload.prompts, workload.maxTokens)
      },
      {
        name: "hasten ngram-cache+prompt-lookup adaptive",
        family: "hasten",
        run: () => runHasten(target, Drafter.combine(Drafter.ngramCache(), Drafter.promptLookup()), "adaptive", workload.prompts, workload.maxTokens)
      },
      { name: "hasten self-draft model γ=4", family: "hasten", run: () => runHasten(target, draft, 4, workload.prompts, workload.maxTokens) },
      { name: "hasten self-draft model adaptive", family: "hasten", run: () => runHasten(target, draft, "adaptive", workload.prompts, workload.maxTokens) }
    ]
    const configs = allConfigs.filter((config, i) => i === 0 || onlyConfig === undefined || config.name.includes(onlyConfig))
    // warm-up (page in weights, JIT), not measured: node-llama-cpp's per-token JavaScript and
    // Hasten's loop keep getting faster for a few seconds, which would favour later configurations
    const warmUntil = performance.now() + (quick ? 1_000 : 4_000)
    while (performance.now() < warmUntil) {
      await configs[0]!.run()
      await allConfigs[4]!.run()
    }
    const results = new Map<string, Array<RunResult>>()
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? configs : [...configs].reverse()
      for (const config of order) {
        const list = results.get(config.name) ?? []
        list.push(await config.run())
        results.set(config.name, list)
      }
    }
    if (workload.name === "story") {
      // the free-text guard: plain vs Hasten's plain path and each adaptive configuration, paired
      const guardConfigs: ReadonlyArray<readonly [string, Drafter.Drafter<LlmError.LlmError>, number | "adaptive"]> = [
        ["hasten plain (γ=0)", Drafter.promptLookup(), 0],
        ["hasten prompt-lookup adaptive", Drafter.promptLookup(), "adaptive"],
        ["hasten ngram-cache adaptive", Drafter.ngramCache(), "adaptive"],
        ["hasten ngram-cache+prompt-lookup adaptive", Drafter.combine(Drafter.ngramCache(), Drafter.promptLookup()), "adaptive"],
        ["hasten self-draft model adaptive", draft, "adaptive"]
      ]
      for (const [name, drafter, gamma] of guardConfigs.filter(([name]) => onlyConfig === undefined || name.includes(onlyConfig))) {
        const paired = await pairedWithPlain(model, target, drafter, gamma, guardPrompts(pairCount), workload.maxTokens)
        const sorted = [...paired.ratios].sort((a, b) => a - b)
        guards.push({
          model: file.replace(/\.gguf$/, ""),
          config: name,
          pairs: sorted.length,
          median: median(sorted),
          quartiles: [sorted[Math.floor((sorted.length - 1) / 4)]!, sorted[Math.ceil(((sorted.length - 1) * 3) / 4)]!],
          sum: paired.plainCpu / paired.hastenCpu,
          identical: paired.identical
        })
      }
    }
    const plainRuns = results.get(configs[0]!.name)!
    const reference = plainRuns[0]!.outputs
    const plainSeconds = fastest(plainRuns.map((result) => result.seconds))
    const plainCpu = fastest(plainRuns.map((result) => result.cpuSeconds))
    for (const config of configs) {
      const list = results.get(config.name)!
      const seconds = fastest(list.map((result) => result.seconds))
      const cpuSeconds = fastest(list.map((result) => result.cpuSeconds))
      const first = list[0]!
      const tokens = first.outputs.reduce((sum, output) => sum + output.length, 0)
      const same = (output: ReadonlyArray<number>, i: number) => output.length === reference[i]!.length && output.every((token, j) => token === reference[i]![j])
      const identical = reference.filter((_, i) => list.every((result) => same(result.outputs[i]!, i))).length
      rows.push({
        model: file.replace(/\.gguf$/, ""),
        workload: workload.name,
        config: config.name,
        family: config.family,
        tokens,
        tokPerS: tokens / seconds,
        cpuTokPerS: tokens / cpuSeconds,
        speedup: plainCpu / cpuSeconds,
        wallSpeedup: plainSeconds / seconds,
        medianSpeedup: median(list.map((result, round) => plainRuns[round]!.cpuSeconds / result.cpuSeconds)),
        speedupRange: [
          Math.min(...list.map((result, round) => plainRuns[round]!.cpuSeconds / result.cpuSeconds)),
          Math.max(...list.map((result, round) => plainRuns[round]!.cpuSeconds / result.cpuSeconds))
        ],
        acceptance: first.drafted > 0 ? first.accepted / first.drafted : config.family === "plain" ? undefined : 0,
        meanAccepted: config.family === "hasten" ? (first.steps > 0 ? first.accepted / first.steps : 0) : undefined,
        identical,
        requests: reference.length
      })
    }
  }
  await poolRuntime.dispose()
  await draftModel.dispose()
  await model.dispose()
}

// ---------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------

const pad = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)
const fixed = (value: number | undefined, digits: number) => value === undefined ? "-" : value.toFixed(digits)
console.log(`\nSpeculative decoding, greedy, threads 1, ${rounds} round(s) (${quick ? "quick" : "full"})\n`)
console.log("speedup = plain CPU seconds / CPU seconds (all threads of this process), fastest rounds; median of rounds = the same ratio round by round; wall = fastest rounds on wall-clock time\n")
console.log([pad("model", 22), pad("workload", 12), pad("configuration", 56), "tokens", "tok/CPU-s", "speedup", "median of rounds (min–max)", " wall ", "accept", "mean acc.", "identical"].join(" | "))
for (const row of rows) {
  console.log([
    pad(row.model, 22),
    pad(row.workload, 12),
    pad(row.config, 56),
    pad(String(row.tokens), 6),
    pad(row.cpuTokPerS.toFixed(0), 9),
    pad(row.speedup.toFixed(2) + "x", 7),
    pad(`${row.medianSpeedup.toFixed(2)}x (${row.speedupRange[0].toFixed(2)}–${row.speedupRange[1].toFixed(2)})`, 26),
    pad(row.wallSpeedup.toFixed(2) + "x", 6),
    pad(fixed(row.acceptance, 2), 6),
    pad(fixed(row.meanAccepted, 2), 9),
    `${row.identical}/${row.requests}`
  ].join(" | "))
}

const summary = (model: string, workload: string) => {
  const selected = rows.filter((row) => row.model === model && row.workload === workload)
  if (!selected.some((row) => row.family === "hasten") || !selected.some((row) => row.family === "node-llama-cpp")) return null
  const plain = selected.find((row) => row.family === "plain")!
  const hastenRows = selected.filter((row) => row.family === "hasten")
  const exact = hastenRows.filter((row) => row.identical === row.requests)
  const best = (exact.length > 0 ? exact : hastenRows).reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const nodeBest = selected.filter((row) => row.family === "node-llama-cpp").reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const adaptive = selected.filter((row) => row.family === "hasten" && row.config.endsWith("adaptive"))
  if (adaptive.length === 0) adaptive.push(best)
  return {
    plainTokPerS: Math.round(plain.cpuTokPerS),
    plainWallTokPerS: Math.round(plain.tokPerS),
    hastenBestSpeedup: Number(best.speedup.toFixed(3)),
    hastenBest: best.config,
    hastenBestWallSpeedup: Number(best.wallSpeedup.toFixed(3)),
    nodeLlamaCppBestSpeedup: Number(nodeBest.speedup.toFixed(3)),
    nodeLlamaCppBest: nodeBest.config,
    hastenAdaptiveMinSpeedup: Number(Math.min(...adaptive.map((row) => row.speedup)).toFixed(3)),
    hastenAdaptiveMinMedianOfRounds: Number(Math.min(...adaptive.map((row) => row.medianSpeedup)).toFixed(3)),
    acceptanceRate: best.acceptance === undefined ? null : Number(best.acceptance.toFixed(3)),
    meanAcceptedLength: best.meanAccepted === undefined ? null : Number(best.meanAccepted.toFixed(3)),
    bestIdentical: best.identical === best.requests,
    identical: hastenRows.every((row) => row.identical === row.requests),
    identicalRequests: `${hastenRows.reduce((sum, row) => sum + row.identical, 0)}/${hastenRows.reduce((sum, row) => sum + row.requests, 0)}`
  }
}
if (guards.length > 0) {
  console.log(`\nFree-text guard: plain node-llama-cpp and one Hasten configuration take turns request by request on ${pairCount} story openings (${new Set(guardPrompts(pairCount)).size} distinct); speedup = plain CPU time / Hasten CPU time: over the whole workload (sum), and the median pair\n`)
  console.log([pad("model", 22), pad("configuration", 44), "pairs", "speedup (sum)", "median pair", "quartiles  ", "identical"].join(" | "))
  for (const guard of guards) {
    console.log([
      pad(guard.model, 22),
      pad(guard.config, 44),
      pad(String(guard.pairs), 5),
      pad(guard.sum.toFixed(3) + "x", 13),
      pad(guard.median.toFixed(3) + "x", 11),
      pad(`${guard.quartiles[0].toFixed(2)}–${guard.quartiles[1].toFixed(2)}`, 11),
      `${guard.identical}/${guard.pairs}`
    ].join(" | "))
  }
}
/** The paired guard's numbers for a model's story workload: each configuration, and the worst adaptive one. */
const guardSummary = (model: string) => {
  const selected = guards.filter((guard) => guard.model === model)
  const adaptive = selected.filter((guard) => guard.config.endsWith("adaptive"))
  return {
    adaptiveMinPairedSpeedup: adaptive.length === 0 ? null : Number(Math.min(...adaptive.map((guard) => guard.sum)).toFixed(3)),
    adaptiveMinPairedMedian: adaptive.length === 0 ? null : Number(Math.min(...adaptive.map((guard) => guard.median)).toFixed(3)),
    paired: Object.fromEntries(selected.map((guard) => [guard.config, { median: Number(guard.median.toFixed(3)), sum: Number(guard.sum.toFixed(3)), pairs: guard.pairs, identical: guard.identical }]))
  }
}
const models = [...new Set(rows.map((row) => row.model))]
const perModel = Object.fromEntries(models.map((model) => {
  const story = summary(model, "story")
  return [model, { structuring: summary(model, "structuring"), story: story === null ? null : { ...story, ...guardSummary(model) } }]
}))
console.log(JSON.stringify({
  bench: "speculative",
  quick,
  clock: "cpu",
  model: models[0],
  structuring: perModel[models[0]!]!.structuring,
  story: perModel[models[0]!]!.story,
  models: perModel
}))
