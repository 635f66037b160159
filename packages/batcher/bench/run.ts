// Batcher benchmark: sequential vs batched local inference (items/s, tokens/s, identical
// greedy output) on the fixture models, and embeddings one-per-call vs merged against the
// testkit simulator with per-call latency. Table for people, one JSON line last.
// At real sizes (testkit's SyntheticModel: synthetic weights of the 42M/110M shapes, timing
// only): Hasten at 1/4/8/16 sequences, node-llama-cpp alone at 16 and the forward-only limit
// at 16, interleaved in one run.
// Run: pnpm --filter @hasten/batcher bench [--quick] [--shapes 42M,110M] [--sizes-only] [--lean-off]
import { Batcher } from "@hasten/batcher"
import { CompletionRequest, Embedder, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer, Redacted } from "effect"
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp"
import * as os from "node:os"

const quick = process.argv.includes("--quick")
const flag = (name: string) => {
  const at = process.argv.indexOf(name)
  return at >= 0 ? process.argv[at + 1] : undefined
}
/** Synthetic shapes for the real-size section (`--shapes none` skips it). */
const sizeShapes = (flag("--shapes") ?? (quick ? "15M" : "42M,110M")).split(",").map((s) => s.trim()).filter((s) =>
  s.length > 0 && s !== "none"
)
/** Only the real-size section (no fixture models, no embeddings). */
const sizesOnly = process.argv.includes("--sizes-only")
/** Also run Hasten ×1 and ×16 with `leanGreedy: false` in each round (before/after the batch stepper). */
const leanOff = process.argv.includes("--lean-off")
const itemCount = quick ? 32 : 64
const maxTokens = quick ? 24 : 32
const widths = quick ? [4, 8, 16] : [4, 8, 16, 32]

const subjects = ["a dog", "a red ball", "the park", "a big tree", "a little bird", "the sea", "a cake", "a toy car"]
const prompts = Array.from({ length: itemCount }, (_, i) => `Story ${i}: Once upon a time there was ${subjects[i % subjects.length]} and`)
const request = (prompt: string, model: string, tokens = maxTokens) =>
  CompletionRequest.makeUnsafe({ model, messages: [], prompt, temperature: 0, maxTokens: tokens })

interface Row {
  model: string
  mode: string
  seconds: number
  cpuSeconds: number
  itemsPerS: number
  tokensPerS: number
  tokensPerCpuS: number
  identical: boolean
}

const timeRun = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const cpu = process.cpuUsage()
    const value = yield* effect
    const used = process.cpuUsage(cpu)
    // process CPU time includes llama.cpp's threads; neighbours on a shared machine disturb it far less than wall time
    return { value, seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6 }
  })

const benchModel = (file: string, model: string) =>
  Effect.gen(function*() {
    const rows: Array<Row> = []
    const sequentialLayer = Local.layerWithPool({ model: file, sequences: 1, contextSize: 128 })
    // warm-up (load + first eval) outside the timed region
    yield* Llm.complete(request(prompts[0]!, model)).pipe(Effect.provide(sequentialLayer))
    const sequential = yield* timeRun(
      Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, model))).pipe(Effect.provide(sequentialLayer))
    )
    const reference = sequential.value.map((c) => c.text)
    const tokens = (values: ReadonlyArray<{ usage: { outputTokens: number } }>) => values.reduce((sum, c) => sum + c.usage.outputTokens, 0)
    rows.push({
      model,
      mode: "sequential",
      seconds: sequential.seconds,
      cpuSeconds: sequential.cpuSeconds,
      itemsPerS: itemCount / sequential.seconds,
      tokensPerS: tokens(sequential.value) / sequential.seconds,
      tokensPerCpuS: tokens(sequential.value) / sequential.cpuSeconds,
      identical: true
    })
    for (const width of widths) {
      const stack = Batcher.layer({ window: "100 millis", maxBatchSize: 32, concurrency: width }).pipe(
        Layer.provide(Local.layerWithPool({ model: file, sequences: width, contextSize: 128 }))
      )
      const batched = yield* timeRun(
        Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, model)), { concurrency: "unbounded" }).pipe(Effect.provide(stack))
      )
      rows.push({
        model,
        mode: `batched ×${width}`,
        seconds: batched.seconds,
        cpuSeconds: batched.cpuSeconds,
        itemsPerS: itemCount / batched.seconds,
        tokensPerS: tokens(batched.value) / batched.seconds,
        tokensPerCpuS: tokens(batched.value) / batched.cpuSeconds,
        identical: batched.value.every((c, i) => c.text === reference[i])
      })
    }
    return rows
  })

/**
 * The ceiling without Hasten: node-llama-cpp alone, the same prompts greedily, `width`
 * sequences of one context each pulling the next prompt (1 = sequential), every token
 * through `sequence.evaluate` (no LlamaCompletion, no batcher). Its ×16 / ×1 ratio is what
 * batching can give at all on this machine and model.
 */
const nativeCeiling = (file: string, widths: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const modelPath = yield* Local.resolveModelPath(file)
    return yield* Effect.promise(async () => {
      const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.error })
      const model = await llama.loadModel({ modelPath })
      const eos = model.tokens.eos
      const runs: Array<{ width: number; seconds: number; cpuSeconds: number; tokens: number }> = []
      try {
        for (const width of widths) {
          const context = await model.createContext({ contextSize: 128, sequences: width, threads: 1 })
          try {
            let next = 0
            let tokens = 0
            const start = performance.now()
            const cpu = process.cpuUsage()
            await Promise.all(Array.from({ length: width }, async () => {
              const sequence = context.getSequence()
              while (next < prompts.length) {
                const prompt = prompts[next++]!
                await sequence.clearHistory()
                let count = 0
                for await (const token of sequence.evaluate(model.tokenize(prompt, true) as Array<Token>, { temperature: 0 })) {
                  if (token === eos) break
                  count++
                  if (count >= maxTokens) break
                }
                tokens += count
              }
            }))
            const used = process.cpuUsage(cpu)
            runs.push({ width, seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6, tokens })
          } finally {
            await context.dispose()
          }
        }
      } finally {
        await model.dispose()
      }
      return runs
    })
  })

// ---------------------------------------------------------------------------------------
// At real sizes: synthetic weights of real shapes (SyntheticModel), timing only. Each item
// is a prompt then exactly `sizeTokens` greedy tokens (synthetic models never pick EOS).

const sizeItems = quick ? 16 : 32
const sizeTokens = quick ? 16 : 32
const sizeRounds = quick ? 1 : 2
const sizePrompts = Array.from(
  { length: sizeItems },
  (_, i) => `Story ${i}: Once upon a time there was ${subjects[i % subjects.length]} and`
)

interface SizeRun {
  readonly seconds: number
  readonly cpuSeconds: number
  readonly tokens: number
}

/** A native sampler (`AddonSampler`). */
interface NativeSampler {
  applyConfig(config: object): void
  dispose(): void
}

/** The internals of a sequence the forward-only limit drives (as providers' greedyDecoder uses them). */
interface DecodeInternals {
  _decodeTokens(
    tokens: Array<number>,
    logits: Array<boolean>,
    evaluationPriority: number,
    tokenMeter: unknown,
    contextShiftOptions: { readonly size: unknown; readonly strategy: unknown },
    logitDataMapper: (batchLogitIndex: number, tokenIndex: number) => unknown,
    afterBatchAction?: () => Promise<unknown>
  ): Promise<Array<unknown>>
  _resolveSamplerConfig(options: { readonly temperature: number }): object
  readonly _tokenMeter: unknown
  readonly model: {
    readonly _model: unknown
    readonly _llama: { readonly _bindings: { readonly AddonSampler: new(model: unknown) => NativeSampler } }
  }
  readonly context: { readonly _ctx: { sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number> } }
  readonly _contextShift: { readonly size: unknown; readonly strategy: unknown }
}

/**
 * node-llama-cpp alone (`mode: "evaluate"`): 16 sequences of one context each pull the next
 * prompt and generate `sizeTokens` greedy tokens through `sequence.evaluate` (no
 * `LlamaCompletion`, no Hasten code). The forward-only limit (`mode: "forward"`): the same
 * items and steps, but each step is only the sequence's forward pass (`_decodeTokens`, the
 * logits of the last position computed, never read or sampled) and feeds a fixed token:
 * 16 sequences × 1 token per step, what any sampler on top can at best approach.
 * `mode: "greedy"`: those forward passes plus greedy sampling of each sequence on a
 * persistent native sampler, all 16 at once after the batch (providers' greedyDecoder), to
 * separate sampling itself from how `sequence.evaluate` drives it.
 */
const nativeRun = async (
  model: import("node-llama-cpp").LlamaModel,
  width: number,
  mode: "evaluate" | "forward" | "greedy",
  flashAttention: boolean
): Promise<SizeRun | undefined> => {
  const context = await model.createContext({ contextSize: 128, sequences: width, threads: 1, flashAttention })
  try {
    let next = 0
    let tokens = 0
    const fixed = model.tokenize(" the", false)[0] as number
    const start = performance.now()
    const cpu = process.cpuUsage()
    let unsupported = false
    await Promise.all(Array.from({ length: width }, async () => {
      const sequence = context.getSequence()
      const internals = sequence as unknown as DecodeInternals
      if (mode !== "evaluate" && typeof internals._decodeTokens !== "function") {
        unsupported = true
        return
      }
      let sampler: NativeSampler | undefined
      if (mode === "greedy") {
        sampler = new internals.model._llama._bindings.AddonSampler(internals.model._model)
        sampler.applyConfig(internals._resolveSamplerConfig({ temperature: 0 }))
      }
      while (next < sizePrompts.length) {
        const prompt = sizePrompts[next++]!
        await sequence.clearHistory()
        const input = model.tokenize(prompt, true) as Array<Token>
        let count = 0
        if (mode === "evaluate") {
          for await (const _token of sequence.evaluate(input, { temperature: 0, yieldEogToken: true })) {
            if (++count >= sizeTokens) break
          }
        } else {
          const shift = { size: internals._contextShift.size, strategy: internals._contextShift.strategy }
          let step: Array<number> = input
          while (count < sizeTokens) {
            const logits: Array<boolean> = []
            logits[step.length - 1] = true
            if (mode === "forward") {
              await internals._decodeTokens(step, logits, 5, internals._tokenMeter, shift, () => null)
              step = [fixed]
            } else {
              // greedy: one persistent native sampler per sequence, sampled as soon as the batch
              // is decoded, the batch done when its samples are (as providers' greedyDecoder does)
              const started: Array<Promise<number>> = []
              const out = await internals._decodeTokens(step, logits, 5, internals._tokenMeter, shift, (batchLogitIndex) => {
                const token = internals.context._ctx.sampleToken(batchLogitIndex, sampler!)
                started.push(token)
                return { token }
              }, () => Promise.allSettled(started))
              step = [await (out[step.length - 1] as { token: Promise<number> }).token]
            }
            count++
          }
        }
        tokens += count
      }
      sampler?.dispose()
    }))
    const used = process.cpuUsage(cpu)
    if (unsupported) return undefined
    return { seconds: (performance.now() - start) / 1000, cpuSeconds: (used.user + used.system) / 1e6, tokens }
  } finally {
    await context.dispose()
  }
}

interface SizeRow {
  readonly model: string
  readonly params: number
  readonly mode: string
  readonly seconds: number
  readonly itemsPerS: number
  readonly tokensPerS: number
  readonly tokensPerCpuS: number
  /** Items whose text differs from one-at-a-time (Hasten rows only). */
  readonly differing: number | null
}

const best = (runs: ReadonlyArray<SizeRun>): SizeRun => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a))

/** The two settings each 16-sequence row runs under: Hasten's default (flash attention on, as node-llama-cpp's "auto" on CPU) and flash attention off. */
const flashVariants = [{ flash: true, suffix: "" }, { flash: false, suffix: " flash off" }] as const

const benchShape = (shape: string) =>
  Effect.gen(function*() {
    const { SyntheticModel } = yield* Effect.promise(() => import("@hasten/testkit"))
    const file = yield* Effect.promise(() => SyntheticModel.ensure({ shape: shape as "15M" | "42M" | "110M" }))
    const model = `synthetic-${shape}`
    // leanGreedy: false is the path before the batch stepper (node-llama-cpp's own generation per request)
    const hastenLayer = (width: number, flashAttention: boolean, leanGreedy = true) =>
      width === 1 ?
        Local.layerWithPool({ model: file.path, sequences: 1, contextSize: 128, flashAttention, leanGreedy }) :
        Batcher.layer({ window: "100 millis", maxBatchSize: 32, concurrency: width }).pipe(
          Layer.provide(Local.layerWithPool({ model: file.path, sequences: width, contextSize: 128, flashAttention, leanGreedy }))
        )
    const hasten = (width: number, flash: boolean, leanGreedy = true) =>
      timeRun(
        Effect.forEach(sizePrompts, (prompt) => Llm.complete(request(prompt, model, sizeTokens)), {
          concurrency: width === 1 ? 1 : "unbounded"
        }).pipe(Effect.provide(hastenLayer(width, flash, leanGreedy)))
      ).pipe(Effect.map(({ cpuSeconds, seconds, value }) => {
        const short = value.filter((c) => c.usage.outputTokens !== sizeTokens).length
        if (short > 0) throw new Error(`${model} ×${width}: ${short} items ended before ${sizeTokens} tokens`)
        return { run: { seconds, cpuSeconds, tokens: sizeItems * sizeTokens }, texts: value.map((c) => c.text) }
      }))
    const llama = yield* Effect.promise(() => getLlama({ gpu: false, logLevel: LlamaLogLevel.error }))
    const native = yield* Effect.acquireRelease(
      Effect.promise(() => llama.loadModel({ modelPath: file.path })),
      (m) => Effect.promise(() => m.dispose())
    )
    // warm-up (load + first evaluations) outside the timed region
    for (const { flash } of flashVariants) {
      yield* Llm.complete(request(sizePrompts[0]!, model, 4)).pipe(Effect.provide(hastenLayer(1, flash)))
      yield* Effect.promise(() => nativeRun(native, 16, "forward", flash))
    }
    // interleaved: each round runs, per setting, sequential, node-llama-cpp alone, Hasten ×16
    // and the forward-only limit back to back; the best round of each counts
    const runs: Record<string, Array<SizeRun>> = {}
    const push = (mode: string, run: SizeRun | undefined) => {
      if (run !== undefined) (runs[mode] ??= []).push(run)
    }
    const references: Record<string, Array<string>> = {}
    const differing: Record<string, number> = {}
    const compare = (mode: string, suffix: string, texts: Array<string>) => {
      const count = texts.filter((t, i) => t !== references[suffix]![i]).length
      differing[mode] = Math.max(differing[mode] ?? 0, count)
    }
    for (let round = 0; round < sizeRounds; round++) {
      for (const { flash, suffix } of flashVariants) {
        const seq = yield* hasten(1, flash)
        if (round === 0) references[suffix] = seq.texts
        compare(`hasten ×1${suffix}`, suffix, seq.texts)
        push(`hasten ×1${suffix}`, seq.run)
        push(`node-llama-cpp alone ×16${suffix}`, yield* Effect.promise(() => nativeRun(native, 16, "evaluate", flash)))
        const h16 = yield* hasten(16, flash)
        push(`hasten ×16${suffix}`, h16.run)
        compare(`hasten ×16${suffix}`, suffix, h16.texts)
        push(`forward only ×16${suffix}`, yield* Effect.promise(() => nativeRun(native, 16, "forward", flash)))
        push(`native greedy ×16${suffix}`, yield* Effect.promise(() => nativeRun(native, 16, "greedy", flash)))
        if (leanOff) {
          const seqOff = yield* hasten(1, flash, false)
          push(`hasten ×1 lean off${suffix}`, seqOff.run)
          compare(`hasten ×1 lean off${suffix}`, suffix, seqOff.texts)
          const h16Off = yield* hasten(16, flash, false)
          push(`hasten ×16 lean off${suffix}`, h16Off.run)
          compare(`hasten ×16 lean off${suffix}`, suffix, h16Off.texts)
        }
      }
      if (round === 0) {
        for (const width of [4, 8]) {
          const h = yield* hasten(width, true)
          push(`hasten ×${width}`, h.run)
          compare(`hasten ×${width}`, "", h.texts)
        }
      }
    }
    const rows: Array<SizeRow> = []
    const modes = [
      "hasten ×1",
      "hasten ×4",
      "hasten ×8",
      "hasten ×16",
      "node-llama-cpp alone ×16",
      "forward only ×16",
      "native greedy ×16",
      "hasten ×1 lean off",
      "hasten ×16 lean off",
      "hasten ×1 flash off",
      "hasten ×16 flash off",
      "node-llama-cpp alone ×16 flash off",
      "forward only ×16 flash off",
      "native greedy ×16 flash off",
      "hasten ×1 lean off flash off",
      "hasten ×16 lean off flash off"
    ]
    for (const mode of modes) {
      const list = runs[mode]
      if (list === undefined || list.length === 0) continue
      const r = best(list)
      rows.push({
        model,
        params: file.parameters,
        mode,
        seconds: r.seconds,
        itemsPerS: sizeItems / r.seconds,
        tokensPerS: r.tokens / r.seconds,
        tokensPerCpuS: r.tokens / r.cpuSeconds,
        differing: mode.startsWith("hasten") ? differing[mode] ?? 0 : null
      })
    }
    return rows
  }).pipe(Effect.scoped)

const sizeSummary = (rows: ReadonlyArray<SizeRow>) => {
  const fixed = (n: number | undefined) => (n === undefined ? null : Number(n.toFixed(2)))
  const variant = (suffix: string) => {
    const of = (mode: string) => rows.find((r) => r.mode === `${mode}${suffix}`)
    const seq = of("hasten ×1")!
    const h16 = of("hasten ×16")
    const alone = of("node-llama-cpp alone ×16")
    const forward = of("forward only ×16")
    const greedy = of("native greedy ×16")
    const off1 = of("hasten ×1 lean off")
    const off16 = of("hasten ×16 lean off")
    const mine = rows.filter((r) => r.mode.startsWith("hasten") && r.mode.endsWith(suffix) && (suffix !== "" || !r.mode.includes("+")))
    const width = (r: SizeRow) => r.mode.replace("hasten ×", "").replace(suffix, "")
    return {
      sequentialItemsPerS: fixed(seq.itemsPerS),
      itemsPerS: Object.fromEntries(mine.map((r) => [width(r), fixed(r.itemsPerS)])),
      tokensPerS: Object.fromEntries(mine.map((r) => [width(r), fixed(r.tokensPerS)])),
      speedup16: fixed(h16 && h16.itemsPerS / seq.itemsPerS),
      // Hasten ×16 over node-llama-cpp alone ×16 under the same settings
      nodeLlamaCppSpeedup16: fixed(h16 && alone && h16.itemsPerS / alone.itemsPerS),
      nodeLlamaCppAlone16OverSequential: fixed(alone && alone.itemsPerS / seq.itemsPerS),
      // the forward-only limit at 16 over sequential (the most speedup16 could be), and the share of it Hasten reaches
      forwardLimit16: fixed(forward && forward.itemsPerS / seq.itemsPerS),
      hastenOfForwardLimit16: fixed(h16 && forward && h16.itemsPerS / forward.itemsPerS),
      // wall time per decoding step (prompt evaluation spread over the steps): one sequence's
      // step for ×1, a 16-sequence step for the others; nodeLlamaCpp16 − forward16 is the
      // sampling of 16 positions over the 32k vocabulary, hasten16 − nodeLlamaCpp16 what
      // Hasten's path adds on top
      stepMs: {
        sequential: fixed(seq.seconds * 1000 / (sizeItems * sizeTokens)),
        forward16: fixed(forward && forward.seconds * 1000 / (sizeItems * sizeTokens / 16)),
        nodeLlamaCpp16: fixed(alone && alone.seconds * 1000 / (sizeItems * sizeTokens / 16)),
        hasten16: fixed(h16 && h16.seconds * 1000 / (sizeItems * sizeTokens / 16)),
        // forward plus greedy sampling on persistent samplers, 16 at once (greedyDecoder's way)
        nativeGreedy16: fixed(greedy && greedy.seconds * 1000 / (sizeItems * sizeTokens / 16))
      },
      nativeGreedy16OverSequential: fixed(greedy && greedy.itemsPerS / seq.itemsPerS),
      // --lean-off: the same runs with leanGreedy: false (node-llama-cpp's own generation per request, the path before the stepper)
      ...(off1 === undefined ? {} : {
        leanOff: {
          sequentialItemsPerS: fixed(off1.itemsPerS),
          speedup16: fixed(off16 && off16.itemsPerS / off1.itemsPerS),
          nodeLlamaCppSpeedup16: fixed(off16 && alone && off16.itemsPerS / alone.itemsPerS),
          // lean over lean off, at 16 sequences and sequentially
          leanGain16: fixed(off16 && h16 && h16.itemsPerS / off16.itemsPerS),
          leanGain1: fixed(seq.itemsPerS / off1.itemsPerS),
          // ×16 with the stepper over sequential without it (before-the-change sequential)
          speedup16OverLeanOffSequential: fixed(h16 && h16.itemsPerS / off1.itemsPerS)
        }
      }),
      identical: mine.every((r) => r.differing === 0),
      differingItems: Object.fromEntries(mine.map((r) => [width(r), r.differing]))
    }
  }
  const base = variant("")
  const flashOff = rows.some((r) => r.mode === "hasten ×1 flash off") ? variant(" flash off") : undefined
  const h16 = rows.find((r) => r.mode === "hasten ×16")
  const aloneDefaults = rows.find((r) => r.mode === "node-llama-cpp alone ×16")
  return {
    model: rows[0]!.model,
    params: rows[0]!.params,
    // Hasten's defaults (flash attention on)
    ...base,
    // Hasten ×16 (defaults) over node-llama-cpp alone ×16 at its defaults (flash attention "auto": on here)
    vsNodeLlamaCppDefaults16: fixed(h16 && aloneDefaults && h16.itemsPerS / aloneDefaults.itemsPerS),
    // everything with flash attention off (Hasten's default before 2026-12-06), ratios within this setting
    flashOff
  }
}

const embeddings = Effect.gen(function*() {
  const { Simulator } = yield* Effect.promise(() => import("@hasten/testkit"))
  const { OpenAi } = yield* Effect.promise(() => import("@hasten/providers/openai"))
  const sim = yield* Effect.acquireRelease(
    Effect.promise(() => Simulator.start({ seed: 1, latency: { ttftMs: 20, perTokenMs: 0 } })),
    (s) => Effect.promise(() => s.close())
  )
  const texts = Array.from({ length: quick ? 64 : 256 }, (_, i) => `document number ${i} about ${subjects[i % subjects.length]}`)
  const openai = OpenAi.layer({ embeddingModel: "text-embedding-3-small", baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-bench") })
  const one = yield* timeRun(Effect.forEach(texts, (text) => Embedder.embed([text]), { concurrency: 4 }).pipe(Effect.provide(openai)))
  const merged = yield* timeRun(
    Effect.forEach(texts, (text) => Embedder.embed([text]), { concurrency: "unbounded" }).pipe(
      Effect.provide(Batcher.layerEmbedder({ maxBatchSize: 64 }).pipe(Layer.provide(openai)))
    )
  )
  const same = one.value.every((e, i) => JSON.stringify(e.vectors[0]) === JSON.stringify(merged.value[i]!.vectors[0]))
  return { texts: texts.length, sequentialS: one.seconds, batchedS: merged.seconds, speedup: one.seconds / merged.seconds, identical: same }
})

/** The fixture models (stories260K, TinyStories-656K) and embeddings: prints their tables, returns their JSON. */
const fixtureSection = Effect.gen(function*() {
  const rows = [
    ...(yield* benchModel("stories260K.gguf", "stories260K")),
    ...(yield* benchModel("TinyStories-656K-Q8_0.gguf", "TinyStories-656K"))
  ]
  const ceiling = yield* nativeCeiling("stories260K.gguf", [1, 16])
  const embed = yield* Effect.scoped(embeddings).pipe(
    Effect.catchCause((cause) => Effect.succeed({ error: String(cause).split("\n")[0] }))
  )
  console.log(`\nBatcher benchmark (${itemCount} items, maxTokens ${maxTokens}, threads 1)\n`)
  console.log("model              mode          seconds  items/s  tokens/s  speedup  tok/cpu-s  cpu speedup  identical")
  for (const row of rows) {
    const base = rows.find((r) => r.model === row.model && r.mode === "sequential")!
    console.log(
      `${row.model.padEnd(18)} ${row.mode.padEnd(12)} ${row.seconds.toFixed(2).padStart(8)} ${row.itemsPerS.toFixed(1).padStart(8)} ${
        row.tokensPerS.toFixed(0).padStart(9)
      } ${(row.itemsPerS / base.itemsPerS).toFixed(2).padStart(7)}x ${row.tokensPerCpuS.toFixed(0).padStart(10)} ${
        (row.tokensPerCpuS / base.tokensPerCpuS).toFixed(2).padStart(11)
      }x  ${row.identical}`
    )
  }
  const [one, sixteen] = [ceiling[0]!, ceiling[1]!]
  const ceilingItems = one.seconds / sixteen.seconds
  const ceilingCpu = (sixteen.tokens / sixteen.cpuSeconds) / (one.tokens / one.cpuSeconds)
  console.log(
    `\nnode-llama-cpp alone on stories260K (sequence.evaluate, no Hasten code): 16 sequences vs 1 = ${ceilingItems.toFixed(2)}x items/s, ${
      ceilingCpu.toFixed(2)
    }x tokens per CPU-second — the ceiling batching can reach here`
  )
  if ("speedup" in embed) {
    console.log(
      `\nembeddings: ${embed.texts} texts, one call each (4 in flight) ${embed.sequentialS.toFixed(2)} s vs merged ${
        embed.batchedS.toFixed(2)
      } s = ${embed.speedup.toFixed(1)}x, identical vectors: ${embed.identical}`
    )
  } else {
    console.log(`\nembeddings: skipped (${embed.error})`)
  }
  const primary = rows.filter((r) => r.model === "stories260K")
  const seq = primary.find((r) => r.mode === "sequential")!
  const batched: Record<string, number> = {}
  for (const r of primary.filter((r) => r.mode !== "sequential")) batched[r.mode.replace("batched ×", "")] = Number(r.itemsPerS.toFixed(2))
  const secondary = rows.filter((r) => r.model === "TinyStories-656K")
  const seq2 = secondary.find((r) => r.mode === "sequential")!
  const at16 = (list: Array<Row>, base: Row) => {
    const r = list.find((x) => x.mode === "batched ×16")
    return r ? Number((r.itemsPerS / base.itemsPerS).toFixed(2)) : null
  }
  return {
    local: {
      model: "stories260K",
      sequentialItemsPerS: Number(seq.itemsPerS.toFixed(2)),
      batched,
      speedup16: at16(primary, seq),
      cpuSpeedup16: (() => {
        const r = primary.find((x) => x.mode === "batched ×16")
        return r ? Number((r.tokensPerCpuS / seq.tokensPerCpuS).toFixed(2)) : null
      })(),
      speedup16TinyStories656K: at16(secondary, seq2),
      identical: rows.every((r) => r.identical),
      nodeLlamaCppAlone16: { itemsSpeedup: Number(ceilingItems.toFixed(2)), cpuSpeedup: Number(ceilingCpu.toFixed(2)) }
    },
    embeddings: "speedup" in embed ? { speedup: Number(embed.speedup.toFixed(2)), identical: embed.identical } : { error: embed.error }
  }
})

const main = Effect.gen(function*() {
  const loadAtStart = os.loadavg().map((n) => Number(n.toFixed(2)))
  const fixtures = sizesOnly ? undefined : yield* fixtureSection
  const sizeRows: Array<SizeRow> = []
  for (const shape of sizeShapes) sizeRows.push(...(yield* benchShape(shape)))
  const load = os.loadavg().map((n) => Number(n.toFixed(2)))
  if (sizeRows.length > 0) {
    console.log(
      `\nAt real sizes (synthetic weights of real shapes, timing only; ${sizeItems} items × ${sizeTokens} tokens, threads 1, best of ${sizeRounds} interleaved rounds, load ${
        loadAtStart.join(" ")
      } at start, ${load.join(" ")} at end; flash attention on (the default) unless "flash off", ×N over its own ×1)\n`
    )
    console.log("model            params  mode                              seconds  items/s  tokens/s  tok/cpu-s  vs ×1  differing")
    for (const row of sizeRows) {
      const base = sizeRows.find((r) =>
        r.model === row.model && r.mode === (row.mode.endsWith(" flash off") ? "hasten ×1 flash off" : "hasten ×1")
      )!
      console.log(
        `${row.model.padEnd(16)} ${(row.params / 1e6).toFixed(0).padStart(5)}M  ${row.mode.padEnd(32)} ${
          row.seconds.toFixed(2).padStart(8)
        } ${row.itemsPerS.toFixed(2).padStart(8)} ${row.tokensPerS.toFixed(0).padStart(9)} ${row.tokensPerCpuS.toFixed(0).padStart(10)} ${
          (row.itemsPerS / base.itemsPerS).toFixed(2).padStart(5)
        }x  ${row.differing ?? "-"}`
      )
    }
  }
  const bySize = sizeShapes.map((shape) => sizeSummary(sizeRows.filter((r) => r.model === `synthetic-${shape}`)))
  console.log(JSON.stringify({
    bench: "batcher",
    loadAverage: { start: loadAtStart, end: load },
    local: { ...fixtures?.local, bySize },
    ...(fixtures === undefined ? {} : { embeddings: fixtures.embeddings })
  }))
})

Effect.runPromise(main.pipe(Effect.provide(ModelPool.layer()))).catch((error) => {
  console.error(error)
  process.exit(1)
})
