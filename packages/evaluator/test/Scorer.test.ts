import { assert, describe, it } from "@effect/vitest"
import type { Dataset } from "@hasten/evaluator"
import { Scorer } from "@hasten/evaluator"
import { Effect } from "effect"

const item = (answer: string): Dataset.Item => ({ id: "t:0", index: 0, question: "q", answer })

describe("GSM8K extraction (lm-evaluation-harness semantics)", () => {
  const table: ReadonlyArray<readonly [output: string, target: string, strict: boolean, flexible: boolean]> = [
    ["She makes 9 * 2 = 18 dollars.\n#### 18", "18", true, true],
    ["#### 1,450,000", "1450000", true, true],
    ["The answer is $1,450,000.", "1450000", false, true],
    ["#### $18", "18", false, true], // strict pattern has no `$`; flexible takes "$18"
    ["So the total is 18.", "18", false, true], // trailing period stripped
    ["#### -5", "-5", true, true],
    ["I think 18 but no, 20", "18", false, false], // flexible takes the LAST number
    ["#### 18\nAs a check, 3 + 4 = 7", "18", true, false], // strict first, flexible last
    ["The result is 18.0", "18", false, false], // exact string match, as the harness does
    ["no numbers here", "18", false, false],
    ["#### 18.", "18", true, true],
    ["Total: 1,000 apples", "1000", false, true],
    ["", "0", false, false]
  ]
  for (const [output, target, strict, flexible] of table) {
    it(`${JSON.stringify(output)} vs ${target}: strict ${strict}, flexible ${flexible}`, () => {
      assert.strictEqual(Scorer.numbersMatch(Scorer.extractStrict(output), target), strict)
      assert.strictEqual(Scorer.numbersMatch(Scorer.extractFlexible(output), target), flexible)
    })
  }

  it.effect("the gsm8k scorer reports both filters and the extracted number", () =>
    Effect.gen(function*() {
      const score = yield* Scorer.gsm8k().score({ item: item("1450000"), output: "It costs $1,450,000.", trial: 0, turn: 0 }).pipe(
        Effect.provideService(Scorer.Judge, undefined as never)
      )
      assert.deepStrictEqual([score.score, score.correct, score.extracted, score.details], [1, true, "1450000", {
        strict: false,
        flexible: true
      }])
      const strict = yield* Scorer.gsm8k({ mode: "strict" }).score({
        item: item("1450000"),
        output: "It costs $1,450,000.",
        trial: 0,
        turn: 0
      }).pipe(Effect.provideService(Scorer.Judge, undefined as never))
      assert.strictEqual(strict.correct, false)
    }))
})

describe("multiple choice", () => {
  const choices = ["Nothing happens", "You grow watermelons in your stomach", "You die"]
  const table: ReadonlyArray<readonly [string, number | null]> = [
    ["A", 0],
    ["B. You grow watermelons", 1],
    ["(C)", 2],
    ["The answer is B", 1],
    ["Answer: c", 2],
    ["I believe nothing happens.", 0],
    ["D", null],
    ["A lot of things could happen", null],
    ["maybe", null]
  ]
  for (const [output, expected] of table) {
    it(`${JSON.stringify(output)} -> ${expected}`, () => {
      assert.strictEqual(Scorer.extractChoice(output, choices), expected)
    })
  }
})

describe("judge verdict parsing", () => {
  const ok: ReadonlyArray<readonly [string, number, string]> = [
    ["{\"score\": 1, \"reason\": \"correct\"}", 1, "correct"],
    ["```json\n{\"score\": 0.5, \"reason\": \"partly\"}\n```\nHope this helps!", 0.5, "partly"],
    ["Sure! Here is my verdict: {\"score\": \"0\", \"reason\": \"wrong {x}\"} and that's it.", 0, "wrong {x}"],
    ["```\n{\"reason\": \"fine\", \"score\": 1}\n```", 1, "fine"]
  ]
  for (const [raw, score, reason] of ok) {
    it.effect(`parses ${JSON.stringify(raw).slice(0, 40)}`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* Scorer.parseVerdict(raw), { score, reason })
      }))
  }
  it.effect("normalizes a 0..10 scale", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Scorer.parseVerdict("{\"score\": 7, \"reason\": \"ok\"}", { scale: 10 }), { score: 0.7, reason: "ok" })
    }))

  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ["The answer is correct.", /no JSON object/],
    ["{\"score\": 1, \"reason\": \"unterminated}", /no JSON object/],
    ["{score: 1, reason: 'x'}", /invalid JSON/],
    ["{\"reason\": \"no score\"}", /missing field "score"/],
    ["{\"score\": 1}", /missing field "reason"/],
    ["{\"score\": \"high\", \"reason\": \"x\"}", /not a number/],
    ["{\"score\": 3, \"reason\": \"x\"}", /outside \[0, 1\]/],
    ["{\"score\": 1, \"reason\": 5}", /"reason" is not a string/]
  ]
  for (const [raw, pattern] of bad) {
    it.effect(`rejects ${JSON.stringify(raw)} with JudgeParseError`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Scorer.parseVerdict(raw))
        assert.strictEqual(error._tag, "EvaluatorError")
        assert.instanceOf(error.reason, Scorer.JudgeParseError)
        assert.match(error.reason.description, pattern)
        assert.strictEqual(error.reason._tag === "JudgeParseError" ? error.reason.raw : undefined, raw)
      }))
  }
})
