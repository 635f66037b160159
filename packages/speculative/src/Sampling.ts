/**
 * Sampling primitives of exact speculative decoding: the temperature / top-k / top-p
 * transform applied identically to target and draft distributions, a seeded PRNG, and the
 * verification rule of Leviathan et al. (2023) and Chen et al. (2023).
 * @since 0.1.0
 */
import type { TokenModel } from "@hasten/core"

type Distribution = TokenModel.Distribution

/**
 * How next tokens are chosen. `temperature: 0` is greedy (argmax, ties to the lower id).
 * Applied in this order: temperature, top-k, top-p; then renormalized.
 * @category models @since 0.1.0
 */
export interface SamplingOptions {
  readonly temperature: number
  /** Keep the `topK` most likely tokens (0 or omitted: all). */
  readonly topK?: number | undefined
  /** Keep the smallest set of most likely tokens whose mass reaches `topP` (1 or omitted: all). */
  readonly topP?: number | undefined
}

/**
 * Sampling a backend may apply itself (`SequenceExtensions.appendDistributions`): a
 * temperature, then the `topK` most likely tokens. @category models @since 0.2.0
 */
export interface NativeSampling {
  readonly temperature: number
  readonly topK: number
}

/**
 * The part of `options` a backend may apply natively and return as distributions already
 * transformed: temperature and top-k, when no top-p applies (its candidates depend on the
 * order the transforms run in); `undefined` otherwise (greedy, no top-k, or top-p < 1).
 * @category utils @since 0.2.0
 */
export const native = (options: SamplingOptions): NativeSampling | undefined =>
  options.temperature > 0 && options.topK !== undefined && Number.isInteger(options.topK) && options.topK > 0 &&
    (options.topP === undefined || options.topP >= 1)
    ? { temperature: options.temperature, topK: options.topK }
    : undefined

/** Whether `options` is greedy decoding. @category predicates @since 0.1.0 */
export const isGreedy = (options: SamplingOptions): boolean => options.temperature <= 0

/**
 * A seeded pseudo-random source (xoshiro128** seeded through splitmix32): reproducible
 * uniforms in [0, 1).
 * @category models @since 0.1.0
 */
export interface Prng {
  readonly next: () => number
}

/** A PRNG from an integer seed. @category constructors @since 0.1.0 */
export const prng = (seed: number): Prng => {
  let state = seed >>> 0
  const splitmix = (): number => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
  let a = splitmix()
  let b = splitmix()
  let c = splitmix()
  let d = splitmix()
  if ((a | b | c | d) === 0) a = 1
  return {
    next: () => {
      const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0
      const t = (b << 9) >>> 0
      c ^= a
      d ^= b
      b ^= c
      a ^= d
      c ^= t
      d = rotl(d, 11)
      return result / 4294967296
    }
  }
}

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0

/** Index of the largest value; ties go to the lower token id. @category utils @since 0.1.0 */
export const argmax = (distribution: ArrayLike<number>): number => {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < distribution.length; i++) {
    const value = distribution[i]!
    if (value > bestValue) {
      bestValue = value
      best = i
    }
  }
  return best
}

/**
 * Applies temperature, top-k and top-p to a temperature-1 distribution and renormalizes.
 * The same function is applied to the target's p and the drafter's q, as exactness requires.
 * Greedy options return the distribution unchanged (greedy decoding never samples).
 * @category constructors @since 0.1.0
 */
export const transform = (distribution: Distribution, options: SamplingOptions): Distribution => {
  if (isGreedy(options)) return distribution
  const size = distribution.length
  const out = new Float32Array(size)
  const inverse = 1 / options.temperature
  let max = 0
  for (let i = 0; i < size; i++) if (distribution[i]! > max) max = distribution[i]!
  let total = 0
  for (let i = 0; i < size; i++) {
    const value = distribution[i]!
    const scaled = value > 0 ? Math.exp(Math.log(value / max) * inverse) : 0
    out[i] = scaled
    total += scaled
  }
  const topK = options.topK ?? 0
  const topP = options.topP ?? 1
  if ((topK > 0 && topK < size) || topP < 1) {
    const order = Array.from({ length: size }, (_, i) => i).sort((x, y) => out[y]! - out[x]! || x - y)
    let keep = topK > 0 ? Math.min(topK, size) : size
    if (topP < 1) {
      let kept = 0
      for (let i = 0; i < keep; i++) kept += out[order[i]!]!
      let mass = 0
      for (let i = 0; i < keep; i++) {
        mass += out[order[i]!]!
        if (mass >= topP * kept) {
          keep = i + 1
          break
        }
      }
    }
    total = 0
    for (let i = keep; i < size; i++) out[order[i]!] = 0
    for (let i = 0; i < keep; i++) total += out[order[i]!]!
  }
  if (total > 0) { for (let i = 0; i < size; i++) out[i] = out[i]! / total }
  return out
}

/** Draws a token from a (not necessarily normalized) non-negative weight vector. @category utils @since 0.1.0 */
export const sample = (weights: ArrayLike<number>, random: Prng): number => {
  let total = 0
  for (let i = 0; i < weights.length; i++) total += weights[i]!
  if (!(total > 0)) return argmax(weights)
  let threshold = random.next() * total
  let last = 0
  for (let i = 0; i < weights.length; i++) {
    const weight = weights[i]!
    if (weight <= 0) continue
    last = i
    threshold -= weight
    if (threshold < 0) return i
  }
  return last
}

/**
 * The accept/reject rule of speculative sampling. `q` is `undefined` for deterministic
 * drafters (prompt lookup, n-gram cache), whose proposal distribution is one-hot on the
 * drafted token. Swappable only to show that tests detect a wrong rule.
 * @category models @since 0.1.0
 */
export interface AcceptanceRule {
  /** Probability of accepting `token`. */
  readonly accept: (p: Distribution, q: Distribution | undefined, token: number) => number
  /** The weights a replacement token is sampled from after a rejection. */
  readonly residual: (p: Distribution, q: Distribution | undefined, token: number) => ArrayLike<number>
}

/**
 * The exact rule: accept with probability min(1, p(x)/q(x)); on rejection sample from
 * norm(max(0, p − q)). The output is distributed exactly as the target's p.
 * @category constructors @since 0.1.0
 */
export const exact: AcceptanceRule = {
  accept: (p, q, token) => {
    const proposal = q === undefined ? 1 : q[token]!
    return proposal <= 0 ? 1 : Math.min(1, p[token]! / proposal)
  },
  residual: (p, q, token) => {
    const out = new Float32Array(p.length)
    let total = 0
    for (let i = 0; i < p.length; i++) {
      const value = p[i]! - (q === undefined ? (i === token ? 1 : 0) : q[i]!)
      if (value > 0) {
        out[i] = value
        total += value
      }
    }
    // p == q (up to rounding): a rejection had probability ~0; p is then the right law.
    return total > 0 ? out : p
  }
}

/**
 * Verifies drafted tokens against the target's distributions. `targets[i]` is the target's
 * distribution for the position of `drafts[i]` (already transformed), `targets[drafts.length]`
 * the one after the last draft. Returns how many drafts were accepted and the one token the
 * target adds (the corrected token after a rejection, or the bonus token).
 * @category constructors @since 0.1.0
 */
export const verify = (options: {
  readonly targets: ReadonlyArray<Distribution>
  readonly drafts: ReadonlyArray<number>
  readonly proposals: ReadonlyArray<Distribution> | undefined
  readonly greedy: boolean
  readonly random: Prng
  readonly rule?: AcceptanceRule | undefined
}): { readonly accepted: number; readonly next: number } => {
  const { drafts, targets } = options
  if (options.greedy) {
    for (let i = 0; i < drafts.length; i++) {
      const best = argmax(targets[i]!)
      if (best !== drafts[i]) return { accepted: i, next: best }
    }
    return { accepted: drafts.length, next: argmax(targets[drafts.length]!) }
  }
  const rule = options.rule ?? exact
  for (let i = 0; i < drafts.length; i++) {
    const p = targets[i]!
    const q = options.proposals?.[i]
    const token = drafts[i]!
    if (options.random.next() < rule.accept(p, q, token)) continue
    return { accepted: i, next: sample(rule.residual(p, q, token), options.random) }
  }
  return { accepted: drafts.length, next: sample(targets[drafts.length]!, options.random) }
}
