import { Completion, CompletionRequest, Embedder, Facts, Llm, LlmError } from "@hasten/core"
import { Duration, Effect, Layer } from "effect"

/** A scripted upstream that records every call; "bad" fails, "defect" dies, latency via Effect.sleep. */
export const makeUpstream = (latency: Duration.Input = Duration.zero) => {
  const calls: Array<{ content: string; at: number; facts: Facts.Facts }> = []
  let inFlight = 0
  let peak = 0
  const service = Llm.fromComplete("fake", (request) =>
    Effect.gen(function*() {
      const content = request.messages.at(-1)?.content ?? ""
      const at = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      calls.push({ content, at, facts: yield* Facts.CurrentFacts })
      inFlight++
      peak = Math.max(peak, inFlight)
      yield* Effect.sleep(latency).pipe(Effect.ensuring(Effect.sync(() => inFlight--)))
      if (content === "bad") return yield* Effect.fail(LlmError.make("fake", new LlmError.InvalidRequest({ description: "bad item" })))
      if (content === "defect") return yield* Effect.die(new Error("backend exploded"))
      if (content === "oom" && calls.filter((call) => call.content === "oom").length === 1) {
        return yield* Effect.fail(
          LlmError.make("fake", new LlmError.ServerError({ status: 500, description: "failed to allocate KV cache" }))
        )
      }
      return new Completion.Completion({
        text: `re: ${content}`,
        finishReason: "stop",
        usage: { inputTokens: 1, outputTokens: 2 },
        model: request.model,
        provider: "fake",
        timing: { start: at, end: at }
      })
    }))
  return { calls, peak: () => peak, layer: Layer.succeed(Llm.Llm, service) }
}

export const ask = (content: string) => CompletionRequest.user("m", content, { temperature: 0 })

export const makeEmbedUpstream = () => {
  const calls: Array<ReadonlyArray<string>> = []
  const service: Embedder.EmbedderService = {
    name: "fake-embed",
    model: "e-1",
    embed: (texts) =>
      Effect.suspend(() => {
        calls.push(texts)
        if (texts.includes("bad")) {
          return Effect.fail(LlmError.make("fake-embed", new LlmError.InvalidRequest({ description: "bad input" })))
        }
        return Effect.succeed({ vectors: texts.map((text) => [text.length]), model: "e-1", usage: { inputTokens: texts.length } })
      })
  }
  return { calls, layer: Layer.succeed(Embedder.Embedder, service) }
}
