/** Scripted fake `Llm`s for the evaluator's tests. */
import { Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Effect, Layer } from "effect"

export interface Calls {
  readonly requests: Array<CompletionRequest.CompletionRequest>
  inFlight: number
  peak: number
}

export const calls = (): Calls => ({ requests: [], inFlight: 0, peak: 0 })

/** The question text of a request (the first user message). */
export const questionOf = (request: CompletionRequest.CompletionRequest): string =>
  request.messages.find((message) => message.role === "user")?.content ?? ""

/**
 * A fake `Llm` whose answer is computed by `respond`; a returned `LlmError` reason fails
 * the call. Records every request and the peak number of concurrent calls.
 */
export const scripted = (
  name: string,
  respond: (request: CompletionRequest.CompletionRequest) => string | LlmError.LlmErrorReason | Effect.Effect<string>,
  record: Calls = calls()
): Layer.Layer<Llm.Llm> =>
  Layer.succeed(
    Llm.Llm,
    Llm.fromComplete(name, (request) =>
      Effect.gen(function*() {
        record.requests.push(request)
        record.inFlight++
        record.peak = Math.max(record.peak, record.inFlight)
        // Let other fibers start their calls so concurrency is observable.
        yield* Effect.yieldNow
        yield* Effect.yieldNow
        const answer = respond(request)
        // An error reason (it is yieldable too, so test for it first), an effect, or text.
        const text = typeof answer === "string" ? answer : "description" in answer ? answer : yield* (answer as Effect.Effect<string>)
        record.inFlight--
        if (typeof text !== "string") return yield* LlmError.make(name, text as LlmError.LlmErrorReason)
        return new Completion.Completion({
          text,
          finishReason: "stop",
          usage: { inputTokens: 10, outputTokens: 5 },
          model: request.model,
          provider: name,
          timing: { start: 0, end: 0 }
        })
      }))
  )

/**
 * A deterministic judge for simulators: reads the reference's `#### n` and the graded
 * answer out of the judge prompt and returns a JSON verdict (1 when the answer's last
 * number equals the reference number).
 */
export const judgeResponder = (
  request: { readonly messages: ReadonlyArray<{ readonly role: string; readonly content: string }> }
): string => {
  const prompt = request.messages.map((message) => message.content).join("\n")
  const reference = /#### (-?[\d,.]+)/.exec(/Reference answer: ([\s\S]*?)\n\nAnswer to grade:/.exec(prompt)?.[1] ?? "")?.[1]?.replace(
    /,/g,
    ""
  )
  const answer = /Answer to grade: ([\s\S]*?)\n\nReply with JSON/.exec(prompt)?.[1] ?? ""
  const numbers = answer.match(/-?\d[\d,]*(?:\.\d+)?/g) ?? []
  const last = numbers.at(-1)?.replace(/,/g, "")
  const correct = reference !== undefined && last === reference
  return JSON.stringify({
    score: correct ? 1 : 0,
    reason: correct ? "matches the reference" : `expected ${reference ?? "?"}, got ${last ?? "no number"}`
  })
}
