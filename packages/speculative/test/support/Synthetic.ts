/**
 * Synthetic `TokenModel`s with known distributions: one character per token, the next
 * token distribution a function of the context (a Markov chain on the last token by
 * default). They count evaluated tokens so tests can check KV reuse.
 */
import { LlmError, TokenModel } from "@hasten/core"
import { Effect } from "effect"
import type { SequenceExtensions } from "../../src/Drafter.js"

export interface SyntheticOptions {
  readonly name?: string
  /** One character per token id. */
  readonly alphabet: string
  readonly vocabularyId?: string
  readonly bos?: number
  readonly endTokens?: ReadonlyArray<number>
  /** Next-token probabilities given the context (must sum to 1). */
  readonly next: (context: ReadonlyArray<number>) => ArrayLike<number>
  /** Offer the `appendGreedy` and `generateGreedy` fast paths. */
  readonly extensions?: boolean
}

export interface Synthetic extends TokenModel.TokenModelService {
  readonly counters: { evaluatedTokens: number; appendCalls: number; truncateCalls: number; sequences: number; runs: number }
}

export const make = (options: SyntheticOptions): Synthetic => {
  const alphabet = options.alphabet
  const counters = { evaluatedTokens: 0, appendCalls: 0, truncateCalls: 0, sequences: 0, runs: 0 }
  const distribution = (context: ReadonlyArray<number>) => Float32Array.from(options.next(context))
  const provider = options.name ?? "synthetic"
  return {
    name: provider,
    vocabularySize: alphabet.length,
    vocabularyId: options.vocabularyId ?? `chars:${alphabet}`,
    bos: options.bos,
    endTokens: options.endTokens ?? [],
    counters,
    tokenize: (text, tokenizeOptions) =>
      Effect.suspend(() => {
        const tokens: Array<number> = []
        if (tokenizeOptions?.addBos === true && options.bos !== undefined) tokens.push(options.bos)
        for (const char of text) {
          const id = alphabet.indexOf(char)
          if (id < 0) {
            return Effect.fail(
              LlmError.make(provider, new LlmError.InvalidRequest({ description: `no token for ${JSON.stringify(char)}` }))
            )
          }
          tokens.push(id)
        }
        return Effect.succeed(tokens)
      }),
    detokenize: (tokens) =>
      Effect.sync(() =>
        tokens.filter((token) => token !== options.bos && !(options.endTokens ?? []).includes(token)).map((token) => alphabet[token]).join(
          ""
        )
      ),
    sequence: () =>
      Effect.sync(() => {
        counters.sequences++
        const state: Array<number> = []
        const append = (tokens: ReadonlyArray<number>) =>
          Effect.sync(() => {
            counters.appendCalls++
            counters.evaluatedTokens += tokens.length
            return tokens.map((token) => {
              state.push(token)
              return distribution(state)
            })
          })
        const sequence: TokenModel.TokenSequence & SequenceExtensions = {
          tokens: () => state,
          append,
          truncate: (length) =>
            Effect.sync(() => {
              counters.truncateCalls++
              state.length = Math.min(state.length, length)
            }),
          ...(options.extensions === true
            ? {
              appendGreedy: (tokens: ReadonlyArray<number>, from = 0) =>
                Effect.map(append(tokens), (all) => all.slice(from).map((p) => TokenModel.argmax(p))),
              generateGreedy: (tokens: ReadonlyArray<number>, count: number, stopAt?: ReadonlySet<number>) =>
                Effect.gen(function*() {
                  counters.runs++
                  const out: Array<number> = []
                  let input = tokens
                  while (out.length < count) {
                    const next = TokenModel.argmax((yield* append(input)).at(-1)!)
                    out.push(next)
                    if (stopAt?.has(next) === true) break
                    input = [next]
                  }
                  return out
                })
            }
            : {})
        }
        return sequence
      })
  }
}

/** A Markov chain on the last token: rows[last][next]. */
export const chain = (rows: ReadonlyArray<ReadonlyArray<number>>) => (context: ReadonlyArray<number>) => rows[context[context.length - 1]!]!

/**
 * The next-token rule of a context-dependent target: the next token depends on the last two,
 * so a draft model's drafts are sometimes wrong. Over the 8-letter alphabet `abcdefgh`.
 */
export const lastTwo = (context: ReadonlyArray<number>): Array<number> => {
  const a = context[context.length - 1] ?? 0
  const b = context[context.length - 2] ?? 0
  const weights = Array.from({ length: 8 }, (_, token) => 1 + ((token * 7 + a * 3 + b * 5) % 11) + (token === (a + 1) % 8 ? 6 : 0))
  const total = weights.reduce((x, y) => x + y, 0)
  return weights.map((weight) => weight / total)
}
