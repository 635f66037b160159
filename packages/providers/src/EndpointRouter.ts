/**
 * One logical model served by several endpoints (several OpenAI-compatible servers,
 * regions, local servers): least-outstanding-requests balancing, failover on overload,
 * 5xx, timeouts and transport failures with a cooldown for the failing endpoint, and
 * fallback to other providers when every endpoint failed — built on Effect's
 * `ExecutionPlan`. Needs no SDK: endpoints are any `Llm` layers.
 * @since 0.1.0
 */
import { Completion, CompletionRequest, Facts, Llm, LlmError } from "@hasten/core"
import { Context, Duration, Effect, ExecutionPlan, Layer, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Remote from "./internal/remote.js"

/** One deployment the router may send a request to. @category models @since 0.1.0 */
export interface Endpoint<E = never, R = never> {
  /** A label for `facts.endpoint` and stats (`"vllm-a"`, `"eu-west"`). Must be unique. */
  readonly name: string
  /** The `Llm` serving it, e.g. `OpenAi.layer({ baseURL })`. Built once with the router. */
  readonly layer: Layer.Layer<Llm.Llm, E, R>
  /** The model id this endpoint knows the logical model as (defaults to the request's). */
  readonly model?: string | undefined
}

/** Options for {@link layer}. @category models @since 0.1.0 */
export interface Options<Endpoints extends NonEmptyReadonlyArray<Endpoint<any, any>>, Fallback extends ReadonlyArray<Endpoint<any, any>>> {
  /** The deployments of the logical model, balanced by outstanding requests. */
  readonly endpoints: Endpoints
  /** Other providers, tried in order once every endpoint failed (or is cooling down). */
  readonly fallback?: Fallback | undefined
  /** How long a failing endpoint is skipped (default 30 seconds, or the provider's retry-after when longer). */
  readonly cooldown?: Duration.Input | undefined
  /** Which errors move on to the next endpoint (default {@link isFailover}). Others fail the call at once. */
  readonly failover?: ((error: LlmError.LlmError) => boolean) | undefined
  /** The router's `Llm.name` (default: the first endpoint's). */
  readonly name?: string | undefined
}

/** Where each endpoint stands, for tests, dashboards and benchmarks. @category models @since 0.1.0 */
export interface EndpointStats {
  readonly name: string
  readonly outstanding: number
  readonly served: number
  readonly failures: number
  /** Epoch milliseconds until which the endpoint is skipped; 0 when it is not cooling down. */
  readonly cooldownUntil: number
}

/**
 * The router's view of its endpoints.
 * @category services @since 0.1.0
 */
export class RouterStats extends Context.Service<RouterStats, {
  readonly snapshot: Effect.Effect<ReadonlyArray<EndpointStats>>
}>()("@hasten/providers/Router/RouterStats") {}

/**
 * The default failover classification: overloads, 5xx, timeouts and transport failures
 * (another endpoint may well succeed); invalid requests, auth failures, context overflows
 * and 429s are not (the rate-limit layer above the router owns 429s).
 * @category predicates @since 0.1.0
 */
export const isFailover = (error: LlmError.LlmError): boolean => {
  switch (error.reason._tag) {
    case "Overloaded":
    case "ServerError":
    case "Timeout":
    case "Transport":
      return true
    default:
      return false
  }
}

interface State {
  readonly name: string
  readonly fallback: boolean
  readonly index: number
  outstanding: number
  served: number
  failures: number
  cooldownUntil: number
  context: Context.Context<Llm.Llm>
}

/**
 * Builds the routing `Llm` from already-built endpoint services.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: {
  readonly endpoints: NonEmptyReadonlyArray<{ readonly name: string; readonly llm: Llm.LlmService; readonly model?: string | undefined }>
  readonly fallback?:
    | ReadonlyArray<{ readonly name: string; readonly llm: Llm.LlmService; readonly model?: string | undefined }>
    | undefined
  readonly cooldown?: Duration.Input | undefined
  readonly failover?: ((error: LlmError.LlmError) => boolean) | undefined
  readonly name?: string | undefined
}) {
  const cooldownMillis = Duration.toMillis(Duration.fromInputUnsafe(options.cooldown ?? "30 seconds"))
  const failover = options.failover ?? isFailover
  const names = new Set<string>()
  const states: Array<State> = []
  const all = [
    ...options.endpoints.map((endpoint) => ({ ...endpoint, fallback: false })),
    ...(options.fallback ?? []).map((endpoint) => ({ ...endpoint, fallback: true }))
  ]
  for (const endpoint of all) {
    if (names.has(endpoint.name)) return yield* Effect.die(new Error(`Router: duplicate endpoint name "${endpoint.name}"`))
    names.add(endpoint.name)
    const state: State = {
      name: endpoint.name,
      fallback: endpoint.fallback,
      index: states.length,
      outstanding: 0,
      served: 0,
      failures: 0,
      cooldownUntil: 0,
      context: Context.empty() as Context.Context<Llm.Llm>
    }
    state.context = Context.make(Llm.Llm, track(state, endpoint.llm, endpoint.model))
    states.push(state)
  }
  const primaries = states.filter((state) => !state.fallback)
  const fallbacks = states.filter((state) => state.fallback)
  let turn = 0

  function track(state: State, inner: Llm.LlmService, model: string | undefined): Llm.LlmService {
    const rewrite = (request: CompletionRequest.CompletionRequest) =>
      model === undefined || model === request.model ? request : CompletionRequest.build({ ...request, model })
    const onFailure = (error: LlmError.LlmError) =>
      Effect.flatMap(Remote.now, (now) =>
        Effect.sync(() => {
          state.failures++
          if (failover(error)) {
            const retryAfter = error.retryAfter === undefined ? 0 : Duration.toMillis(error.retryAfter)
            state.cooldownUntil = now + Math.max(cooldownMillis, retryAfter)
          }
        }))
    const onSuccess = Effect.sync(() => {
      state.served++
      state.cooldownUntil = 0
    })
    const begin = Effect.sync(() => {
      state.outstanding++
    })
    const end = Effect.sync(() => {
      state.outstanding--
    })
    return {
      name: inner.name,
      complete: (request) =>
        Effect.gen(function*() {
          const meta = yield* ExecutionPlan.CurrentMetadata
          yield* begin
          const completion = yield* inner.complete(rewrite(request)).pipe(
            Effect.tapError(onFailure),
            Effect.ensuring(end)
          )
          yield* onSuccess
          return Completion.withFacts(completion, { endpoint: state.name, routerAttempts: meta.attempt })
        }),
      stream: (request) =>
        Stream.unwrap(Effect.gen(function*() {
          const meta = yield* ExecutionPlan.CurrentMetadata
          yield* begin
          let first = true
          return inner.stream(rewrite(request)).pipe(
            Stream.map((chunk) => {
              if (!first) return chunk
              first = false
              return new Completion.CompletionChunk({
                ...chunk,
                facts: Facts.merge(chunk.facts ?? Facts.empty, { endpoint: state.name, routerAttempts: meta.attempt })
              })
            }),
            Stream.tapError(onFailure),
            Stream.onExit((exit) => exit._tag === "Success" ? Effect.andThen(end, onSuccess) : end)
          )
        }))
    }
  }

  /** Endpoints in the order to try them now: ready primaries by outstanding requests, fallbacks, then cooling primaries. */
  const order = (now: number): NonEmptyReadonlyArray<State> => {
    const ready = primaries.filter((state) => state.cooldownUntil <= now)
    const cooling = primaries.filter((state) => state.cooldownUntil > now).sort((a, b) => a.cooldownUntil - b.cooldownUntil)
    const offset = turn++
    const size = primaries.length
    ready.sort((a, b) =>
      a.outstanding - b.outstanding || ((a.index - offset) % size + size) % size - ((b.index - offset) % size + size) % size
    )
    return [...ready, ...fallbacks, ...cooling] as unknown as NonEmptyReadonlyArray<State>
  }

  const plan = (now: number) => {
    const [head, ...rest] = order(now)
    return ExecutionPlan.make(
      { provide: head.context },
      ...rest.map((state) => ({ provide: state.context, while: failover }))
    )
  }

  const name = options.name ?? options.endpoints[0].llm.name

  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.flatMap(Remote.now, (now) =>
      Effect.withExecutionPlan(
        Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(request)),
        plan(now) as unknown as ExecutionPlan.ExecutionPlan<
          { provides: Llm.Llm; input: LlmError.LlmError; error: never; requirements: never }
        >
      )).pipe(Effect.withSpan("Router.complete"))

  const stream = (request: CompletionRequest.CompletionRequest) =>
    Stream.unwrap(Effect.map(Remote.now, (now) =>
      Stream.unwrap(Effect.map(Effect.service(Llm.Llm), (llm) => llm.stream(request))).pipe(
        Stream.withExecutionPlan(
          plan(now) as unknown as ExecutionPlan.ExecutionPlan<
            { provides: Llm.Llm; input: LlmError.LlmError; error: never; requirements: never }
          >,
          { preventFallbackOnPartialStream: true }
        )
      )))

  const snapshot: Effect.Effect<ReadonlyArray<EndpointStats>> = Effect.sync(() =>
    states.map((state) => ({
      name: state.name,
      outstanding: state.outstanding,
      served: state.served,
      failures: state.failures,
      cooldownUntil: state.cooldownUntil
    }))
  )

  // one logical model: its identity is the set of endpoints it routes over (cache keys)
  const endpoint = `router:${
    [...options.endpoints, ...(options.fallback ?? [])].map((entry) => entry.llm.endpoint ?? entry.name).join(",")
  }`
  return { llm: { name, complete, stream, endpoint } satisfies Llm.LlmService, stats: { snapshot } }
})

/**
 * An `Llm` that routes each request across `endpoints` (and `fallback`), and a
 * `RouterStats` service describing them.
 * @category layers @since 0.1.0
 */
export const layer = <
  const Endpoints extends NonEmptyReadonlyArray<Endpoint<any, any>>,
  const Fallback extends ReadonlyArray<Endpoint<any, any>> = []
>(
  options: Options<Endpoints, Fallback>
): Layer.Layer<
  Llm.Llm | RouterStats,
  Layer.Error<Endpoints[number]["layer"]> | Layer.Error<Fallback[number]["layer"]>,
  Layer.Services<Endpoints[number]["layer"]> | Layer.Services<Fallback[number]["layer"]>
> =>
  Layer.effectContext(Effect.gen(function*() {
    const build = (endpoint: Endpoint<any, any>) =>
      Effect.map(Layer.build(endpoint.layer), (context) => ({
        name: endpoint.name,
        llm: Context.get(context, Llm.Llm),
        model: endpoint.model
      }))
    const endpoints = yield* Effect.forEach(options.endpoints, build)
    const fallback = yield* Effect.forEach(options.fallback ?? [], build)
    const { llm, stats } = yield* make({
      endpoints: endpoints as unknown as NonEmptyReadonlyArray<(typeof endpoints)[number]>,
      fallback,
      cooldown: options.cooldown,
      failover: options.failover,
      name: options.name
    })
    return Context.make(Llm.Llm, llm).pipe(Context.add(RouterStats, stats))
  }))
