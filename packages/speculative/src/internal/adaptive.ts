/**
 * Adaptive draft length: per-position acceptance rates and a linear cost model of draft and
 * verification steps, both learned online; γ maximizes expected tokens per unit of time.
 * @internal
 */

/** Running linear fit y = a + b·x with exponential forgetting. */
class LinearCost {
  private s0 = 0
  private s1 = 0
  private s2 = 0
  private sy = 0
  private sxy = 0
  private readonly xs = new Set<number>()
  constructor(private readonly decay: number) {}

  observe(x: number, y: number): void {
    const d = this.decay
    this.s0 = this.s0 * d + 1
    this.s1 = this.s1 * d + x
    this.s2 = this.s2 * d + x * x
    this.sy = this.sy * d + y
    this.sxy = this.sxy * d + x * y
    this.xs.add(x)
  }

  get observed(): boolean {
    return this.s0 > 0
  }

  /** [a, b], or undefined when no spread in x has been seen. */
  fit(): readonly [number, number] | undefined {
    if (this.s0 === 0) return undefined
    const mean = this.sy / this.s0
    const determinant = this.s0 * this.s2 - this.s1 * this.s1
    if (this.xs.size < 2 || determinant <= 1e-9 * this.s0 * this.s0) return [mean, Number.NaN]
    const b = (this.s0 * this.sxy - this.s1 * this.sy) / determinant
    const a = (this.sy - b * this.s1) / this.s0
    return [a, b]
  }
}

/** Prior cost of verifying m tokens relative to one: what batched evaluation costs on CPU. */
const PRIOR_SLOPE = 0.15

export interface AdaptiveOptions {
  readonly maxGamma: number
  readonly probeInterval: number
  readonly kind: "model" | "lookup"
}

export class AdaptiveGamma {
  private readonly alpha: Float64Array
  private readonly seen: Float64Array
  private readonly verify = new LinearCost(0.98)
  private readonly draft = new LinearCost(0.98)
  private plainStreak = 0
  constructor(private readonly options: AdaptiveOptions) {
    this.alpha = new Float64Array(options.maxGamma).fill(0.6)
    this.seen = new Float64Array(options.maxGamma)
  }

  /** Starts a request: speculation is tried again at once. */
  reset(): void {
    this.plainStreak = 0
  }

  private verifyCost(m: number): number {
    const fit = this.verify.fit()
    if (fit === undefined) return 1 + PRIOR_SLOPE * (m - 1)
    const [a, slope] = fit
    if (Number.isNaN(slope)) return (a > 0 ? a : 1) * (1 + PRIOR_SLOPE * (m - 1))
    // Per-call overhead is never negative and an extra token never free.
    const one = Math.max(a + slope, 1e-9)
    return one + Math.max(slope, 0.01 * one) * (m - 1)
  }

  private draftCost(k: number): number {
    const fit = this.draft.fit()
    const unit = this.verifyCost(1)
    if (fit === undefined) return this.options.kind === "model" ? unit * 0.25 * k : 0
    const [a, b] = fit
    if (Number.isNaN(b)) return Math.max(0, a)
    return Math.max(0, a + b * k)
  }

  /** Expected tokens per step for each γ, divided by its expected cost; returns the best γ. */
  best(cap: number): number {
    const limit = Math.min(this.options.maxGamma, cap)
    let bestGamma = 0
    let bestRate = 1 / this.verifyCost(1)
    let expected = 1
    let reach = 1
    for (let k = 1; k <= limit; k++) {
      reach *= this.alpha[k - 1]!
      expected += reach
      const rate = expected / (this.verifyCost(k + 1) + this.draftCost(k))
      if (rate > bestRate * 1.02) {
        bestRate = rate
        bestGamma = k
      }
    }
    return bestGamma
  }

  /** γ for the next step; 0 means a plain step. Every `probeInterval` plain steps in a row, a short probe. */
  choose(cap: number): number {
    if (cap <= 0) return 0
    const gamma = this.best(cap)
    if (gamma > 0) {
      this.plainStreak = 0
      return gamma
    }
    this.plainStreak++
    if (this.plainStreak >= this.options.probeInterval) {
      this.plainStreak = 0
      return Math.min(2, cap)
    }
    return 0
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
    if (step.verifyNanos > 0) this.verify.observe(verified, step.verifyNanos)
    if (step.requested > 0 && step.draftNanos > 0) this.draft.observe(this.options.kind === "model" ? step.requested : 1, step.draftNanos)
    for (let i = 0; i < step.proposed && i < this.alpha.length; i++) {
      if (i > step.accepted) break
      const hit = i < step.accepted ? 1 : 0
      this.seen[i]!++
      const rate = Math.max(1 / this.seen[i]!, 0.05)
      this.alpha[i] = this.alpha[i]! + rate * (hit - this.alpha[i]!)
    }
  }

  snapshot(): { readonly alpha: ReadonlyArray<number> } {
    return { alpha: Array.from(this.alpha) }
  }
}
