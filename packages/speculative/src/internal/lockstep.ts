/**
 * Verification in lockstep: the requests a layer decodes at once take ONE γ per step, so their
 * verifications have equal lengths (llama.cpp runs a batch whose sequences carry equal token
 * counts as one micro-batch) and their plain runs have equal lengths (one engine batch per
 * token). The γ is chosen from the requests' own acceptance estimates and a cost model of a
 * whole batched step that is shared by the layer and measured online, step by step.
 * @internal
 */
import { Deferred, Effect } from "effect"
import { type AdaptiveGamma, Average, MINIMUM_SLOPE, PRIOR_SLOPE } from "./adaptive.js"

/** What every request of one step does. */
export interface Decision {
  /** Drafts per request (each request caps it at its remaining tokens − 1); 0: a plain run. */
  readonly gamma: number
  /** With γ = 0: plain tokens per request before the next step (each request caps it). */
  readonly run: number
  /** Requests in the step. */
  readonly size: number
}

/** Measured speculative steps of one γ needed before their cost replaces the modelled one. */
const MIN_STEP_SAMPLES = 1
/**
 * While speculating, a plain run this often (steps) keeps the cost of a plain step measured.
 * An exploration costs about 20 plain tokens per request (a switching run and a timed one):
 * at 110M, 4 requests, every 32 steps made a fifth of a long-lived layer's tokens plain.
 */
const EXPLORE_EVERY = 96
/**
 * An exploring plain run starts with one this short: the first plain run after speculative
 * steps carries the switch's one-off costs (at 42M, 4 requests: a 16-token run 100 ms against
 * 81 ms in an off period), so it is not timed, and the run after it is.
 */
const SWITCH_RUN = 4
/** A probe: this many speculative steps in a row (the first carries the drafter's catch-up). */
const PROBE_STEPS = 2
const PROBE_GAMMA = 2
/** While speculating, every this many steps tries a neighbouring γ, so its cost gets measured. */
const NEIGHBOUR_EVERY = 8
/** Speculate only when its expected rate beats plain decoding's by this factor. */
const MARGIN = 1.05
/**
 * Verified first drafts (over the step's requests) before the acceptance estimates decide
 * alone. Until then a step decides on an upper confidence bound of each acceptance rate
 * (`WARM_OPTIMISM` standard errors above it): speculation that could still pay is tried and
 * so measured, one that could not even then stops at once (a decision on the estimates of a
 * step or two is a coin toss near break-even).
 */
const MIN_ACCEPTANCE_SAMPLES = 16
const WARM_OPTIMISM = 2
/** Prior drafting cost per drafted token of a draft model, in plain steps (as `AdaptiveGamma`'s). */
const PRIOR_DRAFT = 0.25

export interface LockstepOptions {
  readonly maxGamma: number
  readonly probeInterval: number
  /** Longest plain run per step (a request that arrives waits at most one run). */
  readonly maxRun: number
  readonly kind: "model" | "lookup"
  /** Most requests in a step (the layer's sequences). */
  readonly sequences: number
}

/**
 * The shared γ: costs of batched steps by the number of requests in them — a plain step (per
 * token of a plain run) and a speculative step of each γ (drafting, verification, rollback,
 * bookkeeping of every request, until the last is ready for the next step) — against the
 * expected tokens of the step summed over its requests. Probes, exploration and neighbouring
 * γ as in `AdaptiveGamma`, per step of the whole batch.
 */
export class LockstepGamma {
  /** By requests in the step: cost of one plain token-step of all of them. */
  private readonly plain: Array<Average>
  /** By requests in the step, then by γ: cost of a whole speculative step. */
  private readonly steps: Array<Array<Average>>
  private plainStreak = 0
  private probeEvery: number
  private probeLeft = 0
  private afterProbe = false
  private sincePlain = 0
  private exploreFollowUp = false
  private speculativeSteps = 0
  private neighbourUp = true
  constructor(private readonly options: LockstepOptions) {
    this.probeEvery = options.probeInterval
    this.plain = Array.from({ length: options.sequences + 1 }, () => new Average(0.05))
    this.steps = Array.from(
      { length: options.sequences + 1 },
      () => Array.from({ length: options.maxGamma + 1 }, () => new Average(0.1))
    )
  }

  /**
   * Costs of a step of `size` requests with γ = 1..limit, in the unit of the plain step's cost
   * (1 when that is not measured yet): measured for a γ with enough samples; else the nearest
   * measured γ plus the marginal cost per γ (from two measured γ, else the prior); the prior
   * alone (verification 0.15 and a draft model's drafting 0.25 of a plain step per draft)
   * while none is measured.
   */
  costs(size: number, limit: number): Float64Array {
    const plain = this.plain[size]!
    const unit = plain.known && plain.value > 0 ? plain.value : undefined
    const priorMarginal = PRIOR_SLOPE + (this.options.kind === "model" ? PRIOR_DRAFT : 0)
    const steps = new Float64Array(limit + 1)
    const measured: Array<number> = []
    if (unit !== undefined) {
      for (let g = 1; g < this.steps[size]!.length; g++) if (this.steps[size]![g]!.samples >= MIN_STEP_SAMPLES) measured.push(g)
    }
    const cost = (g: number) => this.steps[size]![g]!.value / unit!
    const lo = measured[0]
    const hi = measured[measured.length - 1]
    const marginal = Math.max(measured.length >= 2 ? (cost(hi!) - cost(lo!)) / (hi! - lo!) : priorMarginal, MINIMUM_SLOPE)
    for (let g = 1; g <= limit; g++) {
      if (measured.length === 0) {
        steps[g] = 1 + priorMarginal * g
      } else if (this.steps[size]![g]!.samples >= MIN_STEP_SAMPLES) {
        steps[g] = cost(g)
      } else {
        let nearest = lo!
        for (const j of measured) if (Math.abs(j - g) < Math.abs(nearest - g)) nearest = j
        steps[g] = Math.max(cost(nearest) + marginal * (g - nearest), 1)
      }
    }
    return steps
  }

  /** The γ with the most expected tokens per unit of cost; 0 unless it beats a plain step clearly. */
  best(size: number, limit: number, expected: Float64Array): number {
    const steps = this.costs(size, limit)
    // a plain step: one token per request, at unit cost
    const plainRate = expected[0]!
    let bestGamma = 0
    let bestRate = 0
    for (let g = 1; g <= limit; g++) {
      const rate = expected[g]! / steps[g]!
      if (rate > bestRate) {
        bestRate = rate
        bestGamma = g
      }
    }
    return bestRate > plainRate * MARGIN ? bestGamma : 0
  }

  /**
   * The next step of `size` requests: γ ≤ `limit` (0 when the step budget leaves none: backed
   * off, plain runs of `maxRun`), `expected[γ]` the tokens the step would yield, summed over
   * its requests.
   */
  choose(size: number, limit: number, expected: Float64Array): { readonly gamma: number; readonly run: number } {
    if (limit <= 0) return { gamma: 0, run: this.options.maxRun }
    if (this.exploreFollowUp) {
      // as long as a plain run of an off period: a short run costs more per token (each step's
      // own overhead), so it would make plain decoding look dearer than it is
      this.exploreFollowUp = false
      return { gamma: 0, run: this.options.maxRun }
    }
    if (this.sincePlain >= EXPLORE_EVERY || (!this.plain[size]!.known && this.sincePlain >= 2)) {
      this.sincePlain = 0
      this.exploreFollowUp = true
      return { gamma: 0, run: SWITCH_RUN }
    }
    if (this.probeLeft > 0) {
      this.probeLeft--
      this.sincePlain++
      return { gamma: Math.min(PROBE_GAMMA, limit), run: 0 }
    }
    const gamma = this.best(size, limit, expected)
    if (this.afterProbe) {
      // did the probe make speculation worth it again?
      this.afterProbe = false
      this.probeEvery = gamma > 0 ? this.options.probeInterval : Math.min(this.probeEvery * 2, this.options.probeInterval * 16)
    }
    if (gamma > 0) {
      this.plainStreak = 0
      this.sincePlain++
      if (++this.speculativeSteps % NEIGHBOUR_EVERY === 0) {
        this.neighbourUp = !this.neighbourUp
        const neighbour = this.neighbourUp ? gamma + 1 : gamma - 1
        if (neighbour >= 1 && neighbour <= limit) return { gamma: neighbour, run: 0 }
      }
      return { gamma, run: 0 }
    }
    if (this.plainStreak >= this.probeEvery) {
      this.plainStreak = 0
      this.probeLeft = PROBE_STEPS - 1
      this.afterProbe = true
      this.sincePlain++
      return { gamma: Math.min(PROBE_GAMMA, limit), run: 0 }
    }
    const run = Math.max(1, Math.min(this.options.maxRun, this.probeEvery - this.plainStreak))
    this.plainStreak += run
    this.sincePlain = 0
    return { gamma: 0, run }
  }

  /** Records what a step of `size` requests cost: a plain run of `run` tokens (γ = 0) or a speculative step. */
  record(step: { readonly size: number; readonly gamma: number; readonly run: number; readonly nanos: number }): void {
    if (!(step.nanos > 0) || step.size >= this.plain.length) return
    if (step.gamma === 0) this.plain[step.size]!.observe(step.nanos / Math.max(1, step.run))
    else if (step.gamma < this.steps[step.size]!.length) this.steps[step.size]![step.gamma]!.observe(step.nanos)
  }
}

/** A request decoding under a `Lockstep`: what it tells the step before each join. */
export interface Member {
  readonly controller: AdaptiveGamma
  /** Tokens it may still decode. */
  remaining: number
  /** Whether its next step also evaluates prompt tokens (that step's time is not a decode step's). */
  first: boolean
  /** Longest plain run it takes: short for streams and stop sequences, else unbounded. */
  runLimit: number
}

/** A released step, for tests. @internal */
export interface StepInfo extends Decision {
  /** Whether its cost will be recorded (the same requests as the step before, of the same kind; none on its first step). */
  readonly measurable: boolean
}

/**
 * The step barrier: a step starts once every request decoding has joined (a request that is
 * running a plain run, setting up its prompt or finishing is waited for; one that leaves is
 * not). Requests enter when they take a sequence and leave when they give it back, at any
 * time; a leave can release the others. Nothing else is awaited while joined, so every
 * request that has entered either joins or leaves: no deadlock.
 */
export class Lockstep {
  private readonly members = new Set<Member>()
  private readonly waiting = new Map<Member, Deferred.Deferred<Decision>>()
  /** Changes when a request enters or leaves: a step whose requests changed is not timed. */
  private version = 0
  private open: { readonly version: number; readonly decision: Decision; readonly start: number; readonly measurable: boolean } | undefined
  private now: () => number = () => 0
  constructor(
    private readonly gamma: LockstepGamma,
    private readonly options: {
      readonly stepTokenBudget: number
      readonly maxGamma: number
      readonly onStep?: ((step: StepInfo) => void) | undefined
    }
  ) {}

  enter(member: Member): void {
    this.members.add(member)
    this.version++
  }

  leave(member: Member): void {
    this.members.delete(member)
    this.waiting.delete(member)
    this.version++
    this.release()
  }

  /** Waits until every request decoding has joined; `now` reads the cost clock. */
  join(member: Member, now: () => number): Effect.Effect<Decision> {
    return Effect.suspend(() => {
      const deferred = Deferred.makeUnsafe<Decision>()
      this.waiting.set(member, deferred)
      this.now = now
      this.release()
      return Deferred.await(deferred)
    })
  }

  private release(): void {
    if (this.waiting.size === 0 || this.waiting.size < this.members.size) return
    const t = this.now()
    const open = this.open
    const same = open !== undefined && open.version === this.version
    // the step just ended, timed from its release until the last of its requests came back
    if (same && open.measurable) {
      this.gamma.record({ size: open.decision.size, gamma: open.decision.gamma, run: open.decision.run, nanos: t - open.start })
    }
    const cohort = Array.from(this.waiting.keys())
    const size = cohort.length
    const limit = Math.min(Math.max(0, Math.floor(this.options.stepTokenBudget / size) - 1), this.options.maxGamma)
    const samples = cohort.reduce((sum, member) => sum + member.controller.acceptanceSamples, 0)
    const optimism = samples < MIN_ACCEPTANCE_SAMPLES ? WARM_OPTIMISM : 0
    const expected = new Float64Array(limit + 1)
    for (const member of cohort) {
      const own = member.controller.expected(limit, optimism)
      for (let g = 0; g <= limit; g++) expected[g]! += own[g]!
    }
    const choice = this.gamma.choose(size, limit, expected)
    // a plain run: as short as the shortest a request takes (a stream's), so that no request
    // idles at the barrier while the others run on; no longer than any request needs (one that
    // finishes sooner leaves, which holds no one up)
    const run = choice.gamma > 0 ? 0 : Math.max(
      1,
      Math.min(
        choice.run,
        cohort.reduce((shortest, member) => Math.min(shortest, member.runLimit), Infinity),
        cohort.reduce((longest, member) => Math.max(longest, member.remaining), 1)
      )
    )
    const decision: Decision = { gamma: choice.gamma, run, size }
    // a step right after a switch carries its one-off costs: a speculative step the drafters'
    // catch-up, a plain run the switch to the backend's own loop
    const measurable = !cohort.some((member) => member.first) && same && (open.decision.gamma > 0) === (decision.gamma > 0)
    this.open = { version: this.version, decision, start: t, measurable }
    this.options.onStep?.({ ...decision, measurable })
    const deferreds = Array.from(this.waiting.values())
    this.waiting.clear()
    for (const deferred of deferreds) Deferred.doneUnsafe(deferred, Effect.succeed(decision))
  }
}
