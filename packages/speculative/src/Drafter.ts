/**
 * Drafters propose the next tokens cheaply; the target verifies them in one evaluation.
 * Three kinds share one interface: a smaller draft model with the target's vocabulary,
 * prompt lookup (n-gram match in prompt + output) and an n-gram cache that learns from the
 * target's earlier outputs in the run and can be saved to a JSON file.
 * @since 0.1.0
 */
import type { LlmError } from "@hasten/core"
import { Boundary, TokenModel } from "@hasten/core"
import { Context, Effect, Layer, Schema } from "effect"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"
import * as Sampling from "./Sampling.js"
import { CacheFile, InvalidOptions, SpeculativeError, VocabularyMismatch } from "./SpeculativeError.js"

type Distribution = TokenModel.Distribution

/** What the engine asks a drafter for at one step. @category models @since 0.1.0 */
export interface DraftRequest {
  /** Prompt + output so far; the last token is accepted but not yet evaluated by the target. */
  readonly context: ReadonlyArray<number>
  /** How many leading `context` tokens are the prompt. */
  readonly promptLength: number
  /** Propose at most this many tokens (γ). */
  readonly maximum: number
  readonly sampling: Sampling.SamplingOptions
  readonly random: Sampling.Prng
}

/**
 * Proposed tokens. `proposals[i]` is the (transformed) distribution `tokens[i]` was drawn
 * from; omitted for deterministic drafters, whose proposal is one-hot.
 * @category models @since 0.1.0
 */
export interface Draft {
  readonly tokens: ReadonlyArray<number>
  readonly proposals?: ReadonlyArray<Distribution> | undefined
}

/** A drafter bound to one target for the lifetime of a layer. @category models @since 0.1.0 */
export interface DraftSession {
  /** A new request starts with `prompt`. */
  readonly begin: (prompt: ReadonlyArray<number>) => Effect.Effect<void>
  readonly draft: (request: DraftRequest) => Effect.Effect<Draft, LlmError.LlmError>
  /** The request finished with `context` (prompt + output). */
  readonly end: (context: ReadonlyArray<number>, promptLength: number) => Effect.Effect<void>
}

/**
 * A drafter: `make` binds it to the target (checking the vocabulary) in the layer's scope.
 * `kind` tells the adaptive controller whether drafting costs model evaluations.
 * @category models @since 0.1.0
 */
export interface Drafter<E = never, R = never> {
  readonly name: string
  readonly kind: "model" | "lookup"
  readonly make: (target: TokenModel.TokenModelService) => Effect.Effect<DraftSession, E | SpeculativeError, R | Scope.Scope>
}

/**
 * Optional capabilities a `TokenSequence` may offer beyond the core contract. Greedy
 * verification only needs each position's argmax, and a prompt needs no outputs at all;
 * a backend that can skip building full distributions (node-llama-cpp: a greedy sampler
 * per position instead of all logits) is several times faster there.
 * @category models @since 0.1.0
 */
export interface SequenceExtensions {
  /**
   * Like `append` (one forward pass), but returns only the greedy next token (argmax, ties to
   * the lower id) after each position from `from` on (default 0): `tokens.length - from` tokens.
   */
  readonly appendGreedy?: (tokens: ReadonlyArray<number>, from?: number) => Effect.Effect<ReadonlyArray<number>, LlmError.LlmError>
  /**
   * Plain greedy decoding in one call: evaluates `tokens`, then returns up to `count` tokens,
   * the first the greedy next token after `tokens` and each further one the greedy next token
   * after the one before (evaluated on the way), ending early after a token in `stopAt`, or
   * where the context is full. Afterwards the sequence holds `tokens` and every returned token
   * but the last, as after `appendGreedy`. The speculative loop runs its plain stretches
   * through it: a backend's own decoding loop, with no per-token round trip.
   */
  readonly generateGreedy?: (
    tokens: ReadonlyArray<number>,
    count: number,
    stopAt?: ReadonlySet<number>
  ) => Effect.Effect<ReadonlyArray<number>, LlmError.LlmError>
  /**
   * Like `append` (one forward pass), but returns the next-token distribution only after each
   * position from `from` on (default 0): `tokens.length - from` of them. With `sampling`, each
   * is already the sampling distribution for those options (temperature, then the `topK` most
   * likely tokens, renormalized: what `Sampling.transform` computes), which a backend that
   * samples natively returns without building every logit (node-llama-cpp: 32,000 logits cost
   * ~7 ms a position, a top-k sampler's candidates a fraction of a millisecond). With `into`
   * (arrays of the vocabulary's size, at least one per returned position; the first ones are
   * used), the distributions are written there and those arrays returned: a caller that reuses them allocates nothing per step
   * (32,000-value arrays per position otherwise keep the garbage collector busy).
   */
  readonly appendDistributions?: (
    tokens: ReadonlyArray<number>,
    from?: number,
    sampling?: Sampling.NativeSampling,
    into?: ReadonlyArray<Float32Array>
  ) => Effect.Effect<ReadonlyArray<Distribution>, LlmError.LlmError>
}

/** A sequence with the optional capabilities looked up. @category models @since 0.1.0 */
export type ExtendedSequence = TokenModel.TokenSequence & SequenceExtensions

const noop = (): Effect.Effect<void> => Effect.void

/** Length of the common prefix of two token arrays. @category utils @since 0.1.0 */
export const commonPrefix = (left: ReadonlyArray<number>, right: ReadonlyArray<number>): number => {
  const length = Math.min(left.length, right.length)
  let i = 0
  while (i < length && left[i] === right[i]) i++
  return i
}

/**
 * Brings `sequence` to `context` minus its last token reused from the KV state, then
 * appends the missing tail (ending with the last token). Rolls back a diverged suffix.
 * Returns the distribution after the last token, or its greedy token.
 * @internal
 */
const syncSequence = Effect.fnUntraced(function*(
  sequence: ExtendedSequence,
  context: ReadonlyArray<number>,
  greedy: boolean,
  native: Sampling.NativeSampling | undefined,
  into: Float32Array | undefined
) {
  const current = sequence.tokens()
  const keep = Math.min(commonPrefix(current, context), context.length - 1)
  if (current.length > keep) yield* sequence.truncate(keep)
  const tail = context.slice(keep)
  if (greedy && sequence.appendGreedy !== undefined) {
    const nexts = yield* sequence.appendGreedy(tail, tail.length - 1)
    return { token: nexts[nexts.length - 1]!, distribution: undefined }
  }
  if (!greedy && sequence.appendDistributions !== undefined) {
    // only the last position's distribution: the tail's others are never drafted from
    const [last] = yield* sequence.appendDistributions(tail, tail.length - 1, native, into === undefined ? undefined : [into])
    return { token: undefined, distribution: last! }
  }
  const distributions = yield* sequence.append(tail)
  return { token: undefined, distribution: distributions[distributions.length - 1]! }
})

/**
 * A draft model: any `TokenModel` with the target's vocabulary (same `vocabularyId` and
 * size), else the layer fails with `VocabularyMismatch`. It keeps its own sequence in step
 * with the accepted context, rolling back rejected drafts instead of re-evaluating.
 * @category constructors @since 0.1.0
 */
export const model = (draft: TokenModel.TokenModelService): Drafter => ({
  name: `model:${draft.name}`,
  kind: "model",
  make: (target) =>
    Effect.gen(function*() {
      if (draft.vocabularyId !== target.vocabularyId || draft.vocabularySize !== target.vocabularySize) {
        return yield* new SpeculativeError({
          reason: new VocabularyMismatch({
            target: target.name,
            draft: draft.name,
            description: `draft model ${draft.name} (vocabulary ${draft.vocabularyId}, ${draft.vocabularySize} tokens) cannot draft for ` +
              `${target.name} (vocabulary ${target.vocabularyId}, ${target.vocabularySize} tokens)`
          })
        })
      }
      const sequence: ExtendedSequence = yield* Effect.orDie(draft.sequence())
      // one distribution array per draft position, reused from draft to draft: a draft's
      // proposals live until its verification, before the next draft writes them again
      const buffers: Array<Float32Array> = []
      const buffer = (index: number): Float32Array => {
        while (buffers.length <= index) buffers.push(new Float32Array(draft.vocabularySize))
        return buffers[index]!
      }
      const draftEnds: ReadonlySet<number> = new Set(draft.endTokens)
      return {
        begin: noop,
        end: noop,
        draft: Effect.fnUntraced(function*(request: DraftRequest) {
          const greedy = Sampling.isGreedy(request.sampling)
          // sampling the backend applies itself: its distributions come transformed
          const native = greedy || sequence.appendDistributions === undefined ? undefined : Sampling.native(request.sampling)
          if (greedy && sequence.generateGreedy !== undefined && request.maximum > 0) {
            // Greedy drafting is plain greedy decoding of the draft model: the catch-up on the
            // accepted context and all γ steps run in ONE call, the backend's own decoding loop
            // (no Effect step, lock or round trip per drafted token). As in the loop below, the
            // last draft (and an end token) is returned but not evaluated.
            const current = sequence.tokens()
            const keep = Math.min(commonPrefix(current, request.context), request.context.length - 1)
            if (current.length > keep) yield* sequence.truncate(keep)
            const tokens = yield* sequence.generateGreedy(request.context.slice(keep), request.maximum, draftEnds)
            return { tokens }
          }
          const tokens: Array<number> = []
          const proposals: Array<Distribution> = []
          const reuse = !greedy && sequence.appendDistributions !== undefined
          let step = yield* syncSequence(sequence, request.context, greedy, native, reuse ? buffer(0) : undefined)
          for (let i = 0; i < request.maximum; i++) {
            let token: number
            if (step.distribution === undefined) {
              token = step.token!
            } else if (greedy) {
              token = Sampling.argmax(step.distribution)
            } else {
              const q = native !== undefined ? step.distribution : Sampling.transform(step.distribution, request.sampling)
              proposals.push(q)
              token = Sampling.sample(q, request.random)
            }
            tokens.push(token)
            if (i === request.maximum - 1 || draft.endTokens.includes(token)) break
            if (step.distribution === undefined) {
              step = { token: (yield* sequence.appendGreedy!([token]))[0]!, distribution: undefined }
            } else {
              const next = sequence.appendDistributions !== undefined
                ? yield* sequence.appendDistributions([token], 0, native, [buffer(i + 1)])
                : yield* sequence.append([token])
              step = { token: undefined, distribution: next[0]! }
            }
          }
          return greedy ? { tokens } : { tokens, proposals }
        })
      } satisfies DraftSession
    })
})

/**
 * A draft model from its own layer (for example `Local.layer({ model: "small.gguf" })`),
 * built in the speculative layer's scope.
 * @category constructors @since 0.1.0
 */
export const modelLayer = <E, R>(layer: Layer.Layer<TokenModel.TokenModel, E, R>): Drafter<E, R> => ({
  name: "model",
  kind: "model",
  make: (target) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(layer)
      return yield* model(Context.get(context, TokenModel.TokenModel)).make(target)
    })
})

/** Options of the n-gram drafters. @category models @since 0.1.0 */
export interface NgramOptions {
  /** Longest n-gram matched first (default 4). */
  readonly maxNgram?: number | undefined
  /** Shortest n-gram tried (default 2). */
  readonly minNgram?: number | undefined
}

const ngramBounds = (options: NgramOptions | undefined): Effect.Effect<{ min: number; max: number }, SpeculativeError> => {
  const max = options?.maxNgram ?? 4
  const min = options?.minNgram ?? 2
  return Number.isInteger(min) && Number.isInteger(max) && min >= 1 && max >= min
    ? Effect.succeed({ min, max })
    : Effect.fail(
      new SpeculativeError({
        reason: new InvalidOptions({
          field: Number.isInteger(min) && min >= 1 ? "maxNgram" : "minNgram",
          description: `n-gram bounds must be integers with 1 <= minNgram <= maxNgram, got ${min}..${max}`
        })
      })
    )
}

/**
 * Finds the most recent earlier occurrence of the context's last n tokens (longest n
 * first) and proposes what followed it. Pure; exported for tests.
 * @category utils @since 0.1.0
 */
export const lookup = (context: ReadonlyArray<number>, maximum: number, min: number, max: number): Array<number> => {
  const length = context.length
  for (let n = Math.min(max, length - 1); n >= min; n--) {
    const start = length - n
    for (let j = start - 1; j >= 0; j--) {
      let k = 0
      while (k < n && context[j + k] === context[start + k]) k++
      if (k < n) continue
      const from = j + n
      const to = Math.min(from + maximum, length)
      if (to > from) return context.slice(from, to) as Array<number>
    }
  }
  return []
}

/**
 * Prompt lookup decoding: drafts by matching the last n-gram of prompt + output against
 * earlier text and copying what followed. Free; pays off when the output repeats input.
 * @category constructors @since 0.1.0
 */
export const promptLookup = (options?: NgramOptions): Drafter => ({
  name: "prompt-lookup",
  kind: "lookup",
  make: () =>
    Effect.map(ngramBounds(options), ({ max, min }) => ({
      begin: noop,
      end: noop,
      draft: (request) => Effect.sync(() => ({ tokens: lookup(request.context, request.maximum, min, max) }))
    }))
})

/** The JSON form of an {@link NgramCache}. @category models @since 0.1.0 */
export interface NgramCacheJson {
  readonly version: 1
  readonly vocabularyId: string | undefined
  readonly minNgram: number
  readonly maxNgram: number
  /** `[key, [[token, count], …]]`, key = the n-gram's tokens joined by ",". */
  readonly entries: ReadonlyArray<readonly [string, ReadonlyArray<readonly [number, number]>]>
}

const Count = Schema.Tuple([Schema.Number, Schema.Number])

/** The schema of an n-gram cache file ({@link NgramCacheJson}). @category schemas @since 0.2.0 */
export const NgramCacheFile = Schema.Struct({
  version: Schema.Literal(1),
  vocabularyId: Schema.optionalKey(Schema.UndefinedOr(Schema.String)),
  minNgram: Boundary.PositiveInt,
  maxNgram: Boundary.PositiveInt,
  entries: Schema.Array(Schema.Tuple([Schema.String, Schema.Array(Count)]))
})

const decodeCacheFile = Boundary.jsonDecoder(NgramCacheFile)

/**
 * Counts which token followed each n-gram (n in minNgram..maxNgram) in text the target
 * produced. Mutable; persist it with `toJson` / `save`.
 * @category models @since 0.1.0
 */
export class NgramCache {
  readonly table = new Map<string, Map<number, number>>()
  vocabularyId: string | undefined
  readonly minNgram: number
  readonly maxNgram: number
  constructor(options?: { readonly minNgram?: number; readonly maxNgram?: number; readonly vocabularyId?: string }) {
    this.minNgram = options?.minNgram ?? 2
    this.maxNgram = options?.maxNgram ?? 4
    this.vocabularyId = options?.vocabularyId
  }

  /** Number of distinct n-grams seen. */
  get size(): number {
    return this.table.size
  }

  /** Learns the continuations of `tokens[from..]`. */
  learn(tokens: ReadonlyArray<number>, from = 0): void {
    for (let i = Math.max(from, 1); i < tokens.length; i++) {
      const next = tokens[i]!
      for (let n = this.minNgram; n <= this.maxNgram && n <= i; n++) {
        const key = tokens.slice(i - n, i).join(",")
        let counts = this.table.get(key)
        if (counts === undefined) {
          counts = new Map()
          this.table.set(key, counts)
        }
        counts.set(next, (counts.get(next) ?? 0) + 1)
      }
    }
  }

  /** Predicts up to `maximum` tokens after `context`, each the most frequent continuation of the longest known n-gram. */
  predict(context: ReadonlyArray<number>, maximum: number): Array<number> {
    const out: Array<number> = []
    const window = context.slice(Math.max(0, context.length - this.maxNgram)) as Array<number>
    while (out.length < maximum) {
      let found: number | undefined
      for (let n = Math.min(this.maxNgram, window.length); n >= this.minNgram && found === undefined; n--) {
        const counts = this.table.get(window.slice(window.length - n).join(","))
        if (counts === undefined) continue
        let bestCount = 0
        for (const [token, count] of counts) {
          if (count > bestCount || (count === bestCount && token < found!)) {
            bestCount = count
            found = token
          }
        }
      }
      if (found === undefined) break
      out.push(found)
      window.push(found)
      if (window.length > this.maxNgram) window.shift()
    }
    return out
  }

  toJson(): NgramCacheJson {
    return {
      version: 1,
      vocabularyId: this.vocabularyId,
      minNgram: this.minNgram,
      maxNgram: this.maxNgram,
      entries: Array.from(this.table, ([key, counts]) => [key, Array.from(counts)] as const)
    }
  }

  static fromJson(json: NgramCacheJson): NgramCache {
    const cache = new NgramCache({
      minNgram: json.minNgram,
      maxNgram: json.maxNgram,
      ...(json.vocabularyId !== undefined ? { vocabularyId: json.vocabularyId } : {})
    })
    for (const [key, counts] of json.entries) cache.table.set(key, new Map(counts))
    return cache
  }

  /** Writes the cache as JSON to `path`. */
  save(path: string): Effect.Effect<void, SpeculativeError> {
    return Effect.tryPromise({
      try: () => NodeFs.promises.writeFile(path, JSON.stringify(this.toJson())),
      catch: (cause) => new SpeculativeError({ reason: new CacheFile({ path, description: `cannot write: ${String(cause)}` }) })
    })
  }

  /** Reads a cache saved with `save`; a missing file gives an empty cache. */
  static load(
    path: string,
    options?: { readonly minNgram?: number; readonly maxNgram?: number }
  ): Effect.Effect<NgramCache, SpeculativeError> {
    const fail = (description: string) => new SpeculativeError({ reason: new CacheFile({ path, description }) })
    return Effect.tryPromise({
      try: () =>
        NodeFs.promises.readFile(path, "utf8").catch((error: NodeJS.ErrnoException) =>
          error.code === "ENOENT" ? undefined : Promise.reject(error)
        ),
      catch: (cause) => fail(`cannot read: ${String(cause)}`)
    }).pipe(
      Effect.flatMap((text) => {
        if (text === undefined) return Effect.succeed(new NgramCache(options))
        const decoded = decodeCacheFile(text)
        return decoded._tag === "Failure"
          ? Effect.fail(fail(`not an n-gram cache (version 1): ${Boundary.formatProblems(decoded.problems)}`))
          : Effect.succeed(NgramCache.fromJson({ ...decoded.value, vocabularyId: decoded.value.vocabularyId }))
      })
    )
  }
}

/**
 * An n-gram cache drafter: learns from what the target generated earlier in the run (and
 * in this request), so repeated structure (JSON keys, boilerplate) is drafted for free.
 * With `path`, the cache is loaded at start and saved when the layer closes.
 * @category constructors @since 0.1.0
 */
export const ngramCache = (
  options?: NgramOptions & {
    /** A cache to share (for example across layers, or to inspect in tests). */
    readonly cache?: NgramCache | undefined
    /** A JSON file to load at start and save when the layer is released. */
    readonly path?: string | undefined
  }
): Drafter => ({
  name: "ngram-cache",
  kind: "lookup",
  make: (target) =>
    Effect.gen(function*() {
      const { max, min } = yield* ngramBounds(options)
      const cache = options?.cache ??
        (options?.path !== undefined
          ? yield* NgramCache.load(options.path, { minNgram: min, maxNgram: max })
          : new NgramCache({ minNgram: min, maxNgram: max }))
      if (cache.vocabularyId !== undefined && cache.vocabularyId !== target.vocabularyId) {
        return yield* new SpeculativeError({
          reason: new VocabularyMismatch({
            target: target.name,
            draft: "ngram-cache",
            description: `n-gram cache was learned on vocabulary ${cache.vocabularyId}, the target has ${target.vocabularyId}`
          })
        })
      }
      cache.vocabularyId = target.vocabularyId
      if (options?.path !== undefined) {
        const path = options.path
        yield* Effect.addFinalizer(() => Effect.ignore(cache.save(path)))
      }
      let learnedUntil = 0
      const learnUpTo = (context: ReadonlyArray<number>) => {
        if (context.length > learnedUntil) {
          const start = Math.max(0, learnedUntil - cache.maxNgram)
          cache.learn(context.slice(start), learnedUntil - start)
          learnedUntil = context.length
        }
      }
      return {
        begin: (prompt) =>
          Effect.sync(() => {
            learnedUntil = prompt.length
          }),
        draft: (request) =>
          Effect.sync(() => {
            learnUpTo(request.context)
            return { tokens: cache.predict(request.context, request.maximum) }
          }),
        end: (context) => Effect.sync(() => learnUpTo(context))
      } satisfies DraftSession
    })
})

/**
 * Tries each drafter in order and uses the first that proposes something: for example
 * the n-gram cache (what the target wrote before) with prompt lookup as the fallback.
 * @category constructors @since 0.1.0
 */
export const combine = <E = never, R = never>(...drafters: ReadonlyArray<Drafter<E, R>>): Drafter<E, R> => ({
  name: drafters.map((drafter) => drafter.name).join("+"),
  kind: drafters.some((drafter) => drafter.kind === "model") ? "model" : "lookup",
  make: (target) =>
    Effect.gen(function*() {
      const sessions: Array<DraftSession> = []
      for (const drafter of drafters) sessions.push(yield* drafter.make(target))
      return {
        begin: (prompt) => Effect.forEach(sessions, (session) => session.begin(prompt), { discard: true }),
        end: (context, promptLength) => Effect.forEach(sessions, (session) => session.end(context, promptLength), { discard: true }),
        draft: Effect.fnUntraced(function*(request: DraftRequest) {
          for (const session of sessions) {
            const draft = yield* session.draft(request)
            if (draft.tokens.length > 0) return draft
          }
          return { tokens: [] }
        })
      } satisfies DraftSession
    })
})
