/**
 * Starts the local OpenAI-compatible server (chat, completions, embeddings, models) over
 * a response cache and one local model with N sequences, then load-tests it through the
 * official `openai` SDK: one client at a time vs N concurrent clients, and a repeat of
 * the N-client phase that the cache answers.
 */
import { Cache } from "@hasten/cache"
import { Local, ModelPool } from "@hasten/providers/local"
import { OpenAiRequest, Server } from "@hasten/server"
import { Data, Effect, Layer } from "effect"
import * as Path from "node:path"
import OpenAI from "openai"

export interface LoadTestOptions {
  readonly model: string
  readonly sequences: number
  readonly clients: number
  readonly requests: number
  readonly maxTokens: number
  readonly port: number
  readonly cache: boolean
  readonly log: (line: string) => void
}

export class LoadTestError extends Data.TaggedError("LoadTestError")<{ readonly message: string }> {}

export interface Phase {
  readonly name: string
  readonly clients: number
  readonly requests: number
  readonly seconds: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly outputTokens: number
  readonly tokensPerS: number
}

const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

const subjects = ["a dog", "a boat", "the moon", "a garden", "a red kite", "a small town", "a bakery", "the rain"]

/** Runs `requests` chat completions with `clients` workers; prompts are distinct per `tag`. */
const phase = (client: OpenAI, model: string, name: string, tag: string, clients: number, requests: number, maxTokens: number) =>
  Effect.promise(async (): Promise<Phase> => {
    const latencies: Array<number> = []
    let outputTokens = 0
    let next = 0
    const start = performance.now()
    const worker = async () => {
      while (next < requests) {
        const index = next++
        const begin = performance.now()
        const response = await client.chat.completions.create({
          model,
          messages: [{ role: "user", content: `${tag} ${index}: a story about ${subjects[index % subjects.length]}` }],
          max_tokens: maxTokens,
          temperature: 0
        })
        latencies.push(performance.now() - begin)
        outputTokens += response.usage?.completion_tokens ?? 0
      }
    }
    await Promise.all(Array.from({ length: clients }, worker))
    const seconds = (performance.now() - start) / 1000
    return {
      name,
      clients,
      requests,
      seconds,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      outputTokens,
      tokensPerS: outputTokens / seconds
    }
  })

export const run = (options: LoadTestOptions) =>
  Effect.gen(function*() {
    const modelPath = yield* Local.resolveModelPath(options.model).pipe(
      Effect.mapError((error) => new LoadTestError({ message: `model not found: ${error.reason.description}` }))
    )
    const Model = Local.layerWithPool({
      model: modelPath,
      sequences: options.sequences,
      threads: 1,
      contextSize: 256,
      chatTemplate: "none"
    })
    // the served model: the cache (completions and embeddings) over the local model
    const Cached = Layer.merge(
      Cache.layer({ store: "memory", enabled: options.cache, namespace: "local-server" }),
      Cache.layerEmbedder({ store: "memory", enabled: options.cache, namespace: "local-server" })
    ).pipe(Layer.provide(Model), Layer.provide(ModelPool.layer()))
    const Stack = Server.layerReady({
      port: options.port,
      models: [{
        id: Path.basename(modelPath).replace(/\.gguf$/i, ""),
        layer: Cached,
        capabilities: OpenAiRequest.localCapabilities,
        ownedBy: "local"
      }]
    })
    return yield* Effect.gen(function*() {
      const server = yield* Server.Server
      options.log(`serving ${modelPath} at ${server.baseUrl} (${options.sequences} sequences, cache ${options.cache ? "on" : "off"})`)
      const client = new OpenAI({ baseURL: server.baseUrl, apiKey: "local", maxRetries: 0 })
      const models = yield* Effect.promise(() => client.models.list())
      const model = models.data[0]!.id
      const embedding = yield* Effect.promise(() => client.embeddings.create({ model, input: ["a dog", "a boat"] }))
      options.log(
        `/v1/models: ${models.data.map((m) => m.id).join(", ")}; /v1/embeddings: ${embedding.data.length} vectors of ${
          embedding.data[0]!.embedding.length
        } dimensions`
      )
      const single = yield* phase(client, model, "1 client", "solo", 1, options.requests, options.maxTokens)
      const concurrent = yield* phase(
        client,
        model,
        `${options.clients} clients`,
        "many",
        options.clients,
        options.requests,
        options.maxTokens
      )
      const repeat = yield* phase(
        client,
        model,
        `${options.clients} clients, repeated`,
        "many",
        options.clients,
        options.requests,
        options.maxTokens
      )
      const phases = [single, concurrent, repeat]
      options.log("")
      options.log("phase                     requests  seconds   p50 ms   p99 ms  tokens/s")
      for (const p of phases) {
        options.log(
          `${p.name.padEnd(25)} ${String(p.requests).padStart(8)} ${p.seconds.toFixed(2).padStart(8)} ${p.p50Ms.toFixed(1).padStart(8)} ${
            p.p99Ms.toFixed(1).padStart(8)
          } ${p.tokensPerS.toFixed(0).padStart(9)}`
        )
      }
      const gain = concurrent.tokensPerS / single.tokensPerS
      options.log("")
      options.log(
        `request-level concurrency: ${options.clients} clients give ${
          gain.toFixed(2)
        }x the tokens/s of one client at a time (one model load, ${options.sequences} sequences)`
      )
      if (options.cache) {
        options.log(
          `cache: the repeated phase took ${(repeat.seconds * 1000).toFixed(0)} ms for ${repeat.requests} requests (p50 ${
            repeat.p50Ms.toFixed(1)
          } ms)`
        )
      }
      return { phases, gain, served: server.requests() }
    }).pipe(Effect.provide(Stack))
  })
