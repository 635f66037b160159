/**
 * Seeded, platform-independent randomness for the simulators (FNV-1a + mulberry32).
 * @since 0.1.0
 */

/** FNV-1a over the UTF-16 code units of the parts, joined by NUL. */
export const hash = (...parts: ReadonlyArray<string | number>): number => {
  let value = 0x811c9dc5
  const text = parts.join("\u0000")
  for (let i = 0; i < text.length; i++) {
    value ^= text.charCodeAt(i)
    value = Math.imul(value, 0x01000193) >>> 0
  }
  return value >>> 0
}

/** A generator of floats in [0, 1) from a 32-bit seed. */
export const mulberry32 = (seed: number): () => number => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One float in [0, 1) derived from a seed and a label: the same inputs give the same float. */
export const unit = (seed: number, ...parts: ReadonlyArray<string | number>): number => mulberry32(hash(seed, ...parts))()
