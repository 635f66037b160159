/**
 * Measuring from plain async TypeScript: `measure` wraps any `Llm` layer with the middleware
 * and a recorder, and returns core's Promise facade (`Llm.PromiseLlm`: `complete`, `stream`,
 * `dispose`) with `stage`, `recordItems`, `summary` and `close` beside it.
 * @since 0.1.0
 */
import { Llm } from "@hasten/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Middleware from "./Middleware.js"
import * as Recorder from "./Recorder.js"
import * as RunFiles from "./RunFiles.js"
import * as Stage from "./Stage.js"
import type { Summary } from "./Summary.js"

/**
 * Options of one call through {@link measure}: Promises do not carry the current stage
 * along, so a call made inside a `stage(...)` callback names it.
 * @category models @since 0.2.0
 */
export interface MeasureCallOptions extends Llm.PromiseCallOptions {
  /** The pipeline stage the call is attributed to. */
  readonly stage?: string | undefined
}

/**
 * A measured `Llm` for plain async code: core's `PromiseLlm` (`stream` is an
 * `AsyncIterable`; `dispose()` ends the run) plus the run's stages and summary.
 * @category models @since 0.2.0
 */
export interface MeasuredLlm extends Llm.PromiseLlm<MeasureCallOptions> {
  /** Times one invocation of a stage (duration, items/s). */
  readonly stage: <A>(name: string, run: () => Promise<A>) => Promise<A>
  readonly recordItems: (stage: string, n: number) => Promise<void>
  readonly summary: () => Promise<Summary>
  /** Ends the run (files, console table), like `dispose()`, and returns its summary. */
  readonly close: () => Promise<Summary>
}

/**
 * A measured `Llm` for plain async code: wraps `llm` with the middleware and a
 * recorder on a `ManagedRuntime`. `close()` ends the run (files, console table) and
 * returns its summary.
 * @category constructors @since 0.1.0
 */
export const measure = <E>(llm: Layer.Layer<Llm.Llm, E>, options: Recorder.Options = {}): MeasuredLlm => {
  const runtime = ManagedRuntime.make(Middleware.layer.pipe(Layer.provideMerge(llm), Layer.provideMerge(Recorder.layer(options))))
  return {
    ...Llm.promiseFromRuntime(runtime, {
      callContext: (call: MeasureCallOptions | undefined) =>
        call?.stage === undefined ? Context.empty() : Context.make(Stage.CurrentStage, call.stage)
    }),
    stage: (name, run) => runtime.runPromise(Stage.stage(name, Effect.promise(run))),
    recordItems: (stageName, n) => runtime.runPromise(Stage.recordItems(stageName, n)),
    summary: () => runtime.runPromise(Recorder.summary),
    close: async () => {
      const recorder = await runtime.runPromise(Effect.service(Recorder.PerfLogger))
      const beforeClose = await runtime.runPromise(recorder.summary)
      await runtime.dispose()
      const file = recorder.runDir === undefined ? undefined : Path.join(recorder.runDir, "summary.json")
      return file !== undefined && Fs.existsSync(file) ? RunFiles.readSummary(file) : beforeClose
    }
  }
}
