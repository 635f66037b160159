import { assert, describe, it } from "@effect/vitest"
import { Sampling, Stats } from "@hasten/evaluator"

describe("Sampling", () => {
  it("mulberry32 produces the reference sequence for seed 42", () => {
    const next = Sampling.mulberry32(42)
    assert.deepStrictEqual([next(), next(), next()], [2581720956, 1925393290, 3661312704])
  })

  it("selects the golden indices for seed 42 (GSM8K test size)", () => {
    assert.deepStrictEqual(Sampling.select(1319, 10, 42), GOLDEN_1319_10_SEED_42)
  })

  it("selects the golden indices for seed 7 out of 20", () => {
    assert.deepStrictEqual(Sampling.select(20, 20, 7), GOLDEN_20_SEED_7)
  })

  it("is prefix-stable and distinct", () => {
    const twenty = Sampling.select(1319, 20, 42)
    assert.deepStrictEqual(Sampling.select(1319, 10, 42), twenty.slice(0, 10))
    assert.strictEqual(new Set(twenty).size, 20)
    assert.notDeepEqual(Sampling.select(1319, 10, 43), twenty.slice(0, 10))
  })

  it("nextInt rejects an invalid bound", () => {
    assert.throws(() => Sampling.nextInt(Sampling.mulberry32(1), 0), /bound/)
  })
})

describe("Stats", () => {
  it("mean and standard error", () => {
    assert.strictEqual(Stats.mean([1, 0, 1, 1]), 0.75)
    assert.closeTo(Stats.standardError([1, 0, 1, 1]), 0.25, 1e-12)
    assert.strictEqual(Stats.standardError([1]), 0)
  })

  it("bootstrap interval is seeded and brackets the mean", () => {
    const values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    const a = Stats.bootstrapInterval(values, { seed: 42 })
    assert.deepStrictEqual(Stats.bootstrapInterval(values, { seed: 42 }), a)
    assert.isTrue(a[0] <= 0.7 && 0.7 <= a[1] && a[0] < a[1])
  })

  it("pairwise agreement across trials", () => {
    assert.strictEqual(Stats.pairwiseAgreement([[1, 1, 1], [1, 0]]), 0.5)
    assert.strictEqual(Stats.pairwiseAgreement([[1]]), undefined)
  })
})

describe("trialSeed", () => {
  it("trial 0 keeps the run seed; later trials get distinct 31-bit seeds (golden values from an independent Python port)", () => {
    assert.deepStrictEqual(
      [0, 1, 2, 3, 4].map((trial) => Sampling.trialSeed(42, trial)),
      [42, 1033618434, 1628824601, 288886595, 907504856]
    )
    assert.deepStrictEqual([0, 1, 2].map((trial) => Sampling.trialSeed(0, trial)), [0, 770710364, 966766118])
    const seeds = Array.from({ length: 100 }, (_, trial) => Sampling.trialSeed(7, trial))
    assert.strictEqual(new Set(seeds).size, 100)
    assert.isTrue(seeds.every((seed) => Number.isInteger(seed) && seed >= 0 && seed < 2 ** 31))
  })
})

// Cross-checked with an independent Python implementation of mulberry32 + Fisher–Yates.
const GOLDEN_1319_10_SEED_42 = [289, 1028, 477, 188, 627, 927, 127, 22, 1054, 67]
const GOLDEN_20_SEED_7 = [18, 17, 5, 15, 0, 11, 4, 2, 16, 3, 6, 19, 9, 1, 8, 7, 13, 14, 10, 12]
