import { assert, describe, it } from "@effect/vitest"
import { Boundary } from "@hasten/core"
import { Schema } from "effect"

const Row = Schema.Struct({
  question: Schema.String.check(Schema.isNonEmpty()),
  judge: Schema.optionalKey(Schema.Struct({ concurrency: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)) })),
  tags: Schema.optionalKey(Schema.Array(Schema.String))
})

describe("Boundary", () => {
  it("names the field of every problem, nested fields with dots and indexes", () => {
    const decode = Boundary.decoder(Row)
    const result = decode({ question: "", judge: { concurrency: 0 }, tags: ["a", 1] })
    assert.strictEqual(result._tag, "Failure")
    if (result._tag !== "Failure") return
    assert.deepStrictEqual(result.problems.map((problem) => problem.field), ["question", "judge.concurrency", "tags[1]"])
    assert.strictEqual(
      Boundary.formatProblems(result.problems),
      "question: Expected a value with a length of at least 1, got \"\"; judge.concurrency: Expected a value greater than or equal to 1, got 0; tags[1]: Expected string, got 1"
    )
  })

  it("decodes JSON Lines with line numbers, keeping JSON.parse's detail", () => {
    const lines = Boundary.decodeJsonLines(Row)("\uFEFF{\"question\":\"q\"}\r\n\n{\"question\":\n{\"question\":\"\"}\n")
    assert.deepStrictEqual(lines.map((line) => [line.line, line.result._tag]), [[1, "Success"], [3, "Failure"], [4, "Failure"]])
    const [, bad, empty] = lines
    assert.match(bad!.result._tag === "Failure" ? bad!.result.problems[0]!.message : "", /^invalid JSON: .+/)
    assert.strictEqual(empty!.result._tag === "Failure" ? empty!.result.problems[0]!.field : "", "question")
  })

  it("jsonDecoder and decoder(fromJsonText) agree", () => {
    for (const text of ["{\"question\":\"q\"}", "{\"question\":1}", "{oops", "[]"]) {
      assert.deepStrictEqual(Boundary.jsonDecoder(Row)(text), Boundary.decoder(Boundary.fromJsonText(Row))(text))
    }
  })

  it("optionsChecker: the first bad field, and every problem in words that follow the field's name", () => {
    const check = Boundary.optionsChecker(Schema.Struct({
      trials: Schema.optionalKey(Boundary.PositiveInt),
      judge: Schema.optionalKey(Schema.Struct({ concurrency: Schema.optionalKey(Boundary.PositiveInt) })),
      gamma: Schema.optionalKey(Boundary.IntBetween(1, 64))
    }))
    assert.isUndefined(check({ trials: 2, judge: {} }))
    const invalid = check({ trials: 1.5, judge: { concurrency: 0 }, gamma: "x" })
    assert.strictEqual(invalid?.field, "trials")
    assert.strictEqual(
      invalid?.message,
      "trials must be a positive integer, got 1.5; judge.concurrency must be a positive integer, got 0; gamma: Expected number, got \"x\""
    )
  })

  it("JsonText round-trips", () => {
    assert.deepStrictEqual(Schema.decodeSync(Boundary.fromJsonText(Row))("{\"question\":\"q\"}"), { question: "q" })
    assert.strictEqual(Schema.encodeSync(Boundary.JsonText)({ a: 1 }), "{\"a\":1}")
  })
})

describe("Boundary.parseFlags", () => {
  const flags = {
    threads: Boundary.Flag.integer(1, { short: "t" }),
    rate: Boundary.Flag.number({ maximum: 1 }),
    scorer: Boundary.Flag.choice(["gsm8k", "judge"]),
    candidate: Boundary.Flag.strings(),
    fresh: Boundary.Flag.boolean(),
    out: Boundary.Flag.string()
  }

  it("decodes every kind of flag, with short aliases and positionals", () => {
    const parsed = Boundary.parseFlags(
      ["-t", "3", "--rate", "0.5", "--scorer", "judge", "--candidate", "a", "--candidate", "b", "--fresh", "x.json"],
      flags,
      { positionals: true }
    )
    assert.deepStrictEqual(parsed, {
      _tag: "Success",
      flags: { values: { threads: 3, rate: 0.5, scorer: "judge", candidate: ["a", "b"], fresh: true }, positionals: ["x.json"] }
    })
  })

  it("names the flag of an unknown option, a missing value and every bad value", () => {
    const failure = (argv: Array<string>) => {
      const parsed = Boundary.parseFlags(argv, flags)
      return parsed._tag === "Failure" ? parsed.problem : undefined
    }
    assert.strictEqual(failure(["--bogus"])?.flag, "bogus")
    assert.match(failure(["--bogus"])!.message, /^Unknown option '--bogus'/)
    assert.strictEqual(failure(["--out"])?.flag, "out")
    assert.deepStrictEqual(failure(["--threads", "0", "--rate", "2", "--scorer", "bleu"]), {
      flag: "threads",
      message:
        "--threads must be an integer >= 1, got \"0\"; --rate must be between 0 and 1, got 2; --scorer must be one of gsm8k, judge, got \"bleu\""
    })
    assert.match(failure(["x"])!.message, /Unexpected argument 'x'/)
  })
})
