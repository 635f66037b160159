import { CompletionRequest, Llm, type LlmError, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, Layer, ManagedRuntime } from "effect"

const pair = await SyntheticModel.pair({ target: "42M" })
const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
const pool = Layer.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
const tokenModel = (path: string, leanGreedy: boolean): Layer.Layer<TokenModel.TokenModel, LlmError.LlmError> =>
  Layer.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(
    Layer.provide(Local.layerWithPool({ model: path, contextSize: 256, sequences: 1, threads: 1, leanGreedy })),
    Layer.provide(pool)
  ) as never
const configs: Record<string, Layer.Layer<Llm.Llm, unknown>> = {
  engine: Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 0 }).pipe(Layer.provide(tokenModel(pair.target.path, true))),
  decoder: Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 0 }).pipe(Layer.provide(tokenModel(pair.target.path, false))),
  engineSpec: Speculative.layer({ drafter: Drafter.modelLayer(tokenModel(pair.draft.path, true)) }).pipe(
    Layer.provide(tokenModel(pair.target.path, true))
  ),
  decoderSpec: Speculative.layer({ drafter: Drafter.modelLayer(tokenModel(pair.draft.path, false)) }).pipe(
    Layer.provide(tokenModel(pair.target.path, false))
  )
}
const names = Object.keys(configs)
const sums: Record<string, { tokens: number; wall: number; cpu: number }> = {}
for (let round = 0; round < Number(process.argv[2] ?? 6); round++) {
  for (const name of round % 2 === 0 ? names : names.toReversed()) {
    const runtime = ManagedRuntime.make(configs[name]!)
    const llm = await runtime.runPromise(Effect.service(Llm.Llm))
    await runtime.runPromise(
      llm.complete(CompletionRequest.makeUnsafe({ model: "t", messages: [], prompt: "Hi", temperature: 0, maxTokens: 2 }))
    )
    const start = performance.now()
    const cpu0 = process.cpuUsage()
    const out = await runtime.runPromise(
      llm.complete(CompletionRequest.makeUnsafe({ model: "t", messages: [], prompt: "Once upon a time", temperature: 0, maxTokens: 128 }))
    )
    const cpu = process.cpuUsage(cpu0)
    const s = (sums[name] ??= { tokens: 0, wall: 0, cpu: 0 })
    s.tokens += out.usage.outputTokens
    s.wall += (performance.now() - start) / 1000
    s.cpu += (cpu.user + cpu.system) / 1e6
    await runtime.dispose()
  }
}
console.log(
  Object.entries(sums).map(([name, s]) => `${name} ${(s.tokens / s.wall).toFixed(1)} tok/s (${(s.tokens / s.cpu).toFixed(1)} per cpu s)`)
    .join(", ")
)
await poolRuntime.dispose()
