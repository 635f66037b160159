/**
 * JSON output for a local model: a request's `responseFormat: { type: "json" }` becomes a
 * llama.cpp grammar (any JSON, or the JSON schema it gives), built once per schema.
 * @since 0.1.0
 */
import type { CompletionRequest, LlmError } from "@hasten/core"
import { Effect } from "effect"
import type { Llama, LlamaGrammar } from "node-llama-cpp"
import { errorMessage, invalid } from "./localErrors.js"

/** The grammar a request's output must follow, if any. */
export type GrammarFor = (request: CompletionRequest.CompletionRequest) => Effect.Effect<LlamaGrammar | undefined, LlmError.LlmError>

/** Grammars for `llama`, cached by schema (a schema that fails to compile is not kept). */
export const make = (llama: Llama): GrammarFor => {
  const grammars = new Map<string, Promise<LlamaGrammar>>()
  return (request) => {
    const format = request.responseFormat
    if (format === undefined || format.type !== "json") return Effect.succeed(undefined)
    const cacheKey = JSON.stringify(format.schema ?? null)
    return Effect.tryPromise({
      try: () => {
        let grammar = grammars.get(cacheKey)
        if (grammar === undefined) {
          grammar = format.schema === undefined
            ? llama.getGrammarFor("json")
            : llama.createGrammarForJsonSchema(format.schema as never)
          grammar.catch(() => grammars.delete(cacheKey))
          grammars.set(cacheKey, grammar)
        }
        return grammar
      },
      catch: (cause) => invalid(`unsupported JSON schema in responseFormat: ${errorMessage(cause)}`)
    })
  }
}
