/**
 * Measuring from plain async TypeScript: `measure` wraps any `Llm` layer with the middleware
 * and a recorder on a `ManagedRuntime`, and returns Promise-based `complete`, `stream`,
 * `stage` and `close`.
 * @since 0.1.0
 */
import type { Completion, CompletionRequest } from "@hasten/core"
import { Llm } from "@hasten/core"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import * as Middleware from "./Middleware.js"
import * as Recorder from "./Recorder.js"
import * as RunFiles from "./RunFiles.js"
import * as Stage from "./Stage.js"
import type { Summary } from "./Summary.js"

/**
 * A measured `Llm` for plain async code: wraps `llm` with the middleware and a
 * recorder on a `ManagedRuntime`. `close()` ends the run (files, console table) and
 * returns its summary.
 * @category constructors @since 0.1.0
 */
export const measure = <E>(llm: Layer.Layer<Llm.Llm, E>, options: Recorder.Options = {}): {
  /** One call; `stage` attributes it to a pipeline stage (Promises do not carry the stage along). */
  readonly complete: (
    request: CompletionRequest.CompletionRequest,
    options?: { readonly stage?: string }
  ) => Promise<Completion.Completion>
  readonly stream: (
    request: CompletionRequest.CompletionRequest,
    options?: { readonly stage?: string }
  ) => Promise<ReadonlyArray<Completion.CompletionChunk>>
  /** Times one invocation of a stage (duration, items/s). */
  readonly stage: <A>(name: string, run: () => Promise<A>) => Promise<A>
  readonly recordItems: (stage: string, n: number) => Promise<void>
  readonly summary: () => Promise<Summary>
  readonly close: () => Promise<Summary>
} => {
  const runtime = ManagedRuntime.make(Middleware.layer.pipe(Layer.provideMerge(llm), Layer.provideMerge(Recorder.layer(options))))
  return {
    complete: (request, options) =>
      runtime.runPromise(Effect.provideService(Llm.complete(request), Stage.CurrentStage, options?.stage)),
    stream: (request, options) =>
      runtime.runPromise(Effect.provideService(Stream.runCollect(Llm.stream(request)), Stage.CurrentStage, options?.stage)),
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
