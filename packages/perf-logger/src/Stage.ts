/**
 * Pipeline stages: `stage(name, effect)` runs one invocation of a stage — calls made inside
 * are attributed to it (`CurrentStage`), its duration is recorded, and successful
 * invocations count as items for items/s — and `recordItems` records items explicitly.
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { stageInstrumentsFor } from "./internal/instruments.js"
import { nowMs, round3 } from "./internal/time.js"
import { PerfLogger } from "./Recorder.js"

/**
 * The pipeline stage the current fiber runs in (set by {@link stage}); calls made inside
 * are attributed to it.
 * @category services @since 0.1.0
 */
export const CurrentStage = Context.Reference<string | undefined>("@hasten/perf-logger/CurrentStage", {
  defaultValue: () => undefined
})

/**
 * Runs `effect` as one invocation of pipeline stage `name`: calls inside are attributed to
 * the stage, the invocation's duration is recorded, and (unless `recordItems` is used for
 * the stage) each successful invocation counts as one item for items/s.
 * @category stages @since 0.1.0
 */
export const stage: {
  (name: string): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | PerfLogger>
  <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | PerfLogger>
} = function(name: string, effect?: Effect.Effect<any, any, any>): any {
  if (effect === undefined) return (self: Effect.Effect<any, any, any>) => runStage(name, self)
  return runStage(name, effect)
} as any

const runStage = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | PerfLogger> =>
  Effect.flatMap(Effect.service(PerfLogger), (recorder) =>
    Effect.clockWith((clock) => {
      const start = nowMs(clock)
      return effect.pipe(
        Effect.provideService(CurrentStage, name),
        Effect.onExit((exit) =>
          Effect.contextWith((context: Context.Context<never>) => {
            const durationMs = nowMs(clock) - start
            recorder.recordUnsafe({
              type: "stage",
              stage: name,
              start: round3(start),
              durationMs: round3(durationMs),
              ok: Exit.isSuccess(exit)
            })
            const instruments = stageInstrumentsFor(name)
            instruments.duration.updateUnsafe(durationMs / 1000, context)
            if (Exit.isSuccess(exit)) instruments.items.updateUnsafe(1, context)
            return Effect.void
          })
        ),
        Effect.withSpan("PerfLogger.stage", { attributes: { "hasten.stage": name } })
      )
    }))

/**
 * Records `n` items processed by stage `stage` (for stages that handle many items per
 * invocation, e.g. a batch).
 * @category stages @since 0.1.0
 */
export const recordItems = (stage: string, n: number): Effect.Effect<void, never, PerfLogger> =>
  Effect.flatMap(Effect.service(PerfLogger), (recorder) => recorder.recordItems(stage, n))
