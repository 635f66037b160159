/**
 * Exact speculative decoding over a `TokenModel`, exposed as an `Llm`: a drafter proposes
 * γ tokens, the target verifies them all in ONE evaluation, rejected positions are rolled
 * back (KV reuse), and the output is distributed exactly as the target alone would sample
 * it (token-for-token identical in greedy mode).
 * @since 0.1.0
 */
import { Boundary, Completion, CompletionRequest, Llm, LlmError, TokenModel } from "@hasten/core"
import { Context, Effect, Layer, Metric, Queue, Ref, Schema, Semaphore, Stream } from "effect"
import type * as Scope from "effect/Scope"
import type { Drafter, DraftSession, ExtendedSequence } from "./Drafter.js"
import { commonPrefix } from "./Drafter.js"
import { AdaptiveGamma } from "./internal/adaptive.js"
import { Lockstep, LockstepGamma, type Member, type StepInfo } from "./internal/lockstep.js"
import * as Sampling from "./Sampling.js"
import { InvalidOptions, SpeculativeError } from "./SpeculativeError.js"

/** Options of {@link layer}. @category models @since 0.1.0 */
export interface Options<E = never, R = never> {
  /** Who proposes tokens: `Drafter.model(…)`, `Drafter.promptLookup()`, `Drafter.ngramCache()`. */
  readonly drafter: Drafter<E, R>
  /** Draft length per step: a fixed γ (0 = plain decoding) or `"adaptive"` (default). */
  readonly gamma?: number | "adaptive" | undefined
  /** Upper bound for adaptive γ (default 12). */
  readonly maxGamma?: number | undefined
  /** Adaptive: after this many plain steps in a row, probe speculation again (default 16). */
  readonly probeInterval?: number | undefined
  /** `maxTokens` when the request has none (default 256). */
  readonly maxTokens?: number | undefined
  /**
   * Requests decoded at once (default 1), each on its own target sequence with its own
   * drafter session; their evaluations batch in the target's context, and with adaptive γ
   * they decode in lockstep (see `lockstep`). The target (and a draft model) must offer that
   * many sequences (`Local.layer({ sequences })`).
   */
  readonly sequences?: number | undefined
  /**
   * Adaptive γ under concurrency: with k requests decoding, γ ≤ floor(budget / k) − 1, so a
   * batched step verifies at most about `stepTokenBudget` tokens — speculation backs off
   * (γ → 0) once batching already fills the step (default 16). A fixed γ is used as given.
   */
  readonly stepTokenBudget?: number | undefined
  /**
   * With `sequences` > 1 and adaptive γ (default true): verification in lockstep. The requests
   * decoding at once take one γ per step, so their verifications have equal lengths and run
   * as one batched forward pass, and their plain runs have equal lengths; the γ (0 included)
   * is chosen from their acceptance and the measured cost of a batched step. `false`: each
   * request chooses its own γ (within the step budget) and decodes on its own.
   */
  readonly lockstep?: boolean | undefined
  /** Temperature when the request has none (default 0.8; 0 is greedy). */
  readonly temperature?: number | undefined
  /** Seed when the request has none (default 0): sampling is reproducible. */
  readonly seed?: number | undefined
  /** The `Llm` name (default `"speculative"`). */
  readonly name?: string | undefined
  /**
   * What the adaptive controller measures step costs with: `"cpu"` (default) is the CPU time
   * of this process (all threads), robust when other processes compete for the cores;
   * `"wall"` is Effect's `Clock`.
   */
  readonly costClock?: "cpu" | "wall" | undefined
  /** Replaces the acceptance rule; only to show that tests catch a wrong one. @internal */
  readonly acceptanceRule?: Sampling.AcceptanceRule | undefined
  /** Observes each lockstep step as it starts; for tests. @internal */
  readonly onLockstep?: ((step: StepInfo) => void) | undefined
}

/**
 * Per-request statistics, attached as `Completion.facts.speculative` (`Facts.Speculative`
 * from `@hasten/core`, every field present).
 * @category models @since 0.1.0
 */
export interface RequestStats {
  readonly drafter: string
  /** acceptedTokens / draftTokens. */
  readonly acceptanceRate: number
  /** Mean number of drafts accepted per verification step that had drafts. */
  readonly meanAcceptedLength: number
  /** perPosition[i]: acceptance rate of the i-th draft of a step, given the ones before it were accepted. */
  readonly perPosition: ReadonlyArray<number>
  /** Target evaluations (forward passes); the first also evaluates the prompt's uncached tail. */
  readonly targetEvaluations: number
  /** Output tokens per target evaluation (1 for plain decoding). */
  readonly tokensPerEvaluation: number
  readonly draftTokens: number
  readonly acceptedTokens: number
  /** Steps that verified drafts / plain steps (γ = 0 or nothing drafted). */
  readonly speculativeSteps: number
  readonly plainSteps: number
  /** Speculative steps where every draft was accepted, so the target added a bonus token. */
  readonly bonusSteps: number
  /** Speculative steps that rejected a draft and resampled from the residual. */
  readonly rejectionSteps: number
  /** Mean γ requested from the drafter over speculative steps. */
  readonly meanGamma: number
}

/** Totals over every request a layer served. @category models @since 0.1.0 */
export interface RunStats extends Omit<RequestStats, "drafter"> {
  readonly drafter: string
  readonly requests: number
  readonly outputTokens: number
}

/**
 * Per-run totals of a speculative layer, readable by perf-logger or a benchmark.
 * @category services @since 0.1.0
 */
export class SpeculativeStats extends Context.Service<SpeculativeStats, {
  readonly get: Effect.Effect<RunStats>
  readonly reset: Effect.Effect<void>
}>()("@hasten/speculative/SpeculativeStats") {}

const draftTokensTotal = Metric.counter("hasten_speculative_draft_tokens_total", {
  description: "Tokens proposed by the drafter",
  incremental: true
})
const acceptedTokensTotal = Metric.counter("hasten_speculative_accepted_tokens_total", {
  description: "Drafted tokens the target accepted",
  incremental: true
})
const targetEvaluationsTotal = Metric.counter("hasten_speculative_target_evaluations_total", {
  description: "Target forward passes while decoding",
  incremental: true
})

interface Tally {
  targetEvaluations: number
  draftTokens: number
  acceptedTokens: number
  speculativeSteps: number
  plainSteps: number
  bonusSteps: number
  rejectionSteps: number
  gammaSum: number
  drafted: Array<number>
  acceptedAt: Array<number>
  outputTokens: number
  requests: number
}

const emptyTally = (): Tally => ({
  targetEvaluations: 0,
  draftTokens: 0,
  acceptedTokens: 0,
  speculativeSteps: 0,
  plainSteps: 0,
  bonusSteps: 0,
  rejectionSteps: 0,
  gammaSum: 0,
  drafted: [],
  acceptedAt: [],
  outputTokens: 0,
  requests: 0
})

const addTally = (into: Tally, from: Tally): Tally => {
  const drafted = into.drafted.slice()
  const acceptedAt = into.acceptedAt.slice()
  from.drafted.forEach((count, i) => (drafted[i] = (drafted[i] ?? 0) + count))
  from.acceptedAt.forEach((count, i) => (acceptedAt[i] = (acceptedAt[i] ?? 0) + count))
  return {
    targetEvaluations: into.targetEvaluations + from.targetEvaluations,
    draftTokens: into.draftTokens + from.draftTokens,
    acceptedTokens: into.acceptedTokens + from.acceptedTokens,
    speculativeSteps: into.speculativeSteps + from.speculativeSteps,
    plainSteps: into.plainSteps + from.plainSteps,
    bonusSteps: into.bonusSteps + from.bonusSteps,
    rejectionSteps: into.rejectionSteps + from.rejectionSteps,
    gammaSum: into.gammaSum + from.gammaSum,
    drafted,
    acceptedAt,
    outputTokens: into.outputTokens + from.outputTokens,
    requests: into.requests + from.requests
  }
}

const summarize = (drafter: string, tally: Tally): RequestStats => ({
  drafter,
  acceptanceRate: tally.draftTokens === 0 ? 0 : tally.acceptedTokens / tally.draftTokens,
  meanAcceptedLength: tally.speculativeSteps === 0 ? 0 : tally.acceptedTokens / tally.speculativeSteps,
  perPosition: tally.drafted.map((count, i) => (count === 0 ? 0 : (tally.acceptedAt[i] ?? 0) / count)),
  targetEvaluations: tally.targetEvaluations,
  tokensPerEvaluation: tally.targetEvaluations === 0 ? 0 : tally.outputTokens / tally.targetEvaluations,
  draftTokens: tally.draftTokens,
  acceptedTokens: tally.acceptedTokens,
  speculativeSteps: tally.speculativeSteps,
  plainSteps: tally.plainSteps,
  bonusSteps: tally.bonusSteps,
  rejectionSteps: tally.rejectionSteps,
  meanGamma: tally.speculativeSteps === 0 ? 0 : tally.gammaSum / tally.speculativeSteps
})

/** Request fields that change the output but that this engine does not implement. */
/** The request fields speculative decoding cannot honour, as `[field, what]` (refused, never dropped). */
const unsupportedFields = (request: CompletionRequest.CompletionRequest): Array<readonly [string, string]> => {
  const fields: Array<readonly [string, string]> = []
  if (request.responseFormat !== undefined && request.responseFormat.type !== "text") {
    fields.push(["responseFormat", "responseFormat (json)"])
  }
  if (request.adapter !== undefined) fields.push(["adapter", "adapter (LoRA)"])
  if (request.repeatPenalty !== undefined && request.repeatPenalty !== 1) fields.push(["repeatPenalty", "repeatPenalty"])
  if (request.frequencyPenalty !== undefined && request.frequencyPenalty !== 0) fields.push(["frequencyPenalty", "frequencyPenalty"])
  if (request.presencePenalty !== undefined && request.presencePenalty !== 0) fields.push(["presencePenalty", "presencePenalty"])
  if (request.logprobs === true) fields.push(["logprobs", "logprobs"])
  if (request.contextOverflow !== undefined && request.contextOverflow !== "error") {
    fields.push(["contextOverflow", `contextOverflow "${request.contextOverflow}"`])
  }
  if (request.providerOptions !== undefined && Object.keys(request.providerOptions).length > 0) {
    fields.push(["providerOptions", "providerOptions"])
  }
  return fields
}

/** What one concurrent request decodes with. */
interface Slot {
  readonly session: DraftSession
  readonly sequence: ExtendedSequence
  readonly controller: AdaptiveGamma
  /** Its place in the lockstep, when the layer decodes in lockstep. */
  readonly member: Member
}

/** Longest plain run for streams (chunk granularity) and requests with stop sequences (overshoot). */
const PLAIN_RUN_SHORT = 8
/**
 * Backed off by the step budget: a plain run this long, then look again (a request leaving may
 * lift the cap). Longer runs keep the batching engine's steps full (each re-entry desynchronises
 * the k requests for a step).
 */
const BACKED_OFF_RUN = 32
/** In lockstep, the longest plain run of a step: a request that arrives meanwhile waits for it. */
const LOCKSTEP_RUN = 16

const cpuNanos = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) * 1000
}

const optional = Schema.optionalKey

/** The numeric options, checked when the layer is built. */
const checkOptions = Boundary.optionsChecker(Schema.Struct({
  gamma: optional(
    Schema.Unknown.check(
      Schema.makeFilter((gamma: unknown) =>
        gamma === "adaptive" || (typeof gamma === "number" && Number.isInteger(gamma) && gamma >= 0 && gamma <= 64)
          ? undefined
          : `must be "adaptive" or an integer in 0..64, got ${String(gamma)}`
      )
    )
  ),
  maxGamma: optional(Boundary.IntBetween(1, 64)),
  probeInterval: optional(Boundary.PositiveInt),
  sequences: optional(Boundary.IntBetween(1, 256)),
  stepTokenBudget: optional(Boundary.PositiveInt),
  maxTokens: optional(Boundary.NonNegativeInt),
  temperature: optional(Boundary.NonNegative)
}))

const validate = (options: Options<any, any>): Effect.Effect<void, SpeculativeError> => {
  const bad = checkOptions(options)
  return bad === undefined
    ? Effect.void
    : Effect.fail(new SpeculativeError({ reason: new InvalidOptions({ field: bad.field, description: bad.message }) }))
}

/**
 * Builds the speculative `Llm` and its run statistics over the `TokenModel` in context.
 * `sequences` target sequences (default 1) are kept for the layer's lifetime, so calls that
 * share a prompt prefix reuse their KV state; that many requests are decoded at once — with
 * adaptive γ in lockstep, one γ per step for all of them, chosen from their acceptance and the
 * measured cost of a batched step (`lockstep`).
 * @category constructors @since 0.1.0
 */
export const make = <E = never, R = never>(
  options: Options<E, R>
): Effect.Effect<
  { readonly llm: Llm.LlmService; readonly stats: SpeculativeStats["Service"] },
  E | SpeculativeError | LlmError.LlmError,
  TokenModel.TokenModel | R | Scope.Scope
> =>
  Effect.gen(function*() {
    yield* validate(options)
    const target = yield* TokenModel.TokenModel
    const name = options.name ?? "speculative"
    const drafterName = options.drafter.name
    const fixedGamma = options.gamma === undefined || options.gamma === "adaptive" ? undefined : options.gamma
    const maxGamma = fixedGamma ?? options.maxGamma ?? 12
    const stepTokenBudget = options.stepTokenBudget ?? 16
    const sequences = options.sequences ?? 1
    /** One per concurrent request: a target sequence, a drafter session, an adaptive γ. */
    const slots: Array<Slot> = []
    for (let i = 0; i < sequences; i++) {
      const controller = new AdaptiveGamma({
        maxGamma: Math.max(1, maxGamma),
        probeInterval: options.probeInterval ?? 16,
        kind: options.drafter.kind
      })
      slots.push({
        session: yield* options.drafter.make(target),
        sequence: yield* target.sequence(),
        controller,
        member: { controller, remaining: 0, first: true, runLimit: Infinity }
      })
    }
    /** Several requests with adaptive γ: one γ per step for all of them (their controllers give acceptance only). */
    const lockstep = sequences > 1 && fixedGamma === undefined && options.lockstep !== false
      ? new Lockstep(
        new LockstepGamma({
          maxGamma: Math.max(1, maxGamma),
          probeInterval: options.probeInterval ?? 16,
          maxRun: LOCKSTEP_RUN,
          kind: options.drafter.kind,
          sequences
        }),
        { stepTokenBudget, maxGamma: Math.max(1, maxGamma), onStep: options.onLockstep }
      )
      : undefined
    const free = slots.slice()
    const semaphore = yield* Semaphore.make(slots.length)
    /** Requests decoding now: γ's cap under concurrency. */
    let decoding = 0
    /** Takes a free slot for the request's lifetime (the semaphore guarantees one). */
    const withSlot = <A, E2, R2>(use: (slot: Slot) => Effect.Effect<A, E2, R2>) =>
      semaphore.withPermit(Effect.acquireUseRelease(
        Effect.sync(() => {
          decoding++
          const slot = free.pop()!
          slot.member.first = true
          lockstep?.enter(slot.member)
          return slot
        }),
        // requests started together all count before the first chooses its γ
        (slot) => Effect.andThen(Effect.yieldNow, use(slot)),
        (slot) =>
          Effect.sync(() => {
            decoding--
            lockstep?.leave(slot.member)
            free.push(slot)
          })
      ))
    const totals = yield* Ref.make(emptyTally())
    const endTokens = new Set(target.endTokens)
    const costClock = options.costClock ?? "cpu"

    const decode = Effect.fnUntraced(function*(
      slot: Slot,
      request: CompletionRequest.CompletionRequest,
      onText?: (delta: string) => void
    ) {
      const { session, sequence, controller, member } = slot
      const unsupported = unsupportedFields(request)
      if (unsupported.length > 0) {
        return yield* LlmError.make(
          name,
          new LlmError.InvalidRequest({
            field: unsupported[0]![0],
            description: `speculative decoding does not support ${unsupported.map(([, what]) => what).join(", ")}`
          })
        )
      }
      const clock = yield* Effect.clockWith(Effect.succeed)
      const now = costClock === "cpu" ? cpuNanos : () => Number(clock.currentTimeNanosUnsafe())
      const start = clock.currentTimeMillisUnsafe()
      const maxTokens = request.maxTokens ?? options.maxTokens ?? 256
      const sampling: Sampling.SamplingOptions = {
        temperature: request.temperature ?? options.temperature ?? 0.8,
        topK: request.topK,
        topP: request.topP
      }
      const greedy = Sampling.isGreedy(sampling)
      const native = Sampling.native(sampling)
      // the target's distribution arrays, reused from step to step (read before the next step)
      const targetBuffers: Array<Float32Array> = []
      const random = Sampling.prng(((request.seed ?? options.seed ?? 0) ^ Math.imul(request.trial ?? 0, 0x9e3779b1)) >>> 0)
      // the prompt as the target's own Llm renders it (chat template, BOS, the template's stop
      // strings) when the backend says; else the request's text, tokenized
      const rendered = target.prompt !== undefined ? yield* target.prompt(request) : undefined
      let prompt = rendered !== undefined
        ? rendered.tokens
        : yield* target.tokenize(CompletionRequest.promptText(request), { addBos: target.bos !== undefined })
      if (prompt.length === 0 && target.bos !== undefined) prompt = [target.bos]
      if (prompt.length === 0) {
        return yield* LlmError.make(
          name,
          new LlmError.InvalidRequest({ description: `empty prompt and ${target.name} has no BOS token to start from` })
        )
      }
      const stops = (rendered?.stop ?? request.stop ?? []).filter((stop) => stop.length > 0)
      const tally = emptyTally()
      tally.requests = 1
      const output: Array<number> = []
      const context: Array<number> = prompt.slice()
      let finishReason: Completion.FinishReason = "length"
      let firstToken: number | undefined
      let cut: number | undefined
      let streamed = 0
      // Streaming holds back what could still turn out to start a stop sequence, and an incomplete UTF-8 tail.
      const holdback = stops.reduce((longest, stop) => Math.max(longest, stop.length - 1), 0)

      /** Takes decoded tokens into the output (end token, stop sequences, maxTokens, streaming); true when done. */
      const emit = Effect.fnUntraced(function*(tokens: ReadonlyArray<number>) {
        let done = false
        for (const token of tokens) {
          if (endTokens.has(token)) {
            finishReason = "stop"
            done = true
            break
          }
          output.push(token)
          context.push(token)
          if (firstToken === undefined) firstToken = clock.currentTimeMillisUnsafe()
          if (stops.length > 0) {
            const sofar = yield* target.detokenize(output)
            for (const stop of stops) {
              const index = sofar.indexOf(stop)
              if (index >= 0 && (cut === undefined || index < cut)) cut = index
            }
            if (cut !== undefined) {
              finishReason = "stop"
              done = true
              break
            }
          }
          if (output.length >= maxTokens) {
            done = true
            break
          }
        }
        if (onText !== undefined && !done) {
          const sofar = yield* target.detokenize(output)
          let safe = sofar.length - holdback
          while (safe > streamed && sofar.charCodeAt(safe - 1) === 0xfffd) safe--
          if (safe > streamed) {
            onText(sofar.slice(streamed, safe))
            streamed = safe
          }
        }
        return done
      })

      if (maxTokens > 0) {
        // Reuse the KV state of the longest common prefix. The rest of the prompt is evaluated in
        // ONE batch together with the first step's drafts, exactly as plain decoding evaluates a
        // prompt (llama.cpp's numerics depend on how tokens are batched; near-ties could flip).
        const current = sequence.tokens()
        const keep = Math.min(commonPrefix(current, prompt), prompt.length - 1)
        if (current.length > keep) yield* sequence.truncate(keep)
        let head: Array<number> = prompt.slice(keep)
        yield* session.begin(prompt)
        controller.reset()
        let done = false
        const shortRuns = onText !== undefined || stops.length > 0
        /** In lockstep: plain single steps still owed to the current step's plain run (no fast path). */
        let owed = 0
        while (!done) {
          const remaining = maxTokens - output.length
          // the first step also evaluates the prompt's uncached tail, which a longer draft shares
          // with k requests decoding, their steps batch: keep a step within the token budget
          const concurrencyCap = Math.max(0, Math.floor(stepTokenBudget / decoding) - 1)
          const backedOff = fixedGamma === undefined && concurrencyCap === 0
          let gamma: number
          /** In lockstep, the plain run of this step (γ = 0). */
          let run = 0
          // backed off by the step budget, there is no γ to share: each request runs its own
          // plain stretches on the batching engine (as without lockstep) until requests leave
          if (lockstep !== undefined && !backedOff) {
            if (owed > 0) {
              owed--
              gamma = 0
            } else {
              member.remaining = remaining
              member.first = head.length > 1
              member.runLimit = shortRuns ? PLAIN_RUN_SHORT : Infinity
              const decision = yield* lockstep.join(member, now)
              gamma = Math.min(decision.gamma, remaining - 1)
              run = Math.max(1, Math.min(decision.run, remaining))
            }
          } else {
            gamma = fixedGamma !== undefined
              ? Math.min(fixedGamma, remaining - 1)
              : backedOff
              ? 0
              : controller.choose(Math.min(remaining - 1, concurrencyCap), head.length - 1)
          }
          // The clock is read only for steps whose cost the controller will use: every step with
          // drafts, and a sample of the plain ones; none with a fixed γ or in lockstep (each read
          // of the CPU clock is a system call).
          if (gamma === 0 && greedy && sequence.generateGreedy !== undefined) {
            // A plain stretch: the backend's own decoding loop runs it, no round trip per token.
            // Its length is what the controller would choose step by step (plain steps up to the
            // next probe); streams and stop sequences take short runs (granularity, overshoot).
            const limit = shortRuns ? Math.min(remaining, PLAIN_RUN_SHORT) : remaining
            // backed off under concurrency: plain runs of a few tokens, then look again
            const count = lockstep !== undefined && !backedOff
              ? run
              : fixedGamma !== undefined
              ? limit
              : backedOff
              ? Math.min(limit, BACKED_OFF_RUN)
              : controller.plainRun(limit)
            const timedRun = fixedGamma === undefined && lockstep === undefined
            const t0 = timedRun ? now() : 0
            const out = yield* sequence.generateGreedy(head, count, endTokens)
            if (out.length === 0) {
              return yield* LlmError.make(
                name,
                new LlmError.BadResponse({ description: `${target.name}: generateGreedy decoded no token` })
              )
            }
            if (fixedGamma === undefined) controller.recordPlainRun(out.length, head.length > 1 || !timedRun ? 0 : now() - t0)
            tally.targetEvaluations += out.length
            tally.plainSteps += out.length
            done = yield* emit(out)
            head = [out[out.length - 1]!]
            continue
          }
          // a lockstep plain run without the fast path: its further steps follow without joining
          if (lockstep !== undefined && gamma === 0 && owed === 0 && run > 1) owed = run - 1
          // in lockstep the lockstep times whole steps of all the requests
          const timed = fixedGamma === undefined && lockstep === undefined && controller.wantsTiming(gamma)
          const t0 = timed ? now() : 0
          const draft = gamma > 0
            ? yield* session.draft({ context, promptLength: prompt.length, maximum: gamma, sampling, random })
            : { tokens: [] as ReadonlyArray<number>, proposals: undefined }
          const drafts = draft.tokens.length > gamma ? draft.tokens.slice(0, gamma) : draft.tokens
          const t1 = timed && gamma > 0 ? now() : t0
          const base = sequence.tokens().length
          const evaluated = head.concat(drafts)
          const offset = head.length - 1
          let accepted: number
          let next: number
          if (greedy && sequence.appendGreedy !== undefined) {
            const argmaxes = yield* sequence.appendGreedy(evaluated, offset)
            accepted = 0
            while (accepted < drafts.length && argmaxes[accepted] === drafts[accepted]) accepted++
            next = argmaxes[accepted]!
          } else {
            let targets: ReadonlyArray<TokenModel.Distribution>
            if (!greedy && sequence.appendDistributions !== undefined) {
              // the positions before `offset` need no distribution; with top-k sampling the
              // backend returns each already transformed (its candidates only)
              while (targetBuffers.length < evaluated.length - offset) targetBuffers.push(new Float32Array(target.vocabularySize))
              const distributions = yield* sequence.appendDistributions(
                evaluated,
                offset,
                native,
                targetBuffers
              )
              targets = native !== undefined ? distributions : distributions.map((p) => Sampling.transform(p, sampling))
            } else {
              const all = yield* sequence.append(evaluated)
              const distributions = offset === 0 ? all : all.slice(offset)
              targets = greedy ? distributions : distributions.map((p) => Sampling.transform(p, sampling))
            }
            const verdict = Sampling.verify({
              targets,
              drafts,
              proposals: draft.proposals,
              greedy,
              random,
              rule: options.acceptanceRule
            })
            accepted = verdict.accepted
            next = verdict.next
          }
          // the rollback is part of what a step with drafts costs
          if (accepted < drafts.length) yield* sequence.truncate(base + head.length + accepted)
          const t2 = timed ? now() : 0
          tally.targetEvaluations++
          if (drafts.length > 0) {
            tally.speculativeSteps++
            tally.gammaSum += gamma
            tally.draftTokens += drafts.length
            tally.acceptedTokens += accepted
            if (accepted === drafts.length) tally.bonusSteps++
            else tally.rejectionSteps++
            for (let i = 0; i < drafts.length && i <= accepted; i++) {
              tally.drafted[i] = (tally.drafted[i] ?? 0) + 1
              if (i < accepted) tally.acceptedAt[i] = (tally.acceptedAt[i] ?? 0) + 1
            }
          } else {
            tally.plainSteps++
          }
          if (fixedGamma === undefined) {
            // The first step also evaluates the prompt (and syncs a draft model to it): its timing
            // says nothing about the cost of a decode step, so only its acceptance is recorded.
            const first = head.length > 1
            controller.record({
              requested: gamma,
              proposed: drafts.length,
              accepted,
              draftNanos: first || !timed ? 0 : t1 - t0,
              verifyNanos: first || !timed ? 0 : t2 - t1,
              evaluated: evaluated.length
            })
          }
          const emitted = drafts.slice(0, accepted)
          emitted.push(next)
          done = yield* emit(emitted)
          head = [next]
        }
        yield* session.end(context, prompt.length)
      }
      tally.outputTokens = output.length
      const decoded = yield* target.detokenize(output)
      const stats = summarize(drafterName, tally)
      yield* Ref.update(totals, (run) => addTally(run, tally))
      yield* Metric.update(draftTokensTotal, tally.draftTokens)
      yield* Metric.update(acceptedTokensTotal, tally.acceptedTokens)
      yield* Metric.update(targetEvaluationsTotal, tally.targetEvaluations)
      const end = clock.currentTimeMillisUnsafe()
      const text = cut === undefined ? decoded : decoded.slice(0, cut)
      if (onText !== undefined && text.length > streamed) onText(text.slice(streamed))
      return new Completion.Completion({
        text,
        finishReason,
        usage: { inputTokens: prompt.length, outputTokens: output.length },
        model: request.model,
        provider: name,
        timing: firstToken === undefined ? { start, end } : { start, firstToken, end },
        facts: { speculative: stats },
        // the output token ids: data, not a fact about the call
        metadata: { tokens: output.slice() }
      })
    })

    // no stack capture per call: on a tiny local model a whole request can take a millisecond
    const complete = (request: CompletionRequest.CompletionRequest) =>
      withSlot((slot) => decode(slot, request)).pipe(Effect.withSpan("Speculative.complete", {}, { captureStackTrace: false }))

    const stream = (request: CompletionRequest.CompletionRequest) =>
      Stream.callback<Completion.CompletionChunk, LlmError.LlmError>((queue) =>
        withSlot((slot) => decode(slot, request, (text) => Queue.offerUnsafe(queue, new Completion.CompletionChunk({ text })))).pipe(
          Effect.flatMap((completion) =>
            Effect.sync(() => {
              Queue.offerUnsafe(
                queue,
                new Completion.CompletionChunk({
                  text: "",
                  tokens: completion.usage.outputTokens,
                  finishReason: completion.finishReason,
                  usage: completion.usage,
                  model: completion.model,
                  ...(completion.facts !== undefined ? { facts: completion.facts } : {}),
                  ...(completion.metadata !== undefined ? { metadata: completion.metadata } : {})
                })
              )
              Queue.endUnsafe(queue)
            })
          ),
          Effect.catch((error) => Queue.fail(queue, error)),
          Effect.withSpan("Speculative.stream", {}, { captureStackTrace: false })
        )
      )

    const llm: Llm.LlmService = { name, complete, stream }
    const stats: SpeculativeStats["Service"] = {
      get: Effect.map(Ref.get(totals), (tally) => ({
        ...summarize(drafterName, tally),
        requests: tally.requests,
        outputTokens: tally.outputTokens
      })),
      reset: Ref.set(totals, emptyTally())
    }
    return { llm, stats }
  })

/**
 * The speculative `Llm` (and its `SpeculativeStats`) over the `TokenModel` below it.
 * Fails with `SpeculativeError` when the drafter cannot pair with the target (different
 * vocabulary) or an option is out of range.
 * @category layers @since 0.1.0
 */
export const layer = <E = never, R = never>(
  options: Options<E, R>
): Layer.Layer<Llm.Llm | SpeculativeStats, E | SpeculativeError | LlmError.LlmError, TokenModel.TokenModel | Exclude<R, Scope.Scope>> =>
  Layer.effectContext(
    Effect.map(make(options), ({ llm, stats }) => Context.make(Llm.Llm, llm).pipe(Context.add(SpeculativeStats, stats)))
  )

/**
 * Plain decoding through the same machinery (γ = 0): the baseline a speculative layer is
 * compared with, token-for-token.
 * @category layers @since 0.1.0
 */
export const layerPlain = (options?: Omit<Options, "drafter" | "gamma">) =>
  layer({ ...options, drafter: { name: "none", kind: "lookup", make: () => Effect.succeed(noDraft) }, gamma: 0 })

const noDraft: DraftSession = {
  begin: () => Effect.void,
  draft: () => Effect.succeed({ tokens: [] }),
  end: () => Effect.void
}
