/**
 * What a completion returns: the text, why it stopped, token usage as the provider
 * reported it, timings, and the provider's parsed rate-limit headers.
 * @since 0.1.0
 */
import { Effect, Schema, Stream } from "effect"
import { dual } from "effect/Function"
import * as Facts from "./Facts.js"
import { RateLimitInfo } from "./RateLimitHeaders.js"

/** Why generation stopped. @category models @since 0.1.0 */
export const FinishReason = Schema.Literals(["stop", "length", "content_filter", "tool_calls", "error", "unknown"])
/** @category models @since 0.1.0 */
export type FinishReason = typeof FinishReason.Type

/** Token counts as the provider reported them (or the local tokenizer counted them). @category models @since 0.1.0 */
export const Usage = Schema.Struct({
  inputTokens: Schema.Number,
  outputTokens: Schema.Number,
  /** Input tokens served from the provider's prompt cache (OpenAI cached, Anthropic cache read). */
  cachedInputTokens: Schema.optionalKey(Schema.Number),
  /** Input tokens written to the provider's prompt cache (Anthropic cache creation). */
  cacheWriteInputTokens: Schema.optionalKey(Schema.Number),
  /** True when the counts are an estimate rather than provider-reported. */
  estimated: Schema.optionalKey(Schema.Boolean)
})
/** @category models @since 0.1.0 */
export type Usage = typeof Usage.Type

/** Wall-clock instants in epoch milliseconds, read through Effect's `Clock`. @category models @since 0.1.0 */
export const Timing = Schema.Struct({
  start: Schema.Number,
  /** When the first output token (or the whole body, when not streaming) arrived. */
  firstToken: Schema.optionalKey(Schema.Number),
  end: Schema.Number
})
/** @category models @since 0.1.0 */
export type Timing = typeof Timing.Type

/**
 * One alternative at a generated position: the token's text, its natural-log probability,
 * and its UTF-8 bytes (a token may be part of a multi-byte character).
 * @category models @since 0.3.0
 */
export const TopLogprob = Schema.Struct({
  token: Schema.String,
  logprob: Schema.Number,
  bytes: Schema.optionalKey(Schema.Array(Schema.Int))
})
/** @category models @since 0.3.0 */
export type TopLogprob = typeof TopLogprob.Type

/**
 * One generated token with its log probability and, when `topLogprobs` was asked for,
 * the most likely alternatives at its position, most likely first (OpenAI's shape).
 * @category models @since 0.3.0
 */
export const TokenLogprob = Schema.Struct({
  token: Schema.String,
  logprob: Schema.Number,
  bytes: Schema.optionalKey(Schema.Array(Schema.Int)),
  topLogprobs: Schema.optionalKey(Schema.Array(TopLogprob))
})
/** @category models @since 0.3.0 */
export type TokenLogprob = typeof TokenLogprob.Type

/**
 * A finished completion.
 * @category models @since 0.1.0
 */
export class Completion extends Schema.Class<Completion>("@hasten/core/Completion")({
  text: Schema.String,
  finishReason: FinishReason,
  usage: Usage,
  model: Schema.String,
  provider: Schema.String,
  timing: Timing,
  /** Parsed provider rate-limit headers from the response that produced this completion. */
  rateLimit: Schema.optionalKey(RateLimitInfo),
  /** Set by the cache middleware: true when served from the cache. */
  cached: Schema.optionalKey(Schema.Boolean),
  /** Typed facts Hasten's layers report about the call (retries, batch size, speculative statistics, …). */
  facts: Schema.optionalKey(Facts.Facts),
  /** Per-token log probabilities of the output, when the request set `logprobs`. */
  logprobs: Schema.optionalKey(Schema.Array(TokenLogprob)),
  /** Provider-specific free-form data; Hasten's own layers report in `facts`. */
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
}) {}

/**
 * One piece of a streamed completion. `text` is the delta; the last chunk carries
 * `finishReason` and `usage`.
 * @category models @since 0.1.0
 */
export class CompletionChunk extends Schema.Class<CompletionChunk>("@hasten/core/CompletionChunk")({
  text: Schema.String,
  /** Output tokens in this chunk, when the backend knows (local models: exact). */
  tokens: Schema.optionalKey(Schema.Number),
  finishReason: Schema.optionalKey(FinishReason),
  usage: Schema.optionalKey(Usage),
  model: Schema.optionalKey(Schema.String),
  rateLimit: Schema.optionalKey(RateLimitInfo),
  cached: Schema.optionalKey(Schema.Boolean),
  /** Facts about the call; `fromStream` merges those of every chunk, later chunks winning. */
  facts: Schema.optionalKey(Facts.Facts),
  /** Log probabilities of the tokens in this chunk, when the request set `logprobs`; `fromStream` concatenates them. */
  logprobs: Schema.optionalKey(Schema.Array(TokenLogprob)),
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
}) {}

/**
 * The completion with `facts` merged over the facts it already carries (`facts` win).
 * @category combinators @since 0.2.0
 */
export const withFacts: {
  (facts: Facts.Facts): (self: Completion) => Completion
  (self: Completion, facts: Facts.Facts): Completion
} = dual(
  2,
  (self: Completion, facts: Facts.Facts): Completion => {
    // `self` is a checked Completion and `facts` typed Facts: the copy is valid by
    // construction, so it skips the constructor's checks (~8 µs a call, paid by every layer
    // that adds facts on every call). Same class, same fields, same equality.
    const copy = Object.assign(Object.create(Object.getPrototypeOf(self)) as Completion, self)
    ;(copy as { facts: Facts.Facts }).facts = self.facts === undefined ? facts : Facts.merge(self.facts, facts)
    return copy
  }
)

/** Zero usage. @category constructors @since 0.1.0 */
export const emptyUsage: Usage = { inputTokens: 0, outputTokens: 0 }

/**
 * Folds a stream of chunks into one `Completion`: text concatenated once at the end
 * (no quadratic string building), usage and finish reason from the last chunks that
 * carry them, `firstToken` when the first non-empty chunk arrived, facts and metadata
 * merged over all chunks.
 * @category constructors @since 0.1.0
 */
export const fromStream = <E, R>(
  stream: Stream.Stream<CompletionChunk, E, R>,
  info: { readonly model: string; readonly provider: string }
): Effect.Effect<Completion, E, R> =>
  Effect.gen(function*() {
    const start = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const parts: Array<string> = []
    let firstToken: number | undefined
    let finishReason: FinishReason = "unknown"
    let usage: Usage | undefined
    let model = info.model
    let rateLimit: RateLimitInfo | undefined
    let cached: boolean | undefined
    let facts: Facts.Facts | undefined
    let metadata: Record<string, unknown> | undefined
    let logprobs: Array<TokenLogprob> | undefined
    let outputTokens = 0
    yield* Stream.runForEach(stream, (chunk) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          if (chunk.text.length > 0) {
            if (firstToken === undefined) firstToken = clock.currentTimeMillisUnsafe()
            parts.push(chunk.text)
          }
          if (chunk.tokens !== undefined) outputTokens += chunk.tokens
          if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
          if (chunk.usage !== undefined) usage = chunk.usage
          if (chunk.model !== undefined) model = chunk.model
          if (chunk.rateLimit !== undefined) rateLimit = chunk.rateLimit
          if (chunk.cached !== undefined) cached = chunk.cached
          if (chunk.facts !== undefined) facts = facts === undefined ? chunk.facts : Facts.merge(facts, chunk.facts)
          if (chunk.metadata !== undefined) metadata = { ...metadata, ...chunk.metadata }
          if (chunk.logprobs !== undefined) {
            if (logprobs === undefined) logprobs = []
            for (const entry of chunk.logprobs) logprobs.push(entry)
          }
        })
      ))
    const end = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    return new Completion({
      text: parts.join(""),
      finishReason,
      usage: usage ?? { inputTokens: 0, outputTokens, estimated: true },
      model,
      provider: info.provider,
      timing: firstToken === undefined ? { start, end } : { start, firstToken, end },
      ...(rateLimit !== undefined ? { rateLimit } : {}),
      ...(cached !== undefined ? { cached } : {}),
      ...(facts !== undefined ? { facts } : {}),
      ...(logprobs !== undefined ? { logprobs } : {}),
      ...(metadata !== undefined ? { metadata } : {})
    })
  })

/**
 * Turns a finished completion into a one-chunk stream (for backends that cannot stream,
 * and for cache replay of non-streamed entries).
 * @category constructors @since 0.1.0
 */
export const toChunks = (completion: Completion): ReadonlyArray<CompletionChunk> => [
  new CompletionChunk({
    text: completion.text,
    tokens: completion.usage.outputTokens,
    finishReason: completion.finishReason,
    usage: completion.usage,
    model: completion.model,
    ...(completion.rateLimit !== undefined ? { rateLimit: completion.rateLimit } : {}),
    ...(completion.cached !== undefined ? { cached: completion.cached } : {}),
    ...(completion.facts !== undefined ? { facts: completion.facts } : {}),
    ...(completion.logprobs !== undefined ? { logprobs: completion.logprobs } : {}),
    ...(completion.metadata !== undefined ? { metadata: completion.metadata } : {})
  })
]
