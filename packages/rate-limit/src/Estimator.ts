/**
 * Token estimators: how many prompt tokens a request will be charged before it is
 * sent. `openAi` counts with `gpt-tokenizer` (o200k, with the chat-format overhead),
 * `fromTokenModel` uses a local model's own tokenizer, `characters` is a cheap
 * fallback, and `safe` — the default — the larger of the tokenizer's count and a
 * characters / 4 estimate, so a reservation is never below what a provider that estimates
 * from characters charges. The output side of a request's cost is its `maxTokens`.
 * @since 0.1.0
 */
import { CompletionRequest, type LlmError, type TokenModel } from "@hasten/core"
import { Effect } from "effect"

type Tokenizer = typeof import("gpt-tokenizer")
let tokenizer: Tokenizer | undefined
let loading: Promise<Tokenizer> | undefined
/**
 * `gpt-tokenizer` with its o200k ranks (~80 MB of memory once loaded) is loaded on the first
 * count, not when this package is imported: a process whose keys have no token budget never
 * pays for it.
 */
const loadTokenizer: Effect.Effect<Tokenizer> = Effect.suspend(() =>
  tokenizer !== undefined
    ? Effect.succeed(tokenizer)
    : Effect.promise(() => loading ??= import("gpt-tokenizer").then((module) => tokenizer = module))
)

/**
 * Counts the input (prompt) tokens a request will be charged.
 * @category models @since 0.1.0
 */
export type Estimator = (request: CompletionRequest.CompletionRequest) => Effect.Effect<number, LlmError.LlmError>

// Special-token text in a prompt (`<|endoftext|>`) is counted as plain text, not rejected.
const plain = { disallowedSpecial: new Set<string>() }

/**
 * OpenAI-style count with `gpt-tokenizer` (o200k_base): chat messages are counted
 * with their per-message framing (as `gpt-4o` frames them), a raw prompt as plain text.
 * @category constructors @since 0.1.0
 */
export const openAi: Estimator = (request) =>
  Effect.map(loadTokenizer, ({ countTokens, encodeChat }) =>
    request.prompt !== undefined && request.prompt.length > 0
      ? countTokens(request.prompt, plain)
      : encodeChat(request.messages.map((message) => ({ role: message.role, content: message.content })), "gpt-4o", plain).length)

/**
 * Counts with a local model's tokenizer (the `TokenModel` a GGUF provider offers).
 * @category constructors @since 0.1.0
 */
export const fromTokenModel = (model: TokenModel.TokenModelService): Estimator => (request) =>
  Effect.map(model.tokenize(CompletionRequest.promptText(request)), (tokens) => tokens.length)

/**
 * A tokenizer-free estimate: `ceil(characters / charsPerToken)` over the prompt text.
 * @category constructors @since 0.1.0
 */
export const characters = (charsPerToken = 4): Estimator => (request) =>
  Effect.succeed(Math.ceil(CompletionRequest.promptText(request).length / charsPerToken))

/**
 * Characters / `charsPerToken` per message, each rounded up (so never below
 * `ceil(all characters / charsPerToken)`), plus the raw prompt's: how providers that
 * estimate from characters charge a prompt at admission.
 * @category constructors @since 0.2.0
 */
export const charactersPerMessage = (charsPerToken = 4): Estimator => (request) =>
  Effect.sync(() => {
    let total = request.prompt !== undefined ? Math.ceil(request.prompt.length / charsPerToken) : 0
    for (const message of request.messages) total += Math.ceil(message.content.length / charsPerToken)
    return total
  })

/**
 * The default: the larger of `gpt-tokenizer`'s count ({@link openAi}) and
 * {@link charactersPerMessage} — never below what the provider charges when in doubt
 * whether it counts with a tokenizer or estimates from characters.
 * @category constructors @since 0.2.0
 */
export const safe: Estimator = (request) => Effect.zipWith(openAi(request), charactersPerMessage(4)(request), Math.max)
