/**
 * A scripted fake `Llm` for the unit tests: each call runs the script's entry for its
 * index (the last entry repeats), records when it started on the (test) clock, and may
 * take simulated latency.
 */
import { Completion, CompletionRequest, Llm, LlmError, type RateLimitHeaders, type RateLimitPolicy } from "@hasten/core"
import { Clock, Duration, Effect, Layer } from "effect"

export type Step =
  | {
    readonly text?: string
    readonly usage?: { readonly inputTokens: number; readonly outputTokens: number }
    readonly rateLimit?: RateLimitHeaders.RateLimitInfo
    readonly latencyMillis?: number
  }
  | { readonly error: LlmError.LlmErrorReason; readonly latencyMillis?: number }

export interface Fake {
  readonly starts: Array<number>
  readonly requests: Array<CompletionRequest.CompletionRequest>
  readonly ends: Array<number>
  inFlight: number
  peakInFlight: number
  readonly layer: Layer.Layer<Llm.Llm>
}

export const makeFake = (script: ReadonlyArray<Step> = [{}], name = "fake", policy?: RateLimitPolicy.RateLimitPolicy): Fake => {
  const fake: Fake = {
    starts: [],
    requests: [],
    ends: [],
    inFlight: 0,
    peakInFlight: 0,
    layer: undefined as never
  }
  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.gen(function*() {
      const index = fake.starts.length
      const step = script[Math.min(index, script.length - 1)]!
      const start = yield* Clock.currentTimeMillis
      fake.starts.push(start)
      fake.requests.push(request)
      fake.inFlight++
      fake.peakInFlight = Math.max(fake.peakInFlight, fake.inFlight)
      yield* Effect.addFinalizer(() =>
        Effect.clockWith((clock) =>
          Effect.sync(() => {
            fake.inFlight--
            fake.ends.push(clock.currentTimeMillisUnsafe())
          })
        )
      )
      if (step.latencyMillis !== undefined && step.latencyMillis > 0) yield* Effect.sleep(Duration.millis(step.latencyMillis))
      if ("error" in step) return yield* LlmError.make(name, step.error)
      const end = yield* Clock.currentTimeMillis
      return new Completion.Completion({
        text: step.text ?? "ok",
        finishReason: "stop",
        usage: step.usage ?? { inputTokens: 1, outputTokens: 1 },
        model: request.model,
        provider: name,
        timing: { start, end },
        ...(step.rateLimit !== undefined ? { rateLimit: step.rateLimit } : {})
      })
    }).pipe(Effect.scoped)
  ;(fake as { layer: Layer.Layer<Llm.Llm> }).layer = Layer.succeed(Llm.Llm, {
    ...Llm.fromComplete(name, complete),
    rateLimitPolicy: policy
  })
  return fake
}

export const request = (content = "hi", maxTokens = 10) => CompletionRequest.user("gpt-4o-mini", content, { maxTokens })

export const rateLimited = (scope: LlmError.RateLimitScope, retryAfterMillis?: number) =>
  new LlmError.RateLimited({
    scope,
    description: `429 ${scope}`,
    ...(retryAfterMillis !== undefined ? { retryAfterMillis } : {})
  })

export const serverError = () => new LlmError.ServerError({ status: 500, description: "boom" })
