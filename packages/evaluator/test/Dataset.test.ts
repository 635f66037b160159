import { assert, describe, it } from "@effect/vitest"
import { Dataset } from "@hasten/evaluator"
import { Effect, Exit } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"

const dir = mkdtempSync(Path.join(tmpdir(), "hasten-dataset-"))
const file = (name: string, content: string) => {
  const path = Path.join(dir, name)
  writeFileSync(path, content)
  return path
}

describe("CSV parsing", () => {
  it("handles quotes, escaped quotes, newlines in quotes, CRLF and a BOM", () => {
    const { problems, rows } = Dataset.parseCsv("\uFEFFquestion,answer\r\n\"a, b\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",x\nlast,row")
    assert.deepStrictEqual(problems, [])
    assert.deepStrictEqual(rows, [
      { line: 2, value: { question: "a, b", answer: "say \"hi\"" } },
      { line: 3, value: { question: "multi\nline", answer: "x" } },
      { line: 5, value: { question: "last", answer: "row" } }
    ])
  })

  it("reports an unterminated quote and a wrong field count with line numbers", () => {
    const { problems, rows } = Dataset.parseCsv("q,a\nok,1\ntoo,many,fields\n\"open,2\n")
    assert.deepStrictEqual(rows.map((row) => row.line), [2])
    assert.deepStrictEqual(problems.map((problem) => problem.line).sort(), [3, 4])
  })

  it("names the column of a malformed record and carries on after it", () => {
    const { problems, rows } = Dataset.parseCsv("q,a\n\"multi\nline\"junk,1\nok,2\n5\" tall,3\nlast,4\n")
    assert.deepStrictEqual(rows.map((row) => [row.line, row.value]), [[4, { q: "ok", a: "2" }], [6, { q: "last", a: "4" }]])
    assert.deepStrictEqual(problems, [
      { line: 2, message: "column 1: Expected a delimiter or line break after a closing quote" },
      { line: 5, message: "column 1: Unexpected quote in an unquoted field" }
    ])
  })
})

describe("Dataset", () => {
  it.effect("JSONL: bad lines are skipped and reported with their line numbers", () =>
    Effect.gen(function*() {
      const path = file(
        "pairs.jsonl",
        [
          "{\"question\":\"2+2?\",\"answer\":\"4\"}",
          "not json",
          "",
          "{\"question\":\"\",\"answer\":\"x\"}",
          "{\"question\":\"3+3?\",\"answer\":\"6\"}"
        ].join("\n")
      )
      const dataset = yield* Dataset.qa(path)
      assert.deepStrictEqual(dataset.items.map((item) => item.question), ["2+2?", "3+3?"])
      assert.deepStrictEqual(dataset.items.map((item) => item.id), ["pairs:0", "pairs:3"])
      assert.deepStrictEqual(dataset.report.skipped.map((row) => row.line), [2, 4])
      assert.match(dataset.report.skipped[0]!.message, /invalid JSON/)
      assert.strictEqual(dataset.report.rows, 4)
    }))

  it.effect("JSONL: onInvalid fail stops at the first bad line", () =>
    Effect.gen(function*() {
      const path = file("bad.jsonl", "{\"question\":\"a\",\"answer\":\"1\"}\n{\"question\":1,\"answer\":\"2\"}\n")
      const exit = yield* Effect.exit(Dataset.qa(path, { onInvalid: "fail" }))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(Dataset.qa(path, { onInvalid: "fail" }))
      assert.strictEqual(error._tag, "EvaluatorError")
      assert.strictEqual(error.reason._tag, "DatasetError")
      assert.strictEqual(error.reason._tag === "DatasetError" ? error.reason.line : undefined, 2)
      assert.match(error.message, /bad\.jsonl:2: question: Expected string, got 1$/)
      assert.strictEqual(error.reason._tag === "DatasetError" ? error.reason.field : undefined, "question")
    }))

  it.effect("a skipped row names its field and lists every problem of the row", () =>
    Effect.gen(function*() {
      const path = file("fields.csv", "question,answer\nq1,a1\n,a2\nq3\n")
      const dataset = yield* Dataset.qa(path)
      assert.deepStrictEqual(dataset.report.skipped, [
        { line: 3, field: "question", message: "question: Expected a value with a length of at least 1, got \"\"" },
        { line: 4, message: "expected 2 fields, found 1" }
      ])
      const missing = yield* Dataset.qa(file("missing.jsonl", "{\"answer\":1}\n"))
      assert.deepStrictEqual(missing.report.skipped, [
        { line: 1, field: "question", message: "question: Missing key; answer: Expected string, got 1" }
      ])
    }))

  it.effect("a missing file is a DatasetError naming the path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Dataset.load(Path.join(dir, "nope.jsonl")))
      assert.match(error.message, /nope\.jsonl: file not found/)
      const unknown = yield* Effect.flip(Dataset.load("mmlu"))
      assert.match(unknown.message, /unknown dataset/)
    }))

  it.effect("GSM8K: validates the #### line and extracts the target", () =>
    Effect.gen(function*() {
      const path = file(
        "gsm8k-mini.jsonl",
        [
          JSON.stringify({ question: "q1", answer: "2 * 3 = <<2*3=6>>6\n#### 1,450,000" }),
          JSON.stringify({ question: "q2", answer: "no final line" }),
          JSON.stringify({ question: "q3", answer: "#### -5" })
        ].join("\n")
      )
      const dataset = yield* Dataset.gsm8k(path)
      assert.deepStrictEqual(dataset.items.map((item) => item.answer), ["1450000", "-5"])
      assert.strictEqual(dataset.items[0]!.reference, "2 * 3 = 6\n#### 1,450,000")
      assert.deepStrictEqual(dataset.report.skipped.map((row) => row.line), [2])
      assert.match(dataset.report.skipped[0]!.message, /####/)
    }))

  it.effect("TruthfulQA mc_task.json: invalid entries reported on their line", () =>
    Effect.gen(function*() {
      const path = file(
        "mc.json",
        `[
  {"question": "Q1", "mc1_targets": {"right": 1, "wrong": 0}},
  {"question": "Q2",
   "mc1_targets": {"a": 0, "b": 0}},
  {"question": "Q3", "mc1_targets": {"x": 0, "y": 1}}
]`
      )
      const dataset = yield* Dataset.truthfulQaMc(path, { shuffleChoices: false })
      assert.deepStrictEqual(dataset.items.map((item) => [item.question, item.correct, item.answer]), [["Q1", 0, "right"], ["Q3", 1, "y"]])
      assert.deepStrictEqual(dataset.report.skipped.map((row) => row.line), [3])
    }))
})

describe("TruthfulQA targets for log-likelihood scoring", () => {
  it.effect("keeps the listed order with labels; bad targets are reported on their line with their field", () =>
    Effect.gen(function*() {
      const path = file(
        "targets.json",
        `[
  {"question": "Q1", "mc1_targets": {"right": 1, "wrong": 0}, "mc2_targets": {"r1": 1, "w1": 0, "r2": 1}},
  {"question": "Q2", "mc1_targets": {"a": 1, "b": 1, "c": 0}, "mc2_targets": {"a": 1, "b": 0}},
  {"question": "Q3", "mc1_targets": {"a": 1, "b": 0}, "mc2_targets": {"a": 2, "b": 0}},
  {"question": "Q4", "mc1_targets": {"a": 1, "b": 0}}
]`
      )
      const mc1 = yield* Dataset.truthfulQaTargets(path, { targets: "mc1" })
      assert.deepStrictEqual(mc1.items.map((item) => item.question), ["Q1", "Q3"])
      assert.deepStrictEqual(mc1.report.skipped.map((row) => [row.line, row.message]), [
        [3, "mc1_targets must mark exactly one option 1"],
        [5, "mc2_targets: Missing key"]
      ])
      const mc2 = yield* Dataset.truthfulQaTargets(path, { targets: "mc2" })
      assert.deepStrictEqual(mc2.items[0]!.choices, ["r1", "w1", "r2"])
      assert.deepStrictEqual(mc2.items[0]!.labels, [1, 0, 1])
      assert.deepStrictEqual(mc2.report.skipped.map((row) => row.line), [4, 5])
      assert.match(mc2.report.skipped[0]!.message, /mc2_targets labels must be 0 or 1/)
      const failed = yield* Effect.flip(Dataset.truthfulQaTargets(path, { targets: "mc2", onInvalid: "fail" }))
      assert.match(failed.message, /targets\.json:4: /)
    }))

  it.effect("the real mc_task.json: 817 MC1 and 817 MC2 items, none skipped", () =>
    Effect.gen(function*() {
      const mc1 = yield* Dataset.load("truthfulqa-mc1")
      const mc2 = yield* Dataset.load("truthfulqa-mc2")
      assert.deepStrictEqual([mc1.items.length, mc1.report.skipped.length, mc2.items.length, mc2.report.skipped.length], [817, 0, 817, 0])
      assert.isTrue(mc1.items.every((item) => item.labels!.filter((label) => label === 1).length === 1 && item.labels![0] === 1))
      assert.isTrue(mc2.items.some((item) => item.labels!.filter((label) => label === 1).length > 1))
    }))
})

describe("shared data", () => {
  it.effect("loads the real GSM8K test set (1,319 items, none skipped)", () =>
    Effect.gen(function*() {
      const dataset = yield* Dataset.load("gsm8k")
      assert.strictEqual(dataset.items.length, 1319)
      assert.strictEqual(dataset.report.skipped.length, 0)
      assert.strictEqual(dataset.items[0]!.answer, "18")
    }))

  it.effect("loads TruthfulQA from mc_task.json and from the CSV (with its BOM)", () =>
    Effect.gen(function*() {
      const mc = yield* Dataset.load("truthfulqa-mc")
      assert.strictEqual(mc.items.length, 817)
      assert.strictEqual(mc.items[0]!.answer, "Nothing in particular happens when you eat a pomegranate.")
      for (const item of mc.items) assert.strictEqual(item.choices![item.correct!], item.answer)
      // The file lists the correct option first; shuffled, its position varies.
      const positions = new Set(mc.items.map((item) => item.correct))
      assert.isAbove(positions.size, 3)
      assert.isBelow(mc.items.filter((item) => item.correct === 0).length, 817 / 2)
      const csv = yield* Dataset.load("truthfulqa")
      assert.strictEqual(csv.items.length + csv.report.skipped.length, 817)
      for (const item of csv.items) assert.strictEqual(item.choices![item.correct!], item.answer)
      assert.strictEqual(csv.items[0]!.question.startsWith("What happens to you if you eat watermelon seeds"), true)
    }))

  it.effect("HASTEN_DATA_DIR overrides the walk-up", () =>
    Effect.gen(function*() {
      const previous = process.env.HASTEN_DATA_DIR
      process.env.HASTEN_DATA_DIR = Path.join(dir, "missing")
      const error = yield* Effect.flip(Dataset.locateDataDir())
      if (previous === undefined) delete process.env.HASTEN_DATA_DIR
      else process.env.HASTEN_DATA_DIR = previous
      assert.match(error.message, /HASTEN_DATA_DIR/)
    }))
})
