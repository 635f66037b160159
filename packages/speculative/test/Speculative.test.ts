import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, type Facts, Llm, TokenModel } from "@hasten/core"
import { Cause, Effect, Exit, Layer, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Drafter from "../src/Drafter.js"
import { AdaptiveGamma } from "../src/internal/adaptive.js"
import * as Sampling from "../src/Sampling.js"
import * as Speculative from "../src/Speculative.js"
import * as Synthetic from "./support/Synthetic.js"

// A cyclic, peaked chain over "abcd" (greedy: a→b→c→d→a) with an end token "$".
const peaked = (strength: number) =>
  Synthetic.chain(
    [0, 1, 2, 3, 4].map((from) =>
      [0, 1, 2, 3, 4].map((
        to
      ) => (from === 4 ? 0.25 * Number(to < 4) : to === (from + 1) % 4 ? strength : to === 4 ? 0 : (1 - strength) / 3))
    )
  )

const cyclic = (extensions = false) => Synthetic.make({ alphabet: "abcd$", endTokens: [4], next: peaked(0.7), extensions })

const request = (prompt: string, options?: Partial<CompletionRequest.CompletionRequestInput>) =>
  CompletionRequest.makeUnsafe({ model: "synthetic", messages: [], prompt, temperature: 0, ...options })

const provide = <E, R>(model: TokenModel.TokenModelService, speculative: Layer.Layer<Llm.Llm | Speculative.SpeculativeStats, E, R>) =>
  Effect.provide(speculative.pipe(Layer.provide(Layer.succeed(TokenModel.TokenModel, model))))

const tokensOf = (completion: { readonly metadata?: Record<string, unknown> | undefined }) =>
  completion.metadata!["tokens"] as ReadonlyArray<number>
const statsOf = (completion: { readonly facts?: Facts.Facts | undefined }) => completion.facts!.speculative as Speculative.RequestStats

/** Plain greedy decoding straight on the model, no speculative machinery. */
const greedyReference = (model: TokenModel.TokenModelService, prompt: ReadonlyArray<number>, maxTokens: number) =>
  Effect.scoped(Effect.gen(function*() {
    const sequence = yield* model.sequence()
    let distributions = yield* sequence.append(prompt)
    const out: Array<number> = []
    while (out.length < maxTokens) {
      const token = TokenModel.argmax(distributions[distributions.length - 1]!)
      if (model.endTokens.includes(token)) break
      out.push(token)
      distributions = yield* sequence.append([token])
    }
    return out
  }))

describe("greedy equality (synthetic)", () => {
  // A context-dependent target: the next token depends on the last two tokens, so drafts are sometimes wrong.
  const target = (extensions: boolean) =>
    Synthetic.make({
      alphabet: "abcdefgh",
      extensions,
      next: Synthetic.lastTwo
    })
  const draftModel = Synthetic.make({
    alphabet: "abcdefgh",
    name: "draft",
    next: (context) => Array.from({ length: 8 }, (_, token) => (token === ((context[context.length - 1]! + 1) % 8) ? 0.65 : 0.05))
  })
  const drafters: ReadonlyArray<readonly [string, () => Drafter.Drafter]> = [
    ["model", () => Drafter.model(draftModel)],
    ["prompt-lookup", () => Drafter.promptLookup({ minNgram: 1 })],
    ["ngram-cache", () => Drafter.ngramCache({ minNgram: 1, maxNgram: 3 })],
    [
      "ngram-cache+prompt-lookup",
      () => Drafter.combine(Drafter.ngramCache({ minNgram: 2, maxNgram: 3 }), Drafter.promptLookup({ minNgram: 1 }))
    ]
  ]
  for (const [name, drafter] of drafters) {
    for (const gamma of [1, 3, 6, "adaptive"] as const) {
      for (const extensions of [false, true]) {
        it.effect(`${name}, γ=${gamma}, ${extensions ? "appendGreedy" : "full distributions"}: identical to plain greedy`, () => {
          const model = target(extensions)
          return Effect.gen(function*() {
            const llm = yield* Llm.Llm
            let drafted = 0
            for (const prompt of ["abc", "hgfabcabc", "ddddd", "abcabcabcabc"]) {
              const completion = yield* llm.complete(request(prompt, { maxTokens: 40 }))
              const expected = yield* greedyReference(model, yield* model.tokenize(prompt), 40)
              assert.deepStrictEqual(tokensOf(completion), expected, prompt)
              assert.strictEqual(completion.text, yield* model.detokenize(expected))
              drafted += statsOf(completion).draftTokens
            }
            assert.isAbove(drafted, 0, "the drafter proposed tokens")
          }).pipe(provide(model, Speculative.layer({ drafter: drafter(), gamma })))
        })
      }
    }
  }
})

describe("concurrency", () => {
  it.effect("a step token budget of 1 backs speculation off entirely (γ → 0), output unchanged", () => {
    const model = cyclic(true)
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const completion = yield* llm.complete(request("abcabc", { maxTokens: 24 }))
      assert.deepStrictEqual(tokensOf(completion), yield* greedyReference(model, yield* model.tokenize("abcabc"), 24))
      assert.strictEqual(statsOf(completion).draftTokens, 0)
      assert.strictEqual(statsOf(completion).speculativeSteps, 0)
    }).pipe(provide(model, Speculative.layer({ drafter: Drafter.promptLookup({ minNgram: 1 }), stepTokenBudget: 1 })))
  })

  it.effect("the default budget lets a lone request speculate", () => {
    const model = cyclic(true)
    return Effect.gen(function*() {
      const completion = yield* Llm.complete(request("abcabc", { maxTokens: 24 }))
      assert.isAbove(statsOf(completion).draftTokens, 0)
    }).pipe(provide(model, Speculative.layer({ drafter: Drafter.promptLookup({ minNgram: 1 }) })))
  })

  it.effect("3 sequences serve 3 requests at once, each on its own sequence, identical to plain greedy", () => {
    const model = cyclic(true)
    return Effect.gen(function*() {
      const prompts = ["abc", "bcdabcd", "ddd"]
      const completions = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, { maxTokens: 30 })), {
        concurrency: "unbounded"
      })
      for (const [index, prompt] of prompts.entries()) {
        assert.deepStrictEqual(tokensOf(completions[index]!), yield* greedyReference(model, yield* model.tokenize(prompt), 30), prompt)
      }
    }).pipe(provide(model, Speculative.layer({ drafter: Drafter.promptLookup({ minNgram: 1 }), sequences: 3 })))
  })

  it.effect("sequences out of range are refused, naming the option", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(
          Speculative.layer({ drafter: Drafter.promptLookup(), sequences: 0 }).pipe(
            Layer.provide(Layer.succeed(TokenModel.TokenModel, cyclic()))
          )
        ).pipe(Effect.scoped)
      )
      assert.match(error.message, /sequences/)
    }))
})

// --- distribution exactness -------------------------------------------------------------

const P = [[0.1, 0.4, 0.3, 0.2], [0.3, 0.1, 0.2, 0.4], [0.25, 0.25, 0.4, 0.1], [0.5, 0.2, 0.2, 0.1]]
const Q = [[0.4, 0.2, 0.2, 0.2], [0.1, 0.5, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25]]
const targetChain = () => Synthetic.make({ alphabet: "abcd", next: Synthetic.chain(P) })
const draftChain = () => Synthetic.make({ alphabet: "abcd", name: "draft", next: Synthetic.chain(Q) })

/** Chi-square critical value at significance 0.001 (Wilson–Hilferty). */
const critical = (df: number) => df * (1 - 2 / (9 * df) + 3.09 * Math.sqrt(2 / (9 * df))) ** 3

/** Samples `n` three-token continuations of `prompt` and returns the chi-square statistic against the target chain. */
const chiSquare = (options: {
  readonly drafter: Drafter.Drafter
  readonly prompt: string
  readonly samples: number
  readonly sampling: Sampling.SamplingOptions
  readonly rule?: Sampling.AcceptanceRule
  readonly gamma?: number
}) =>
  Effect.gen(function*() {
    const llm = yield* Llm.Llm
    const counts = new Map<string, number>()
    let rejections = 0
    let bonuses = 0
    for (let seed = 0; seed < options.samples; seed++) {
      const completion = yield* llm.complete(request(options.prompt, {
        maxTokens: 3,
        seed,
        temperature: options.sampling.temperature,
        ...(options.sampling.topK !== undefined ? { topK: options.sampling.topK } : {}),
        ...(options.sampling.topP !== undefined ? { topP: options.sampling.topP } : {})
      }))
      counts.set(completion.text, (counts.get(completion.text) ?? 0) + 1)
      rejections += statsOf(completion).rejectionSteps
      bonuses += statsOf(completion).bonusSteps
    }
    const rows = P.map((row) => Sampling.transform(Float32Array.from(row), options.sampling))
    const last = "abcd".indexOf(options.prompt[options.prompt.length - 1]!)
    let statistic = 0
    let cells = 0
    for (let x = 0; x < 4; x++) {
      for (let y = 0; y < 4; y++) {
        for (let z = 0; z < 4; z++) {
          const probability = rows[last]![x]! * rows[x]![y]! * rows[y]![z]!
          const observed = counts.get("abcd"[x]! + "abcd"[y]! + "abcd"[z]!) ?? 0
          if (probability === 0) {
            if (observed > 0) statistic = Infinity
            continue
          }
          const expected = probability * options.samples
          statistic += (observed - expected) ** 2 / expected
          cells++
        }
      }
    }
    return { statistic, df: cells - 1, rejections, bonuses }
  }).pipe(provide(targetChain(), Speculative.layer({ drafter: options.drafter, gamma: options.gamma ?? 2, acceptanceRule: options.rule })))

describe("distribution exactness (synthetic p and q)", () => {
  const samples = 12_000

  it.effect("draft model, temperature 1: outputs follow the target chain; rejection and bonus paths both taken", () =>
    Effect.gen(function*() {
      const result = yield* chiSquare({ drafter: Drafter.model(draftChain()), prompt: "a", samples, sampling: { temperature: 1 } })
      assert.isBelow(result.statistic, critical(result.df))
      assert.isAbove(result.rejections, samples / 10)
      assert.isAbove(result.bonuses, samples / 10)
    }))

  it.effect("temperature, top-k and top-p are applied identically to p and q", () =>
    Effect.gen(function*() {
      const sampling = { temperature: 0.7, topK: 3, topP: 0.9 }
      const result = yield* chiSquare({ drafter: Drafter.model(draftChain()), prompt: "b", samples, sampling })
      assert.isBelow(result.statistic, critical(result.df))
      assert.isAbove(result.rejections, 0)
    }))

  it.effect("deterministic drafters (prompt lookup, one-hot q) are exact too", () =>
    Effect.gen(function*() {
      const result = yield* chiSquare({
        drafter: Drafter.promptLookup({ minNgram: 1 }),
        prompt: "abcdbacab",
        samples,
        sampling: { temperature: 1 },
        gamma: 3
      })
      assert.isBelow(result.statistic, critical(result.df))
      assert.isAbove(result.rejections, samples / 10)
      assert.isAbove(result.bonuses, samples / 20)
    }))

  it.effect("detects a wrong acceptance rule: accepting with p(x) instead of min(1, p(x)/q(x))", () =>
    Effect.gen(function*() {
      const wrong: Sampling.AcceptanceRule = { accept: (p, _q, token) => p[token]!, residual: Sampling.exact.residual }
      const result = yield* chiSquare({
        drafter: Drafter.model(draftChain()),
        prompt: "a",
        samples,
        sampling: { temperature: 1 },
        rule: wrong
      })
      assert.isAbove(result.statistic, critical(result.df) * 2)
    }))

  it.effect("detects a wrong residual: resampling from p instead of norm(max(0, p − q))", () =>
    Effect.gen(function*() {
      const wrong: Sampling.AcceptanceRule = { accept: Sampling.exact.accept, residual: (p) => p }
      const result = yield* chiSquare({
        drafter: Drafter.model(draftChain()),
        prompt: "a",
        samples,
        sampling: { temperature: 1 },
        rule: wrong
      })
      assert.isAbove(result.statistic, critical(result.df) * 2)
    }))

  it.effect("the same seed gives the same sampled output", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const first = yield* llm.complete(request("a", { maxTokens: 20, seed: 7, temperature: 1 }))
      const second = yield* llm.complete(request("a", { maxTokens: 20, seed: 7, temperature: 1 }))
      const other = yield* llm.complete(request("a", { maxTokens: 20, seed: 8, temperature: 1 }))
      assert.strictEqual(first.text, second.text)
      assert.notStrictEqual(first.text, other.text)
    }).pipe(provide(targetChain(), Speculative.layer({ drafter: Drafter.model(draftChain()), gamma: 3 }))))
})

// --- edges ------------------------------------------------------------------------------

describe("edges", () => {
  it.effect("stream: chunks concatenate to the completion, a stop sequence is never streamed, the last chunk has the stats", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      for (const options of [{ maxTokens: 30 }, { maxTokens: 30, stop: ["dab"] }, { maxTokens: 30, stop: ["cda"] }]) {
        const completion = yield* llm.complete(request("abcdabcd", options))
        const chunks = Array.from(yield* Stream.runCollect(llm.stream(request("abcdabcd", options))))
        assert.isAbove(chunks.length, 2, "streamed in several chunks")
        assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), completion.text)
        const last = chunks[chunks.length - 1]!
        assert.strictEqual(last.finishReason, completion.finishReason)
        assert.strictEqual(last.usage?.outputTokens, completion.usage.outputTokens)
        assert.deepStrictEqual(statsOf(last).targetEvaluations, statsOf(completion).targetEvaluations)
      }
    }).pipe(provide(cyclic(), Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 2 }))))

  it.effect("a draft model with another vocabulary fails the layer with VocabularyMismatch", () =>
    Effect.gen(function*() {
      const other = Synthetic.make({ alphabet: "wxyz", name: "other", next: Synthetic.chain(Q) })
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(
        Speculative.layer({ drafter: Drafter.model(other) }).pipe(Layer.provide(Layer.succeed(TokenModel.TokenModel, targetChain())))
      )))
      assert.isTrue(Exit.isFailure(exit))
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as {
        _tag: string
        reason: { _tag: string; description: string }
      }
      assert.strictEqual(error._tag, "SpeculativeError")
      assert.strictEqual(error.reason._tag, "VocabularyMismatch")
      assert.include(error.reason.description, "other")
    }))

  it.effect("bad options fail the layer with InvalidOptions", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(
        Speculative.layer({ drafter: Drafter.promptLookup(), gamma: -1 }).pipe(
          Layer.provide(Layer.succeed(TokenModel.TokenModel, targetChain()))
        )
      )))
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as {
        reason: { _tag: string; field: string }
        message: string
      }
      assert.strictEqual(error.reason._tag, "InvalidOptions")
      assert.strictEqual(error.reason.field, "gamma")
      assert.strictEqual(error.message, "InvalidOptions: gamma must be \"adaptive\" or an integer in 0..64, got -1")
      const several = yield* Effect.exit(Effect.scoped(Layer.build(
        Speculative.layer({ drafter: Drafter.promptLookup(), maxGamma: 65, temperature: -1 }).pipe(
          Layer.provide(Layer.succeed(TokenModel.TokenModel, targetChain()))
        )
      )))
      const both = Cause.squash((several as Exit.Failure<unknown, unknown>).cause) as { reason: { field: string }; message: string }
      assert.strictEqual(both.reason.field, "maxGamma")
      assert.strictEqual(both.message, "InvalidOptions: maxGamma must be an integer in 1..64, got 65; temperature must be >= 0, got -1")
    }))

  it.effect("maxTokens 0 evaluates nothing; maxTokens 1 gives the greedy first token", () =>
    Effect.gen(function*() {
      const model = cyclic()
      const run = Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const zero = yield* llm.complete(request("abcdabcd", { maxTokens: 0 }))
        assert.strictEqual(zero.text, "")
        assert.strictEqual(zero.finishReason, "length")
        assert.strictEqual(model.counters.evaluatedTokens, 0)
        const one = yield* llm.complete(request("abcdabcd", { maxTokens: 1 }))
        assert.strictEqual(one.text, "a")
        assert.strictEqual(one.usage.outputTokens, 1)
        assert.strictEqual(statsOf(one).targetEvaluations, 1)
      })
      yield* run.pipe(provide(model, Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 4 })))
    }))

  it.effect("an empty prompt starts from BOS; without BOS it is an InvalidRequest", () =>
    Effect.gen(function*() {
      const withBos = Synthetic.make({
        alphabet: "abcd^",
        bos: 4,
        next: (context) => context.length === 1 ? [0, 0, 1, 0, 0] : peaked(0.9)(context).slice(0, 5)
      })
      const text = yield* Effect.service(Llm.Llm).pipe(
        Effect.flatMap((llm) =>
          llm.complete(new CompletionRequest.CompletionRequest({ model: "m", messages: [], prompt: "", temperature: 0, maxTokens: 3 }))
        ),
        provide(withBos, Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 2 }))
      )
      assert.strictEqual(text.text, "cda")
      const exit = yield* Effect.exit(
        Effect.flatMap(Effect.service(Llm.Llm), (llm) =>
          llm.complete(new CompletionRequest.CompletionRequest({ model: "m", messages: [], prompt: "", maxTokens: 3 }))).pipe(
            provide(cyclic(), Speculative.layer({ drafter: Drafter.promptLookup() }))
          )
      )
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause) as { _tag: string; reason: { _tag: string } }
      assert.strictEqual(error._tag, "LlmError")
      assert.strictEqual(error.reason._tag, "InvalidRequest")
    }))

  it.effect("fields the engine does not implement (json format, LoRA, penalties, logprobs, context strategies, provider options) are an InvalidRequest naming them", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const error = yield* Effect.flip(llm.complete(request("abcd", { responseFormat: { type: "json" }, repeatPenalty: 1.1 })))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.include(error.message, "responseFormat")
      assert.include(error.message, "repeatPenalty")
      for (
        const [field, extra] of [
          ["logprobs", { logprobs: true }],
          ["contextOverflow", { contextOverflow: "truncate" }],
          ["providerOptions", { providerOptions: { mirostat: 2 } }]
        ] as const
      ) {
        const refused = yield* Effect.flip(llm.complete(request("abcd", extra)))
        assert.strictEqual(refused.reason._tag, "InvalidRequest")
        assert.strictEqual((refused.reason as { field?: string }).field, field)
        assert.include(refused.message, field)
      }
      const fine = yield* llm.complete(request("abcd", { responseFormat: { type: "text" }, repeatPenalty: 1, maxTokens: 2 }))
      assert.strictEqual(fine.text, "ab")
    }).pipe(provide(cyclic(), Speculative.layer({ drafter: Drafter.promptLookup() }))))

  it.effect("a stop sequence inside an accepted draft cuts the output there", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const completion = yield* llm.complete(request("abcdabcd", { maxTokens: 20, stop: ["bc"] }))
      assert.strictEqual(completion.text, "a")
      assert.strictEqual(completion.finishReason, "stop")
      const stats = statsOf(completion)
      assert.strictEqual(stats.targetEvaluations, 1, "one verification produced the stop")
      assert.isAtLeast(stats.acceptedTokens, 3, "the stop lay inside accepted drafts")
      const plain = yield* llm.complete(request("abcdabcd", { maxTokens: 6 }))
      assert.strictEqual(plain.text, "abcdab")
    }).pipe(provide(cyclic(), Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 4 }))))

  it.effect("an end token inside an accepted draft ends the output before it", () =>
    Effect.gen(function*() {
      // a→b→c→$ greedy, so "abc$" in the prompt lets prompt lookup draft the end token.
      const model = Synthetic.make({
        alphabet: "abc$",
        endTokens: [3],
        next: Synthetic.chain([[0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]])
      })
      const completion = yield* Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(request("abc$a", { maxTokens: 20 }))).pipe(
        provide(model, Speculative.layer({ drafter: Drafter.promptLookup({ minNgram: 1 }), gamma: 4 }))
      )
      assert.strictEqual(completion.text, "bc")
      assert.strictEqual(completion.finishReason, "stop")
      assert.strictEqual(statsOf(completion).targetEvaluations, 1)
    }))

  it.effect("a greedy draft model drafts each step in one run of its own decoding loop (generateGreedy), identical output", () =>
    Effect.gen(function*() {
      const next = (context: ReadonlyArray<number>) => {
        const a = context[context.length - 1] ?? 0
        const b = context[context.length - 2] ?? 0
        return Array.from({ length: 8 }, (_, t) => (t === (a * 3 + b + 1) % 8 ? 0.6 : 0.4 / 7))
      }
      const model = Synthetic.make({ alphabet: "abcdefgh", next, extensions: true })
      // right after most tokens, wrong after some: rejections and bonus steps both happen
      const draft = Synthetic.make({
        alphabet: "abcdefgh",
        name: "draft",
        extensions: true,
        next: (
          context
        ) => (context[context.length - 1] === 2 ? Array.from({ length: 8 }, (_, t) => (t === 7 ? 0.9 : 0.1 / 7)) : next(context))
      })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        let steps = 0
        let drafted = 0
        let rejections = 0
        let bonus = 0
        for (const prompt of ["abc", "hgfabcabc", "ddddd"]) {
          const completion = yield* llm.complete(request(prompt, { maxTokens: 40 }))
          assert.deepStrictEqual(tokensOf(completion), yield* greedyReference(model, yield* model.tokenize(prompt), 40), prompt)
          steps += statsOf(completion).speculativeSteps
          drafted += statsOf(completion).draftTokens
          rejections += statsOf(completion).rejectionSteps
          bonus += statsOf(completion).bonusSteps
        }
        assert.isAbove(rejections, 0)
        assert.isAbove(bonus, 0)
        // one run per speculative step; each evaluates its catch-up tail, then every draft but the last
        assert.strictEqual(draft.counters.runs, steps)
        assert.strictEqual(draft.counters.appendCalls, drafted)
      }).pipe(provide(model, Speculative.layer({ drafter: Drafter.model(draft), gamma: 4 })))
    }))

  it.effect("rejected positions are rolled back, not re-evaluated; a shared prefix is reused across calls", () =>
    Effect.gen(function*() {
      const model = Synthetic.make({
        alphabet: "abcdefgh",
        next: (context) => Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! * 3 + 1) % 8 ? 0.8 : 0.2 / 7))
      })
      const wrongDraft = Synthetic.make({
        alphabet: "abcdefgh",
        name: "wrong",
        next: (context) => Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! + 1) % 8 ? 0.8 : 0.2 / 7))
      })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const completion = yield* llm.complete(request("abc", { maxTokens: 12 }))
        const stats = statsOf(completion)
        assert.isAbove(model.counters.truncateCalls, 0)
        // prefill (prompt minus its last token) + one [pending, …drafts] append per step, nothing else
        assert.strictEqual(model.counters.evaluatedTokens, 2 + stats.targetEvaluations + stats.draftTokens)
        const before = model.counters.evaluatedTokens
        const again = yield* llm.complete(request("abc", { maxTokens: 12 }))
        assert.strictEqual(again.text, completion.text)
        assert.strictEqual(
          model.counters.evaluatedTokens - before,
          statsOf(again).targetEvaluations + statsOf(again).draftTokens,
          "no prefill: the prompt's KV state was reused"
        )
        assert.strictEqual(model.counters.sequences, 1)
      }).pipe(provide(model, Speculative.layer({ drafter: Drafter.model(wrongDraft), gamma: 3 })))
    }))
})

// Under the TestClock the wall cost clock reads 0, so γ follows the acceptance rates and the prior cost model alone.
describe("adaptive γ", () => {
  it.effect("turns speculation off when drafts are always wrong, and probes back", () =>
    Effect.gen(function*() {
      const model = Synthetic.make({
        alphabet: "abcdefgh",
        next: (context) => Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! * 3 + 1) % 8 ? 0.8 : 0.2 / 7))
      })
      const wrongDraft = Synthetic.make({
        alphabet: "abcdefgh",
        name: "wrong",
        next: (context) => Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! + 1) % 8 ? 0.8 : 0.2 / 7))
      })
      const stats = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const completion = yield* llm.complete(request("abc", { maxTokens: 200 }))
        return statsOf(completion)
      }).pipe(
        provide(model, Speculative.layer({ drafter: Drafter.model(wrongDraft), gamma: "adaptive", probeInterval: 16, costClock: "wall" }))
      )
      assert.isAbove(stats.plainSteps, 180)
      // probes after 16, 32, 64, … plain steps (the interval doubles while probes do not pay)
      assert.isAtLeast(stats.speculativeSteps, 3, "probes")
      assert.isBelow(stats.speculativeSteps, 10)
    }))

  it.effect("runs the plain stretches between probes in the backend's own loop (generateGreedy), same output and probes", () =>
    Effect.gen(function*() {
      const next = (context: ReadonlyArray<number>) =>
        Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! * 3 + 1) % 8 ? 0.8 : 0.2 / 7))
      const wrongDraft = Synthetic.make({
        alphabet: "abcdefgh",
        name: "wrong",
        next: (context) => Array.from({ length: 8 }, (_, t) => (t === (context[context.length - 1]! + 1) % 8 ? 0.8 : 0.2 / 7))
      })
      const decode = (extensions: boolean) => {
        const model = Synthetic.make({ alphabet: "abcdefgh", next, extensions })
        return Effect.gen(function*() {
          const llm = yield* Llm.Llm
          const completion = yield* llm.complete(request("abc", { maxTokens: 200 }))
          return { tokens: tokensOf(completion), stats: statsOf(completion), runs: model.counters.runs }
        }).pipe(
          provide(model, Speculative.layer({ drafter: Drafter.model(wrongDraft), gamma: "adaptive", probeInterval: 16, costClock: "wall" }))
        )
      }
      const stepped = yield* decode(false)
      const run = yield* decode(true)
      assert.deepStrictEqual(run.tokens, stepped.tokens)
      assert.strictEqual(run.stats.targetEvaluations, run.stats.plainSteps + run.stats.speculativeSteps)
      assert.isAbove(run.stats.plainSteps, 180)
      assert.isAtLeast(run.stats.speculativeSteps, 3, "probes")
      assert.isBelow(run.stats.speculativeSteps, 10)
      // one run per stretch between probes (16, 32, 64, … steps), not one call per token
      assert.isAtLeast(run.runs, 3)
      assert.isBelow(run.runs, 12)
    }))

  it.effect("γ=0 decodes in one run; stop sequences and streams take short runs", () =>
    Effect.gen(function*() {
      const model = cyclic(true)
      const layer = Speculative.layer({ drafter: Drafter.promptLookup(), gamma: 0 })
      const plain = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const completion = yield* llm.complete(request("ab", { maxTokens: 40 }))
        return { tokens: tokensOf(completion), runs: model.counters.runs }
      }).pipe(provide(model, layer))
      assert.deepStrictEqual(plain.tokens, yield* greedyReference(cyclic(), [0, 1], 40))
      assert.strictEqual(plain.runs, 1)
      const withStop = (stop: string) => {
        const stopModel = cyclic(true)
        return Effect.gen(function*() {
          const llm = yield* Llm.Llm
          const completion = yield* llm.complete(request("ab", { maxTokens: 40, stop: [stop] }))
          return { completion, runs: stopModel.counters.runs, evaluated: stopModel.counters.evaluatedTokens }
        }).pipe(provide(stopModel, layer))
      }
      // with a stop sequence, runs of at most 8 tokens: a stop overshoots by less than a run
      const never = yield* withStop("zz")
      assert.deepStrictEqual(tokensOf(never.completion), plain.tokens)
      assert.strictEqual(never.runs, 5)
      // "cdabcdab…": "dabcdab" starts at character 1 and is complete after the first run
      const stopped = yield* withStop("dabcdab")
      assert.strictEqual(stopped.completion.text, "c")
      assert.strictEqual(stopped.completion.finishReason, "stop")
      assert.strictEqual(stopped.runs, 1)
      assert.strictEqual(stopped.evaluated, 2 + 7)
      const streamModel = cyclic(true)
      const chunks = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        return yield* Stream.runCollect(llm.stream(request("ab", { maxTokens: 40 })))
      }).pipe(provide(streamModel, layer))
      assert.strictEqual(Array.from(chunks).map((chunk) => chunk.text).join(""), plain.tokens.map((token) => "abcd$"[token]).join(""))
      assert.strictEqual(streamModel.counters.runs, 5)
    }))

  it.effect("drafts long when drafts are always right", () =>
    Effect.gen(function*() {
      const stats = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        return statsOf(yield* llm.complete(request("abcdabcdabcd", { maxTokens: 100 })))
      }).pipe(provide(cyclic(), Speculative.layer({ drafter: Drafter.promptLookup(), gamma: "adaptive", maxGamma: 8, costClock: "wall" })))
      assert.isAbove(stats.meanGamma, 4)
      assert.isAbove(stats.acceptanceRate, 0.95)
      assert.isBelow(stats.targetEvaluations, 25)
    }))
})

describe("adaptive γ cost model", () => {
  const plainStep = { requested: 0, proposed: 0, accepted: 0, draftNanos: 0, verifyNanos: 1_000, evaluated: 1 }
  /** A draft model costing `perToken` ns per drafted token (plus a catch-up of 300 ns per token it missed), every draft accepted. */
  const run = (perToken: number, steps: number) => {
    const controller = new AdaptiveGamma({ maxGamma: 8, probeInterval: 4, kind: "model" })
    let speculative = 0
    let missed = 0
    for (let step = 0; step < steps; step++) {
      const gamma = controller.choose(1_000)
      if (gamma > 0) {
        speculative++
        controller.record({
          requested: gamma,
          proposed: gamma,
          accepted: gamma,
          draftNanos: perToken * gamma + 300 * missed,
          verifyNanos: 1_000 + 150 * gamma,
          evaluated: gamma + 1
        })
        missed = 0
      } else {
        controller.record(plainStep)
        missed++
      }
    }
    return speculative
  }

  it("stops probing a draft model that costs as much per token as the target (a self-draft), however well it drafts", () => {
    // probes every 4, 8, …, 64 plain steps would be about 30 in 2000 steps
    assert.isBelow(run(1_000, 2_000), 14)
  })

  it("does not count a draft model's catch-up after plain steps as its drafting cost", () => {
    const controller = new AdaptiveGamma({ maxGamma: 8, probeInterval: 4, kind: "model" })
    for (let i = 0; i < 10; i++) controller.record(plainStep)
    // the first draft after 10 plain steps also evaluates the 10 tokens the draft model missed
    controller.record({ requested: 4, proposed: 4, accepted: 4, draftNanos: 10 * 5_000 + 4 * 100, verifyNanos: 1_600, evaluated: 5 })
    for (let i = 0; i < 3; i++) {
      controller.record({ requested: 4, proposed: 4, accepted: 4, draftNanos: 400, verifyNanos: 1_600, evaluated: 5 })
    }
    assert.isAbove(controller.best(1_000), 0, "100 ns per drafted token against 1 µs per target step pays")
  })

  it("does not count an n-gram cache's catch-up learning after plain steps as its drafting cost", () => {
    const controller = new AdaptiveGamma({ maxGamma: 8, probeInterval: 4, kind: "lookup" })
    for (let i = 0; i < 10; i++) controller.record(plainStep)
    // the first draft after a plain stretch also learns the tokens decoded meanwhile
    controller.record({ requested: 4, proposed: 4, accepted: 4, draftNanos: 50_000, verifyNanos: 1_600, evaluated: 5 })
    for (let i = 0; i < 3; i++) {
      controller.record({ requested: 4, proposed: 4, accepted: 4, draftNanos: 100, verifyNanos: 1_600, evaluated: 5 })
    }
    assert.isAbove(controller.best(1_000), 0, "a 100 ns lookup against 1 µs per target step pays")
  })

  it("keeps speculating with a cheap draft model whose drafts are accepted", () => {
    assert.isAbove(run(100, 2_000), 150)
  })

  /**
   * A run of short requests (48 tokens, like a structuring pipeline) with a lookup drafter
   * whose first `wrongFor` requests' drafts are wrong (an n-gram cache that has seen little),
   * then always right. Returns the tokens the requests after the wrong phase got from
   * accepted drafts.
   */
  const shortRequests = (options: { readonly wrongFor: number }) => {
    const controller = new AdaptiveGamma({ maxGamma: 8, probeInterval: 16, kind: "lookup" })
    let accepted = 0
    for (let request = 0; request < 60; request++) {
      controller.reset()
      let produced = 0
      while (produced < 48) {
        const remaining = 48 - produced
        const gamma = controller.choose(remaining - 1)
        if (gamma === 0) {
          const steps = controller.plainRun(remaining)
          controller.recordPlainRun(steps, 1_000 * steps)
          produced += steps
          continue
        }
        const proposed = gamma
        const ok = request >= options.wrongFor ? proposed : 0
        controller.record({
          requested: gamma,
          proposed,
          accepted: ok,
          draftNanos: 10,
          verifyNanos: 1_000 + 150 * proposed,
          evaluated: proposed + 1
        })
        produced += ok + 1
        if (request >= options.wrongFor) accepted += ok
      }
    }
    return accepted
  }

  /**
   * A synthetic decoder: a plain token costs 1,000 ns in the backend's own loop; a
   * speculative step with k drafts costs `fixed` + 1,000 + `perToken`·k ns (its own evaluation
   * call and bookkeeping included); each draft is accepted with probability `accept`. Returns
   * tokens per plain-token time, and the best fixed γ's for comparison.
   */
  const synthetic = (fixed: number, perToken: number, accept: number, maxGamma = 8) => {
    const controller = new AdaptiveGamma({ maxGamma, probeInterval: 16, kind: "lookup" })
    let seed = 1
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
    let tokens = 0
    let cost = 0
    for (let step = 0; step < 4_000; step++) {
      const gamma = controller.choose(1_000)
      if (gamma === 0) {
        const run = controller.plainRun(1_000)
        controller.recordPlainRun(run, 1_000 * run)
        tokens += run
        cost += 1_000 * run
        continue
      }
      let accepted = 0
      while (accepted < gamma && random() < accept) accepted++
      const nanos = fixed + 1_000 + perToken * gamma
      controller.record({ requested: gamma, proposed: gamma, accepted, draftNanos: 20, verifyNanos: nanos - 20, evaluated: gamma + 1 })
      tokens += accepted + 1
      cost += nanos
    }
    let best = 1
    for (let k = 1; k <= maxGamma; k++) {
      best = Math.max(best, ((1 - accept ** (k + 1)) / (1 - accept)) / ((fixed + 1_000 + perToken * k) / 1_000))
    }
    return { rate: (tokens / cost) * 1_000, best }
  }

  it("finds the best γ when a speculative step has a fixed cost that plain decoding does not", () => {
    // a model anchored at the plain step charges the fixed cost to every extra token and stays
    // at γ≈1 here (1.17 and 1.49 tokens per unit, against 1.86 and 2.55 at the best γ)
    for (const [fixed, perToken, accept] of [[400, 120, 0.8], [600, 100, 0.9]] as const) {
      const { rate, best } = synthetic(fixed, perToken, accept)
      assert.isAbove(rate, best * 0.9, `fixed ${fixed} ns: ${rate.toFixed(2)} vs ${best.toFixed(2)} at the best γ`)
    }
    // without a fixed cost it stays near the best too
    const plainish = synthetic(0, 150, 0.8)
    assert.isAbove(plainish.rate, plainish.best * 0.9)
  })

  it("reaches a long γ when drafts keep being accepted deep into the draft", () => {
    // the best γ here is the maximum, 16 (2.93 tokens per unit): the controller has to climb
    // there from short drafts (with a prior of 0.3 per position instead of 0.6 it never starts
    // speculating: 1.00 tokens per unit)
    const { rate, best } = synthetic(2_000, 100, 0.97, 16)
    assert.isAbove(rate, best * 0.9, `${rate.toFixed(2)} vs ${best.toFixed(2)} at the best γ`)
  })

  it("drafts longer on a request's first step, whose pass also evaluates the prompt's uncached tail", () => {
    // steps cost 1,000 + 300 ns per verified position, drafts accepted at 0.85: a short γ is best
    // alone, but next to 40 prompt tokens a draft position costs a smaller share of the pass
    const controller = new AdaptiveGamma({ maxGamma: 16, probeInterval: 16, kind: "lookup" })
    controller.recordPlainRun(8, 8 * 1_000)
    let seed = 7
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
    for (let step = 0; step < 400; step++) {
      const gamma = Math.max(1, controller.choose(1_000))
      let accepted = 0
      while (accepted < gamma && random() < 0.85) accepted++
      controller.record({
        requested: gamma,
        proposed: gamma,
        accepted,
        draftNanos: 10,
        verifyNanos: 1_000 + 300 * gamma,
        evaluated: gamma + 1
      })
    }
    const alone = controller.best(1_000)
    const withPrompt = controller.best(1_000, 40)
    assert.isAbove(alone, 0)
    assert.isAtLeast(withPrompt, alone + 3, `γ ${withPrompt} next to the prompt vs ${alone} alone`)
  })

  it("keeps probing across short requests: speculation comes back once drafts turn right", () => {
    // 10 requests of wrong drafts push the probe interval past a request's length; counting
    // plain steps per request would then never probe again (0 accepted tokens after)
    assert.isAbove(shortRequests({ wrongFor: 10 }), 1_000)
  })
})

describe("n-gram cache", () => {
  it.effect("learns from earlier outputs in the run and persists to JSON", () =>
    Effect.gen(function*() {
      const model = Synthetic.make({
        alphabet: "abcdefgh",
        // a greedy path that depends on the position only: it does not repeat within one output
        next: (context) => {
          const peak = (Math.imul(context.length, 2654435761) >>> 13) % 8
          return Array.from({ length: 8 }, (_, t) => (t === peak ? 0.7 : 0.3 / 7))
        }
      })
      const cache = new Drafter.NgramCache({ minNgram: 3, maxNgram: 4 })
      const path = NodePath.join(NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ngram-")), "cache.json")
      const [firstCompletion, secondCompletion] = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const first = yield* llm.complete(request("ab", { maxTokens: 30 }))
        const second = yield* llm.complete(request("ab", { maxTokens: 30 }))
        return [first, second] as const
      }).pipe(provide(model, Speculative.layer({ drafter: Drafter.ngramCache({ cache, minNgram: 3, maxNgram: 4, path }), gamma: 4 })))
      const first = statsOf(firstCompletion)
      const second = statsOf(secondCompletion)
      assert.isBelow(first.acceptedTokens, 8)
      assert.isAbove(second.acceptedTokens, 18, JSON.stringify([first, second]))
      assert.isBelow(second.targetEvaluations, first.targetEvaluations / 2)
      const loaded = yield* Drafter.NgramCache.load(path)
      const prefix = [...(yield* model.tokenize("ab")), ...tokensOf(firstCompletion).slice(0, 3)]
      assert.strictEqual(loaded.size, cache.size)
      assert.deepStrictEqual(loaded.predict(prefix, 10), cache.predict(prefix, 10))
      assert.isAbove(loaded.predict(prefix, 10).length, 5)
      const mismatch = yield* Effect.exit(Effect.scoped(Layer.build(
        Speculative.layer({ drafter: Drafter.ngramCache({ path }) }).pipe(
          Layer.provide(Layer.succeed(TokenModel.TokenModel, targetChain()))
        )
      )))
      const error = Cause.squash((mismatch as Exit.Failure<unknown, unknown>).cause) as { reason: { _tag: string } }
      assert.strictEqual(error.reason._tag, "VocabularyMismatch")
    }))

  it.effect("a file that is not an n-gram cache fails with CacheFile naming the field", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "ngram-bad-"))
      const path = NodePath.join(dir, "cache.json")
      NodeFs.writeFileSync(path, JSON.stringify({ version: 1, minNgram: 2, maxNgram: 4, entries: [["1,2", [[3, "x"]]]] }))
      const error = yield* Effect.flip(Drafter.NgramCache.load(path))
      assert.strictEqual(error.reason._tag, "CacheFile")
      assert.match(error.message, /not an n-gram cache \(version 1\): entries\[0\]\[1\]\[0\]\[1\]: Expected number, got "x"/)
      NodeFs.writeFileSync(path, "{oops")
      assert.match((yield* Effect.flip(Drafter.NgramCache.load(path))).message, /invalid JSON/)
    }))

  it("prompt lookup copies what followed the longest recent match", () => {
    assert.deepStrictEqual(Drafter.lookup([1, 2, 3, 4, 9, 1, 2, 3, 5, 6, 1, 2, 3], 2, 1, 3), [5, 6])
    assert.deepStrictEqual(Drafter.lookup([1, 2, 3], 2, 2, 3), [])
  })
})
