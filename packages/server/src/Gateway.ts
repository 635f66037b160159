/**
 * From a plan (`ServerConfig`) to served models: each model id's provider — a local GGUF
 * model, one upstream, or several upstreams routed by `@hasten/providers/router`
 * (least-outstanding balancing, failover with cooldown) — under its middleware, built with
 * `Llm.stack`: cache → batcher → perf logs → rate limit → provider. {@link serve} runs the
 * whole gateway as `hasten-serve` does.
 * @since 0.1.0
 */
import { Batcher } from "@hasten/batcher"
import { Cache } from "@hasten/cache"
import { CompletionRequest, Embedder, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { Router } from "@hasten/providers/router"
import { RateLimit } from "@hasten/rate-limit"
import { Cause, Config, Effect, Layer, Option, Redacted } from "effect"
import * as OpenAiRequest from "./OpenAiRequest.js"
import * as Server from "./Server.js"
import type * as ServerConfig from "./ServerConfig.js"
import { ServerError, StartError } from "./ServerError.js"

const startError = (description: string) => new ServerError({ reason: new StartError({ description }) })

/** Reads an upstream's API key from the environment as `Redacted`; a missing required key names the variable. */
const apiKeyOf = (upstream: ServerConfig.Upstream): Effect.Effect<Redacted.Redacted<string> | undefined, ServerError> => {
  // Anthropic always needs a key; OpenAI's own API too, an OpenAI-compatible server by URL may not
  const vendorDefault = upstream.provider === "anthropic"
    ? "ANTHROPIC_API_KEY"
    : upstream.url === undefined
    ? "OPENAI_API_KEY"
    : undefined
  const variable = upstream.apiKeyEnv ?? vendorDefault
  if (variable === undefined) return Effect.succeed(undefined)
  return Effect.gen(function*() {
    const key = yield* Config.option(Config.Redacted(variable)).pipe(
      Effect.mapError(() => startError(`${variable} is not a valid string (upstream ${describeUpstream(upstream)})`))
    )
    if (Option.isNone(key)) return yield* startError(`${variable} is not set: the API key of upstream ${describeUpstream(upstream)}`)
    return key.value
  })
}

const describeUpstream = (upstream: ServerConfig.Upstream): string =>
  `${upstream.name ?? upstream.provider ?? "openai"}${upstream.url !== undefined ? `@${upstream.url}` : ""}:${upstream.model}`

const nameOf = (upstream: ServerConfig.Upstream): string => {
  if (upstream.name !== undefined) return upstream.name
  if (upstream.url !== undefined) return new URL(upstream.url).host
  return upstream.provider ?? "openai"
}

/** The provider layer of one upstream. */
const upstreamLayer = (upstream: ServerConfig.Upstream): Layer.Layer<Llm.Llm, ServerError> =>
  Layer.unwrap(Effect.gen(function*() {
    const apiKey = yield* apiKeyOf(upstream)
    const name = nameOf(upstream)
    if (upstream.provider === "anthropic") {
      if (apiKey === undefined) return yield* startError(`upstream ${describeUpstream(upstream)} needs apiKeyEnv`)
      const { Anthropic } = yield* Effect.promise(() => import("@hasten/providers/anthropic"))
      return Anthropic.layer({
        apiKey,
        model: upstream.model,
        ...(upstream.url !== undefined ? { baseURL: upstream.url } : {}),
        ...(upstream.timeoutMs !== undefined ? { timeout: upstream.timeoutMs } : {})
      })
    }
    const [{ OpenAi }, Upstream] = yield* Effect.promise(() =>
      Promise.all([import("@hasten/providers/openai"), import("./internal/upstream.js")])
    )
    // the SDK for streams (and embeddings); a lean node:http client for complete
    const sdk = OpenAi.make({
      name,
      model: upstream.model,
      ...(upstream.compat !== undefined ? { compat: upstream.compat } : {}),
      ...(apiKey !== undefined ? { apiKey } : {}),
      ...(upstream.url !== undefined ? { baseURL: upstream.url } : {}),
      ...(upstream.timeoutMs !== undefined ? { timeout: upstream.timeoutMs } : {})
    })
    return Layer.succeed(
      Llm.Llm,
      Upstream.make({ name, baseURL: upstream.url, apiKey, timeout: upstream.timeoutMs, sdk: sdk.llm, compat: upstream.compat })
    )
  }))

/**
 * Sends requests for the served id to the upstream under its own model id. `model` is a plain
 * string field without checks, so the copy of an already checked request skips the
 * constructor's validation (a schema pass per call); a request sent again (a server's repeated
 * body) reuses its copy.
 */
const renamed = (model: string): Layer.Layer<Llm.Llm, never, Llm.Llm> =>
  Llm.middleware((inner) => {
    const copies = new WeakMap<CompletionRequest.CompletionRequest, CompletionRequest.CompletionRequest>()
    const rename = (request: CompletionRequest.CompletionRequest): CompletionRequest.CompletionRequest => {
      if (request.model === model) return request
      let copy = copies.get(request)
      if (copy === undefined) {
        copy = Object.assign(Object.create(Object.getPrototypeOf(request)) as CompletionRequest.CompletionRequest, request, { model })
        copies.set(request, copy)
      }
      return copy
    }
    return Effect.succeed<Llm.LlmService>({
      name: inner.name,
      complete: (request) => inner.complete(rename(request)),
      stream: (request) => inner.stream(rename(request))
    })
  })

/** The provider of a model: a local model, one upstream, or a router over several. */
const providerOf = (id: string, model: ServerConfig.Model) => {
  if (model.local !== undefined) {
    const local = model.local
    return {
      capabilities: OpenAiRequest.localCapabilities,
      layer: Layer.unwrap(Effect.map(Effect.promise(() => import("@hasten/providers/local")), ({ Local }) =>
        Local.layer({
          model: local.path,
          id,
          sequences: local.sequences ?? 1,
          threads: local.threads ?? 1,
          ...(local.contextSize !== undefined ? { contextSize: local.contextSize } : {}),
          ...(local.gpu !== undefined ? { gpu: local.gpu } : {})
        }))) as Layer.Layer<Llm.Llm | Embedder.Embedder, unknown>
    }
  }
  const upstreams = model.upstreams ?? []
  const capabilities = OpenAiRequest.intersect(
    upstreams.map((upstream) =>
      upstream.provider === "anthropic" ? OpenAiRequest.anthropicCapabilities : OpenAiRequest.openAiUpstreamCapabilities
    )
  )
  if (upstreams.length === 1) {
    const upstream = upstreams[0]!
    return { capabilities, layer: Layer.provide(renamed(upstream.model), upstreamLayer(upstream)) as Layer.Layer<Llm.Llm, unknown> }
  }
  const names = new Map<string, number>()
  const endpoints = upstreams.map((upstream) => {
    // endpoint names must be unique: a second "openai" becomes "openai#2"
    const base = nameOf(upstream)
    const count = (names.get(base) ?? 0) + 1
    names.set(base, count)
    return { name: count === 1 ? base : `${base}#${count}`, layer: upstreamLayer(upstream), model: upstream.model }
  })
  return {
    capabilities,
    layer: Router.layer({
      endpoints: endpoints as unknown as readonly [(typeof endpoints)[number], ...Array<(typeof endpoints)[number]>],
      ...(model.cooldownMs !== undefined ? { cooldown: model.cooldownMs } : {})
    }) as Layer.Layer<Llm.Llm, unknown>
  }
}

const cacheLayer = (id: string, cache: string): Layer.Layer<Llm.Llm, never, Llm.Llm> | undefined => {
  if (cache === "off") return undefined
  if (cache === "memory") return Cache.layer({ store: "memory", namespace: id })
  // a memory LRU in front of the shared store: hot entries never leave the process
  if (cache === "sqlite") return Cache.layer({ store: "sqlite", tier: true, namespace: id })
  if (cache.startsWith("sqlite:")) {
    return Cache.layer({ store: "sqlite", tier: true, path: cache.slice("sqlite:".length), namespace: id })
  }
  return Cache.layer({ store: "redis", tier: true, redisUrl: Redacted.make(cache), namespace: id })
}

/** About four characters a token: the estimate when no token budget needs a real count. */
const roughTokens = (request: CompletionRequest.CompletionRequest) =>
  Effect.succeed(Math.ceil(CompletionRequest.promptText(request).length / 4))

/** The middleware layers of a model, outermost first. */
const middlewareOf = (id: string, middleware: ServerConfig.Middleware, maxInFlight: number) => {
  const layers: Array<Layer.Layer<Llm.Llm, never, any>> = []
  const cache = middleware.cache !== undefined ? cacheLayer(id, middleware.cache) : undefined
  if (cache !== undefined) layers.push(cache)
  if (middleware.batch !== undefined) {
    layers.push(Batcher.layer({
      maxBatchSize: middleware.batch.size,
      ...(middleware.batch.timeoutMs !== undefined ? { window: `${middleware.batch.timeoutMs} millis` as const } : {})
    }))
  }
  if (middleware.perfLogs === true) layers.push(PerfLogger.layer)
  const limit = middleware.rateLimit
  if (limit !== undefined) {
    // Only the budgets given apply: rate-limit's seed defaults for unset ones (2 in flight,
    // 2 requests/s, 120k tokens/min until a provider states its limits) would throttle a gateway.
    layers.push(RateLimit.layer({
      requestsPerSecond: limit.requestsPerSecond ?? Infinity,
      ...(limit.requestsPerMinute !== undefined ? { requestsPerMinute: limit.requestsPerMinute } : {}),
      tokensPerMinute: limit.tokensPerMinute ?? Infinity,
      maxConcurrency: limit.maxConcurrency ?? maxInFlight,
      // without a token budget the estimate only feeds statistics: characters / 4 instead of
      // a BPE tokenizer (~0.1 ms a call)
      ...(limit.tokensPerMinute === undefined ? { estimator: roughTokens } : {})
    }))
  }
  return layers
}

/** The served id of a model entry of the plan. @category utils @since 0.1.0 */
export const idOf = (model: ServerConfig.Model): string => {
  if (model.id !== undefined) return model.id
  if (model.local !== undefined) {
    const file = model.local.path.split(/[\\/]/).pop() ?? model.local.path
    return file.replace(/\.gguf$/i, "")
  }
  return model.upstreams![0]!.model
}

/**
 * The served models of a plan: each model's provider (or router) under its middleware (the
 * plan's, overridden per model). Needs a `PerfLogger` when a model has perf logs on.
 * @category constructors @since 0.1.0
 */
export const servedModels = (plan: ServerConfig.Plan): ReadonlyArray<Server.ServedModel<PerfLogger.PerfLogger>> =>
  plan.models.map((model) => {
    const id = idOf(model)
    const provider = providerOf(id, model)
    const middleware = middlewareOf(id, { ...plan.middleware, ...model.middleware }, plan.maxInFlight ?? 256)
    const stack = Llm.stack(provider.layer as Layer.Layer<Llm.Llm, unknown>, ...middleware)
    // a local model's Embedder is served beside the stack (the middleware wraps the Llm only)
    const layer = model.local !== undefined
      ? Layer.merge(
        stack,
        Layer.effect(Embedder.Embedder, Effect.service(Embedder.Embedder)).pipe(
          Layer.provide(provider.layer as unknown as Layer.Layer<Embedder.Embedder, unknown>)
        )
      )
      : stack
    return {
      id,
      layer: layer as Layer.Layer<Llm.Llm, unknown, PerfLogger.PerfLogger>,
      capabilities: provider.capabilities,
      ownedBy: model.local !== undefined ? "local" : (model.upstreams ?? []).map(nameOf).join(",")
    }
  })

/** Where the gateway listens, printed once it accepts connections. @category models @since 0.1.0 */
export interface Listening {
  readonly url: string
  readonly baseUrl: string
  readonly models: ReadonlyArray<string>
}

/**
 * How the server's perf logs reach `events.jsonl`: the 100 ms group commit by default
 * (`buffered`). A server answers calls faster than one per 10 ms, where perf-logger's own
 * 10 ms default promises only "the last 10 ms of events" on SIGKILL anyway, and each of its
 * writes lands on a request in flight: behind `hasten-serve` the 10 ms window added 23–43 µs
 * to the p50 of every request, the 100 ms one 5–28 µs (six interleaved runs each). SIGTERM,
 * exit and a crash with an exception still write everything. `HASTEN_PERF_FLUSH` (`group`,
 * `event`, `buffered`) chooses another.
 */
const perfFlush = PerfLogger.flushConfig("buffered")

/**
 * The gateway of a plan as a layer: the server over {@link servedModels}, with a perf-logger
 * run (under `perfLogsDir`) when a model logs.
 * @category layers @since 0.1.0
 */
export const layer = (
  plan: ServerConfig.Plan,
  options: { readonly apiKeys?: ReadonlyArray<Redacted.Redacted<string>>; readonly onRequest?: Server.Options["onRequest"] } = {}
): Layer.Layer<Server.Server, ServerError> => {
  const models = servedModels(plan)
  const perfLogs = plan.middleware?.perfLogs === true || plan.models.some((model) => model.middleware?.perfLogs === true)
  const server = Server.layer({
    models,
    ...(plan.port !== undefined ? { port: plan.port } : {}),
    ...(plan.host !== undefined ? { host: plan.host } : {}),
    ...(plan.maxInFlight !== undefined ? { maxInFlight: plan.maxInFlight } : {}),
    ...(plan.maxQueue !== undefined ? { maxQueue: plan.maxQueue } : {}),
    ...(plan.maxBodyBytes !== undefined ? { maxBodyBytes: plan.maxBodyBytes } : {}),
    ...(plan.shutdownTimeoutMs !== undefined ? { shutdownTimeout: plan.shutdownTimeoutMs } : {}),
    ...(options.apiKeys !== undefined ? { apiKeys: options.apiKeys } : {}),
    ...(options.onRequest !== undefined ? { onRequest: options.onRequest } : {})
  })
  return perfLogs
    ? server.pipe(
      Layer.provide(
        Layer.unwrap(Effect.map(perfFlush, (flush) => PerfLogger.layerRun({ dir: plan.perfLogsDir ?? "performance_logs", flush }))).pipe(
          Layer.catchCause((cause) => Layer.effect(PerfLogger.PerfLogger, Effect.fail(startError(`perf logs: ${Cause.pretty(cause)}`))))
        )
      )
    )
    // no model uses PerfLogger.layer, so nothing asks for the service
    : server as unknown as Layer.Layer<Server.Server, ServerError>
}

/**
 * Runs the gateway until interrupted (SIGTERM: the scope closes, in-flight requests drain):
 * `onListening` once it accepts connections, `onReady` once every model is loaded; fails
 * when it cannot listen or a model cannot be loaded.
 * @category constructors @since 0.1.0
 */
export const serve = (
  cli: ServerConfig.Cli,
  callbacks: {
    readonly onListening: (info: Listening) => void
    readonly onReady?: () => void
    readonly onRequest?: Server.Options["onRequest"]
  }
): Effect.Effect<never, ServerError> =>
  Effect.gen(function*() {
    const server = yield* Server.Server
    callbacks.onListening({ url: server.url, baseUrl: server.baseUrl, models: cli.plan.models.map(idOf) })
    yield* server.ready
    callbacks.onReady?.()
    return yield* Effect.never
  }).pipe(
    Effect.provide(layer(cli.plan, {
      apiKeys: cli.apiKeys,
      ...(callbacks.onRequest !== undefined ? { onRequest: callbacks.onRequest } : {})
    }))
  )
