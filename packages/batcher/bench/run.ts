// Batcher benchmark: sequential vs batched local inference (items/s, tokens/s, identical
// greedy output) on the fixture models, and embeddings one-per-call vs merged against the
// testkit simulator with per-call latency. Table for people, one JSON line last.
// Run: pnpm --filter @hasten/batcher bench [--quick]
import { Batcher } from "@hasten/batcher"
import { CompletionRequest, Embedder, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer, Redacted } from "effect"
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp"

const quick = process.argv.includes("--quick")
const itemCount = quick ? 32 : 64
const maxTokens = quick ? 24 : 32
const widths = quick ? [4, 8, 16] : [4, 8, 16, 32]

const subjects = ["a dog", "a red ball", "the park", "a big tree", "a little bird", "the sea", "a cake", "a toy car"]
const prompts = Array.from({ length: itemCount }, (_, i) => `Story ${i}: Once upon a time there was ${subjects[i % subjects.length]} and`)
const request = (prompt: string, model: string) => CompletionRequest.makeUnsafe({ model, messages: [], prompt, temperature: 0, maxTokens })

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

const main = Effect.gen(function*() {
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
  console.log(JSON.stringify({
    bench: "batcher",
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
  }))
})

Effect.runPromise(main.pipe(Effect.provide(ModelPool.layer()))).catch((error) => {
  console.error(error)
  process.exit(1)
})
