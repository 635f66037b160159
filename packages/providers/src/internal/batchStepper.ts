/**
 * Continuous batching for greedy generations on one context, on node-llama-cpp internals.
 *
 * node-llama-cpp batches the sequences of a context through a dispatcher: every sequence
 * queues its decode, the dispatcher gathers what is queued into one native batch, and each
 * sampled position then travels back through a promise chain per sequence before that
 * sequence queues its next token. At 16 sequences that bookkeeping (and what it allocates)
 * costs about as much as the forward pass on real model sizes. The stepper drives the native
 * context itself: each step builds ONE batch with the next token of every active generation
 * (and chunks of new generations' prompts, within the context's batch size), decodes it once,
 * starts the greedy sampling of every position that needs a token at once (each generation on
 * its own persistent native greedy sampler, as `greedyDecoder.ts` does), and resolves them;
 * generations join and leave between steps.
 *
 * Text, stop triggers, end tokens and `maxTokens` stay node-llama-cpp's: `LlamaCompletion`
 * runs as usual over a {@link LeanSequence}, a stand-in for the request's sequence whose
 * `evaluate` yields the stepper's tokens. Safety with node-llama-cpp's own state:
 * - each step, and each removal of a finished generation's KV cells, holds node-llama-cpp's
 *   context lock (`withLock([context, "context"])` of the same `lifecycle-utils` instance;
 *   checked once on a real sequence: node-llama-cpp's own `eraseContextTokenRanges` must wait
 *   for it), so no dispatcher batch of another sequence interleaves with a step;
 * - the sequence's JavaScript state stays that of an empty sequence: it is cleared before the
 *   stepper writes to its KV cells, and the cells the stepper wrote are removed before the
 *   generation's promise settles (so before the pool hands the sequence to anyone else).
 *
 * Penalised greedy generations (`repeatPenalty` ≥ 1, frequency and presence penalties ≥ 0)
 * run here too, without llama.cpp's penalty pass over the whole vocabulary on every token.
 * llama.cpp penalises a token of the window as `v' = (v > 0 ? v / repeat : v * repeat) −
 * count·frequency − presence`, which never raises a value. So each step samples greedily with
 * only an additive bias on the window's distinct tokens (llama.cpp's logit-bias sampler, one
 * step per biased token), each bias a hair smaller than llama.cpp's own subtraction: every
 * window token's penalised value is then at most its biased value, and a winner outside the
 * window is the penalised argmax too (ties included: the greedy sampler keeps the lowest
 * token id, and every lower id's biased value is below the winner's). Only when the winner is
 * a window token does the step sample the same logits again on a sampler given the penalty
 * fields node-llama-cpp's `_resolveSamplerConfig` would give (the logits stay until the next
 * decode, which waits for every sampling). The window is what `LlamaCompletion` passes (`punishTokens`: the released
 * output tokens, new lines excluded), read when node-llama-cpp would read it.
 *
 * Greedy stretches of `TokenModel` sequences run here too ({@link Stepper.stretch}: speculative
 * decoding's plain runs): the sequence's KV cells already hold its node-llama-cpp history, the
 * stretch's tokens join the next step at the sequence's next position, and the cells it writes
 * stay. node-llama-cpp's view of that sequence (`_contextTokens`, `_nextTokenIndex`) is advanced
 * under the context lock in the step that writes the cells, so it always matches them, and the
 * sequence's next `_decodeTokens`/`eraseContextTokenRanges` continue from there.
 *
 * It depends on members node-llama-cpp marks internal: {@link make}, {@link Stepper.lean} and
 * {@link Stepper.stretch} check each of them and return `undefined` when one is missing; the
 * caller then runs `LlamaCompletion` (or its own greedy loop) on the sequence itself.
 * @internal
 */
import type * as LifecycleUtils from "lifecycle-utils"
import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp"

/**
 * node-llama-cpp's lock functions: `lifecycle-utils`, imported by the caller when it loads
 * node-llama-cpp (the local entry points load neither eagerly). @internal
 */
export type Locks = Pick<typeof LifecycleUtils, "acquireLock" | "withLock">

/** A native greedy sampler (`AddonSampler`). */
interface NativeSampler {
  applyConfig(config: object): void
  dispose(): void
}

/** The native context (`AddonContext`) members used. */
interface NativeContext {
  initBatch(size: number): void
  addToBatch(sequenceId: number, firstTokenIndex: number, tokens: Uint32Array, logitIndexes: Uint32Array): ArrayLike<number>
  decodeBatch(): Promise<void>
  sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number>
  removeTokenCellsFromSequence(sequenceId: number, start: number, end: number): boolean
}

interface ContextInternals {
  readonly _ctx?: Partial<NativeContext>
  readonly _backendContextDisposeGuard?: { createPreventDisposalHandle?: () => { dispose(): void } }
  readonly batchSize: number
  readonly disposed: boolean
  readonly model: { readonly _model?: unknown; readonly _llama?: { readonly _bindings?: { readonly AddonSampler?: unknown } } }
}

interface SequenceInternals {
  readonly _sequenceId?: number
  readonly _resolveSamplerConfig?: (options: Record<string, unknown>) => object
  readonly needsCheckpoints?: boolean
  readonly context: unknown
  readonly nextTokenIndex: number
  readonly disposed: boolean
  readonly model: unknown
  readonly onDispose: unknown
  clearHistory(): Promise<void>
  eraseContextTokenRanges(ranges: Array<{ start: number; end: number }>): Promise<void>
}

/**
 * Steps and tokens the steppers of this process have run, penalised samples and how many of
 * them needed llama.cpp's full penalty pass, greedy stretches of `TokenModel` sequences and the
 * tokens they decoded (for tests and benches). @internal
 */
export const counters = { steps: 0, sampled: 0, joined: 0, penalized: 0, penaltyFallbacks: 0, stretches: 0, stretchTokens: 0 }

/**
 * For the penalty bench only: every penalised token takes llama.cpp's full penalty pass, as
 * if every biased greedy pick were a window token (the worst case of the fast path). @internal
 */
export const benchOptions = { forceFullPass: false }

/** node-llama-cpp's `repeatPenalty` evaluate option, as `LlamaCompletion` passes it. */
interface RepeatPenalty {
  readonly punishTokens: ReadonlyArray<number> | (() => ReadonlyArray<number>)
  readonly maxPunishTokens?: number
  readonly penalty?: number
  readonly frequencyPenalty?: number
  readonly presencePenalty?: number
}

const nonNegative = (value: unknown) => value === undefined || (typeof value === "number" && Number.isFinite(value) && value >= 0)

/**
 * Whether the stepper runs a generation with these penalties exactly: a repeat penalty of at
 * least 1 and non-negative frequency and presence penalties (penalties that only lower a
 * window token's value). Others keep node-llama-cpp's path. @internal
 */
export const penaltiesSupported = (penalty: {
  readonly penalty?: number
  readonly frequencyPenalty?: number
  readonly presencePenalty?: number
}): boolean =>
  (penalty.penalty === undefined || (Number.isFinite(penalty.penalty) && penalty.penalty >= 1)) &&
  nonNegative(penalty.frequencyPenalty) && nonNegative(penalty.presencePenalty)

const isRepeatPenalty = (value: unknown): value is RepeatPenalty =>
  typeof value === "object" && value !== null &&
  (typeof (value as RepeatPenalty).punishTokens === "function" || Array.isArray((value as RepeatPenalty).punishTokens)) &&
  penaltiesSupported(value as RepeatPenalty)

/** Slightly less than 1: a bias never subtracts more than llama.cpp's float32 penalty does. */
const biasScale = 1 - 2 ** -16

/** One generation in the stepper. */
interface Entry {
  readonly sequenceId: number
  readonly sampler: NativeSampler
  /** Tokens to evaluate before the next token is due (the prompt, then each sampled token). */
  pending: Array<number>
  /** The next KV position of the sequence (tokens written so far). */
  position: number
  waiter: { resolve: (token: number) => void; reject: (error: unknown) => void } | undefined
  left: boolean
  /** The penalties of a penalised generation, with its window for the next token. */
  penalty: Penalty | undefined
  /** A stretch's sequence: node-llama-cpp's view of it advances with every step that writes its cells. */
  readonly attached: AttachedSequence | undefined
}

/** node-llama-cpp's JavaScript view of a sequence's KV cells (`LlamaContextSequence` internals). */
interface AttachedSequence {
  _contextTokens: Array<number>
  _nextTokenIndex: number
  readonly _loadedTokenPredictions?: ReadonlyArray<unknown>
}

interface Penalty {
  readonly repeatPenalty: RepeatPenalty
  /** `punishTokens` for the next token, and its distinct tokens. */
  window: ReadonlyArray<number>
  distinct: Set<number>
  /** The sampler with llama.cpp's own penalties, for a winner inside the window. */
  native: NativeSampler | undefined
  /** Whether the greedy sampler carries a bias now. */
  biased: boolean
}

/**
 * A stand-in for one sequence that `LlamaCompletion` generates on: one generation, greedy,
 * without context shift. @internal
 */
export type LeanSequence = LlamaContextSequence

/** The stepper of one context. @internal */
export interface Stepper {
  /**
   * A stand-in for `sequence` whose generation runs in the stepper (the sequence cleared
   * first), or `undefined` when the sequence lacks an internal or node-llama-cpp does not
   * share the stepper's lock (the caller then generates on `sequence` itself). The caller
   * holds the sequence until the generation's promise settles.
   */
  readonly lean: (sequence: LlamaContextSequence) => Promise<LeanSequence | undefined>
  /**
   * Greedy decoding on `sequence`, whose KV cells hold its node-llama-cpp history: evaluates
   * `tokens` at its next position, then each decoded token but the last, in the context's
   * continuous batch; up to `count` tokens, ending after a token of `stopAt`, or after the step
   * in progress once `signal` is aborted (at least one token). The cells it writes stay in the
   * sequence (node-llama-cpp's view advances with them). Fails only when no token was decoded
   * (then the sequence is as before); a later failure ends the run with what it decoded.
   * `undefined` when the sequence lacks an internal, needs checkpoints, would fill the context,
   * or node-llama-cpp does not share the stepper's lock (the caller runs its own loop). The
   * caller runs nothing else on the sequence until the promise settles.
   */
  readonly stretch: (
    sequence: LlamaContextSequence,
    tokens: ReadonlyArray<number>,
    count: number,
    stopAt: ReadonlySet<number> | undefined,
    signal: AbortSignal | undefined
  ) => Promise<Array<number> | undefined>
  /** Frees the native samplers once no generation runs. */
  readonly dispose: () => void
}

/** Options `LlamaCompletion` passes to `evaluate` that the stepper cannot honour. */
const unsupported = (options: Record<string, unknown> | undefined): string | undefined => {
  if (options === undefined) return undefined
  if (options["temperature"] !== undefined && options["temperature"] !== 0) return "temperature"
  for (const key of ["grammarEvaluationState", "dryRepeatPenalty", "tokenBias", "xtc"]) {
    if (options[key] != null) return key
  }
  if (options["repeatPenalty"] != null && !isRepeatPenalty(options["repeatPenalty"])) return "repeatPenalty"
  return undefined
}

/**
 * The stepper of `context` (its lock taken with `locks`), or `undefined` when this
 * node-llama-cpp lacks an internal it needs.
 * @internal
 */
export const make = (context: LlamaContext, { acquireLock, withLock }: Locks): Stepper | undefined => {
  const internals = context as unknown as ContextInternals
  const native = internals._ctx
  const model = internals.model?._model
  const Sampler = internals.model?._llama?._bindings?.AddonSampler as (new(model: unknown) => NativeSampler) | undefined
  if (
    native == null || typeof native.initBatch !== "function" || typeof native.addToBatch !== "function" ||
    typeof native.decodeBatch !== "function" || typeof native.sampleToken !== "function" ||
    typeof native.removeTokenCellsFromSequence !== "function" || typeof Sampler !== "function" || model == null ||
    !Number.isInteger(internals.batchSize) || internals.batchSize < 1
  ) {
    return undefined
  }
  const ctx = native as NativeContext
  const batchSize = internals.batchSize
  const guard = internals._backendContextDisposeGuard
  const entries: Array<Entry> = []
  const freeSamplers: Array<NativeSampler> = []
  const freePenaltySamplers: Array<NativeSampler> = []
  let samplerConfig: object | undefined
  let scheduled = false
  let running = false
  let disposed = false
  /** Whether node-llama-cpp waits for this module's context lock (checked once, on a real sequence). */
  let sharedLock: Promise<boolean> | undefined

  const checkSharedLock = (sequence: SequenceInternals): Promise<boolean> =>
    sharedLock ??= (async () => {
      const lock = await acquireLock([context, "context"])
      let settled = false
      const probe = sequence.eraseContextTokenRanges([]).finally(() => {
        settled = true
      })
      // node-llama-cpp's own erase takes the context lock first: with the same lock it waits
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
      const waited = !settled
      lock.dispose()
      await probe.catch(() => undefined)
      return waited
    })()

  const ready = (entry: Entry) => !entry.left && entry.waiter !== undefined && entry.pending.length > 0

  const schedule = () => {
    if (scheduled || running || disposed) return
    scheduled = true
    // after the microtasks of the step just resolved: every generation has queued its next token
    setImmediate(() => void step())
  }

  const step = async () => {
    scheduled = false
    running = true
    const sampled: Array<{ entry: Entry; token: number }> = []
    const failed: Array<{ entry: Entry; error: unknown }> = []
    try {
      await withLock([context, "context"], async () => {
        if (internals.disposed) {
          for (const entry of entries) if (ready(entry)) failed.push({ entry, error: new Error("the context is disposed") })
          return
        }
        // running generations' next tokens first, then prompt chunks (first come, first served)
        const batch: Array<{ entry: Entry; count: number; tokens?: Array<number> }> = []
        let budget = batchSize
        for (const prefill of [false, true]) {
          for (const entry of entries) {
            if (budget === 0 || !ready(entry) || (entry.pending.length > 1) !== prefill) continue
            const count = Math.min(budget, entry.pending.length)
            batch.push({ entry, count })
            budget -= count
          }
        }
        if (batch.length === 0) return
        // in sequence order: llama.cpp splits a batch over per-sequence KV streams (node-llama-cpp's
        // contexts are not unified) into micro-batches of consecutive sequence ids, in batch order;
        // out of order, a step of k sequences could run as k forward passes
        batch.sort((a, b) => a.entry.sequenceId - b.entry.sequenceId)
        ctx.initBatch(batchSize - budget)
        const logits: Array<{ entry: Entry; index: number }> = []
        for (const item of batch) {
          const { count, entry } = item
          const last = count === entry.pending.length
          const tokens = entry.pending.slice(0, count)
          let indexes: ArrayLike<number>
          try {
            indexes = ctx.addToBatch(
              entry.sequenceId,
              entry.position,
              Uint32Array.from(tokens),
              last ? Uint32Array.of(count - 1) : new Uint32Array(0)
            )
          } catch (error) {
            failed.push({ entry, error })
            continue
          }
          item.tokens = tokens
          entry.position += count
          entry.pending = entry.pending.slice(count)
          if (last) logits.push({ entry, index: indexes[0]! })
        }
        const handle = guard?.createPreventDisposalHandle?.()
        try {
          await ctx.decodeBatch()
        } catch (error) {
          for (const { count, entry, tokens } of batch) {
            failed.push({ entry, error })
            // a stretch's sequence keeps only the cells node-llama-cpp's view knows of
            if (entry.attached !== undefined && tokens !== undefined) {
              entry.position -= count
              try {
                ctx.removeTokenCellsFromSequence(entry.sequenceId, entry.position, entry.position + count)
              } catch {
                // the decode failed before writing them
              }
            }
          }
          return
        } finally {
          handle?.dispose()
        }
        counters.steps++
        // node-llama-cpp's view of a stretch's sequence advances with the cells just written
        for (const { entry, tokens } of batch) {
          const attached = entry.attached
          if (attached === undefined || tokens === undefined) continue
          for (const token of tokens) attached._contextTokens.push(token)
          attached._nextTokenIndex += tokens.length
        }
        // every position at once: the next batch may not decode over these logits before
        const tokens = await Promise.allSettled(logits.map(({ entry, index }) => sample(entry, index)))
        tokens.forEach((result, i) => {
          const entry = logits[i]!.entry
          if (result.status === "fulfilled" && result.value !== -1) sampled.push({ entry, token: result.value })
          else failed.push({ entry, error: result.status === "rejected" ? result.reason : new Error("no greedy token") })
        })
        counters.sampled += sampled.length
      })
    } catch (error) {
      for (const entry of entries) if (ready(entry)) failed.push({ entry, error })
    } finally {
      running = false
    }
    for (const { entry, token } of sampled) {
      const waiter = entry.waiter
      entry.waiter = undefined
      waiter?.resolve(token)
    }
    for (const { entry, error } of failed) {
      const waiter = entry.waiter
      entry.waiter = undefined
      entry.pending = []
      waiter?.reject(error)
    }
    if (entries.some(ready)) schedule()
  }

  /**
   * The entry's next token from the logits at `index`: its greedy sampler's (with the window's
   * bias), else, when that winner is in the window, llama.cpp's penalised sampling of them.
   */
  const sample = async (entry: Entry, index: number): Promise<number> => {
    const token = await ctx.sampleToken(index, entry.sampler)
    const penalty = entry.penalty
    if (penalty === undefined || penalty.distinct.size === 0) return token
    counters.penalized++
    if (token === -1 || (!penalty.distinct.has(token) && !benchOptions.forceFullPass)) return token
    counters.penaltyFallbacks++
    const native = penalty.native ??= newSampler()
    native.applyConfig(penaltyConfig(penalty))
    return ctx.sampleToken(index, native)
  }

  /**
   * The penalty part of the configuration node-llama-cpp's `_resolveSamplerConfig` gives for
   * `LlamaCompletion`'s options (the same fields and values). At temperature 0 the native
   * chain is the penalty sampler, then the greedy one: what the missing fields configure
   * (top-k, top-p, min-p, seed) is not in a greedy chain, and the options that are
   * (token bias, DRY, XTC, grammar) never reach the stepper.
   */
  const penaltyConfig = (penalty: Penalty): Record<string, unknown> => {
    const { frequencyPenalty, maxPunishTokens, penalty: repeat, presencePenalty } = penalty.repeatPenalty
    const config: Record<string, unknown> = {
      repeatPenaltyMaxTokens: Math.max(maxPunishTokens ?? 64, penalty.window.length),
      repeatPenaltyTokens: Uint32Array.from(penalty.window)
    }
    if (repeat != null) config["repeatPenalty"] = repeat
    if (presencePenalty != null) config["repeatPenaltyPresencePenalty"] = presencePenalty
    if (frequencyPenalty != null) config["repeatPenaltyFrequencyPenalty"] = frequencyPenalty
    return config
  }

  /** Reads the penalty window for the entry's next token and biases its greedy sampler by it. */
  const prepareWindow = (entry: Entry) => {
    const penalty = entry.penalty
    if (penalty === undefined) return
    const { frequencyPenalty = 0, punishTokens, presencePenalty = 0 } = penalty.repeatPenalty
    const window = typeof punishTokens === "function" ? punishTokens() : punishTokens
    const counts = new Map<number, number>()
    for (const token of window) counts.set(token, (counts.get(token) ?? 0) + 1)
    penalty.window = window
    penalty.distinct = new Set(counts.keys())
    const keys: Array<number> = []
    const values: Array<number> = []
    for (const [token, count] of counts) {
      const bias = -(count * frequencyPenalty + presencePenalty) * biasScale
      if (bias < 0) {
        keys.push(token)
        values.push(bias)
      }
    }
    if (keys.length > 0) {
      // at temperature 0 the chain is the bias, then the greedy sampler (the other fields
      // configure samplers a greedy chain leaves out)
      entry.sampler.applyConfig({ tokenBiasKeys: Uint32Array.from(keys), tokenBiasValues: Float32Array.from(values) })
      penalty.biased = true
    } else if (penalty.biased) {
      entry.sampler.applyConfig(samplerConfig!)
      penalty.biased = false
    }
  }

  const newSampler = (): NativeSampler => new Sampler(model)

  const join = (
    sequenceId: number,
    sampler: NativeSampler,
    prompt: Array<number>,
    penalty: Penalty | undefined,
    attached?: AttachedSequence
  ): Entry => {
    const entry: Entry = {
      sequenceId,
      sampler,
      pending: prompt,
      position: attached?._nextTokenIndex ?? 0,
      waiter: undefined,
      left: false,
      penalty,
      attached
    }
    entries.push(entry)
    counters.joined++
    return entry
  }

  const next = (entry: Entry) =>
    new Promise<number>((resolve, reject) => {
      entry.waiter = { resolve, reject }
      schedule()
    })

  /** Takes the generation out of the stepper and removes the KV cells it wrote (a stretch's stay). */
  const leave = async (entry: Entry) => {
    entry.left = true
    const index = entries.indexOf(entry)
    if (index >= 0) entries.splice(index, 1)
    try {
      if (entry.position > 0 && entry.attached === undefined) {
        await withLock([context, "context"], () => {
          if (!internals.disposed) ctx.removeTokenCellsFromSequence(entry.sequenceId, 0, entry.position)
        })
      }
    } finally {
      const native = entry.penalty?.native
      if (native !== undefined) {
        if (disposed) native.dispose()
        else freePenaltySamplers.push(native)
      }
      if (disposed) entry.sampler.dispose()
      else {
        // a penalised generation's bias goes with it
        if (entry.penalty?.biased === true) entry.sampler.applyConfig(samplerConfig!)
        freeSamplers.push(entry.sampler)
      }
    }
  }

  const samplerFor = (sequence: SequenceInternals): NativeSampler => {
    samplerConfig ??= sequence._resolveSamplerConfig!({ temperature: 0 })
    const reused = freeSamplers.pop()
    if (reused !== undefined) return reused
    const created = new Sampler(model)
    created.applyConfig(samplerConfig)
    return created
  }

  const lean = async (sequence: LlamaContextSequence): Promise<LeanSequence | undefined> => {
    const real = sequence as unknown as SequenceInternals
    const sequenceId = real._sequenceId
    if (
      disposed || typeof sequenceId !== "number" || typeof real._resolveSamplerConfig !== "function" ||
      real.needsCheckpoints === true || (real.context as unknown) !== context ||
      typeof real.clearHistory !== "function" || typeof real.eraseContextTokenRanges !== "function"
    ) {
      return undefined
    }
    if (!(await checkSharedLock(real))) return undefined
    // the KV cells the stepper writes must be the sequence's only ones
    if (real.nextTokenIndex !== 0) await real.clearHistory()
    const id: number = sequenceId
    let evaluated = 0
    let used = false
    async function* evaluate(tokens: ReadonlyArray<number>, options?: Record<string, unknown>): AsyncGenerator<number> {
      if (used) throw new Error("a lean sequence runs one generation (no context shift)")
      used = true
      const refused = unsupported(options)
      if (refused !== undefined) throw new Error(`the batch stepper cannot honour ${refused}`)
      const repeatPenalty = options?.["repeatPenalty"]
      const penalty: Penalty | undefined = isRepeatPenalty(repeatPenalty)
        ? { repeatPenalty, window: [], distinct: new Set(), native: freePenaltySamplers.pop(), biased: false }
        : undefined
      const entry = join(id, samplerFor(real), [...tokens], penalty)
      try {
        while (true) {
          // the window as node-llama-cpp reads it: when the token is due, after the last one was handled
          prepareWindow(entry)
          const token = await next(entry)
          evaluated = entry.position
          yield token
          entry.pending = [token]
        }
      } finally {
        await leave(entry)
      }
    }
    const stand: Record<string, unknown> = {
      evaluate,
      adaptStateToTokens: async () => {},
      eraseContextTokenRanges: async (ranges: ReadonlyArray<unknown>) => {
        if (ranges.length > 0) throw new Error("a lean sequence erases nothing")
      },
      tokenPredictor: undefined
    }
    Object.defineProperties(stand, {
      model: { get: () => real.model },
      context: { get: () => real.context },
      disposed: { get: () => real.disposed },
      onDispose: { get: () => real.onDispose },
      nextTokenIndex: { get: () => evaluated }
    })
    return stand as unknown as LeanSequence
  }

  const stretch = async (
    sequence: LlamaContextSequence,
    tokens: ReadonlyArray<number>,
    count: number,
    stopAt: ReadonlySet<number> | undefined,
    signal: AbortSignal | undefined
  ): Promise<Array<number> | undefined> => {
    const real = sequence as unknown as SequenceInternals & Partial<AttachedSequence>
    const sequenceId = real._sequenceId
    const contextTokens = real._contextTokens
    const start = real._nextTokenIndex
    if (
      disposed || internals.disposed || typeof sequenceId !== "number" || typeof real._resolveSamplerConfig !== "function" ||
      real.needsCheckpoints === true || (real.context as unknown) !== context ||
      typeof real.eraseContextTokenRanges !== "function" || !Array.isArray(contextTokens) ||
      !Number.isInteger(start) || start !== contextTokens.length || (real._loadedTokenPredictions?.length ?? 0) !== 0 ||
      tokens.length === 0 || !Number.isInteger(count) || count < 1 ||
      // node-llama-cpp keeps one position free (it would shift the context to evaluate more)
      start + tokens.length + count - 1 > context.contextSize - 1
    ) {
      return undefined
    }
    if (!(await checkSharedLock(real))) return undefined
    const attached = real as unknown as AttachedSequence
    if (disposed || attached._nextTokenIndex !== start) return undefined
    const entry = join(sequenceId, samplerFor(real), [...tokens], undefined, attached)
    counters.stretches++
    const out: Array<number> = []
    try {
      while (out.length < count) {
        let token: number
        try {
          token = await next(entry)
        } catch (error) {
          if (out.length > 0) break
          // nothing decoded: the sequence goes back to what it held (a prompt may have been
          // written over several steps before the failure)
          await withLock([context, "context"], () => {
            try {
              if (attached._nextTokenIndex > start && !internals.disposed) {
                ctx.removeTokenCellsFromSequence(sequenceId, start, attached._nextTokenIndex)
              }
            } catch {
              // the context is going away: its cells with it
            }
            attached._contextTokens.length = start
            attached._nextTokenIndex = start
          })
          throw error
        }
        out.push(token)
        counters.stretchTokens++
        if (stopAt?.has(token) === true || signal?.aborted === true) break
        entry.pending = [token]
      }
      return out
    } finally {
      await leave(entry)
    }
  }

  return {
    lean,
    stretch,
    dispose: () => {
      disposed = true
      for (const sampler of [...freeSamplers, ...freePenaltySamplers]) sampler.dispose()
      freeSamplers.length = 0
      freePenaltySamplers.length = 0
    }
  }
}
