/**
 * Greedy decoding on node-llama-cpp internals, for `TokenModel`'s greedy fast paths.
 *
 * node-llama-cpp's public `controlledEvaluate` builds a new sampler per call and samples the
 * positions of a batch one after another: each position is one asynchronous native call
 * (a thread-pool round trip), started only when the one before it has finished. On a small
 * model that round trip, not the forward pass, is most of a step's cost, so verifying k
 * drafted tokens cost several single steps.
 *
 * This decoder runs the same forward pass (the sequence's own `_decodeTokens`, which
 * `controlledEvaluate` runs too) and starts every position's sampling at once, each on its
 * own persistent greedy sampler (node-llama-cpp's native `AddonSampler`; the native sampling
 * call reads the logits under the context's sampling mutex, and node-llama-cpp itself samples
 * the positions of different sequences in one batch concurrently). The batch's
 * `afterBatchAction` waits for all of them, so the context decodes nothing else before every
 * position has been sampled.
 *
 * It depends on members node-llama-cpp marks internal: {@link make} checks each of them and
 * returns `undefined` when one is missing, and the caller then keeps to the public API.
 * @internal
 */
import type { LlamaContextSequence } from "node-llama-cpp"

/** A native greedy sampler (`AddonSampler`). */
interface NativeSampler {
  applyConfig(config: object): void
  dispose(): void
}

/** The internal members used, as node-llama-cpp 3.x declares them. */
interface SequenceInternals {
  _decodeTokens(
    tokens: Array<number>,
    logits: Array<boolean>,
    evaluationPriority: number,
    tokenMeter: unknown,
    contextShiftOptions: { readonly size: unknown; readonly strategy: unknown },
    logitDataMapper: (batchLogitIndex: number, tokenIndex: number) => unknown,
    afterBatchAction?: () => Promise<unknown> | void
  ): Promise<Array<unknown>>
  _resolveSamplerConfig(
    options: { readonly temperature: number; readonly topK?: number; readonly topP?: number; readonly minP?: number }
  ): object
  readonly _tokenMeter: unknown
  readonly _contextShift: { readonly size: unknown; readonly strategy: unknown } | undefined
  readonly model: { readonly _model?: unknown; readonly _llama?: { readonly _bindings?: { readonly AddonSampler?: unknown } } }
  readonly context: { readonly _ctx?: { readonly sampleToken?: unknown } }
}

/** node-llama-cpp's default evaluation priority. */
const DEFAULT_PRIORITY = 5

/** A greedy decoder bound to one sequence. @internal */
export interface GreedyDecoder {
  /**
   * Evaluates `tokens` in one forward pass and returns the greedy next token after each
   * position from `from` on (`tokens.length - from` tokens). Rejects when a position yields
   * no token.
   */
  readonly decode: (tokens: ReadonlyArray<number>, from: number) => Promise<Array<number>>
  /**
   * Evaluates `tokens` in one forward pass and returns, after each position from `from` on,
   * the candidates llama.cpp's sampler chain keeps for `sampling` (temperature, then the
   * `topK` most likely) with their probabilities, as flat `[token, probability, …]` pairs:
   * sampled speculative decoding's distributions, without all the logits.
   */
  readonly candidates: (
    tokens: ReadonlyArray<number>,
    from: number,
    sampling: { readonly temperature: number; readonly topK: number }
  ) => Promise<Array<ArrayLike<number>>>
  /** Frees the native samplers. */
  readonly dispose: () => void
}

/** A box, not a promise: node-llama-cpp chains a batch's promise-returning mappers one after another. */
interface Pending<A> {
  readonly token: Promise<A>
}

/**
 * The decoder for `sequence`, or `undefined` when this node-llama-cpp lacks an internal it
 * needs (the caller then uses `controlledEvaluate`).
 * @internal
 */
export const make = (sequence: LlamaContextSequence): GreedyDecoder | undefined => {
  const internals = sequence as unknown as SequenceInternals
  const native = internals.model?._model
  const Sampler = internals.model?._llama?._bindings?.AddonSampler as (new(model: unknown) => NativeSampler) | undefined
  const context = internals.context?._ctx as
    | {
      sampleToken: {
        (batchLogitIndex: number, sampler: NativeSampler): Promise<number>
        (batchLogitIndex: number, sampler: NativeSampler, probabilities: true, confidence: false): Promise<[number, ArrayLike<number>?]>
      }
    }
    | undefined
  const contextShift = internals._contextShift
  if (
    typeof internals._decodeTokens !== "function" || typeof internals._resolveSamplerConfig !== "function" ||
    typeof Sampler !== "function" || native == null || typeof context?.sampleToken !== "function" || contextShift === undefined
  ) {
    return undefined
  }
  let config: object
  try {
    config = internals._resolveSamplerConfig({ temperature: 0 })
  } catch {
    return undefined
  }
  const shift = { size: contextShift.size, strategy: contextShift.strategy }
  const samplers: Array<NativeSampler> = []
  let disposed = false
  /** The sampler of position `index` of a batch, made on first use and kept. */
  const sampler = (index: number): NativeSampler => {
    while (samplers.length <= index) {
      const created = new Sampler(native)
      created.applyConfig(config)
      samplers.push(created)
    }
    return samplers[index]!
  }
  /** Persistent samplers per sampling configuration (`temperature:topK`), one per batch position. */
  const candidateSamplers = new Map<string, Array<NativeSampler>>()
  const candidateSampler = (sampling: { readonly temperature: number; readonly topK: number }, index: number): NativeSampler => {
    const key = `${sampling.temperature}:${sampling.topK}`
    let list = candidateSamplers.get(key)
    if (list === undefined) {
      // a few configurations at most in practice; drop the oldest beyond 8
      if (candidateSamplers.size >= 8) {
        const [oldest, samplersOf] = candidateSamplers.entries().next().value!
        for (const each of samplersOf) each.dispose()
        candidateSamplers.delete(oldest)
      }
      list = []
      candidateSamplers.set(key, list)
    }
    while (list.length <= index) {
      const created = new Sampler(native)
      created.applyConfig(internals._resolveSamplerConfig({ temperature: sampling.temperature, topK: sampling.topK, topP: 1, minP: 0 }))
      list.push(created)
    }
    return list[index]!
  }
  /**
   * One forward pass over `tokens`, every position from `from` on sampled at once by `sample`
   * (its position in the batch's outputs), each result read by `read` (`undefined`: none).
   */
  const pass = async <A, B>(
    tokens: ReadonlyArray<number>,
    from: number,
    sample: (batchLogitIndex: number, position: number) => Promise<A>,
    read: (result: A) => B | undefined,
    what: string
  ): Promise<Array<B>> => {
    if (disposed) throw new Error("the decoder is disposed")
    const logits = tokens.map((_, i) => i >= from)
    const started: Array<Promise<A>> = []
    const results = await internals._decodeTokens(
      tokens as Array<number>,
      logits,
      DEFAULT_PRIORITY,
      internals._tokenMeter,
      shift,
      (batchLogitIndex, tokenIndex): Pending<A> => {
        const token = sample(batchLogitIndex, tokenIndex - from)
        started.push(token)
        return { token }
      },
      // the batch is done only when its positions are sampled: nothing may decode over their
      // logits before (settled, not all: a failure is the caller's, not the context's dispatch)
      () => Promise.allSettled(started)
    )
    const out: Array<B> = []
    for (let i = from; i < tokens.length; i++) {
      const pending = results[i] as Pending<A> | undefined
      const value = pending === undefined ? undefined : read(await pending.token)
      if (value === undefined) throw new Error(`no ${what} for position ${i}`)
      out.push(value)
    }
    return out
  }
  return {
    candidates: (tokens, from, sampling) =>
      pass(
        tokens,
        from,
        (batchLogitIndex, position) => context.sampleToken(batchLogitIndex, candidateSampler(sampling, position), true, false),
        (result) => result[1],
        "candidates"
      ),
    decode: (tokens, from) =>
      pass(
        tokens,
        from,
        (batchLogitIndex, position) => context.sampleToken(batchLogitIndex, sampler(position)),
        (token) => (token === -1 ? undefined : token),
        "greedy token"
      ),
    dispose: () => {
      disposed = true
      for (const each of samplers) each.dispose()
      samplers.length = 0
      for (const list of candidateSamplers.values()) for (const each of list) each.dispose()
      candidateSamplers.clear()
    }
  }
}
