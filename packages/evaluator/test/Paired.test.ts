import { assert, describe, it } from "@effect/vitest"
import type { Dataset, ItemRecord } from "@hasten/evaluator"
import { Evaluator, Paired, Report, Scorer, Stats } from "@hasten/evaluator"
import { Effect } from "effect"
import { scripted } from "./fakes.js"

describe("Paired.mcnemarExact", () => {
  it("matches exact binomial values computed by hand", () => {
    // b = 1, c = 5: P(X ≤ 1 | n = 6, ½) = (1 + 6) / 64, doubled
    assert.strictEqual(Paired.mcnemarExact(1, 5), 14 / 64)
    assert.strictEqual(Paired.mcnemarExact(5, 1), 14 / 64)
    // b = 0, c = 7: 2 / 2^7
    assert.strictEqual(Paired.mcnemarExact(0, 7), 2 / 128)
    assert.strictEqual(Paired.mcnemarExact(0, 5), 0.0625)
    // no discordant pairs, or a perfect tie: p = 1 (clipped)
    assert.strictEqual(Paired.mcnemarExact(0, 0), 1)
    assert.strictEqual(Paired.mcnemarExact(3, 3), 1)
  })

  it("matches statsmodels' mcnemar(exact=True) / scipy's binomtest", () => {
    // Agresti (2002) presidential approval table [[794, 86], [150, 570]]: statsmodels'
    // mcnemar(table, exact=True).pvalue = scipy.stats.binomtest(86, 236).pvalue
    assert.closeTo(Paired.mcnemarExact(86, 150), 3.7159361395713866e-05, 1e-15)
    assert.closeTo(Paired.mcnemarExact(10, 12), 0.8318119049072266, 1e-13)
    // large n stays accurate (log-space sum): binomtest(480, 1040)
    assert.closeTo(Paired.mcnemarExact(480, 560), 0.014259079095385853, 1e-12)
    // beyond n = 1000, the log-space sum: binomtest(2400, 5000).pvalue
    assert.closeTo(Paired.mcnemarExact(2400, 2600), 0.004883649737517494, 1e-12)
  })

  it("rejects counts that are not non-negative integers", () => {
    assert.throws(() => Paired.mcnemarExact(-1, 2), /onlyBase must be a non-negative integer, got -1/)
    assert.throws(() => Paired.mcnemarExact(1, 2.5), /onlyOther must be a non-negative integer, got 2.5/)
  })
})

describe("Paired.pairedBootstrapInterval", () => {
  it("keeps each item's two scores together: a constant shift has a zero-width interval", () => {
    // Scores vary a lot between items, but `other` is always base + 0.1: the paired
    // interval is exactly [0.1, 0.1], while separate intervals overlap widely.
    const base = [0, 1, 0.2, 0.9, 0.1, 0.8, 0.3, 0.7, 0, 0.5]
    const other = base.map((value) => value + 0.1)
    const [lower, upper] = Paired.pairedBootstrapInterval(base, other, { seed: 1 })
    assert.closeTo(lower, 0.1, 1e-12)
    assert.closeTo(upper, 0.1, 1e-12)
    const separate = Stats.bootstrapInterval(base, { seed: 1 })
    assert.isAbove(separate[1] - separate[0], 0.3)
  })

  it("percentiles of the resampled means: two items with differences 0 and 1 give [0, 1]", () => {
    // each resample's mean is 0, ½ or 1 with probabilities ¼, ½, ¼: the 2.5% and 97.5%
    // percentiles of 1000 resamples are 0 and 1
    assert.deepStrictEqual(Paired.pairedBootstrapInterval([0, 0], [0, 1], { seed: 42 }), [0, 1])
  })

  it("is deterministic for a seed and changes with it", () => {
    const base = Array.from({ length: 40 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0)
    const other = Array.from({ length: 40 }, (_, i) => (i * 5) % 4 === 0 ? 0 : 1)
    const first = Paired.pairedBootstrapInterval(base, other, { seed: 7 })
    assert.deepStrictEqual(Paired.pairedBootstrapInterval(base, other, { seed: 7 }), first)
    const mean = Stats.mean(other) - Stats.mean(base)
    assert.isAtMost(first[0], mean)
    assert.isAtLeast(first[1], mean)
    const others = [8, 9, 10, 11].map((seed) => Paired.pairedBootstrapInterval(base, other, { seed }))
    assert.isTrue(others.some((interval) => interval[0] !== first[0] || interval[1] !== first[1]))
  })

  it("refuses unpaired lengths", () => {
    assert.throws(() => Paired.pairedBootstrapInterval([1], [1, 0], { seed: 1 }), /equal lengths, got 1 and 2/)
  })
})

const record = (candidate: string, itemId: string, trial: number, correct: boolean | "error"): ItemRecord.ItemRecord =>
  correct === "error"
    ? {
      candidate,
      itemId,
      index: 0,
      trial,
      status: "error",
      error: { stage: "generate", tag: "X", message: "x", turn: 0 },
      usage: { inputTokens: 0, outputTokens: 0, calls: 1 }
    }
    : {
      candidate,
      itemId,
      index: 0,
      trial,
      status: "ok",
      score: correct ? 1 : 0,
      correct,
      usage: { inputTokens: 0, outputTokens: 0, calls: 1 }
    }

describe("Paired.compare", () => {
  it("pairs items by id, leaves out items with an error in either, counts discordant pairs", () => {
    const base = [record("a", "q1", 0, true), record("a", "q2", 0, true), record("a", "q3", 0, false), record("a", "q4", 0, "error")]
    const other = [record("b", "q1", 0, true), record("b", "q2", 0, false), record("b", "q3", 0, true), record("b", "q4", 0, true)]
    const result = Paired.compare({
      base: { name: "a", items: base },
      other: { name: "b", items: other },
      selection: ["q1", "q2", "q3", "q4", "q5"],
      seed: 1
    })
    assert.deepStrictEqual(
      [result.pairs, result.excluded, result.bothRight, result.onlyBase, result.onlyOther, result.neither],
      [3, 2, 1, 1, 1, 0]
    )
    assert.strictEqual(result.mcnemarP, 1)
    assert.strictEqual(result.accuracyDifference, 0)
  })

  it("with trials, an item is one pair: correct by strict majority, scored by its mean", () => {
    const base = [record("a", "q1", 0, true), record("a", "q1", 1, true), record("a", "q1", 2, false)]
    const other = [record("b", "q1", 0, true), record("b", "q1", 1, false), record("b", "q1", 2, false)]
    const result = Paired.compare({ base: { name: "a", items: base }, other: { name: "b", items: other }, selection: ["q1"], seed: 1 })
    assert.deepStrictEqual([result.pairs, result.onlyBase, result.onlyOther], [1, 1, 0])
    assert.strictEqual(result.meanDifference, Stats.round(1 / 3 - 2 / 3))
  })
})

const dataset: Dataset.Dataset = {
  name: "toy",
  items: Array.from({ length: 10 }, (_, index) => ({
    id: `toy:${index}`,
    index,
    question: `What is ${index} + ${index}?`,
    answer: String(index * 2)
  })),
  report: { source: "memory", rows: 10, loaded: 10, skipped: [] }
}
const indexOf = (text: string) => Number(/What is (\d+) \+/.exec(text)?.[1] ?? -1)

describe("reports with two candidates", () => {
  it.effect("carry the paired comparison against the first candidate, in JSON and Markdown", () =>
    Effect.gen(function*() {
      // "half" is right on even questions only, "all" on every question: 5 discordant pairs, all one way
      const half = scripted("half", (request) => {
        const i = indexOf(request.messages[0]!.content)
        return `#### ${i % 2 === 0 ? i * 2 : i * 2 + 1}`
      })
      const all = scripted("all", (request) => `#### ${indexOf(request.messages[0]!.content) * 2}`)
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [{ name: "half", model: "m", llm: half }, { name: "all", model: "m", llm: all }]
      })
      const [comparison] = result.report.comparisons!
      assert.deepStrictEqual(
        [comparison!.base, comparison!.other, comparison!.pairs, comparison!.onlyBase, comparison!.onlyOther, comparison!.bothRight],
        ["half", "all", 10, 0, 5, 5]
      )
      assert.strictEqual(comparison!.mcnemarP, 0.0625)
      assert.strictEqual(comparison!.accuracyDifference, 0.5)
      assert.strictEqual(comparison!.meanDifference, 0.5)
      const markdown = Report.toMarkdown(result.report)
      assert.match(markdown, /Paired against half/)
      assert.match(markdown, /\| all \| half \| 10 \| 5 \| 0 \| 5 \| 0 \| \+50\.0 pt \| 0\.0625 \| \+0\.500 \[\+0\.\d+, \+0\.\d+\] \|/)
      const compared = Report.compare([{ label: "run", report: result.report }])
      assert.match(compared, /\| run \| all \| half \| 10 \| 5 \| 0 \| 5 \| 0 \| \+50\.0 pt \| 0\.0625 \|/)
      // one candidate: no comparisons key, so single-candidate reports are unchanged
      const single = yield* Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [{ name: "half", model: "m", llm: half }] })
      assert.isFalse("comparisons" in single.report)
    }))
})
