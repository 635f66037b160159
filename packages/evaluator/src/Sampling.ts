/**
 * Seeded, portable randomness: a fixed 32-bit PRNG (mulberry32) and a Fisher–Yates
 * shuffle built only from integer operations, so the same seed selects the same
 * questions on every machine and Node version.
 * @since 0.1.0
 */

/** The default seed of every evaluation. @category configuration @since 0.1.0 */
export const defaultSeed = 42

/**
 * mulberry32: returns a generator of uniform 32-bit unsigned integers. Uses only
 * `Math.imul` and 32-bit shifts, which JavaScript defines exactly.
 * @category constructors @since 0.1.0
 */
export const mulberry32 = (seed: number): () => number => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/**
 * An unbiased integer in `[0, bound)` from a 32-bit generator (rejection sampling, no floats).
 * @category constructors @since 0.1.0
 */
export const nextInt = (next: () => number, bound: number): number => {
  if (!Number.isInteger(bound) || bound <= 0 || bound > 0x100000000) {
    throw new RangeError(`bound must be an integer in 1..2^32, got ${bound}`)
  }
  const limit = 0x100000000 - (0x100000000 % bound)
  while (true) {
    const value = next()
    if (value < limit) return value % bound
  }
}

/**
 * A seeded permutation of `0..n-1` (Fisher–Yates from the end).
 * @category constructors @since 0.1.0
 */
export const permutation = (n: number, seed: number = defaultSeed): Array<number> => {
  const next = mulberry32(seed)
  const indices = Array.from({ length: n }, (_, index) => index)
  for (let i = n - 1; i > 0; i--) {
    const j = nextInt(next, i + 1)
    const swap = indices[i]!
    indices[i] = indices[j]!
    indices[j] = swap
  }
  return indices
}

/**
 * Chooses `count` distinct indices out of `n` with `seed`, in selection order. Selections
 * are prefix-stable: the first 10 of a 20-question run are the 10 of a 10-question run.
 * `count` undefined or ≥ `n` selects everything (still shuffled).
 * @category constructors @since 0.1.0
 */
export const select = (n: number, count: number | undefined, seed: number = defaultSeed): Array<number> => {
  const all = permutation(n, seed)
  return count === undefined || count >= n ? all : all.slice(0, Math.max(0, count))
}

/**
 * The sampling seed of trial `trial` of a run seeded `seed`: trial 0 uses `seed` itself
 * (a one-trial run is unchanged), later trials a seed drawn from mulberry32, a 31-bit
 * non-negative integer every provider accepts. Distinct trials get distinct seeds.
 * @category constructors @since 0.3.0
 */
export const trialSeed = (seed: number, trial: number): number => {
  if (trial === 0) return seed
  const next = mulberry32((seed ^ Math.imul(trial, 0x9e3779b9)) >>> 0)
  return next() >>> 1
}
