/**
 * The same from plain async TypeScript: a rate-limited `Llm` and a limiter for any async
 * function, each over its own `ManagedRuntime`.
 * @since 0.1.0
 */
import { Llm } from "@hasten/core"
import { Effect, Layer, ManagedRuntime } from "effect"
import { type Cost, layerLimiter, wrap } from "./Limiter.js"
import { layer } from "./Middleware.js"
import type { Options } from "./Options.js"

/**
 * A rate-limited `Llm` for code that does not use Effect: core's one Promise facade.
 * @deprecated use `Llm.PromiseLlm` from `@hasten/core`.
 * @category models @since 0.1.0
 */
export type PromiseLlm = Llm.PromiseLlm

/**
 * The middleware over any `Llm` layer as core's Promise facade (`complete`, `stream` as an
 * `AsyncIterable`, `dispose`, `await using`).
 * @category constructors @since 0.1.0
 */
export const createLlm = <E>(upstream: Layer.Layer<Llm.Llm, E>, options: Options = {}): Llm.PromiseLlm =>
  Llm.toPromise(layer(options).pipe(Layer.provide(upstream)))

/** Budgets and retries for any async function. @category models @since 0.1.0 */
export interface PromiseLimiter {
  /** Runs `task` under the budgets of `cost.key`; rejections that are retryable `LlmError`s are retried. */
  readonly run: <A>(task: () => Promise<A>, cost: Cost) => Promise<A>
  readonly dispose: () => Promise<void>
  readonly [Symbol.asyncDispose]: () => Promise<void>
}

/**
 * A Promise facade for {@link wrap}: rate-limit any async function.
 * @category constructors @since 0.1.0
 */
export const createLimiter = (options: Options = {}): PromiseLimiter => {
  const runtime = ManagedRuntime.make(layerLimiter(options))
  return {
    run: (task, cost) =>
      runtime.runPromise(wrap(
        Effect.tryPromise({ try: task, catch: (error) => error }),
        cost
      )),
    dispose: () => runtime.dispose(),
    [Symbol.asyncDispose]: () => runtime.dispose()
  }
}
