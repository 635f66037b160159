/**
 * The `TokenModel` service: token-level access to a local model, what speculative
 * decoding and token-exact budgets need. A `TokenSequence` keeps KV state between
 * calls, evaluates many tokens in one forward pass and rolls back rejected positions.
 * @since 0.1.0
 */
import { Context, Effect } from "effect"
import type * as Scope from "effect/Scope"
import type { CompletionRequest } from "./CompletionRequest.js"
import type { LlmError } from "./LlmError.js"

/**
 * A next-token probability distribution over the whole vocabulary at temperature 1
 * (softmax of the logits): `distribution[token]` is p(token). Sums to 1.
 * @category models @since 0.1.0
 */
export type Distribution = Float32Array

/**
 * A live sequence on the model: its tokens so far and their KV state.
 * @category models @since 0.1.0
 */
export interface TokenSequence {
  /** The tokens evaluated so far (the KV state mirrors them); may be a live read-only view, so copy it to keep a snapshot. */
  readonly tokens: () => ReadonlyArray<number>
  /**
   * Appends `tokens` and evaluates them in ONE forward pass. Returns the next-token
   * distribution after each appended token (`result[i]` predicts the token after
   * `tokens[i]`), so `tokens.length` distributions.
   */
  readonly append: (tokens: ReadonlyArray<number>) => Effect.Effect<ReadonlyArray<Distribution>, LlmError>
  /** Drops every token from position `length` on, rolling the KV state back. */
  readonly truncate: (length: number) => Effect.Effect<void, LlmError>
}

/** The operations of a token-level model. @category models @since 0.1.0 */
export interface TokenModelService {
  /** An identifier of the model (file name or id); two models with one vocabulary may pair. */
  readonly name: string
  /** The vocabulary size: the length of every `Distribution`. */
  readonly vocabularySize: number
  /** A fingerprint of the vocabulary; drafter and target must share it. */
  readonly vocabularyId: string
  /** Beginning-of-sequence token, if the model uses one. */
  readonly bos: number | undefined
  /** End-of-generation tokens (EOS, EOT, …). */
  readonly endTokens: ReadonlyArray<number>
  readonly tokenize: (text: string, options?: { readonly addBos?: boolean }) => Effect.Effect<ReadonlyArray<number>, LlmError>
  readonly detokenize: (tokens: ReadonlyArray<number>) => Effect.Effect<string, LlmError>
  /** Opens a sequence (a KV slot) for the lifetime of the scope. */
  readonly sequence: () => Effect.Effect<TokenSequence, LlmError, Scope.Scope>
  /**
   * How the backend's own `Llm` renders a request: the prompt tokens it evaluates (chat
   * template and BOS included) and the stop strings it generates with (the template's and the
   * request's). A decoder over this model (speculative decoding) uses it, so the same request
   * gets the same prompt either way; without it, `CompletionRequest.promptText` is tokenized.
   */
  readonly prompt?:
    | ((
      request: CompletionRequest
    ) => Effect.Effect<{ readonly tokens: ReadonlyArray<number>; readonly stop: ReadonlyArray<string> }, LlmError>)
    | undefined
}

/**
 * The token-level model service.
 * @category services @since 0.1.0
 */
export class TokenModel extends Context.Service<TokenModel, TokenModelService>()("@hasten/core/TokenModel") {}

/**
 * Distributions at each position for `prefix + candidates` in one evaluation: returns
 * `candidates.length + 1` distributions, the first predicting `candidates[0]` and the
 * last predicting the token after the final candidate.
 * @category accessors @since 0.1.0
 */
export const evaluate = (
  model: TokenModelService,
  prefix: ReadonlyArray<number>,
  candidates: ReadonlyArray<number>
): Effect.Effect<ReadonlyArray<Distribution>, LlmError> =>
  Effect.scoped(Effect.gen(function*() {
    if (prefix.length === 0) return yield* Effect.die(new Error("TokenModel.evaluate needs a non-empty prefix"))
    const sequence = yield* model.sequence()
    const all = yield* sequence.append([...prefix, ...candidates])
    return all.slice(prefix.length - 1)
  }))

/** Index of the largest probability (greedy choice); ties go to the lower token id. @category utils @since 0.1.0 */
export const argmax = (distribution: Distribution): number => {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < distribution.length; i++) {
    const value = distribution[i]!
    if (value > bestValue) {
      bestValue = value
      best = i
    }
  }
  return best
}
