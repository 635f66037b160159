/**
 * Reading time for measurements: epoch milliseconds with sub-millisecond precision.
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"

/** The live clock (the `Clock` reference's default): its time is also `performance`'s. */
const liveClock = Context.get(Context.empty(), Clock.Clock)

/**
 * Epoch milliseconds with sub-millisecond precision from `clock`. The live clock is read
 * through `performance` (no BigInt arithmetic on the hot path); any other clock (`TestClock`)
 * through its own `currentTimeNanosUnsafe`.
 */
export const nowMs = (clock: Clock.Clock): number =>
  clock === liveClock ? performance.timeOrigin + performance.now() : Number(clock.currentTimeNanosUnsafe()) / 1e6

/** Rounds to three decimals (microseconds, for milliseconds) as the run log stores times. */
export const round3 = (value: number): number => Math.round(value * 1000) / 1000
