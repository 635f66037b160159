/**
 * Typed facts Hasten's own layers report about a call — retries and waits, batch size,
 * queue wait, speculative acceptance, the endpoint that served it — so each layer writes
 * them by name and perf-logger reads them without guessing. Facts known after a call
 * travel up on `Completion.facts`; facts a layer knows before it calls the layer below
 * (the batcher's batch size and queue wait) travel down through {@link CurrentFacts}.
 * @since 0.2.0
 */
import { Context, Effect, Schema } from "effect"
import { dual } from "effect/Function"

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Millis = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))

/**
 * Speculative-decoding statistics of one request, as `@hasten/speculative` reports them
 * (`Speculative.RequestStats`); only `acceptanceRate` is required, so other backends can
 * report what they know.
 * @category models @since 0.2.0
 */
export const Speculative = Schema.Struct({
  /** The drafter's name (`"ngram"`, `"model"`, …). */
  drafter: Schema.optionalKey(Schema.String),
  /** acceptedTokens / draftTokens. */
  acceptanceRate: Schema.Finite,
  /** Mean number of drafts accepted per verification step that had drafts. */
  meanAcceptedLength: Schema.optionalKey(Schema.Finite),
  /** perPosition[i]: acceptance rate of the i-th draft of a step, given the ones before it were accepted. */
  perPosition: Schema.optionalKey(Schema.Array(Schema.Finite)),
  /** Target forward passes. */
  targetEvaluations: Schema.optionalKey(Count),
  /** Output tokens per target evaluation (1 for plain decoding). */
  tokensPerEvaluation: Schema.optionalKey(Schema.Finite),
  draftTokens: Schema.optionalKey(Count),
  acceptedTokens: Schema.optionalKey(Count),
  speculativeSteps: Schema.optionalKey(Count),
  plainSteps: Schema.optionalKey(Count),
  bonusSteps: Schema.optionalKey(Count),
  rejectionSteps: Schema.optionalKey(Count),
  /** Mean γ requested from the drafter over speculative steps. */
  meanGamma: Schema.optionalKey(Schema.Finite)
})
/** @category models @since 0.2.0 */
export type Speculative = typeof Speculative.Type

/**
 * A local model's memory, from the model itself: weights, KV cache (bytes per token × the
 * context's cells) and the rest of its context (output buffers, compute graph, as
 * node-llama-cpp estimates them), in bytes.
 * @category models @since 0.2.0
 */
export const ModelMemory = Schema.Struct({
  /** The model id. */
  model: Schema.String,
  weightsBytes: Count,
  kvCacheBytes: Count,
  computeBytes: Count,
  /** Tokens per sequence. */
  contextSize: Count,
  sequences: Count
})
/** @category models @since 0.2.0 */
export type ModelMemory = typeof ModelMemory.Type

/**
 * Every fact a Hasten layer reports about a call; each is optional and written by the
 * layer named beside it.
 * @category models @since 0.2.0
 */
export const Facts = Schema.Struct({
  /** rate-limit: attempts after the first. */
  retries: Schema.optionalKey(Count),
  /** rate-limit: time waiting for a budget (tokens, concurrency, the lobby) before attempts. */
  rateLimitWaitMillis: Schema.optionalKey(Millis),
  /** rate-limit: time sleeping between attempts (the retry schedule's delays). */
  backoffMillis: Schema.optionalKey(Millis),
  /** rate-limit: attempts cut short by the attempt deadline. */
  timeouts: Schema.optionalKey(Count),
  /** rate-limit: attempts answered 429 (retried) before this answer. */
  http429: Schema.optionalKey(Count),
  /** batcher: items in the batch this call was dispatched with. */
  batchSize: Schema.optionalKey(Count),
  /** batcher: time in the batch window before dispatch; local provider: time waiting for a free sequence. */
  queueWaitMillis: Schema.optionalKey(Millis),
  /** speculative: acceptance statistics of the request. */
  speculative: Schema.optionalKey(Speculative),
  /** EndpointRouter: the endpoint that served the call. */
  endpoint: Schema.optionalKey(Schema.String),
  /** EndpointRouter: which try of the failover plan served it (1 = the first endpoint). */
  routerAttempts: Schema.optionalKey(Count),
  /** local (`contextOverflow: "truncate"`): prompt tokens dropped so the prompt fits the context window. */
  droppedPromptTokens: Schema.optionalKey(Count),
  /** local (`contextOverflow: "shift"`): whether the context was shifted during generation. */
  contextShifted: Schema.optionalKey(Schema.Boolean),
  /** Replicate: the prediction's id. */
  predictionId: Schema.optionalKey(Schema.String),
  /** Replicate: status polls after the prediction was created (0 when it finished within the wait). */
  polls: Schema.optionalKey(Count),
  /** Local provider: the memory of the model that served the call (perf-logger reports it per model). */
  modelMemory: Schema.optionalKey(ModelMemory)
})
/** @category models @since 0.2.0 */
export type Facts = typeof Facts.Type

/** No facts. @category constructors @since 0.2.0 */
export const empty: Facts = {}

const isEmpty = (facts: Facts): boolean => {
  for (const _ in facts) return false
  return true
}

/**
 * Combines two sets of facts; where both name a fact, `that` wins (a layer merges what
 * it knows over what came from below, so the outermost writer wins).
 * @category combinators @since 0.2.0
 */
export const merge: {
  (that: Facts): (self: Facts) => Facts
  (self: Facts, that: Facts): Facts
} = dual(2, (self: Facts, that: Facts): Facts => isEmpty(that) ? self : isEmpty(self) ? that : { ...self, ...that })

/**
 * Facts the layers above the current call know about the request it serves (the batcher's
 * batch size and queue wait). A layer sets them with {@link annotate} around its call to
 * the layer below; perf-logger reads them, so it records facts a layer above it knew.
 * @category services @since 0.2.0
 */
export const CurrentFacts = Context.Reference<Facts>("@hasten/core/Facts/CurrentFacts", {
  defaultValue: () => empty
})

/**
 * Runs `effect` with `facts` merged into {@link CurrentFacts}, for the layers below.
 * @category combinators @since 0.2.0
 */
export const annotate: {
  (facts: Facts): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, facts: Facts): Effect.Effect<A, E, R>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, facts: Facts): Effect.Effect<A, E, R> =>
    isEmpty(facts) ? self : Effect.updateService(self, CurrentFacts, (current) => merge(current, facts))
)
