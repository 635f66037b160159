import { assert, describe, it } from "@effect/vitest"
import { Llm, LlmError } from "@hasten/core"
import type { Dataset } from "@hasten/evaluator"
import { Evaluator, Report, Sampling, Scorer } from "@hasten/evaluator"
import type { ItemRecord } from "@hasten/evaluator/ItemRecord"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { appendFileSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { calls, questionOf, scripted } from "./fakes.js"

// Ten arithmetic questions "What is i + i?" with answer 2i.
const dataset: Dataset.Dataset = {
  name: "toy",
  items: Array.from({ length: 10 }, (_, index) => ({
    id: `toy:${index}`,
    index,
    question: `What is ${index} + ${index}?`,
    answer: String(index * 2)
  })),
  report: { source: "memory", rows: 10, loaded: 10, skipped: [] }
}

const indexOf = (text: string): number => Number(/What is (\d+) \+/.exec(text)?.[1] ?? -1)
const questionIndex = (request: Parameters<Parameters<typeof scripted>[1]>[0]) => indexOf(questionOf(request))

/** Answers correctly for even question numbers, wrongly for odd ones. */
const halfRight = (record = calls()) =>
  scripted("fake", (request) => {
    const i = questionIndex(request)
    return i % 2 === 0 ? `Reasoning...\n#### ${i * 2}` : `#### ${i * 2 + 1}`
  }, record)

const candidate = (llm: Layer.Layer<any>, name = "fake:model"): Evaluator.Candidate => ({ name, model: "model", llm })

const tempDir = () => mkdtempSync(Path.join(tmpdir(), "hasten-eval-"))

describe("Evaluator.run", () => {
  it.effect("scores the seeded selection at temperature 0 with the seed", () =>
    Effect.gen(function*() {
      const record = calls()
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [candidate(halfRight(record))],
        questions: 6,
        seed: 42
      })
      const summary = result.report.results[0]!.summary
      assert.strictEqual(summary.total, 6)
      assert.strictEqual(summary.scored, 6)
      assert.strictEqual(record.requests.length, 6)
      assert.isTrue(record.requests.every((request) => request.temperature === 0 && request.seed === 42 && request.trial === 0))
      const evens = result.report.config.selection.filter((id) => Number(id.split(":")[1]) % 2 === 0).length
      assert.strictEqual(summary.accuracy, Number((evens / 6).toFixed(6)))
      assert.deepStrictEqual(result.report.results[0]!.items.map((item) => item.itemId), result.report.config.selection)
    }))

  it.effect("isolates failures: an upstream error and a malformed judge verdict are errors, not zeros", () =>
    Effect.gen(function*() {
      const generator = scripted("fake", (request) => {
        const i = questionIndex(request)
        return i === 3 ? new LlmError.ServerError({ status: 500, description: "boom" }) : `answer ${i * 2}`
      })
      const judge = scripted("judge", (request) => {
        const text = questionOf({ ...request, messages: request.messages.filter((message) => message.role === "user") })
        const i = indexOf(text)
        if (i === 5) return "I think it's fine."
        if (i === 7) return "```json\n{\"score\": 1}\n```"
        return `{"score": ${i % 2 === 0 ? 1 : 0}, "reason": "checked"}`
      })
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.judge(),
        candidates: [candidate(generator)],
        judge: { name: "judge", model: "judge-model", llm: judge },
        seed: 1
      })
      const summary = result.report.results[0]!.summary
      assert.strictEqual(summary.total, 10)
      assert.strictEqual(summary.errors, 3)
      assert.strictEqual(summary.scored, 7)
      assert.deepStrictEqual(summary.errorsByTag, { "JudgeParseError": 2, "LlmError.ServerError": 1 })
      const items = result.report.results[0]!.items
      const failed = items.find((item) => item.itemId === "toy:3")!
      assert.strictEqual(failed.status, "error")
      assert.strictEqual(failed.score, undefined)
      assert.deepStrictEqual([failed.error!.stage, failed.error!.tag], ["generate", "LlmError.ServerError"])
      const malformed = items.find((item) => item.itemId === "toy:7")!
      assert.deepStrictEqual([malformed.error!.stage, malformed.error!.message], [
        "score",
        "judge output not usable: missing field \"reason\""
      ])
      // 5 of the 7 scored items are even (0, 2, 4, 6, 8): errors are excluded from the denominator.
      assert.strictEqual(summary.accuracy, Number((5 / 7).toFixed(6)))
      assert.match(Report.toMarkdown(result.report), /JudgeParseError ×2/)
    }))

  it.effect("calls judges in parallel, never above the bound", () =>
    Effect.gen(function*() {
      const judgeCalls = calls()
      const judge = scripted("judge", () => "{\"score\": 1, \"reason\": \"ok\"}", judgeCalls)
      yield* Evaluator.run({
        dataset,
        scorer: Scorer.judge(),
        candidates: [candidate(halfRight())],
        judge: { name: "judge", model: "judge-model", llm: judge, concurrency: 3 },
        concurrency: 10
      })
      assert.strictEqual(judgeCalls.requests.length, 10)
      assert.strictEqual(judgeCalls.peak, 3)
    }))

  it.effect("trials: distinct trial indices, mean, agreement", () =>
    Effect.gen(function*() {
      const record = calls()
      // Trial 2 flips question 0's answer: agreement on that item is 1/3 of pairs.
      const llm = scripted("fake", (request) => {
        const i = questionIndex(request)
        return request.trial === 2 && i === 0 ? "#### 99" : `#### ${i * 2}`
      }, record)
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [candidate(llm)],
        questions: 4,
        trials: 3,
        temperature: 0.7,
        seed: 42
      })
      assert.deepStrictEqual([...new Set(record.requests.map((request) => request.trial))].sort(), [0, 1, 2])
      // each trial samples with its own seed (trial 0 keeps the run's), recorded in config and records
      const seeds = result.report.config.trialSeeds!
      assert.deepStrictEqual(seeds, [42, Sampling.trialSeed(42, 1), Sampling.trialSeed(42, 2)])
      assert.strictEqual(new Set(seeds).size, 3)
      assert.isTrue(record.requests.every((request) => request.seed === seeds[request.trial!] && request.temperature === 0.7))
      assert.isTrue(result.report.results[0]!.items.every((item) => item.seed === seeds[item.trial]))
      assert.strictEqual(result.report.config.temperature, 0.7)
      const summary = result.report.results[0]!.summary
      assert.strictEqual(summary.total, 12)
      const hasZero = result.report.config.selection.includes("toy:0")
      assert.strictEqual(summary.trialAgreement, hasZero ? Number(((3 + 1 / 3) / 4).toFixed(6)) : 1)
    }))

  it.effect("refuses several trials at temperature 0, which would repeat one greedy answer", () =>
    Effect.gen(function*() {
      const record = calls()
      const error = yield* Effect.flip(
        Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight(record))], trials: 3 })
      )
      assert.strictEqual(error.reason._tag, "InvalidOptions")
      assert.strictEqual(error.reason._tag === "InvalidOptions" ? error.reason.field : "", "trials")
      assert.match(error.message, /trials 3 at temperature 0 would repeat one greedy answer 3 times .*set a temperature above 0/)
      assert.strictEqual(record.requests.length, 0)
      // one trial at temperature 0: no per-trial seeds recorded, the report keeps its old shape
      const one = yield* Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], questions: 2 })
      assert.isFalse("trialSeeds" in one.report.config || "temperature" in one.report.config)
      assert.isFalse("seed" in one.report.results[0]!.items[0]!)
    }))

  it.effect("the same inputs and seed give a byte-identical report; timing is separate", () =>
    Effect.gen(function*() {
      const options = {
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [candidate(halfRight()), candidate(halfRight(), "fake:other")],
        questions: 8,
        trials: 2,
        temperature: 0.5,
        seed: 7
      }
      const first = yield* Evaluator.run(options)
      const second = yield* Evaluator.run({ ...options, concurrency: 1 })
      assert.strictEqual(Report.reportJson(first.report), Report.reportJson(second.report))
      const parsed = JSON.parse(Report.toJson(first))
      assert.deepStrictEqual(Object.keys(parsed), ["report", "timing"])
      assert.strictEqual(JSON.stringify(parsed.report, null, 2), Report.reportJson(first.report))
      const third = yield* Evaluator.run({ ...options, seed: 8 })
      assert.notStrictEqual(Report.reportJson(first.report), Report.reportJson(third.report))
    }))

  it.effect("self-correction: accuracy per turn and fixed/broken counts", () =>
    Effect.gen(function*() {
      // Answer per (question, turn): q0 wrong→right→right, q1 right→wrong→right, q2 right always, q3 wrong always.
      const plan: Record<number, ReadonlyArray<boolean>> = {
        0: [false, true, true],
        1: [true, false, true],
        2: [true, true, true],
        3: [false, false, false]
      }
      const record = calls()
      const llm = scripted("fake", (request) => {
        const i = questionIndex(request)
        const turn = request.messages.filter((message) => message.role === "assistant").length
        return plan[i]![turn] ? `#### ${i * 2}` : `#### ${i * 2 + 1}`
      }, record)
      const small: Dataset.Dataset = { ...dataset, items: dataset.items.slice(0, 4) }
      const result = yield* Evaluator.run({ dataset: small, scorer: Scorer.gsm8k(), candidates: [candidate(llm)], selfCorrect: 2 })
      const turns = result.report.results[0]!.summary.selfCorrection!
      assert.deepStrictEqual(turns.map((turn) => [turn.turn, turn.accuracy, turn.fixed, turn.broken]), [
        [0, 0.5, 0, 0],
        [1, 0.5, 1, 1],
        [2, 0.75, 1, 0]
      ])
      assert.strictEqual(record.requests.length, 12)
      const revision = record.requests.find((request) => request.messages.length === 3)!
      assert.match(revision.messages[2]!.content, /#### <number>/)
      assert.strictEqual(result.report.results[0]!.summary.accuracy, 0.75)
    }))

  it.effect("resumes a killed run from its checkpoint without re-running or duplicating items", () =>
    Effect.gen(function*() {
      const checkpoint = Path.join(tempDir(), "run", "checkpoint.jsonl")
      const firstCalls = calls()
      const reached = yield* Deferred.make<void>()
      // The first run hangs on its 5th call, as if the process were killed mid-request.
      const hanging = scripted("fake", (request) => {
        if (firstCalls.requests.length >= 5) return Deferred.succeed(reached, undefined).pipe(Effect.andThen(Effect.never))
        return `#### ${questionIndex(request) * 2}`
      }, firstCalls)
      const options = { dataset, scorer: Scorer.gsm8k(), questions: 8, checkpoint, concurrency: 1 }
      const fiber = yield* Effect.forkChild(Evaluator.run({ ...options, candidates: [candidate(hanging)] }))
      yield* Deferred.await(reached)
      yield* Fiber.interrupt(fiber)
      const finished = readFileSync(checkpoint, "utf8").trim().split("\n").length - 1
      assert.strictEqual(finished, 4)
      appendFileSync(checkpoint, "{\"type\":\"item\",\"record\":{\"candi") // a torn last line

      const secondCalls = calls()
      const resumed = yield* Evaluator.run({ ...options, candidates: [candidate(halfRight(secondCalls))] })
      assert.strictEqual(secondCalls.requests.length, 4)
      assert.strictEqual(resumed.timing.resumedItems, 4)
      const ids = resumed.report.results[0]!.items.map((item) => item.itemId)
      assert.deepStrictEqual(ids, resumed.report.config.selection)

      // A third run finds everything done and calls nothing.
      const thirdCalls = calls()
      const again = yield* Evaluator.run({ ...options, candidates: [candidate(halfRight(thirdCalls))] })
      assert.strictEqual(thirdCalls.requests.length, 0)
      assert.strictEqual(Report.reportJson(again.report), Report.reportJson(resumed.report))
    }))

  it.effect("resume retries the checkpoint's errored items, lists them in timing, and ends like a clean run", () =>
    Effect.gen(function*() {
      const checkpoint = Path.join(tempDir(), "checkpoint.jsonl")
      // first run: questions 3 and 5 fail upstream, 7 fails in scoring (no number at all is fine: it scores 0)
      const flaky = scripted("fake", (request) => {
        const i = questionIndex(request)
        if (i === 3 || i === 5) return new LlmError.ServerError({ status: 503, description: "try later" })
        if (i === 7) return new LlmError.Timeout({ description: "hung" })
        return `#### ${i * 2}`
      })
      const options = { dataset, scorer: Scorer.gsm8k(), checkpoint, seed: 3 }
      const first = yield* Evaluator.run({ ...options, candidates: [candidate(flaky)] })
      assert.strictEqual(first.report.results[0]!.summary.errors, 3)
      assert.deepStrictEqual(first.timing.retried, [])

      // keepErrors: nothing runs, the errors stay
      const kept = calls()
      const frozen = yield* Evaluator.run({ ...options, retryErrors: false, candidates: [candidate(halfRight(kept))] })
      assert.strictEqual(kept.requests.length, 0)
      assert.strictEqual(frozen.report.results[0]!.summary.errors, 3)

      // default: only the three errored items run again; 7 fails again
      const second = calls()
      const healed = scripted("fake", (request) => {
        const i = questionIndex(request)
        return i === 7 ? new LlmError.Timeout({ description: "hung again" }) : `#### ${i * 2}`
      }, second)
      const resumed = yield* Evaluator.run({ ...options, candidates: [candidate(healed)] })
      assert.deepStrictEqual(second.requests.map(questionIndex).sort(), [3, 5, 7])
      assert.strictEqual(resumed.timing.resumedItems, 7)
      const retried = [...resumed.timing.retried].sort((a, b) => (a.itemId < b.itemId ? -1 : 1))
      assert.deepStrictEqual(retried.map((item) => [item.itemId, item.previous, item.status, item.error]), [
        ["toy:3", "LlmError.ServerError", "ok", undefined],
        ["toy:5", "LlmError.ServerError", "ok", undefined],
        ["toy:7", "LlmError.Timeout", "error", "LlmError.Timeout"]
      ])
      assert.deepStrictEqual(resumed.report.results[0]!.summary.errorsByTag, { "LlmError.Timeout": 1 })
      assert.match(
        Report.toMarkdown(resumed.report, resumed.timing),
        /Retried 3 item\(s\) that had failed in the checkpoint \(LlmError.ServerError ×2, LlmError.Timeout ×1\): 2 now scored, 1 failed again \(LlmError.Timeout ×1\)\./
      )

      // the last line of an item wins: a healthy third run retries only 7, and the report equals a clean run's
      const third = calls()
      const finalRun = yield* Evaluator.run({
        ...options,
        candidates: [candidate(scripted("fake", (request) => `#### ${questionIndex(request) * 2}`, third))]
      })
      assert.deepStrictEqual(third.requests.map(questionIndex), [7])
      const clean = yield* Evaluator.run({
        ...options,
        checkpoint: Path.join(tempDir(), "clean.jsonl"),
        candidates: [candidate(scripted("fake", (request) => `#### ${questionIndex(request) * 2}`))]
      })
      assert.strictEqual(Report.reportJson(finalRun.report), Report.reportJson(clean.report))
    }))

  it.effect("refuses a checkpoint written by a different run", () =>
    Effect.gen(function*() {
      const checkpoint = Path.join(tempDir(), "checkpoint.jsonl")
      yield* Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], questions: 3, checkpoint })
      const error = yield* Effect.flip(
        Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], questions: 4, checkpoint })
      )
      assert.match(error.message, /different run/)
    }))

  it.effect("a candidate that cannot start is a clear EvaluatorError", () =>
    Effect.gen(function*() {
      const broken = Layer.effect(Llm.Llm, Effect.fail(new Error("model file not found: nope.gguf")))
      const error = yield* Effect.flip(
        Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [{ name: "local:nope.gguf", model: "nope", llm: broken }] })
      )
      assert.strictEqual(error._tag, "EvaluatorError")
      assert.strictEqual(error.reason._tag, "StartFailed")
      assert.strictEqual(error.message, "candidate local:nope.gguf failed to start: model file not found: nope.gguf")
      const noJudge = yield* Effect.flip(Evaluator.run({ dataset, scorer: Scorer.judge(), candidates: [candidate(halfRight())] }))
      assert.match(noJudge.message, /needs a judge/)
      const zero = yield* Effect.flip(
        Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], concurrency: 0 })
      )
      assert.strictEqual(zero.message, "concurrency must be a positive integer, got 0")
      // the reason names the bad option
      const fields = yield* Effect.forEach([
        { concurrency: 0 },
        { trials: 0 },
        { selfCorrect: -1 },
        { judge: { name: "j", model: "j", llm: halfRight(), concurrency: 0 } }
      ], (bad) =>
        Effect.flip(Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], ...bad })).pipe(
          Effect.map((failure) => failure.reason._tag === "InvalidOptions" ? failure.reason.field : failure.reason._tag)
        ))
      assert.deepStrictEqual(fields, ["concurrency", "trials", "selfCorrect", "judge.concurrency"])
      // every bad option is listed, the first is the reason's field
      const several = yield* Effect.flip(
        Evaluator.run({ dataset, scorer: Scorer.gsm8k(), candidates: [candidate(halfRight())], trials: 1.5, maxTokens: 0 })
      )
      assert.strictEqual(several.reason._tag === "InvalidOptions" ? several.reason.field : "", "trials")
      assert.strictEqual(several.message, "trials must be a positive integer, got 1.5; maxTokens must be a positive integer, got 0")
    }))

  it.effect("candidates sharing one layer build it once", () =>
    Effect.gen(function*() {
      let builds = 0
      const shared = Layer.unwrap(Effect.sync(() => {
        builds++
        return halfRight()
      }))
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        questions: 2,
        candidates: [{ name: "a", model: "m", llm: shared }, { name: "b", model: "m", adapter: "lora-1", llm: shared }]
      })
      assert.strictEqual(builds, 1)
      assert.strictEqual(result.report.results.length, 2)
      assert.deepStrictEqual(result.report.config.candidates[1], { name: "b", model: "m", adapter: "lora-1" })
    }))

  it.effect("self-correction with a judge: the learner sees the judge's reason; per-turn judge scores", () =>
    Effect.gen(function*() {
      const learnerCalls = calls()
      // Wrong first ("#### 1"), right after feedback.
      const learner = scripted("learner", (request) => {
        const i = questionIndex(request)
        return request.messages.length === 1 ? "#### 1" : `#### ${i * 2}`
      }, learnerCalls)
      const judge = scripted("judge", (request) => {
        const prompt = request.messages.map((message) => message.content).join("\n")
        const i = indexOf(prompt)
        const answer = /Answer to grade: #### (\d+)/.exec(prompt)?.[1]
        return answer === String(i * 2)
          ? "{\"score\": 1, \"reason\": \"correct\"}"
          : `{"score": 0, "reason": "the sum of ${i} and ${i} is not ${answer}"}`
      })
      const small: Dataset.Dataset = { ...dataset, items: dataset.items.slice(2, 5) }
      const result = yield* Evaluator.run({
        dataset: small,
        scorer: Scorer.judge(),
        selfCorrect: 1,
        candidates: [candidate(learner)],
        judge: { name: "judge", model: "j", llm: judge }
      })
      const turns = result.report.results[0]!.summary.selfCorrection!
      assert.deepStrictEqual(turns.map((turn) => [turn.accuracy, turn.fixed, turn.broken]), [[0, 0, 0], [1, 3, 0]])
      const revision = learnerCalls.requests.find((request) => request.messages.length === 3 && questionIndex(request) === 3)!
      assert.strictEqual(revision.messages[2]!.content, "A grader said: the sum of 3 and 3 is not 1 Revise your answer.")
      assert.strictEqual(result.report.results[0]!.items[0]!.turns!.length, 2)
    }))
})

describe("Evaluator.runToFiles", () => {
  // Two candidates (paired comparisons), a judge, self-correction turns, errors and
  // outputs with newlines and non-ASCII text: every part of the report that is streamed.
  const options = () => {
    const learner = scripted("learner", (request) => {
      const i = questionIndex(request)
      if (i === 4) return new LlmError.ServerError({ status: 500, description: "boom" })
      return request.messages.length === 1 ? `Réponse…\n"quoted"\n#### ${i % 3 === 0 ? 1 : i * 2}` : `#### ${i * 2}`
    })
    const other = scripted("other", (request) => `#### ${questionIndex(request) * 2 + (questionIndex(request) % 2)}`)
    return {
      dataset,
      scorer: Scorer.gsm8k(),
      selfCorrect: 1,
      seed: 7,
      candidates: [candidate(learner, "a:learner"), candidate(other, "b:other")]
    }
  }

  it.effect("writes report.json byte for byte as Report.toJson renders run's result, with the records read back from the checkpoint", () =>
    Effect.gen(function*() {
      const inMemory = yield* Evaluator.run({ ...options(), checkpoint: Path.join(tempDir(), "checkpoint.jsonl") })
      const out = tempDir()
      const streamed = yield* Evaluator.runToFiles({ ...options(), out })
      // TestClock: both runs have the same (zero) timing, so the whole file is comparable.
      assert.strictEqual(readFileSync(streamed.files.json, "utf8"), Report.toJson(inMemory))
      assert.strictEqual(readFileSync(streamed.files.markdown, "utf8"), Report.toMarkdown(inMemory.report, inMemory.timing))
      assert.isTrue(inMemory.report.results.every((result) => result.items.length === 10))
      assert.isTrue(streamed.report.results.every((result) => result.items.length === 0))
      assert.deepStrictEqual(
        streamed.report.results.map((result) => result.summary),
        inMemory.report.results.map((result) => result.summary)
      )
      assert.deepStrictEqual(streamed.report.comparisons, inMemory.report.comparisons)
      assert.isDefined(inMemory.report.comparisons)
    }))

  it.effect("resumes from a killed run's checkpoint (torn last line) and writes the same report as an uninterrupted run", () =>
    Effect.gen(function*() {
      const out = tempDir()
      const checkpoint = Path.join(out, "checkpoint.jsonl")
      const reached = yield* Deferred.make<void>()
      const firstCalls = calls()
      const hanging = scripted("fake", (request) => {
        if (firstCalls.requests.length >= 5) return Deferred.succeed(reached, undefined).pipe(Effect.andThen(Effect.never))
        return `#### ${questionIndex(request) * 2}`
      }, firstCalls)
      const base = { dataset, scorer: Scorer.gsm8k(), questions: 8, concurrency: 1, out }
      const fiber = yield* Effect.forkChild(Evaluator.runToFiles({ ...base, candidates: [candidate(hanging)] }))
      yield* Deferred.await(reached)
      yield* Fiber.interrupt(fiber)
      appendFileSync(checkpoint, "{\"type\":\"item\",\"record\":{\"candi") // a torn last line
      const answer = (record = calls()) => scripted("fake", (request) => `#### ${questionIndex(request) * 2}`, record)
      const second = calls()
      const resumed = yield* Evaluator.runToFiles({ ...base, candidates: [candidate(answer(second))] })
      assert.strictEqual(second.requests.length, 4)
      assert.strictEqual(resumed.timing.resumedItems, 4)
      const clean = yield* Evaluator.run({ ...base, candidates: [candidate(answer())] })
      const written = JSON.parse(readFileSync(resumed.files.json, "utf8")) as { report: Report.Report }
      assert.strictEqual(Report.reportJson(written.report), Report.reportJson(clean.report))
      assert.strictEqual(readFileSync(checkpoint, "utf8").split("\n").filter((line) => line.length > 0).length, 1 + 8)
    }))
})

describe("Report.slim", () => {
  it("summaries and comparisons over slim records equal those over the records", () => {
    const record = (candidate: string, itemId: string, trial: number, correct: boolean, turns = false): ItemRecord => ({
      candidate,
      itemId,
      index: Number(itemId.slice(1)),
      trial,
      status: "ok" as const,
      output: "a long answer\n#### 4",
      score: correct ? 1 : 0,
      correct,
      extracted: "4",
      details: { strict: correct, flexible: true, reason: "kept out of slim" },
      ...(turns
        ? {
          turns: [{ turn: 0, output: "x", score: 0, correct: false, extracted: null }, {
            turn: 1,
            output: "y",
            score: 1,
            correct,
            extracted: "4"
          }]
        }
        : {}),
      usage: { inputTokens: 5, outputTokens: 7, calls: turns ? 2 : 1 }
    })
    const records: Array<ItemRecord> = [
      record("a", "q0", 0, true, true),
      record("a", "q1", 0, false, true),
      {
        ...record("a", "q2", 0, false, true),
        status: "error" as const,
        error: { stage: "generate" as const, tag: "LlmError.Timeout", message: "hung", turn: 0 }
      },
      record("b", "q0", 0, true, true),
      record("b", "q1", 0, true, true),
      record("b", "q2", 0, false, true)
    ]
    const config: Report.RunConfig = {
      dataset: { name: "d", rows: 3, loaded: 3, skipped: [] },
      scorer: "gsm8k",
      seed: 1,
      questions: 3,
      trials: 1,
      selfCorrect: 1,
      maxTokens: 16,
      selection: ["q0", "q1", "q2"],
      candidates: [{ name: "a", model: "m" }, { name: "b", model: "m" }],
      judge: null
    }
    const full = Report.build(config, records)
    const slim = Report.build(config, records.map(Report.slim))
    assert.deepStrictEqual(slim.results.map((result) => result.summary), full.results.map((result) => result.summary))
    assert.deepStrictEqual(slim.comparisons, full.comparisons)
    assert.isUndefined(Report.slim(records[0]!).output)
    assert.deepStrictEqual(Report.slim(records[0]!).details, { strict: true, flexible: true })
  })
})
