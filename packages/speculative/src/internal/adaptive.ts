/**
 * Adaptive draft length: per-position acceptance rates and a linear cost model of draft and
 * verification steps, both learned online; γ maximizes expected tokens per unit of time.
 * @internal
 */

/** An exponential moving average that starts as a plain mean. */
export class Average {
  private count = 0
  value = 0
  constructor(private readonly minimumRate: number) {}
  get known(): boolean {
    return this.count > 0
  }
  get samples(): number {
    return this.count
  }
  observe(x: number): void {
    this.count++
    this.value += Math.max(1 / this.count, this.minimumRate) * (x - this.value)
  }
}

/** Prior cost of verifying m tokens, in units of one plain step: what batched evaluation costs on CPU. */
export const PRIOR_SLOPE = 0.15
/** An extra verified token is never assumed cheaper than this fraction of a plain step. */
export const MINIMUM_SLOPE = 0.05
/** In-step draft timings needed before a draft model's cost may stop probes. */
const MIN_DRAFT_SAMPLES = 4
/** Time one plain step in this many once their cost is known. */
const PLAIN_TIMING_EVERY = 4
/** Refresh the cost of a plain step at least this often (steps). */
const EXPLORE_INTERVAL = 32
/** Timed steps with k drafts before their measured cost replaces the model's for that k. */
const MIN_STEP_SAMPLES = 3
/** While speculating, every this many steps tries a neighbouring γ, so its cost gets measured. */
const NEIGHBOUR_EVERY = 8

export interface AdaptiveOptions {
  readonly maxGamma: number
  readonly probeInterval: number
  readonly kind: "model" | "lookup"
}

export class AdaptiveGamma {
  private readonly alpha: Float64Array
  private readonly seen: Float64Array
  /** Cost of a plain step (one token evaluated). */
  private readonly plain = new Average(0.05)
  /** Extra cost per additional verified token. */
  private readonly slope = new Average(0.05)
  /** Drafting cost per requested token (model drafters) or per call (lookup drafters). */
  private readonly draft = new Average(0.05)
  /**
   * Measured cost of a whole speculative step with k drafts (drafting, verification,
   * rollback), by k. A speculative step carries a fixed cost that plain decoding in the
   * backend's own loop does not (a separate evaluation call, the step's bookkeeping); a model
   * anchored at the plain step puts all of it on each extra token and so picks γ too short.
   */
  private readonly stepCost: Array<Average>
  private speculativeSteps = 0
  private neighbourUp = true
  private plainStreak = 0
  /** Plain steps between probes; doubles after each probe that did not pay, up to 16× `probeInterval`. */
  private probeEvery: number
  private probing = false
  private probeFollowUp = false
  private sincePlain = 0
  private timed = false
  private plainUntimed = 0
  /** Whether the last recorded step carried drafts (a draft model is then in step with the context). */
  private previousSpeculative = false
  /** Whether the last `choose` returned a plain step of an off period (not exploration nor a request's last token). */
  private offPeriod = false
  constructor(private readonly options: AdaptiveOptions) {
    this.probeEvery = options.probeInterval
    this.alpha = new Float64Array(options.maxGamma).fill(0.6)
    this.seen = new Float64Array(options.maxGamma)
    this.stepCost = Array.from({ length: options.maxGamma + 1 }, () => new Average(0.1))
  }

  /**
   * Starts a request. The probe schedule carries over: plain steps count across requests, so
   * a run of requests shorter than the probe interval still probes every `probeEvery` plain
   * steps of the run (restarting the count per request would never probe again once the
   * interval outgrew the requests).
   */
  reset(): void {
    this.previousSpeculative = false
  }

  /** Cost of verifying m tokens, in units of one plain step. */
  private verifyCost(m: number, optimistic = false): number {
    if (optimistic) return 1 + MINIMUM_SLOPE * (m - 1)
    if (!this.plain.known || !(this.plain.value > 0)) return 1 + PRIOR_SLOPE * (m - 1)
    const slope = this.slope.known ? this.slope.value / this.plain.value : PRIOR_SLOPE
    return 1 + Math.max(slope, MINIMUM_SLOPE) * (m - 1)
  }

  /** Cost of drafting k tokens, in units of one plain step. */
  private draftCost(k: number): number {
    const model = this.options.kind === "model"
    if (!this.draft.known || !this.plain.known || !(this.plain.value > 0)) return model ? 0.25 * k : 0
    const unit = this.draft.value / this.plain.value
    return model ? unit * k : unit
  }

  /**
   * Costs of speculative steps with 1..limit drafts, in units of one plain step (index k):
   * measured for a k with enough samples; else from the nearest measured k plus the marginal
   * cost of the extra (or fewer) tokens, taken from two measured k when there are, else from
   * the model; the model alone while nothing is measured. Computed once per choice.
   */
  private stepCosts(limit: number): Float64Array {
    const costs = new Float64Array(limit + 1)
    const measured: Array<number> = []
    if (this.plain.known && this.plain.value > 0) {
      for (let j = 1; j < this.stepCost.length; j++) if (this.stepCost[j]!.samples >= MIN_STEP_SAMPLES) measured.push(j)
    }
    const unit = (j: number) => this.stepCost[j]!.value / this.plain.value
    const lo = measured[0]
    const hi = measured[measured.length - 1]
    const measuredMarginal = measured.length >= 2 ? (unit(hi!) - unit(lo!)) / (hi! - lo!) : undefined
    for (let k = 1; k <= limit; k++) {
      const modelled = this.verifyCost(k + 1) + this.draftCost(k)
      if (measured.length === 0) {
        costs[k] = modelled
      } else if (this.stepCost[k]!.samples >= MIN_STEP_SAMPLES) {
        costs[k] = unit(k)
      } else {
        let nearest = lo!
        for (const j of measured) if (Math.abs(j - k) < Math.abs(nearest - k)) nearest = j
        const marginal = measuredMarginal ?? (this.verifyCost(k + 2) + this.draftCost(k + 1)) - modelled
        costs[k] = Math.max(unit(nearest) + Math.max(marginal, MINIMUM_SLOPE) * (k - nearest), 1)
      }
    }
    return costs
  }

  /** Expected tokens per step for each γ, divided by its expected cost; returns the best γ. */
  best(cap: number, alongside = 0): number {
    return this.search(cap, false, alongside)
  }

  /**
   * Whether speculation could pay at all at the measured drafting cost, even if every draft
   * were accepted and verification cost next to nothing per extra token. A draft model that
   * costs about as much per token as the target (a self-draft) never can, whatever the text:
   * probing it again only costs. Only a well-measured draft cost decides (the verification
   * slope is noisier and is only measured while speculating, so it never stops probes).
   */
  private canPay(cap: number): boolean {
    if (this.options.kind !== "model" || this.draft.samples < MIN_DRAFT_SAMPLES) return true
    return this.search(cap, true) > 0
  }

  /** Cost of one more position in a verification batch, in units of one plain step. */
  private positionCost(): number {
    if (!this.plain.known || !(this.plain.value > 0) || !this.slope.known) return PRIOR_SLOPE
    return Math.max(this.slope.value / this.plain.value, MINIMUM_SLOPE)
  }

  /**
   * The γ with the most expected tokens per unit of cost. `alongside` tokens are evaluated in
   * the same pass whatever γ is (a request's first step carries the prompt's uncached tail):
   * their cost is paid by plain decoding too, so it is added to both sides, and the longer
   * the tail, the longer the draft worth adding to it. Lookup drafters only: a draft model
   * would first have to evaluate the same tail itself, which this does not model.
   */
  private search(cap: number, optimistic: boolean, alongside = 0): number {
    const limit = Math.min(this.options.maxGamma, cap)
    const shared = alongside > 0 && this.options.kind === "lookup" ? alongside * this.positionCost() : 0
    const plainRate = 1 / (this.verifyCost(1) + shared)
    let bestGamma = 0
    let bestRate = 0
    let expected = 1
    let reach = 1
    const costs = optimistic ? undefined : this.stepCosts(limit)
    for (let k = 1; k <= limit; k++) {
      reach *= optimistic ? 1 : this.alpha[k - 1]!
      expected += reach
      const rate = expected / ((optimistic ? this.verifyCost(k + 1, true) + this.draftCost(k) : costs![k]!) + shared)
      if (rate > bestRate) {
        bestRate = rate
        bestGamma = k
      }
    }
    // Speculate only with a clear margin over a plain step: the estimates are noisy and every
    // speculative step has some overhead the model does not see.
    return bestRate > plainRate * 1.05 ? bestGamma : 0
  }

  /**
   * Whether the next step (with `gamma` drafts) should be timed: every step with drafts (they
   * refresh the verification slope and the drafting cost), the plain steps until their cost
   * is known, then every `PLAIN_TIMING_EVERY`-th plain step.
   */
  wantsTiming(gamma: number): boolean {
    if (gamma > 0 || !this.plain.known) return true
    return ++this.plainUntimed % PLAIN_TIMING_EVERY === 0
  }

  /**
   * γ for the next step; 0 means a plain step. Every `probeInterval` plain steps in a row, a
   * short probe. `alongside`: tokens the step evaluates whatever γ is (see `search`).
   */
  choose(cap: number, alongside = 0): number {
    this.offPeriod = false
    if (cap <= 0) return 0
    // Exploration: a plain step now and then keeps the unit of cost measured.
    if (this.sincePlain >= EXPLORE_INTERVAL || (this.timed && !this.plain.known && this.sincePlain >= 2)) return 0
    if (this.probing && !this.probeFollowUp && this.options.kind === "model" && this.draft.samples < MIN_DRAFT_SAMPLES) {
      // A probe's draft also re-syncs the draft model, so its time is not a draft step's;
      // while the draft cost is not yet well measured, a second step in a row times one.
      this.probeFollowUp = true
      return Math.min(2, cap)
    }
    this.probeFollowUp = false
    const gamma = this.best(cap, alongside)
    if (this.probing) {
      // the step after a probe: did the probe make speculation worth it again?
      this.probing = false
      this.probeEvery = gamma > 0 ? this.options.probeInterval : Math.min(this.probeEvery * 2, this.options.probeInterval * 16)
    }
    if (gamma > 0) {
      this.plainStreak = 0
      // now and then a neighbouring γ, alternately longer and shorter, so the costs around the
      // chosen one are measured rather than extrapolated
      if (++this.speculativeSteps % NEIGHBOUR_EVERY === 0) {
        this.neighbourUp = !this.neighbourUp
        const neighbour = this.neighbourUp ? gamma + 1 : gamma - 1
        if (neighbour >= 1 && neighbour <= Math.min(cap, this.options.maxGamma)) return neighbour
      }
      return gamma
    }
    this.plainStreak++
    if (this.plainStreak >= this.probeEvery) {
      this.plainStreak = 0
      if (!this.canPay(cap)) {
        this.offPeriod = true
        return 0
      }
      this.probing = true
      return Math.min(2, cap)
    }
    this.offPeriod = true
    return 0
  }

  /**
   * After `choose` returned 0: how many plain steps in a row, up to `limit`, `choose` would
   * return from here (this one included) before its next probe, taken at once so a backend
   * can run them in its own loop; the probe comes right after them. 1 when the plain step is
   * exploration amid speculation.
   */
  plainRun(limit: number): number {
    if (!this.offPeriod || limit <= 1) return 1
    const steps = Math.max(1, Math.min(limit, this.probeEvery - this.plainStreak))
    this.plainStreak += steps - 1
    return steps
  }

  /** Records a run of `steps` plain steps that took `nanos` (0: not timed). */
  recordPlainRun(steps: number, nanos: number): void {
    this.sincePlain = 0
    this.previousSpeculative = false
    if (steps > 0 && nanos > 0) {
      this.timed = true
      this.plain.observe(nanos / steps)
    }
  }

  /** Records one step: `proposed` drafts of which `accepted` were accepted, and its timings. */
  record(step: {
    readonly requested: number
    readonly proposed: number
    readonly accepted: number
    readonly draftNanos: number
    readonly verifyNanos: number
    /** Tokens in the verification batch (the first step of a request also carries the prompt). */
    readonly evaluated: number
  }): void {
    const verified = step.evaluated
    this.sincePlain = step.proposed === 0 ? 0 : this.sincePlain + 1
    if (step.verifyNanos > 0) {
      this.timed = true
      if (verified === 1) this.plain.observe(step.verifyNanos)
      else if (this.plain.known) this.slope.observe(Math.max(0, step.verifyNanos - this.plain.value) / (verified - 1))
    }
    // A drafter that sat out plain steps first catches up on the tokens it missed (a draft
    // model evaluates them, an n-gram cache learns them): that one-off cost grows with the
    // plain stretch and says nothing about a draft step's, so only in-step drafts are measured.
    const model = this.options.kind === "model"
    if (step.requested > 0 && step.draftNanos > 0 && this.previousSpeculative) {
      this.draft.observe(model ? step.draftNanos / step.requested : step.draftNanos)
    }
    // the whole step's cost by drafts verified, measured in step like the drafting cost
    if (step.proposed > 0 && step.verifyNanos > 0 && this.previousSpeculative && step.proposed < this.stepCost.length) {
      this.stepCost[step.proposed]!.observe(step.draftNanos + step.verifyNanos)
    }
    this.previousSpeculative = step.proposed > 0
    for (let i = 0; i < step.proposed && i < this.alpha.length; i++) {
      if (i > step.accepted) break
      const hit = i < step.accepted ? 1 : 0
      this.seen[i]!++
      const rate = Math.max(1 / this.seen[i]!, 0.05)
      this.alpha[i] = this.alpha[i]! + rate * (hit - this.alpha[i]!)
    }
  }

  /**
   * Expected tokens of a step with γ drafts, for γ = 0..limit: 1 + α₁ + α₁α₂ + … (the
   * accepted drafts and the token the target adds), from the acceptance learned so far;
   * with `optimism`, each αᵢ raised by that many standard errors (few samples: a wide bound).
   */
  expected(limit: number, optimism = 0): Float64Array {
    const out = new Float64Array(limit + 1)
    let reach = 1
    out[0] = 1
    for (let k = 1; k <= limit; k++) {
      const i = Math.min(k, this.alpha.length) - 1
      const alpha = this.alpha[i]!
      // an upper confidence bound: the estimate plus `optimism` standard errors of its samples
      const bound = optimism > 0 ? alpha + optimism * Math.sqrt((alpha * (1 - alpha) + 0.01) / Math.max(1, this.seen[i]!)) : alpha
      reach *= Math.min(1, bound)
      out[k] = out[k - 1]! + reach
    }
    return out
  }

  /** Steps whose first draft was verified so far: how much the acceptance estimates rest on. */
  get acceptanceSamples(): number {
    return this.seen[0] ?? 0
  }

  snapshot(): { readonly alpha: ReadonlyArray<number> } {
    return { alpha: Array.from(this.alpha) }
  }
}
