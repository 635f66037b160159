/**
 * The local model as `TokenModel`: tokenization, and token sequences on the base context
 * that evaluate tokens and return distributions (`append`) or greedy next tokens natively
 * (`appendGreedy`, `generateGreedy`, the fast paths speculative decoding uses), with
 * `truncate` to roll back. Each sequence holds one slot of the base context until its
 * scope closes; its operations run one at a time.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import type { TokenModel } from "@hasten/core"
import { Effect, Semaphore } from "effect"
import type { ControlledEvaluateInputItem, Token } from "node-llama-cpp"
import * as ModelPool from "../ModelPool.js"
import type * as BatchStepper from "./batchStepper.js"
import * as GreedyDecoder from "./greedyDecoder.js"
import type { LoadedModel } from "./loadedModel.js"
import { failure, invalid, provider } from "./localErrors.js"
import type { Prepare } from "./localPrompt.js"

/** `controlledEvaluate` options: the raw logits after a position. */
const withLogits = { generateNext: { logits: true } } as const
/** Greedy next-token generation for `controlledEvaluate` (temperature 0: llama.cpp's greedy sampler). */
const greedyNext = { generateNext: { token: true, options: { temperature: 0 } } } as const

const softmax = (logits: ReadonlyMap<number, number>, size: number, into?: Float32Array): Float32Array => {
  const out = into ?? new Float32Array(size)
  let max = -Infinity
  for (const value of logits.values()) if (value > max) max = value
  let sum = 0
  const scratch = new Float64Array(size)
  for (const [token, value] of logits) {
    const weight = Math.exp(value - max)
    scratch[token] = weight
    sum += weight
  }
  for (let i = 0; i < size; i++) out[i] = scratch[i]! / sum
  return out
}

/** A sparse distribution (token → probability, from the native sampler chain) as a dense one, renormalized. */
const densify = (probabilities: ReadonlyMap<number, number>, size: number, into?: Float32Array): Float32Array => {
  const out = into?.fill(0) ?? new Float32Array(size)
  let sum = 0
  for (const value of probabilities.values()) sum += value
  if (!(sum > 0)) return out
  for (const [token, value] of probabilities) out[token] = value / sum
  return out
}

/** Flat `[token, probability, …]` pairs (the native sampler chain's candidates) as a dense distribution, renormalized. */
const densifyPairs = (pairs: ArrayLike<number>, size: number, into?: Float32Array): Float32Array => {
  const out = into?.fill(0) ?? new Float32Array(size)
  let sum = 0
  for (let i = 1; i < pairs.length; i += 2) sum += pairs[i]!
  if (!(sum > 0)) return out
  for (let i = 1; i < pairs.length; i += 2) out[pairs[i - 1]!] = pairs[i]! / sum
  return out
}

/**
 * The `TokenModel` over a loaded model. With `stepper` (the base context's continuous batch)
 * and the greedy decoder (`fastGreedy`), `generateGreedy` runs in that batch, one step with
 * every other greedy run and `Llm` request on the context.
 */
export const make = (
  { base, bos, endTokens, id, model, options, prependBos, sanitize, vocabularyId, vocabularySize }: LoadedModel,
  prepare?: Prepare,
  stepper?: BatchStepper.Stepper
): TokenModel.TokenModelService => {
  /** The error for the first token outside the vocabulary, if any (checked on every decoding step). */
  const outOfVocabulary = (tokens: ReadonlyArray<number>) => {
    for (const token of tokens) {
      if (!Number.isInteger(token) || token < 0 || token >= vocabularySize) {
        return invalid(`token ${token} is outside the vocabulary (0..${vocabularySize - 1})`)
      }
    }
    return undefined
  }
  const checkTokens = (tokens: ReadonlyArray<number>) => {
    const error = outOfVocabulary(tokens)
    return error === undefined ? Effect.void : Effect.fail(error)
  }

  const tokenModel: TokenModel.TokenModelService = {
    name: id,
    vocabularySize,
    vocabularyId,
    bos,
    endTokens,
    // the prompt `Local`'s Llm evaluates for a request (its chat template, BOS), with the stop
    // strings it generates with, fitted to one sequence by the request's overflow strategy
    ...(prepare !== undefined
      ? {
        prompt: (request) =>
          Effect.map(prepare(request, base.context.contextSize), (prepared) => ({
            tokens: prependBos && bos !== undefined ? [bos, ...prepared.tokens] : [...prepared.tokens],
            stop: prepared.stopTriggers.filter((trigger): trigger is string => typeof trigger === "string")
          }))
      }
      : {}),
    tokenize: (text, tokenizeOptions) =>
      Effect.sync(() => {
        const addBos = tokenizeOptions?.addBos === true && bos !== undefined
        const tokens = model.tokenize(sanitize(text), false)
        return addBos ? [bos!, ...tokens] : tokens
      }),
    detokenize: (tokens) => Effect.andThen(checkTokens(tokens), Effect.sync(() => model.detokenize(tokens as Array<Token>))),
    sequence: () =>
      Effect.gen(function*() {
        const slot = yield* ModelPool.acquireSlot(base)
        const lock = yield* Semaphore.make(1)
        const tokens: Array<number> = []
        const sequence = slot.sequence
        // A long-lived greedy generator for steps that need the next token after the last
        // position only (plain decoding steps, a prompt): `controlledEvaluate` builds a
        // sampler per call, which costs about as much as a small model's forward pass; the
        // generator keeps one, as node-llama-cpp's own generation does. It is driven with
        // `next(tokens)` (evaluate these instead of the sampled token) and lives as long as the
        // sequence; `controlledEvaluate` and `eraseContextTokenRanges` may run between steps.
        let generator: AsyncGenerator<Token, void, void | Token | Array<Token>> | undefined
        // With `fastGreedy`, greedy steps run on a decoder that samples a batch's positions at
        // once (see internal/greedyDecoder.ts); without it (or without the internals it needs),
        // on `controlledEvaluate` and the generator above.
        const decoder = options.fastGreedy === false ? undefined : GreedyDecoder.make(sequence)
        yield* Effect.addFinalizer(() =>
          Effect.promise(async () => {
            const current = generator
            generator = undefined
            await current?.return(undefined).catch(() => undefined)
            // samplers are freed once the sequence's last evaluation has settled
            await slot.pending?.catch(() => undefined)
            decoder?.dispose()
          })
        )
        /**
         * A native operation that, once started, runs to its end even if the caller is
         * interrupted: the interruption aborts its signal (a greedy run stops after the step in
         * progress) and then waits for it, so the lock is released, and the caller resumes, only
         * once `tokens` matches the sequence again. (Otherwise a pass would go on natively
         * behind the next operations' back, and a caller reading `tokens()` would see a state
         * that is about to change.)
         */
        const native = <A>(run: (signal: AbortSignal) => Promise<A>, message: string): Effect.Effect<A, LlmError.LlmError> =>
          Effect.uninterruptibleMask((restore) => {
            const controller = new AbortController()
            let pending: Promise<A>
            try {
              pending = run(controller.signal)
            } catch (error) {
              pending = Promise.reject(error)
            }
            slot.pending = pending
            return restore(Effect.tryPromise({ try: () => pending, catch: failure(message) })).pipe(
              Effect.onInterrupt(() =>
                Effect.promise(() => {
                  controller.abort()
                  return pending.then(() => undefined, () => undefined)
                })
              )
            )
          })
        /**
         * One forward pass over `newTokens` (bounds and context checked). The tokens are
         * recorded when the pass completes, so `tokens` always matches the sequence's state;
         * `run` gets the signal `native` aborts on interruption. (A plain function rather than
         * a generator: it runs once per decoding step.)
         */
        const evaluate = <A>(
          newTokens: ReadonlyArray<number>,
          run: (signal: AbortSignal) => Promise<A>,
          /** Tokens the pass evaluated after `newTokens` (a greedy run's decoded tokens). */
          evaluatedAfter?: (result: A) => ReadonlyArray<number>
        ): Effect.Effect<A, LlmError.LlmError> => {
          const bad = outOfVocabulary(newTokens)
          if (bad !== undefined) return Effect.fail(bad)
          // node-llama-cpp keeps one position free: a pass that would fill the context shifts it
          // first (erases its beginning), behind `tokens`' back
          if (tokens.length + newTokens.length > sequence.contextSize - 1) {
            return LlmError.make(
              provider,
              new LlmError.ContextLengthExceeded({
                description:
                  `appending ${newTokens.length} tokens to ${tokens.length} exceeds the context size of ${sequence.contextSize} (one position stays free)`
              })
            )
          }
          return native((signal) =>
            run(signal).then((result) => {
              tokens.push(...newTokens)
              if (evaluatedAfter !== undefined) tokens.push(...evaluatedAfter(result))
              return result
            }), "evaluation failed")
        }
        const controlled = (newTokens: ReadonlyArray<number>, item: (token: Token, index: number) => ControlledEvaluateInputItem) =>
          evaluate(newTokens, () => sequence.controlledEvaluate(newTokens.map((token, index) => item(token as Token, index))))
        const stepGreedy = (newTokens: ReadonlyArray<number>) =>
          decoder !== undefined ?
            evaluate(newTokens, () => decoder.decode(newTokens, newTokens.length - 1)) :
            evaluate(newTokens, async () => {
              const input = newTokens as Array<Token>
              let step: IteratorResult<Token, void>
              try {
                if (generator === undefined) {
                  generator = sequence.evaluate(input, { temperature: 0, yieldEogToken: true })
                  step = await generator.next()
                } else {
                  step = await generator.next(input)
                }
              } catch (error) {
                // a failed step ends the generator; the next step starts a new one
                generator = undefined
                throw error
              }
              if (step.done === true) {
                generator = undefined
                throw new Error("the greedy generator ended")
              }
              return [step.value as number]
            })
        /**
         * Plain greedy decoding, natively: `newTokens` then up to `count - 1` sampled tokens are
         * evaluated in one loop (no Effect step, lock or bookkeeping per token): in the context's
         * batching engine when there is one (every sequence's run in one decode per step), else
         * by the greedy decoder or generator, as node-llama-cpp's own generation runs. Afterwards
         * the sequence holds `newTokens` and every decoded token but the last (not evaluated
         * yet, as after `appendGreedy`).
         */
        const runGreedy = (newTokens: ReadonlyArray<number>, count: number, stopAt: ReadonlySet<number> | undefined) =>
          evaluate(newTokens, async (signal) => {
            const out: Array<number> = []
            // an interrupted run stops after the step in progress (what it decoded stays decoded)
            const more = () => out.length < count && !(out.length > 0 && signal.aborted)
            if (decoder !== undefined && stepper !== undefined) {
              // the context's continuous batch: one decode per step with the other sequences' runs
              const stretch = await stepper.stretch(sequence, newTokens, count, stopAt, signal)
              if (stretch !== undefined) return stretch
            }
            if (decoder !== undefined) {
              let input: ReadonlyArray<number> = newTokens
              try {
                while (more()) {
                  const next = (await decoder.decode(input, input.length - 1))[0]!
                  out.push(next)
                  if (stopAt?.has(next) === true) break
                  input = [next]
                }
              } catch (error) {
                if (out.length === 0) throw error
                // what was decoded stays decoded: the caller gets it, the sequence holds it
              }
              return out
            }
            let input: Array<Token> | undefined = newTokens as Array<Token>
            try {
              while (more()) {
                let step: IteratorResult<Token, void>
                if (generator === undefined) {
                  generator = sequence.evaluate(input!, { temperature: 0, yieldEogToken: true })
                  step = await generator.next()
                } else {
                  step = await generator.next(input)
                }
                if (step.done === true) {
                  generator = undefined
                  throw new Error("the greedy generator ended")
                }
                input = undefined
                out.push(step.value as number)
                if (stopAt?.has(step.value as number) === true) break
              }
            } catch (error) {
              // a failed step ends the generator; the next step starts a new one
              generator = undefined
              if (out.length === 0) throw error
              // what was decoded stays decoded: the caller gets it, the sequence holds it
            }
            return out
          }, (out) => out.slice(0, -1))
        const append = (newTokens: ReadonlyArray<number>) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (newTokens.length === 0) return []
            const results = yield* controlled(newTokens, (token) => [token, withLogits])
            const distributions: Array<TokenModel.Distribution> = []
            for (let i = 0; i < newTokens.length; i++) {
              const logits = results[i]?.next.logits
              if (logits === undefined) {
                return yield* LlmError.make(provider, new LlmError.BadResponse({ description: `no logits for position ${i}` }))
              }
              distributions.push(softmax(logits, vocabularySize))
            }
            return distributions
          }))
        // Sampled speculative decoding's path (`appendDistributions` in @hasten/speculative):
        // distributions only from `from` on (a prompt's positions need none), and with
        // `sampling` (temperature, then top-k) applied by llama.cpp's own sampler chain, which
        // returns only the kept candidates' probabilities: all 32,000 logits cost ~7 ms a
        // position through node-llama-cpp (a 64,000-number array, then a Map), top-40 ~0.05 ms.
        const appendDistributions = (
          newTokens: ReadonlyArray<number>,
          from = 0,
          sampling?: { readonly temperature: number; readonly topK: number },
          into?: ReadonlyArray<Float32Array>
        ): Effect.Effect<ReadonlyArray<TokenModel.Distribution>, LlmError.LlmError> => {
          if (newTokens.length === 0) return Effect.succeed([])
          if (!Number.isInteger(from) || from < 0 || from >= newTokens.length) {
            return Effect.fail(invalid(`appendDistributions: from must be an integer in 0..${newTokens.length - 1}, got ${from}`))
          }
          if (sampling !== undefined && !(sampling.temperature > 0 && Number.isInteger(sampling.topK) && sampling.topK > 0)) {
            return Effect.fail(invalid(`appendDistributions: sampling needs a temperature > 0 and a positive integer topK`))
          }
          if (into !== undefined && (into.length < newTokens.length - from || into.some((each) => each.length !== vocabularySize))) {
            return Effect.fail(
              invalid(`appendDistributions: into needs at least ${newTokens.length - from} arrays of ${vocabularySize} values`)
            )
          }
          const next = sampling === undefined
            ? withLogits
            : {
              generateNext: { probabilities: true, options: { temperature: sampling.temperature, topK: sampling.topK, topP: 1, minP: 0 } }
            }
          if (sampling !== undefined && decoder !== undefined) {
            // persistent samplers, every position's sampling started at once (greedyDecoder.ts)
            return lock.withPermits(1)(Effect.suspend(() =>
              Effect.map(
                evaluate(newTokens, () => decoder.candidates(newTokens, from, sampling)),
                (all) => all.map((pairs, i) => densifyPairs(pairs, vocabularySize, into?.[i]))
              )
            ))
          }
          return lock.withPermits(1)(Effect.gen(function*() {
            const results = yield* controlled(newTokens, (token, index) => (index < from ? token : [token, next]))
            const distributions: Array<TokenModel.Distribution> = []
            for (let i = from; i < newTokens.length; i++) {
              const values = sampling === undefined ? results[i]?.next.logits : results[i]?.next.probabilities
              if (values === undefined) {
                return yield* LlmError.make(provider, new LlmError.BadResponse({ description: `no distribution for position ${i}` }))
              }
              const out = into?.[i - from]
              distributions.push(sampling === undefined ? softmax(values, vocabularySize, out) : densify(values, vocabularySize, out))
            }
            return distributions
          }))
        }
        // The greedy fast path speculative decoding looks for (`appendGreedy` in
        // @hasten/speculative): one forward pass like `append`, but llama.cpp's own greedy
        // sampler picks each next token natively, so no logits cross into JavaScript and no
        // distribution is built. Plain greedy decoding samples the same way.
        const appendGreedy = (newTokens: ReadonlyArray<number>, from = 0): Effect.Effect<ReadonlyArray<number>, LlmError.LlmError> => {
          if (newTokens.length === 0) return Effect.succeed([])
          if (!Number.isInteger(from) || from < 0 || from >= newTokens.length) {
            return Effect.fail(invalid(`appendGreedy: from must be an integer in 0..${newTokens.length - 1}, got ${from}`))
          }
          // the decoding step: no Effect.gen on the way, one lock, one forward pass
          if (from === newTokens.length - 1) return lock.withPermits(1)(Effect.suspend(() => stepGreedy(newTokens)))
          if (decoder !== undefined) {
            return lock.withPermits(1)(Effect.suspend(() => evaluate(newTokens, () => decoder.decode(newTokens, from))))
          }
          return lock.withPermits(1)(Effect.gen(function*() {
            const results = yield* controlled(newTokens, (token, index) => (index < from ? token : [token, greedyNext]))
            const nexts: Array<number> = []
            for (let i = from; i < newTokens.length; i++) {
              const next = results[i]?.next.token
              if (next === undefined || next === null) {
                return yield* LlmError.make(provider, new LlmError.BadResponse({ description: `no greedy token for position ${i}` }))
              }
              nexts.push(next)
            }
            return nexts
          }))
        }
        // The plain decoding loop for speculative decoding's off periods (`generateGreedy` in
        // @hasten/speculative): `count` greedy steps natively, as `sequence.evaluate` runs them.
        const generateGreedy = (
          newTokens: ReadonlyArray<number>,
          count: number,
          stopAt?: ReadonlySet<number>
        ): Effect.Effect<ReadonlyArray<number>, LlmError.LlmError> => {
          if (newTokens.length === 0) return Effect.fail(invalid("generateGreedy: no tokens to evaluate"))
          if (!Number.isInteger(count) || count < 1) {
            return Effect.fail(invalid(`generateGreedy: count must be a positive integer, got ${count}`))
          }
          // The run stops short of a full context: node-llama-cpp keeps one position free and
          // would shift the context (drop its start) to evaluate more, behind `tokens`' back.
          // At most `contextSize - 1` tokens are evaluated; too long an input fails in `evaluate`.
          return lock.withPermits(1)(
            Effect.suspend(() =>
              runGreedy(newTokens, Math.max(1, Math.min(count, sequence.contextSize - tokens.length - newTokens.length)), stopAt)
            )
          )
        }
        const truncate = (length: number) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (!Number.isInteger(length) || length < 0) {
              return yield* invalid(`truncate length must be a non-negative integer, got ${length}`)
            }
            if (length >= tokens.length) {
              return
            }
            yield* native(() =>
              sequence.eraseContextTokenRanges([{ start: length, end: sequence.nextTokenIndex }]).then(() => {
                tokens.length = length
              }), "truncate failed")
          }))
        const result: TokenModel.TokenSequence & {
          readonly appendGreedy: typeof appendGreedy
          readonly generateGreedy: typeof generateGreedy
          readonly appendDistributions: typeof appendDistributions
        } = {
          // a live read-only view (no copy per decoding step); it changes as the sequence does
          tokens: () => tokens,
          append,
          appendGreedy,
          generateGreedy,
          appendDistributions,
          truncate
        }
        return result
      })
  }
  return tokenModel
}
