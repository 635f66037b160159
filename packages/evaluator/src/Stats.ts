/**
 * Summary statistics for scores: mean, standard error, a seeded percentile bootstrap
 * confidence interval, and agreement across trials.
 * @since 0.1.0
 */
import { mulberry32, nextInt } from "./Sampling.js"

/** Arithmetic mean; `NaN`-free (0 for an empty list). @category statistics @since 0.1.0 */
export const mean = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return 0
  let sum = 0
  for (const value of values) sum += value
  return sum / values.length
}

/** Standard error of the mean (sample standard deviation / √n); 0 below two values. @category statistics @since 0.1.0 */
export const standardError = (values: ReadonlyArray<number>): number => {
  const n = values.length
  if (n < 2) return 0
  const m = mean(values)
  let squares = 0
  for (const value of values) squares += (value - m) ** 2
  return Math.sqrt(squares / (n - 1)) / Math.sqrt(n)
}

/**
 * Percentile bootstrap confidence interval of the mean: `resamples` resamples drawn
 * with a seeded generator, so the interval is reproducible.
 * @category statistics @since 0.1.0
 */
export const bootstrapInterval = (
  values: ReadonlyArray<number>,
  options: { readonly seed: number; readonly resamples?: number; readonly confidence?: number }
): readonly [number, number] => {
  const n = values.length
  if (n === 0) return [0, 0]
  const resamples = options.resamples ?? 1000
  const confidence = options.confidence ?? 0.95
  const next = mulberry32(options.seed)
  const means: Array<number> = []
  for (let r = 0; r < resamples; r++) {
    let sum = 0
    for (let i = 0; i < n; i++) sum += values[nextInt(next, n)]!
    means.push(sum / n)
  }
  means.sort((a, b) => a - b)
  const tail = (1 - confidence) / 2
  const lower = means[Math.floor(tail * (resamples - 1))]!
  const upper = means[Math.ceil((1 - tail) * (resamples - 1))]!
  return [lower, upper]
}

/**
 * Agreement across trials: for each group (an item's trial scores), the fraction of
 * trial pairs with equal scores, averaged over groups with at least two trials.
 * `undefined` when no group has two trials.
 * @category statistics @since 0.1.0
 */
export const pairwiseAgreement = (groups: ReadonlyArray<ReadonlyArray<number>>): number | undefined => {
  const rates: Array<number> = []
  for (const group of groups) {
    if (group.length < 2) continue
    let pairs = 0
    let equal = 0
    for (let i = 0; i < group.length; i++) {
      for (let j = i + 1; j < group.length; j++) {
        pairs++
        if (group[i] === group[j]) equal++
      }
    }
    rates.push(equal / pairs)
  }
  return rates.length === 0 ? undefined : mean(rates)
}

/** Rounds to 6 decimals so reports print stable, readable numbers. @category statistics @since 0.1.0 */
export const round = (value: number): number => Math.round(value * 1e6) / 1e6
