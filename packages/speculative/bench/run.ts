/**
 * Speculative decoding benchmark: plain greedy decoding, node-llama-cpp's own token
 * predictors, and Hasten's speculative layer with each drafter, fixed and adaptive γ, side
 * by side on the fixture models. Two workloads: free story continuation, and a repetitive
 * structuring workload (short records rewritten into one JSON shape, few-shot).
 *
 *   node bench/run.ts [--quick] [--model=stories260K] [--workload=story|structuring] [--config=ngram] [--rounds=3] [--pairs=48]
 *   (build @hasten/core and @hasten/speculative with tsup first)
 *
 * Every configuration runs the same requests, greedy, threads: 1, flash attention as Hasten's default for the model (on from embedding width 512),
 * reusing the KV state of the prompt prefix shared with the previous request (baselines
 * too), after a few seconds of warm-up. The configurations are interleaved request by
 * request (see `interleaved`): every configuration runs request i before any runs request
 * i + 1, so all of them see the same machine. A configuration's speedup is plain's CPU time
 * over its own, summed over every request of every round; the median and quartiles of the
 * per-request ratios are printed beside it, and plain measured a second time (A/A) shows the
 * noise floor. On the story workload, a free-text guard then pairs plain decoding with
 * Hasten's γ=0 and each adaptive configuration on 48 distinct openings.
 *
 * Then, at real sizes (`--draft-model` runs only this section, `--no-draft-model` skips it):
 * a synthetic target of each of `--shapes` (default `110M`; `--quick`: `15M`; besides the named
 * shapes, `<embedding>x<layers>` such as `1024x24`: heads of width 64, llama2.c's feed-forward) and its
 * synthetic draft (`SyntheticModel.pair`, @hasten/testkit: random weights of real shapes, so
 * timing only), a fixed `--tokens` (default 128) per request: node-llama-cpp plain greedy,
 * Hasten γ=0 (lean greedy), Hasten with `Drafter.model` over the draft at γ 2, 4, 8 and
 * adaptive, node-llama-cpp's DraftSequenceTokenPredictor with the same draft, and the draft
 * decoding alone (its step cost).
 *
 * Then batching and speculation together (bench/concurrency.ts; `--concurrency-only` runs
 * only it, `--no-concurrency` skips it): 4 and 16 concurrent requests (`--concurrency 4,16`)
 * on the `--concurrency-shape` pair (default `42M`; `--quick`: `15M`), `--concurrency-tokens`
 * per request (default 64), `--concurrency-rounds` interleaved rounds (default 2): batching
 * alone, speculation alone, plain decoding alone, both (lockstep γ), both with per-request γ,
 * and both without the back-off (`--concurrency-fixed 2,3`: also both with that fixed γ;
 * `--concurrency-warm`: each layer first decodes one untimed round of k requests).
 * The last line is one JSON object.
 */
import { CompletionRequest, Llm, LlmError, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, Layer, ManagedRuntime } from "effect"
import {
  DraftSequenceTokenPredictor,
  getLlama,
  InputLookupTokenPredictor,
  type LlamaContext,
  type LlamaContextSequence,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
  type TokenPredictor
} from "node-llama-cpp"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { type ConcurrencyResult, concurrencySection } from "./concurrency.js"
import { atPrompt, parseShape, storyPrompts as sharedStoryPrompts, tokenModels } from "./support.js"

const quick = process.argv.includes("--quick")
const option = (name: string): string | undefined => {
  const inline = process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
  if (inline !== undefined) return inline
  const at = process.argv.indexOf(`--${name}`)
  const next = at >= 0 ? process.argv[at + 1] : undefined
  return next !== undefined && !next.startsWith("--") ? next : undefined
}
/** `--draft-model`: only the section at real sizes; `--no-draft-model`: skip it. */
const onlyConcurrency = process.argv.includes("--concurrency-only")
const onlyDraftModel = process.argv.includes("--draft-model") || onlyConcurrency
const draftModelSection = !process.argv.includes("--no-draft-model") && !onlyConcurrency
const concurrencyLevels = process.argv.includes("--no-concurrency")
  ? []
  : (option("concurrency") ?? "4,16").split(",").map(Number).filter((k) => Number.isInteger(k) && k > 0)
const modelFiles = ["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"].filter((file) => file.includes(option("model") ?? ""))
const onlyWorkload = option("workload")
const onlyConfig = option("config")
const rounds = Number(option("rounds") ?? (quick ? 1 : 3))
const contextSize = 1024
/** `--shapes 110M,1024x24`: named shapes or custom `<embedding>x<layers>` ones (`parseShape`), checked before anything runs. */
const draftShapes = (option("shapes") ?? (quick ? "15M" : "110M")).split(",").filter((shape) => shape.length > 0)
  .map((name) => {
    try {
      return { name, shape: parseShape(name) }
    } catch (error) {
      throw new Error(`--shapes: ${(error as Error).message}`, { cause: error })
    }
  })

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

const storyPrompts = sharedStoryPrompts.slice(0, quick ? 3 : 6)

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
  return Array.from(
    { length: count },
    (_, i) =>
      templates[i % templates.length]!(
        heroes[(i * 5) % heroes.length]!,
        animals[(i * 3 + Math.floor(i / templates.length)) % animals.length]!
      )
  )
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
const filled = (r: ReturnType<typeof record>) =>
  ` ${r.name} had a ${r.pet}. The ${r.pet} liked to play with the ${r.toy}. ${r.name} was happy.\n`
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

/** One request of one configuration. */
interface RequestResult {
  readonly tokens: ReadonlyArray<number>
  readonly drafted: number
  readonly accepted: number
  /** Verification steps that carried drafts (Hasten). */
  readonly steps: number
  /** Target forward passes (Hasten's count; node-llama-cpp does not report one). */
  readonly evaluations: number | undefined
  /** Acceptance of a step's first draft (Hasten, when it drafted). */
  readonly firstAcceptance?: number | undefined
}

/**
 * A configuration's state for one round: its context (node-llama-cpp) or its layer (Hasten),
 * kept across the round's requests, so prompt-prefix KV reuse and an n-gram cache's learning
 * carry from request to request as in a pipeline.
 */
interface Session {
  readonly request: (prompt: string) => Promise<RequestResult>
  readonly close: () => Promise<void>
}

const cpuNow = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/**
 * node-llama-cpp alone: `sequence.evaluate` greedy, optionally with a token predictor. Like
 * Hasten's layer it starts from the prompt text, so tokenizing is timed on both sides.
 */
const nodeLlamaCppSession = async (
  model: LlamaModel,
  maxTokens: number,
  predictor: () => Promise<{ predictor: TokenPredictor | undefined; dispose: () => Promise<void> }>
): Promise<Session> => {
  const { dispose, predictor: tokenPredictor } = await predictor()
  const context: LlamaContext = await model.createContext({
    contextSize,
    threads: 1,
    sequences: 1,
    flashAttention: ModelPool.defaultFlashAttention(model)
  })
  const sequence: LlamaContextSequence = context.getSequence(tokenPredictor !== undefined ? { tokenPredictor } : {})
  const ends = new Set([model.tokens.eos, model.tokens.eot].filter((token) => token !== null))
  return {
    request: async (text) => {
      const before = sequence.tokenPredictions
      const prompt = [model.tokens.bos!, ...model.tokenize(text, false)]
      // reuse the KV state of the prefix shared with the previous request, as Hasten does
      const keep = Math.min(Drafter.commonPrefix(sequence.contextTokens, prompt), prompt.length - 1)
      if (sequence.nextTokenIndex > keep) await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }])
      const out: Array<number> = []
      for await (const token of sequence.evaluate(prompt.slice(keep) as Array<Token>, { temperature: 0 })) {
        if (ends.has(token)) break
        out.push(token)
        if (out.length >= maxTokens) break
      }
      const after = sequence.tokenPredictions
      const validated = after.validated - before.validated
      return { tokens: out, drafted: validated + after.refuted - before.refuted, accepted: validated, steps: 0, evaluations: undefined }
    },
    close: async () => {
      await context.dispose()
      await dispose()
    }
  }
}

/** Hasten's speculative layer over `Local.layer`'s TokenModel (what a user of the library runs). */
const hastenSession = async (
  target: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>,
  drafter: Drafter.Drafter<LlmError.LlmError>,
  gamma: number | "adaptive",
  maxTokens: number
): Promise<Session> => {
  const runtime = ManagedRuntime.make(Speculative.layer({ drafter, gamma }).pipe(Layer.provide(target)))
  const llm = await runtime.runPromise(Effect.service(Llm.Llm))
  return {
    request: async (prompt) => {
      const completion = await runtime.runPromise(
        llm.complete(CompletionRequest.makeUnsafe({ model: "target", messages: [], prompt, temperature: 0, maxTokens }))
      )
      const stats = completion.facts!.speculative as Speculative.RequestStats
      return {
        tokens: completion.metadata!["tokens"] as ReadonlyArray<number>,
        drafted: stats.draftTokens,
        accepted: stats.acceptedTokens,
        steps: stats.speculativeSteps,
        evaluations: stats.targetEvaluations,
        firstAcceptance: stats.perPosition[0]
      }
    },
    close: () => runtime.dispose()
  }
}

/** One request of one configuration, timed. */
interface Timed {
  readonly result: RequestResult
  /** CPU seconds of this process (all threads) while the request ran. */
  readonly cpu: number
  readonly wall: number
}

/** A reproducible pseudo-random sequence in [0, 1) (an LCG: no statistical claims, only a varied order). */
const seeded = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 2 ** 32
  }
}

/** 0..n-1 in a random order (Fisher–Yates). */
const shuffled = (n: number, random: () => number): Array<number> => {
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const swap = order[i]!
    order[i] = order[j]!
    order[j] = swap
  }
  return order
}

/**
 * Runs every configuration on the same prompts, request by request: for each prompt, each
 * configuration in turn, in a new random order for every prompt (seeded, so a run can be
 * repeated), so that no configuration keeps one place or one neighbour. Each configuration
 * keeps one session per round (its context and KV state, for Hasten one runtime, whose
 * adaptive controller and n-gram cache learn across the round's requests, as in a pipeline).
 * A request takes milliseconds, so every configuration sees nearly the same machine for the
 * same request: summed over the requests, the ratios resolve a few percent where whole runs,
 * seconds apart on a shared machine, differ by ±15%. Returns `timings[config][round][request]`.
 */
const interleaved = async (
  opens: ReadonlyArray<() => Promise<Session>>,
  prompts: ReadonlyArray<string>,
  rounds: number
): Promise<Array<Array<Array<Timed>>>> => {
  const timings = opens.map(() => [] as Array<Array<Timed>>)
  const random = seeded(rounds * 7919 + prompts.length)
  for (let round = 0; round < rounds; round++) {
    const sessions: Array<Session> = []
    for (const open of opens) sessions.push(await open())
    for (const perConfig of timings) perConfig.push([])
    for (let i = 0; i < prompts.length; i++) {
      for (const c of shuffled(opens.length, random)) {
        const cpuStart = cpuNow()
        const wallStart = performance.now()
        const result = await sessions[c]!.request(prompts[i]!)
        timings[c]![round]![i] = { result, cpu: cpuNow() - cpuStart, wall: (performance.now() - wallStart) / 1000 }
      }
    }
    for (const session of sessions) await session.close()
  }
  return timings
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

interface Row {
  readonly model: string
  readonly workload: string
  readonly config: string
  /** "plain-again": plain decoding measured a second time, the noise floor (A/A); "draft": the draft model decoding alone. */
  readonly family: "plain" | "plain-again" | "node-llama-cpp" | "hasten" | "draft"
  readonly tokens: number
  /** Output tokens per wall-clock second. */
  readonly tokPerS: number
  /** Output tokens per CPU second. */
  readonly cpuTokPerS: number
  /** Plain's CPU time over this configuration's, summed over every request of every round. */
  readonly speedup: number
  /** Median over requests of plain's CPU time / this configuration's for the same request. */
  readonly medianSpeedup: number
  /** The lower and upper quartiles of those per-request ratios. */
  readonly quartiles: readonly [number, number]
  /** The same summed ratio on wall-clock time. */
  readonly wallSpeedup: number
  /** Output tokens per target forward pass (Hasten only). */
  readonly tokensPerEvaluation: number | undefined
  readonly acceptance: number | undefined
  readonly meanAccepted: number | undefined
  /** Requests whose output equals plain greedy decoding token for token, in every round. */
  readonly identical: number
  readonly requests: number
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const quartiles = (values: ReadonlyArray<number>): readonly [number, number] => {
  const sorted = [...values].sort((a, b) => a - b)
  return [sorted[Math.floor((sorted.length - 1) / 4)]!, sorted[Math.ceil(((sorted.length - 1) * 3) / 4)]!]
}
const sameTokens = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.length === b.length && a.every((token, j) => token === b[j])

/**
 * A table row per configuration: `timings[0]` is plain decoding, the reference for speedups
 * and for identical output.
 */
const toRows = (
  model: string,
  workload: string,
  configs: ReadonlyArray<{ readonly name: string; readonly family: Row["family"] }>,
  timings: ReadonlyArray<ReadonlyArray<ReadonlyArray<Timed>>>
): Array<Row> => {
  const plain = timings[0]!.flat()
  const reference = timings[0]![0]!.map((timed) => timed.result.tokens)
  const total = (list: ReadonlyArray<Timed>, field: "cpu" | "wall") => list.reduce((sum, timed) => sum + timed[field], 0)
  return configs.map((config, c) => {
    const list = timings[c]!.flat()
    const tokens = timings[c]![0]!.reduce((sum, timed) => sum + timed.result.tokens.length, 0)
    const allTokens = list.reduce((sum, timed) => sum + timed.result.tokens.length, 0)
    const ratios = list.map((timed, j) => plain[j]!.cpu / timed.cpu)
    const drafted = list.reduce((sum, timed) => sum + timed.result.drafted, 0)
    const accepted = list.reduce((sum, timed) => sum + timed.result.accepted, 0)
    const steps = list.reduce((sum, timed) => sum + timed.result.steps, 0)
    const evaluations = list.reduce((sum, timed) => sum + (timed.result.evaluations ?? 0), 0)
    const identical = reference.filter((output, i) => timings[c]!.every((round) => sameTokens(round[i]!.result.tokens, output))).length
    return {
      model,
      workload,
      config: config.name,
      family: config.family,
      tokens,
      tokPerS: allTokens / total(list, "wall"),
      cpuTokPerS: allTokens / total(list, "cpu"),
      speedup: total(plain, "cpu") / total(list, "cpu"),
      wallSpeedup: total(plain, "wall") / total(list, "wall"),
      medianSpeedup: median(ratios),
      quartiles: quartiles(ratios),
      tokensPerEvaluation: config.family === "hasten" && evaluations > 0 ? allTokens / evaluations : undefined,
      acceptance: drafted > 0 ? accepted / drafted : config.family.startsWith("plain") || config.family === "draft" ? undefined : 0,
      meanAccepted: config.family === "hasten" ? (steps > 0 ? accepted / steps : 0) : undefined,
      identical,
      requests: reference.length
    }
  })
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
const rows: Array<Row> = []
/** Paired free-text guard results. */
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

for (const file of onlyDraftModel ? [] : quick && option("model") === undefined ? modelFiles.slice(0, 1) : modelFiles) {
  const path = NodePath.join(modelsDir(), file)
  const model = await llama.loadModel({ modelPath: path })
  const draftModel = await llama.loadModel({ modelPath: path }) // self-draft: the same file loaded twice
  // Local.layer's TokenModel, threads 1, flash attention as Hasten's default for the model (on from embedding width 512), one sequence. Configurations run
  // side by side, so each Hasten configuration has its own ModelPool (its own copy of the
  // model and its context), kept loaded for the whole run as the baselines keep theirs; the
  // self-draft gets a second context (another size) in the same pool.
  const pools: Array<ManagedRuntime.ManagedRuntime<ModelPool.ModelPool, never>> = []
  const targetAndDraft = async () => {
    const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
    pools.push(poolRuntime)
    const pool = Layer.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
    const localTokenModel = (size: number) =>
      Layer.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(
        Layer.provide(Local.layerWithPool({ model: path, contextSize: size, sequences: 1, threads: 1 })),
        Layer.provide(pool)
      )
    return { target: localTokenModel(contextSize), draft: Drafter.modelLayer(localTokenModel(contextSize - 64)) }
  }
  for (const workload of workloads.filter((workload) => onlyWorkload === undefined || workload.name === onlyWorkload)) {
    type Config = { readonly name: string; readonly family: Row["family"]; readonly open: () => Promise<Session> }
    const none = async () => ({ predictor: undefined, dispose: async () => {} })
    const plainConfig = (name: string, family: Row["family"]): Config => ({
      name,
      family,
      open: () => nodeLlamaCppSession(model, workload.maxTokens, none)
    })
    const hasten = async (
      name: string,
      drafter: (draft: Drafter.Drafter<LlmError.LlmError>) => Drafter.Drafter<LlmError.LlmError>,
      gamma: number | "adaptive"
    ): Promise<Config> => {
      const { draft, target } = await targetAndDraft()
      return { name, family: "hasten", open: () => hastenSession(target, drafter(draft), gamma, workload.maxTokens) }
    }
    const both = () => Drafter.combine(Drafter.ngramCache(), Drafter.promptLookup())
    const selected = (name: string) => onlyConfig === undefined || name.includes(onlyConfig)
    const hastenConfigs: ReadonlyArray<
      readonly [string, (draft: Drafter.Drafter<LlmError.LlmError>) => Drafter.Drafter<LlmError.LlmError>, number | "adaptive"]
    > = [
      ["hasten plain (γ=0)", () => Drafter.promptLookup(), 0],
      ["hasten prompt-lookup γ=4", () => Drafter.promptLookup(), 4],
      ["hasten prompt-lookup γ=8", () => Drafter.promptLookup(), 8],
      ["hasten prompt-lookup adaptive", () => Drafter.promptLookup(), "adaptive"],
      ["hasten ngram-cache γ=2", () => Drafter.ngramCache(), 2],
      ["hasten ngram-cache γ=4", () => Drafter.ngramCache(), 4],
      ["hasten ngram-cache γ=8", () => Drafter.ngramCache(), 8],
      ["hasten ngram-cache γ=16", () => Drafter.ngramCache(), 16],
      ["hasten ngram-cache adaptive", () => Drafter.ngramCache(), "adaptive"],
      ["hasten ngram-cache+prompt-lookup γ=4", both, 4],
      ["hasten ngram-cache+prompt-lookup adaptive", both, "adaptive"],
      ["hasten self-draft model γ=4", (draft) => draft, 4],
      ["hasten self-draft model adaptive", (draft) => draft, "adaptive"]
    ]
    const nodeConfigs: Array<Config> = [
      plainConfig("plain (node-llama-cpp evaluate)", "plain"),
      plainConfig("plain again (A/A: the noise floor)", "plain-again"),
      {
        name: "node-llama-cpp InputLookupTokenPredictor",
        family: "node-llama-cpp",
        open: () =>
          nodeLlamaCppSession(
            model,
            workload.maxTokens,
            async () => ({ predictor: new InputLookupTokenPredictor(), dispose: async () => {} })
          )
      },
      {
        name: "node-llama-cpp DraftSequenceTokenPredictor (self-draft)",
        family: "node-llama-cpp",
        open: () =>
          nodeLlamaCppSession(model, workload.maxTokens, async () => {
            const draftContext = await draftModel.createContext({
              contextSize,
              threads: 1,
              sequences: 1,
              flashAttention: ModelPool.defaultFlashAttention(draftModel)
            })
            return { predictor: new DraftSequenceTokenPredictor(draftContext.getSequence()), dispose: () => draftContext.dispose() }
          })
      }
    ]
    const configs = nodeConfigs.filter((config, i) => i === 0 || selected(config.name))
    for (const [name, drafter, gamma] of hastenConfigs) if (selected(name)) configs.push(await hasten(name, drafter, gamma))
    // warm-up (page in weights, JIT), not measured: node-llama-cpp's per-token JavaScript and
    // Hasten's loop keep getting faster for a few seconds
    const warmUntil = performance.now() + (quick ? 1_000 : 4_000)
    while (performance.now() < warmUntil) await interleaved(configs.map((config) => config.open), workload.prompts.slice(0, 4), 1)
    const timings = await interleaved(configs.map((config) => config.open), workload.prompts, rounds)
    if (workload.name === "story") {
      // the free-text guard: plain vs Hasten's plain path and each adaptive configuration,
      // paired on distinct openings (repeating one would let an n-gram cache learn it)
      for (
        const [name, drafter, gamma] of hastenConfigs.filter(([name, , gamma]) => (gamma === 0 || gamma === "adaptive") && selected(name))
      ) {
        const { draft, target } = await targetAndDraft()
        const [plain, hastenTimings] = await interleaved(
          [
            () => nodeLlamaCppSession(model, workload.maxTokens, none),
            () => hastenSession(target, drafter(draft), gamma, workload.maxTokens)
          ],
          guardPrompts(pairCount),
          1
        )
        const ratios = plain![0]!.map((pair, i) => pair.cpu / hastenTimings![0]![i]!.cpu)
        guards.push({
          model: file.replace(/\.gguf$/, ""),
          config: name,
          pairs: ratios.length,
          median: median(ratios),
          quartiles: quartiles(ratios),
          sum: plain![0]!.reduce((sum, pair) => sum + pair.cpu, 0) / hastenTimings![0]!.reduce((sum, pair) => sum + pair.cpu, 0),
          identical: plain![0]!.filter((pair, i) => sameTokens(pair.result.tokens, hastenTimings![0]![i]!.result.tokens)).length
        })
      }
    }
    rows.push(...toRows(file.replace(/\.gguf$/, ""), workload.name, configs, timings))
  }
  for (const pool of pools) await pool.dispose()
  await draftModel.dispose()
  await model.dispose()
}

// ---------------------------------------------------------------------------------------
// at real sizes: a synthetic draft/target pair (random weights of real shapes: timing only)
// ---------------------------------------------------------------------------------------

/** Output tokens per request: fixed (the synthetic models never emit an end token; lengths are checked). */
const draftTokens = Number(option("tokens") ?? (quick ? 32 : 128))
/** The draft lengths whose verification is timed: γ + 1 tokens in one target pass. */
const verifyLengths = [1, 3, 5, 9] as const
const draftRows: Array<Row> = []
interface DraftModelResult {
  readonly target: string
  readonly draft: string
  readonly tokens: number
  readonly fullLength: boolean
  readonly rows: ReadonlyArray<Row>
  /** Median CPU milliseconds of one greedy target pass over k tokens (Local.layer's `appendGreedy`, as greedy verification runs). */
  readonly verifyMillis: Record<number, number>
  /** Median CPU milliseconds of one draft step through Local.layer (`appendGreedy` of one token). */
  readonly draftStepMillis: number
  readonly firstAcceptance: number | undefined
  /**
   * Per prompt: whether node-llama-cpp's own evaluation of plain greedy's output in one batch
   * picks the same greedy token at every position. Where the two best logits are closer than
   * batched and one-token evaluation differ by, no batched verification can be identical (the
   * synthetic models before testkit's format v2 had nearly flat distributions; v2's are peaked).
   */
  readonly batchStable: ReadonlyArray<boolean>
  /** Per configuration: requests identical to plain greedy in every round, among the batch-stable prompts. */
  readonly identicalStable: ReadonlyArray<number>
}
const draftResults: Array<DraftModelResult> = []

/** CPU cost of one target pass over k tokens (greedy: `appendGreedy`), then truncate, interleaved over k. */
const verifyCosts = (
  target: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>,
  lengths: ReadonlyArray<number>,
  repeats: number
): Promise<Record<number, number>> =>
  atPrompt(target, (extended, base) =>
    Effect.gen(function*() {
      const samples = new Map<number, Array<number>>(lengths.map((k) => [k, []]))
      const random = seeded(17)
      for (let repeat = 0; repeat < repeats; repeat++) {
        for (const index of shuffled(lengths.length, random)) {
          const k = lengths[index]!
          const tokens = Array.from({ length: k }, (_, j) => 1000 + ((repeat * 31 + j * 7) % 20000))
          const start = cpuNow()
          // greedy verification's own call where the backend has it (Local.layer does)
          if (extended.appendGreedy !== undefined) yield* extended.appendGreedy(tokens)
          else yield* extended.append(tokens)
          samples.get(k)!.push((cpuNow() - start) * 1000)
          yield* extended.truncate(base)
        }
      }
      return Object.fromEntries([...samples].map(([k, list]) => [k, median(list)]))
    }))

for (const { name: shape, shape: targetShape } of draftModelSection ? draftShapes : []) {
  const pair = await SyntheticModel.pair({ target: targetShape })
  const target = await llama.loadModel({ modelPath: pair.target.path, gpuLayers: 0 })
  const draft = await llama.loadModel({ modelPath: pair.draft.path, gpuLayers: 0 })
  const { tokenModel: localTokenModel, dispose: disposePools } = tokenModels(contextSize)
  type Config = { readonly name: string; readonly family: Row["family"]; readonly open: () => Promise<Session> }
  const none = async () => ({ predictor: undefined, dispose: async () => {} })
  const draftPredictor = (options: ConstructorParameters<typeof DraftSequenceTokenPredictor>[1]) => async () => {
    const draftContext = await draft.createContext({
      contextSize,
      threads: 1,
      sequences: 1,
      flashAttention: ModelPool.defaultFlashAttention(draft)
    })
    return { predictor: new DraftSequenceTokenPredictor(draftContext.getSequence(), options), dispose: () => draftContext.dispose() }
  }
  const hasten = async (name: string, gamma: number | "adaptive"): Promise<Config> => {
    const targetLayer = await localTokenModel(pair.target.path)
    const drafter = gamma === 0 ? Drafter.promptLookup() : Drafter.modelLayer(await localTokenModel(pair.draft.path))
    return { name, family: "hasten", open: () => hastenSession(targetLayer, drafter, gamma, draftTokens) }
  }
  const configs: Array<Config> = [
    { name: "plain (node-llama-cpp evaluate)", family: "plain", open: () => nodeLlamaCppSession(target, draftTokens, none) },
    { name: "plain again (A/A: the noise floor)", family: "plain-again", open: () => nodeLlamaCppSession(target, draftTokens, none) },
    { name: "draft alone (node-llama-cpp evaluate)", family: "draft", open: () => nodeLlamaCppSession(draft, draftTokens, none) },
    {
      name: "node-llama-cpp DraftSequenceTokenPredictor",
      family: "node-llama-cpp",
      open: () => nodeLlamaCppSession(target, draftTokens, draftPredictor(undefined))
    },
    // the defaults draft concurrently (minTokens 0), which with a thread per context rarely has
    // drafts ready in time; these wait for exactly n drafts of any confidence, like Hasten's γ = n
    ...[2, 4].map((n): Config => ({
      name: `node-llama-cpp DraftSequenceTokenPredictor ${n} drafts`,
      family: "node-llama-cpp",
      open: () => nodeLlamaCppSession(target, draftTokens, draftPredictor({ minTokens: n, maxTokens: n, minConfidence: 0 }))
    })),
    await hasten("hasten lean greedy (γ=0)", 0),
    await hasten("hasten draft model γ=2", 2),
    await hasten("hasten draft model γ=4", 4),
    await hasten("hasten draft model γ=8", 8),
    await hasten("hasten draft model adaptive", "adaptive")
  ]
  const warmUntil = performance.now() + (quick ? 1_000 : 4_000)
  while (performance.now() < warmUntil) await interleaved(configs.map((config) => config.open), storyPrompts.slice(0, 2), 1)
  const timings = await interleaved(configs.map((config) => config.open), storyPrompts, rounds)
  const rows = toRows(shape, "draft-model", configs, timings)
  draftRows.push(...rows)
  const batchStable: Array<boolean> = []
  for (const [i, text] of storyPrompts.entries()) {
    const output = timings[0]![0]![i]!.result.tokens as ReadonlyArray<Token>
    const input = [target.tokens.bos!, ...target.tokenize(text, false)]
    const context = await target.createContext({
      contextSize,
      threads: 1,
      sequences: 1,
      flashAttention: ModelPool.defaultFlashAttention(target)
    })
    const along = [...input, ...output.slice(0, -1)]
    const from = input.length - 1
    const results = await context.getSequence().controlledEvaluate(
      along.map((token, j) => j >= from ? [token, { generateNext: { token: true, options: { temperature: 0 } } }] : token)
    )
    await context.dispose()
    batchStable.push(results.slice(from).every((result, j) => result?.next?.token === output[j]))
  }
  const identicalStable = timings.map((perConfig) =>
    storyPrompts.filter((_, i) =>
      batchStable[i]! && perConfig.every((round) => sameTokens(round[i]!.result.tokens, timings[0]![0]![i]!.result.tokens))
    ).length
  )
  const verifyMillis = await verifyCosts(await localTokenModel(pair.target.path), verifyLengths, quick ? 10 : 30)
  // one step of the draft as Hasten's drafter runs it (appendGreedy of one token through Local.layer)
  const draftStepMillis = (await verifyCosts(await localTokenModel(pair.draft.path), [1], quick ? 20 : 60))[1]!
  const withFirst = timings[configs.findIndex((config) => config.name.endsWith("γ=4"))]!.flat()
    .flatMap((timed) =>
      timed.result.firstAcceptance !== undefined && Number.isFinite(timed.result.firstAcceptance) ? [timed.result.firstAcceptance] : []
    )
  draftResults.push({
    target: shape,
    draft: `${pair.draft.shape.embedding}x${pair.draft.shape.layers} (${(pair.draft.parameters / 1e6).toFixed(1)}M)`,
    tokens: draftTokens,
    fullLength: timings.every((perConfig) => perConfig.flat().every((timed) => timed.result.tokens.length === draftTokens)),
    rows,
    verifyMillis,
    draftStepMillis,
    batchStable,
    identicalStable,
    firstAcceptance: withFirst.length > 0 ? withFirst.reduce((a, b) => a + b, 0) / withFirst.length : undefined
  })
  await disposePools()
  await draft.dispose()
  await target.dispose()
}

// ---------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------

const pad = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)
const fixed = (value: number | undefined, digits: number) => value === undefined ? "-" : value.toFixed(digits)
if (rows.length > 0) {
  console.log(
    `\nSpeculative decoding, greedy, threads 1, ${rounds} round(s) (${
      quick ? "quick" : "full"
    }), configurations interleaved request by request\n`
  )
  console.log(
    "speedup = plain's CPU seconds / the configuration's (all threads of this process), summed over every request of every round; per request = the same ratio request by request, median (quartiles); wall = the summed ratio on wall-clock time; tok/eval = output tokens per target forward pass\n"
  )
}
const printTable = (list: ReadonlyArray<Row>) => {
  console.log(
    [
      pad("model", 22),
      pad("workload", 12),
      pad("configuration", 56),
      "tokens",
      "tok/CPU-s",
      "speedup",
      "per request (quartiles) ",
      " wall ",
      "tok/eval",
      "accept",
      "mean acc.",
      "identical"
    ].join(" | ")
  )
  for (const row of list) {
    console.log([
      pad(row.model, 22),
      pad(row.workload, 12),
      pad(row.config, 56),
      pad(String(row.tokens), 6),
      pad(row.cpuTokPerS.toFixed(0), 9),
      pad(row.speedup.toFixed(2) + "x", 7),
      pad(`${row.medianSpeedup.toFixed(2)}x (${row.quartiles[0].toFixed(2)}–${row.quartiles[1].toFixed(2)})`, 24),
      pad(row.wallSpeedup.toFixed(2) + "x", 6),
      pad(fixed(row.tokensPerEvaluation, 2), 8),
      pad(fixed(row.acceptance, 2), 6),
      pad(fixed(row.meanAccepted, 2), 9),
      `${row.identical}/${row.requests}`
    ].join(" | "))
  }
}
if (rows.length > 0) printTable(rows)

const summary = (model: string, workload: string) => {
  const selected = rows.filter((row) => row.model === model && row.workload === workload)
  if (!selected.some((row) => row.family === "hasten") || !selected.some((row) => row.family === "node-llama-cpp")) return null
  const plain = selected.find((row) => row.family === "plain")!
  const again = selected.find((row) => row.family === "plain-again")
  const hastenRows = selected.filter((row) => row.family === "hasten")
  const exact = hastenRows.filter((row) => row.identical === row.requests)
  const best = (exact.length > 0 ? exact : hastenRows).reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const nodeBest = selected.filter((row) => row.family === "node-llama-cpp").reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const adaptive = selected.filter((row) => row.family === "hasten" && row.config.endsWith("adaptive"))
  if (adaptive.length === 0) adaptive.push(best)
  return {
    plainTokPerS: Math.round(plain.cpuTokPerS),
    plainWallTokPerS: Math.round(plain.tokPerS),
    noiseFloorSpeedup: again === undefined ? null : Number(again.speedup.toFixed(3)),
    hastenBestSpeedup: Number(best.speedup.toFixed(3)),
    hastenBest: best.config,
    hastenBestWallSpeedup: Number(best.wallSpeedup.toFixed(3)),
    hastenBestMedianOfRequests: Number(best.medianSpeedup.toFixed(3)),
    nodeLlamaCppBestSpeedup: Number(nodeBest.speedup.toFixed(3)),
    nodeLlamaCppBest: nodeBest.config,
    hastenAdaptiveMinSpeedup: Number(Math.min(...adaptive.map((row) => row.speedup)).toFixed(3)),
    hastenAdaptiveMinMedianOfRequests: Number(Math.min(...adaptive.map((row) => row.medianSpeedup)).toFixed(3)),
    acceptanceRate: best.acceptance === undefined ? null : Number(best.acceptance.toFixed(3)),
    meanAcceptedLength: best.meanAccepted === undefined ? null : Number(best.meanAccepted.toFixed(3)),
    tokensPerEvaluation: best.tokensPerEvaluation === undefined ? null : Number(best.tokensPerEvaluation.toFixed(3)),
    bestIdentical: best.identical === best.requests,
    identical: hastenRows.every((row) => row.identical === row.requests),
    identicalRequests: `${hastenRows.reduce((sum, row) => sum + row.identical, 0)}/${
      hastenRows.reduce((sum, row) => sum + row.requests, 0)
    }`
  }
}
if (guards.length > 0) {
  console.log(
    `\nFree-text guard: plain node-llama-cpp and one Hasten configuration take turns request by request on ${pairCount} story openings (${
      new Set(guardPrompts(pairCount)).size
    } distinct); speedup = plain CPU time / Hasten CPU time: over the whole workload (sum), and the median pair\n`
  )
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
    paired: Object.fromEntries(
      selected.map((
        guard
      ) => [guard.config, {
        median: Number(guard.median.toFixed(3)),
        sum: Number(guard.sum.toFixed(3)),
        pairs: guard.pairs,
        identical: guard.identical
      }])
    )
  }
}
/** Expected output tokens of a speculative step with γ drafts, each accepted with probability α (Leviathan et al.). */
const expectedTokens = (alpha: number, gamma: number) => alpha >= 1 ? gamma + 1 : (1 - alpha ** (gamma + 1)) / (1 - alpha)
const round3 = (value: number) => Number(value.toFixed(3))
const draftModelSummary = (result: DraftModelResult) => {
  const byName = (name: string) => result.rows.find((row) => row.config === name)!
  const plain = result.rows.find((row) => row.family === "plain")!
  const again = result.rows.find((row) => row.family === "plain-again")!
  const draftAlone = result.rows.find((row) => row.family === "draft")!
  const lean = byName("hasten lean greedy (γ=0)")
  const speculative = result.rows.filter((row) => row.config.startsWith("hasten draft model"))
  const fixedRows = speculative.filter((row) => !row.config.endsWith("adaptive"))
  const adaptive = byName("hasten draft model adaptive")
  const exact = speculative.filter((row) => row.identical === row.requests)
  const best = (exact.length > 0 ? exact : speculative).reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const bestFixed = fixedRows.reduce((a, b) => (b.speedup > a.speedup ? b : a))
  const nodeBest = result.rows.filter((row) => row.family === "node-llama-cpp").reduce((a, b) => (b.speedup > a.speedup ? b : a))
  // draft step / target step: CPU per token of each model decoding alone (node-llama-cpp)
  const draftCostRatio = plain.cpuTokPerS / draftAlone.cpuTokPerS
  const alpha = result.firstAcceptance
  const verify = (k: number) => result.verifyMillis[k]! / result.verifyMillis[1]!
  // a draft step as Hasten's drafter pays it, in target steps (both appendGreedy of one token)
  const hastenDraftCostRatio = result.draftStepMillis / result.verifyMillis[1]!
  // the step-count bound on the speculation factor: expected tokens per step over the step's
  // cost in target steps (verifying γ + 1 tokens, measured, plus γ draft steps); no fixed
  // cost per speculative step is counted, so real steps come in under it
  const bound = (gamma: number, verifyCost: number) =>
    alpha === undefined ? null : round3(expectedTokens(alpha, gamma) / (verifyCost + gamma * hastenDraftCostRatio))
  const bounds = Object.fromEntries(verifyLengths.filter((k) => k > 1).map((k) => [`γ=${k - 1}`, bound(k - 1, verify(k))]))
  return {
    target: result.target,
    draft: result.draft,
    tokens: result.tokens,
    fullLength: result.fullLength,
    plainTokPerS: Math.round(plain.cpuTokPerS),
    noiseFloorSpeedup: round3(again.speedup),
    speedup: round3(best.speedup),
    best: best.config,
    wallSpeedup: round3(best.wallSpeedup),
    adaptiveSpeedup: round3(adaptive.speedup),
    leanGreedySpeedup: round3(lean.speedup),
    speculationFactor: round3(best.speedup / lean.speedup),
    adaptiveSpeculationFactor: round3(adaptive.speedup / lean.speedup),
    identical: result.rows.filter((row) => row.family !== "draft").every((row) => row.identical === row.requests),
    identicalRequests: Object.fromEntries(
      result.rows.filter((row) => row.family !== "draft").map((row) => [row.config, `${row.identical}/${row.requests}`])
    ),
    /** Prompts where one batched evaluation of plain greedy's output reproduces it (see `batchStable`). */
    batchStablePrompts: `${result.batchStable.filter((stable) => stable).length}/${result.batchStable.length}`,
    /** Every configuration identical on every batch-stable prompt. */
    identicalWhereBatchStable: result.rows.every((row, c) =>
      row.family === "draft" || result.identicalStable[c] === result.batchStable.filter((stable) => stable).length
    ),
    acceptance: best.acceptance === undefined ? null : round3(best.acceptance),
    firstDraftAcceptance: alpha === undefined ? null : round3(alpha),
    meanAcceptedLength: best.meanAccepted === undefined ? null : round3(best.meanAccepted),
    tokensPerEvaluation: best.tokensPerEvaluation === undefined ? null : round3(best.tokensPerEvaluation),
    draftCostRatio: round3(draftCostRatio),
    verifyCost: Object.fromEntries(verifyLengths.map((k) => [k, round3(verify(k))])),
    hastenDraftCostRatio: round3(hastenDraftCostRatio),
    speculationBound: bounds,
    /** The same bound at γ = 4 if verifying 5 tokens cost 2 target steps. */
    speculationBoundVerify5At2x: bound(4, 2),
    nodeLlamaCppSpeedup: round3(nodeBest.speedup),
    nodeLlamaCppBest: nodeBest.config,
    nodeLlamaCppIdentical: nodeBest.identical === nodeBest.requests,
    bestFixed: bestFixed.config,
    adaptiveToBestFixed: round3(adaptive.speedup / bestFixed.speedup)
  }
}
if (draftRows.length > 0) {
  console.log(
    `\nAt real sizes (synthetic weights of real shapes: timing only, the text is meaningless): ${draftTokens} tokens per request, ${storyPrompts.length} prompts, ${rounds} round(s), threads 1 per context; speedup over node-llama-cpp plain greedy (CPU time)\n`
  )
  printTable(draftRows)
}
const draftModels = Object.fromEntries(draftResults.map((result) => [result.target, draftModelSummary(result)]))
for (const summary of Object.values(draftModels)) {
  console.log(
    `\n${summary.target}: draft/target step ${summary.draftCostRatio} (through Local.layer: ${summary.hastenDraftCostRatio}), verify(5)/verify(1) ${
      summary.verifyCost[5]
    }, first-draft acceptance ${summary.firstDraftAcceptance}, step-count bound on the speculation factor ${
      JSON.stringify(summary.speculationBound)
    }; speculation factor ${summary.speculationFactor} (${summary.best}), all ${summary.tokens} tokens every request: ${summary.fullLength}; batch-stable prompts ${summary.batchStablePrompts}, every configuration identical on them: ${summary.identicalWhereBatchStable}`
  )
}
let concurrency: Array<ConcurrencyResult> = []
if (concurrencyLevels.length > 0) {
  const shape = (option("concurrency-shape") ?? (quick ? "15M" : "42M")) as SyntheticModel.ShapeName
  const tokens = Number(option("concurrency-tokens") ?? (quick ? 16 : 64))
  const rounds = Number(option("concurrency-rounds") ?? (quick ? 1 : 2))
  const fixedGammas = option("concurrency-fixed")?.split(",").map(Number).filter((g) => Number.isInteger(g) && g >= 0)
  const warm = process.argv.includes("--concurrency-warm")
  concurrency = await concurrencySection({
    shape,
    concurrencies: concurrencyLevels,
    tokens,
    rounds,
    prompts: storyPrompts,
    fixedGammas,
    warm
  })
  console.log(
    `\nBatching and speculation together (${shape} pair, synthetic weights: timing only), ${tokens} tokens per request, greedy, ${
      warm ? "after one untimed round of k requests per layer (steady state)" : "fresh layers"
    }, output tokens per wall second of all k requests:\n`
  )
  for (const result of concurrency) {
    console.log(
      `k=${result.concurrency}: ${
        Object.entries(result.tokPerS).map(([name, rate]) => `${name} ${rate}`).join(", ")
      }; both / best single ${result.combinedOverBestSingle}x, lockstep / per-request γ ${result.lockstepGain}x, back-off ${result.backoffGain}x, speculation alone / plain alone ${result.speculationAloneFactor}x, mean γ when both ${result.combinedMeanGamma} (speculative share of evaluations ${result.combinedSpeculativeShare}; per-request ${result.perRequestMeanGamma}); identical to batching alone ${
        JSON.stringify(result.identical)
      }`
    )
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
  model: models[0] ?? null,
  structuring: models[0] === undefined ? null : perModel[models[0]]!.structuring,
  story: models[0] === undefined ? null : perModel[models[0]]!.story,
  models: perModel,
  draftModel: draftResults.length === 0 ? null : draftModels[draftResults[0]!.target],
  draftModels,
  concurrency
}))
