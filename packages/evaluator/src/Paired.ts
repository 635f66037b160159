/**
 * Paired comparison of two candidates scored on the same items: McNemar's exact test on
 * the discordant pairs for accuracy, and a seeded paired bootstrap confidence interval of
 * the mean score difference. Pairing removes the item-to-item variance that two separate
 * confidence intervals carry, so a real difference shows up with far fewer questions.
 * @since 0.3.0
 */
import type { ItemRecord } from "./ItemRecord.js"
import * as Stats from "./Stats.js"

/**
 * McNemar's exact test: the two-sided binomial test of `onlyBase` successes out of
 * `onlyBase + onlyOther` discordant pairs at p = ½, as statsmodels'
 * `mcnemar(table, exact=True)` computes it: `min(1, 2 · P(X ≤ min(b, c)))`.
 * `1` when there are no discordant pairs.
 * @category statistics @since 0.3.0
 */
export const mcnemarExact = (onlyBase: number, onlyOther: number): number => {
  for (const [name, value] of [["onlyBase", onlyBase], ["onlyOther", onlyOther]] as const) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`)
  }
  const n = onlyBase + onlyOther
  const k = Math.min(onlyBase, onlyOther)
  if (n === 0) return 1
  // P(X ≤ k) for X ~ Binomial(n, ½). Up to n = 1000, 2^-n is a normal double and the terms
  // C(n, i) · 2^-n are summed directly (exact for small n); beyond, in log space.
  if (n <= 1000) {
    let term = 0.5 ** n
    let sum = term
    for (let i = 1; i <= k; i++) {
      term = (term * (n - i + 1)) / i
      sum += term
    }
    return Math.min(1, 2 * sum)
  }
  const logHalf = n * Math.log(0.5)
  let logChoose = 0
  const terms: Array<number> = [logHalf]
  for (let i = 1; i <= k; i++) {
    logChoose += Math.log(n - i + 1) - Math.log(i)
    terms.push(logChoose + logHalf)
  }
  const max = Math.max(...terms)
  let sum = 0
  for (const term of terms) sum += Math.exp(term - max)
  return Math.min(1, 2 * Math.exp(max + Math.log(sum)))
}

/**
 * Percentile bootstrap interval of the mean of paired differences `other[i] - base[i]`:
 * items are resampled with replacement (`resamples` times, a seeded mulberry32 stream, so
 * the interval is reproducible), keeping each item's two scores together.
 * @category statistics @since 0.3.0
 */
export const pairedBootstrapInterval = (
  base: ReadonlyArray<number>,
  other: ReadonlyArray<number>,
  options: { readonly seed: number; readonly resamples?: number; readonly confidence?: number }
): readonly [number, number] => {
  if (base.length !== other.length) {
    throw new RangeError(`paired scores need equal lengths, got ${base.length} and ${other.length}`)
  }
  return Stats.bootstrapInterval(base.map((value, index) => other[index]! - value), options)
}

/** One candidate compared with the base candidate on the items both scored. @category models @since 0.3.0 */
export interface PairedComparison {
  readonly base: string
  readonly other: string
  /** Items scored (no error) for both candidates: the pairs. */
  readonly pairs: number
  /** Items left out because either candidate has an error (or no record) on them. */
  readonly excluded: number
  readonly bothRight: number
  readonly onlyBase: number
  readonly onlyOther: number
  readonly neither: number
  /** Accuracy of `other` minus accuracy of `base` over the pairs. */
  readonly accuracyDifference: number
  /** McNemar's exact two-sided p-value on `onlyBase` vs `onlyOther`. */
  readonly mcnemarP: number
  /** Mean score of `other` minus `base` over the pairs. */
  readonly meanDifference: number
  /** 95% paired bootstrap interval (seeded) of `meanDifference`. */
  readonly ci95: readonly [number, number]
}

interface ItemOutcome {
  readonly correct: boolean
  readonly score: number
}

/**
 * Per item: mean score over its scored trials, and correct when a strict majority of its
 * trials is correct. An item with any errored trial is left out (no partial pairs).
 */
const outcomes = (records: ReadonlyArray<ItemRecord>): Map<string, ItemOutcome> => {
  const groups = new Map<string, Array<ItemRecord>>()
  const failed = new Set<string>()
  for (const record of records) {
    if (record.status !== "ok") failed.add(record.itemId)
    const group = groups.get(record.itemId) ?? []
    group.push(record)
    groups.set(record.itemId, group)
  }
  const result = new Map<string, ItemOutcome>()
  for (const [itemId, group] of groups) {
    if (failed.has(itemId)) continue
    const right = group.filter((record) => record.correct === true).length
    result.set(itemId, { correct: right * 2 > group.length, score: Stats.mean(group.map((record) => record.score ?? 0)) })
  }
  return result
}

/**
 * Compares two candidates' records item by item. With several trials an item is one pair:
 * its mean score, and correct when a strict majority of its trials is (trials of one item
 * are not independent, so they are not separate pairs). Items are taken in `selection`
 * order, so the bootstrap is reproducible.
 * @category constructors @since 0.3.0
 */
export const compare = (options: {
  readonly base: { readonly name: string; readonly items: ReadonlyArray<ItemRecord> }
  readonly other: { readonly name: string; readonly items: ReadonlyArray<ItemRecord> }
  readonly selection: ReadonlyArray<string>
  readonly seed: number
}): PairedComparison => {
  const base = outcomes(options.base.items)
  const other = outcomes(options.other.items)
  let bothRight = 0, onlyBase = 0, onlyOther = 0, neither = 0
  const baseScores: Array<number> = []
  const otherScores: Array<number> = []
  for (const itemId of options.selection) {
    const a = base.get(itemId)
    const b = other.get(itemId)
    if (a === undefined || b === undefined) continue
    if (a.correct && b.correct) bothRight++
    else if (a.correct) onlyBase++
    else if (b.correct) onlyOther++
    else neither++
    baseScores.push(a.score)
    otherScores.push(b.score)
  }
  const pairs = baseScores.length
  const interval = pairedBootstrapInterval(baseScores, otherScores, { seed: options.seed })
  return {
    base: options.base.name,
    other: options.other.name,
    pairs,
    excluded: options.selection.length - pairs,
    bothRight,
    onlyBase,
    onlyOther,
    neither,
    accuracyDifference: Stats.round(pairs === 0 ? 0 : (onlyOther - onlyBase) / pairs),
    mcnemarP: Number(mcnemarExact(onlyBase, onlyOther).toPrecision(6)),
    meanDifference: Stats.round(Stats.mean(otherScores) - Stats.mean(baseScores)),
    ci95: [Stats.round(interval[0]), Stats.round(interval[1])]
  }
}
