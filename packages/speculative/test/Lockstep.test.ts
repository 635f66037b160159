/**
 * Verification in lockstep (`sequences` > 1, adaptive γ): the requests decoding at once take
 * one γ per step. A recording target checks what each step asked of every sequence; costs come
 * from the TestClock, advanced by the target as it evaluates (no timed assertion).
 */
import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm, LlmError, TokenModel } from "@hasten/core"
import { Effect, Exit, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { SequenceExtensions } from "../src/Drafter.js"
import * as Drafter from "../src/Drafter.js"
import type { StepInfo } from "../src/internal/lockstep.js"
import * as Speculative from "../src/Speculative.js"
import * as Synthetic from "./support/Synthetic.js"

/** A context-dependent target (the next token depends on the last two): drafts are sometimes wrong. */
const target = () =>
  Synthetic.make({
    alphabet: "abcdefgh",
    extensions: true,
    next: Synthetic.lastTwo
  })
/** Always drafts the full γ (no end token): every verification's length is γ + 1. */
const draftModel = () =>
  Synthetic.make({
    alphabet: "abcdefgh",
    name: "draft",
    extensions: true,
    next: (context) => Array.from({ length: 8 }, (_, token) => (token === ((context[context.length - 1]! + 1) % 8) ? 0.65 : 0.05))
  })

type Entry =
  | { readonly type: "step"; readonly step: StepInfo }
  | { readonly type: "verify"; readonly sequence: number; readonly drafts: number; readonly remaining: number }
  | { readonly type: "run"; readonly sequence: number; readonly count: number; readonly remaining: number }

/** What a step of the target costs on the TestClock, by tokens evaluated. */
interface Costs {
  /** A verification of `tokens` tokens (the head and its drafts). */
  readonly verify: (tokens: number) => number
  /** One token of a plain run. */
  readonly plainToken: number
}

/**
 * The target, recording every verification (`appendGreedy`: its drafts) and plain run
 * (`generateGreedy`: its length) with the tokens its request may still decode (`maxTokens`, or
 * by prompt length; a request starts on a fresh or truncated sequence), and the steps the
 * lockstep releases, in one log. With `costs`, each call advances the TestClock by its cost.
 */
const recording = (
  maxTokens: number | ((promptLength: number) => number),
  costs?: Costs,
  onStep?: (step: StepInfo) => void,
  /** The request with this prompt length fails at its second evaluation (mid-way, in a step). */
  failing?: number
) => {
  const limit = (promptLength: number) => (typeof maxTokens === "number" ? maxTokens : maxTokens(promptLength))
  const model = target()
  const log: Array<Entry> = []
  let ids = 0
  const advance = (millis: number) => (costs === undefined ? Effect.void : TestClock.adjust(millis))
  const wrapped: TokenModel.TokenModelService = {
    ...model,
    sequence: () =>
      Effect.map(model.sequence(), (inner) => {
        const id = ids++
        const sequence = inner as TokenModel.TokenSequence & SequenceExtensions
        /** Prompt length of the request on this sequence: its first evaluation is the prompt's tail plus drafts. */
        let promptLength: number | undefined
        let evaluations = 0
        /** Fails the `failing` request's second evaluation, after letting the others reach the next step. */
        const fault = () =>
          promptLength === failing && ++evaluations === 2
            ? Effect.andThen(
              Effect.yieldNow,
              Effect.fail(LlmError.make("synthetic", new LlmError.BadResponse({ description: "injected fault" })))
            )
            : Effect.void
        /** Output so far: the sequence holds the prompt and every output token but the last. */
        const remaining = (from: number) => {
          if (promptLength === undefined || sequence.tokens().length < promptLength) {
            promptLength = sequence.tokens().length + from + 1
            return limit(promptLength)
          }
          return limit(promptLength) - (sequence.tokens().length - promptLength + 1)
        }
        const recorded: TokenModel.TokenSequence & SequenceExtensions = {
          tokens: sequence.tokens,
          append: sequence.append,
          truncate: (length) => {
            if (length === 0) promptLength = undefined
            return sequence.truncate(length)
          },
          appendGreedy: (tokens, from = 0) =>
            Effect.suspend(() => {
              log.push({ type: "verify", sequence: id, drafts: tokens.length - 1 - from, remaining: remaining(from) })
              return Effect.andThen(
                fault(),
                Effect.tap(sequence.appendGreedy!(tokens, from), () => advance(costs?.verify(tokens.length - from) ?? 0))
              )
            }),
          generateGreedy: (tokens, count, stopAt) =>
            Effect.suspend(() => {
              log.push({ type: "run", sequence: id, count, remaining: remaining(tokens.length - 1) })
              return Effect.andThen(
                fault(),
                Effect.tap(sequence.generateGreedy!(tokens, count, stopAt), (out) => advance((costs?.plainToken ?? 0) * out.length))
              )
            })
        }
        return recorded
      })
  }
  const layer = (options?: Partial<Speculative.Options>) =>
    Speculative.layer({
      drafter: Drafter.model(draftModel()),
      costClock: "wall",
      ...options,
      onLockstep: (step) => {
        log.push({ type: "step", step })
        onStep?.(step)
      }
    }).pipe(Layer.provide(Layer.succeed(TokenModel.TokenModel, wrapped)))
  return { model, log, layer }
}

const request = (prompt: string, maxTokens: number) =>
  CompletionRequest.makeUnsafe({ model: "synthetic", messages: [], prompt, temperature: 0, maxTokens })

/** Plain greedy decoding straight on the model. */
const greedyReference = (model: TokenModel.TokenModelService, prompt: string, maxTokens: number) =>
  Effect.scoped(Effect.gen(function*() {
    const sequence = yield* model.sequence()
    let distributions = yield* sequence.append(yield* model.tokenize(prompt))
    const out: Array<number> = []
    while (out.length < maxTokens) {
      const token = TokenModel.argmax(distributions[distributions.length - 1]!)
      out.push(token)
      distributions = yield* sequence.append([token])
    }
    return model.detokenize(out)
  })).pipe(Effect.flatten)

/**
 * Checks every released step against what its requests then asked of the target: exactly one
 * evaluation per request of the step, each verifying the step's γ (capped at its own remaining
 * tokens − 1; with none left to draft, a plain token) or running the step's plain run (capped
 * at its remaining tokens). Returns the steps.
 */
const checkLockstep = (log: ReadonlyArray<Entry>): Array<StepInfo> => {
  const steps: Array<StepInfo> = []
  for (let i = 0; i < log.length; i++) {
    const entry = log[i]!
    if (entry.type !== "step") continue
    const { step } = entry
    steps.push(step)
    const calls: Array<Entry> = []
    for (let j = i + 1; j < log.length && log[j]!.type !== "step"; j++) calls.push(log[j]!)
    assert.strictEqual(calls.length, step.size, `step ${steps.length}: one evaluation per request (${JSON.stringify(calls)})`)
    assert.strictEqual(new Set(calls.map((call) => (call.type === "step" ? -1 : call.sequence))).size, step.size)
    for (const call of calls) {
      if (call.type === "step") continue
      const gamma = Math.min(step.gamma, call.remaining - 1)
      if (gamma > 0) {
        assert.deepStrictEqual({ type: call.type, drafts: call.type === "verify" ? call.drafts : -1 }, { type: "verify", drafts: gamma })
      } else {
        const count = step.gamma > 0 ? 1 : Math.min(step.run, call.remaining)
        assert.deepStrictEqual({ type: call.type, count: call.type === "run" ? call.count : -1 }, { type: "run", count })
      }
    }
  }
  return steps
}

describe("verification in lockstep", () => {
  it.effect("the requests of a step verify the same γ (equal lengths) and run plain runs of equal length; output identical to plain greedy", () => {
    const { model, log, layer } = recording(40)
    return Effect.gen(function*() {
      const prompts = ["abc", "hgfabcabc", "ddddd"]
      const completions = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, 40)), { concurrency: "unbounded" })
      for (const [index, prompt] of prompts.entries()) {
        assert.strictEqual(completions[index]!.text, yield* greedyReference(model, prompt, 40), prompt)
      }
      const steps = checkLockstep(log)
      assert.isTrue(steps.some((step) => step.size === 3 && step.gamma > 1), "3 requests speculated together")
      assert.isTrue(steps.some((step) => step.size === 3 && step.gamma === 0), "and ran plain together")
    }).pipe(Effect.provide(layer({ sequences: 3 })))
  })

  it.effect("requests that join and leave at any time: each step waits for the requests decoding then, no more", () => {
    // maxTokens by prompt length (distinct): requests leave at different times
    const maxTokens = (length: number) => [0, 0, 25, 12, 0, 20, 0, 30, 0, 40][length]!
    const { model, log, layer } = recording(maxTokens)
    return Effect.gen(function*() {
      // 5 requests on 3 sequences: the 4th and 5th take a sequence when one is given back, mid-way
      const prompts = ["abc", "hgfabcabc", "ddddd", "gf", "bbbabbb"]
      const completions = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, maxTokens(prompt.length))), {
        concurrency: "unbounded"
      })
      for (const [index, prompt] of prompts.entries()) {
        assert.strictEqual(completions[index]!.text, yield* greedyReference(model, prompt, maxTokens(prompt.length)), prompt)
      }
      const sizes = new Set(checkLockstep(log).map((step) => step.size))
      assert.isTrue(sizes.has(1) && sizes.has(2) && sizes.has(3), `steps of 1, 2 and 3 requests: ${[...sizes].join(", ")}`)
    }).pipe(Effect.provide(layer({ sequences: 3 })))
  })

  it.effect("a request interrupted while the others decode leaves the step: they finish, and later requests run", () => {
    // the third step the two take together interrupts the second (from inside the step's release)
    let victim: Fiber.Fiber<unknown, unknown> | undefined
    let together = 0
    const { model, log, layer } = recording(60, undefined, (step) => {
      if (step.size === 2 && ++together === 3) victim!.interruptUnsafe()
    })
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const kept = yield* Effect.forkChild(llm.complete(request("abc", 60)))
      victim = yield* Effect.forkChild(llm.complete(request("ddddd", 60)))
      assert.strictEqual((yield* Fiber.join(kept)).text, yield* greedyReference(model, "abc", 60))
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(victim)))
      assert.isTrue(log.some((entry) => entry.type === "step" && entry.step.size === 1), "the kept request went on alone")
      const after = yield* Effect.forEach(["gfe", "hgfabcabc"], (prompt) => llm.complete(request(prompt, 60)), { concurrency: "unbounded" })
      assert.strictEqual(after[0]!.text, yield* greedyReference(model, "gfe", 60))
      assert.strictEqual(after[1]!.text, yield* greedyReference(model, "hgfabcabc", 60))
      checkLockstep(log.slice(log.findLastIndex((entry) => entry.type === "step" && entry.step.size === 1) + 1))
    }).pipe(Effect.provide(layer({ sequences: 2 })))
  })

  it.effect("a request that fails mid-way leaves the step: the others decode on", () => {
    // the request with the 5-token prompt fails at its second evaluation, in a step with the other
    const { model, log, layer } = recording(30, undefined, undefined, 5)
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const [failed, kept] = yield* Effect.all([
        Effect.flip(llm.complete(request("ddddd", 30))),
        llm.complete(request("hgfabcabc", 30))
      ], { concurrency: "unbounded" })
      assert.match(failed.message, /injected fault/)
      assert.strictEqual(kept.text, yield* greedyReference(model, "hgfabcabc", 30))
      assert.isTrue(log.some((entry) => entry.type === "step" && entry.step.size === 2), "the two took a step together")
      assert.isTrue(log.some((entry) => entry.type === "step" && entry.step.size === 1), "then the kept one went on alone")
    }).pipe(Effect.provide(layer({ sequences: 2 })))
  })

  it.effect("the step token budget still backs off: with 3 or 4 requests decoding under budget 4 nothing is drafted, and backed-off requests run plain stretches outside the lockstep", () => {
    const { log, layer } = recording(30)
    return Effect.gen(function*() {
      yield* Effect.forEach(["abc", "hgf", "ddd", "gfe"], (prompt) => Llm.complete(request(prompt, 30)), { concurrency: "unbounded" })
      // a request decodes from its first evaluation to its last
      const span = new Map<number, [number, number]>()
      log.forEach((entry, index) => {
        if (entry.type === "step") return
        const known = span.get(entry.sequence)
        span.set(entry.sequence, [known?.[0] ?? index, index])
      })
      const decodingAt = (index: number) => [...span.values()].filter(([first, last]) => first <= index && index <= last).length
      log.forEach((entry, index) => {
        if (entry.type === "verify" && entry.drafts > 0) assert.isAtMost(decodingAt(index), 2, `drafted with ${decodingAt(index)} decoding`)
        // budget 4 / 3 requests - 1 = 0: a lockstep step has at most 2 requests
        if (entry.type === "step") assert.isAtMost(entry.step.size, 2)
      })
      // the 4 requests ran their plain stretches (32 tokens at most) outside the lockstep
      assert.isTrue(log.some((entry) => entry.type === "run" && entry.count > 8))
    }).pipe(Effect.provide(layer({ sequences: 4, stepTokenBudget: 4 })))
  })

  /**
   * 8 rounds of 3 concurrent requests (60 tokens each) over a target whose verification of m
   * tokens costs `verify(m)` ms on the TestClock and a plain token 1 ms; returns the share of
   * steps of the last 4 rounds that speculated, and checks every step and output.
   */
  const speculativeShare = (verify: (tokens: number) => number) => {
    const { model, log, layer } = recording(60, { verify, plainToken: 1 })
    return Effect.gen(function*() {
      const prompts = ["abc", "hgfabcabc", "ddddd"]
      let lateSteps: Array<StepInfo> = []
      for (let round = 0; round < 8; round++) {
        const before = log.length
        const completions = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt, 60)), { concurrency: "unbounded" })
        for (const [index, prompt] of prompts.entries()) {
          assert.strictEqual(completions[index]!.text, yield* greedyReference(model, prompt, 60), prompt)
        }
        if (round >= 4) lateSteps = lateSteps.concat(checkLockstep(log.slice(before)))
      }
      const decoding = lateSteps.filter((step) => step.size === 3)
      return decoding.filter((step) => step.gamma > 0).length / decoding.length
    }).pipe(Effect.provide(layer({ sequences: 3 })))
  }

  it.effect("γ backs off to 0 where a batched step's measured cost says speculation does not pay, and speculates where it does", () =>
    Effect.gen(function*() {
      // every verified token as dear as a plain step: a step of γ drafts yields fewer than γ + 1 tokens
      const dear = yield* speculativeShare((tokens) => tokens)
      // an extra verified token costs a tenth of a plain step
      const cheap = yield* speculativeShare((tokens) => 1 + 0.1 * (tokens - 1))
      assert.isBelow(dear, 0.2, `dear verification: speculative share ${dear}`)
      assert.isAbove(cheap, 0.6, `cheap verification: speculative share ${cheap}`)
    }))

  it.effect("a stream's short runs set the step's plain run: the requests with it run no longer, none idles", () => {
    const { model, log, layer } = recording(40)
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const [streamed, greedy] = yield* Effect.all([
        Stream.runCollect(llm.stream(request("abc", 40))).pipe(Effect.map((chunks) => chunks.map((chunk) => chunk.text).join(""))),
        llm.complete(request("hgfabcabc", 40))
      ], { concurrency: "unbounded" })
      assert.strictEqual(streamed, yield* greedyReference(model, "abc", 40))
      assert.strictEqual(greedy.text, yield* greedyReference(model, "hgfabcabc", 40))
      const plain = checkLockstep(log).filter((step) => step.size === 2 && step.gamma === 0)
      assert.isAbove(plain.length, 0)
      assert.isTrue(plain.every((step) => step.run <= 8), plain.map((step) => step.run).join(", "))
    }).pipe(Effect.provide(layer({ sequences: 2 })))
  })

  it.effect("a sampled request decodes in lockstep with greedy ones (its plain run one step at a time)", () => {
    const { model, log, layer } = recording(30)
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const [sampled, greedy] = yield* Effect.all([
        llm.complete(
          CompletionRequest.makeUnsafe({ model: "synthetic", messages: [], prompt: "ddddd", temperature: 1, seed: 7, maxTokens: 30 })
        ),
        llm.complete(request("hgfabcabc", 30))
      ], { concurrency: "unbounded" })
      assert.strictEqual(greedy.text, yield* greedyReference(model, "hgfabcabc", 30))
      assert.strictEqual(sampled.usage.outputTokens, 30)
      // the sampled request evaluates through `append`, which the recorder does not log: the
      // steps are not checked call by call here, only that the two decoded together
      assert.isTrue(log.some((entry) => entry.type === "step" && entry.step.size === 2 && entry.step.gamma === 0))
    }).pipe(Effect.provide(layer({ sequences: 2 })))
  })

  it.effect("lockstep: false leaves each request its own γ (no lockstep step)", () => {
    const { model, log, layer } = recording(30)
    return Effect.gen(function*() {
      const completions = yield* Effect.forEach(["abc", "ddddd"], (prompt) => Llm.complete(request(prompt, 30)), {
        concurrency: "unbounded"
      })
      assert.strictEqual(completions[1]!.text, yield* greedyReference(model, "ddddd", 30))
      assert.isFalse(log.some((entry) => entry.type === "step"))
    }).pipe(Effect.provide(layer({ sequences: 2, lockstep: false })))
  })
})
