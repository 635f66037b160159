/**
 * Log-likelihood multiple choice on the real stories260K model, checked against numbers
 * computed here independently: node-llama-cpp loaded directly, the harness's
 * `_encode_pair` tokenization, one forward pass over context + option, and a float64
 * log-softmax of the raw logits.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Dataset } from "@hasten/evaluator"
import { Command, MultipleChoice } from "@hasten/evaluator"
import { Local } from "@hasten/providers/local"
import { Effect } from "effect"
import { getLlama, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"

/** A folder under shared/: its env variable when set, else the first `shared/<name>` walking up from here. */
const sharedFolder = (name: "models" | "data", variable: string): string => {
  const fromEnv = process.env[variable]
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv
  let dir = process.cwd()
  while (!existsSync(Path.join(dir, "shared", name))) {
    const parent = Path.dirname(dir)
    if (parent === dir) throw new Error(`shared/${name} not found walking up from the working directory; set ${variable}`)
    dir = parent
  }
  return Path.join(dir, "shared", name)
}
const modelsDir = sharedFolder("models", "HASTEN_MODELS_DIR")
const dataDir = sharedFolder("data", "HASTEN_DATA_DIR")

interface McTask {
  readonly question: string
  readonly mc1_targets: Record<string, number>
  readonly mc2_targets: Record<string, number>
}
const tasks = JSON.parse(readFileSync(Path.join(dataDir, "truthfulqa", "mc_task.json"), "utf8")) as Array<McTask>

let reference: Promise<{ readonly model: LlamaModel; readonly sequence: LlamaContextSequence }> | undefined
/** node-llama-cpp directly, no Hasten code; flash attention off, as `Local.layer` runs it. */
const referenceModel = () =>
  reference ??= (async () => {
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
    const model = await llama.loadModel({ modelPath: Path.join(modelsDir, "stories260K.gguf") })
    const context = await model.createContext({ contextSize: 2048, threads: 1, flashAttention: false })
    return { model, sequence: context.getSequence() }
  })()

/** Independent reference: per option, the summed float64 log-softmax of raw logits over one forward pass. */
const referenceLogLikelihoods = async (context: string, options: ReadonlyArray<string>): Promise<Array<number>> => {
  const { model, sequence } = await referenceModel()
  const bos = model.tokens.bos!
  const result: Array<number> = []
  for (const option of options) {
    // the harness's _encode_pair (the context has no trailing space), with the BOS token
    const contextTokens = [bos, ...model.tokenize(context, false)]
    const whole = [bos, ...model.tokenize(context + " " + option, false)]
    const continuation = whole.slice(contextTokens.length)
    const input = [...contextTokens, ...continuation]
    await sequence.clearHistory()
    const evaluated = await sequence.controlledEvaluate(
      input.map((token, index) =>
        index >= contextTokens.length - 1 && index < input.length - 1
          ? [token as Token, { generateNext: { logits: true } }]
          : (token as Token)
      )
    )
    let ll = 0
    for (let i = 0; i < continuation.length; i++) {
      const logits = evaluated[contextTokens.length - 1 + i]!.next.logits!
      let max = -Infinity
      for (const value of logits.values()) max = Math.max(max, value)
      let sum = 0
      for (const value of logits.values()) sum += Math.exp(value - max)
      ll += logits.get(continuation[i] as Token)! - max - Math.log(sum)
    }
    result.push(ll)
  }
  return result
}

const harnessScores = (lls: ReadonlyArray<number>, options: ReadonlyArray<string>, labels: ReadonlyArray<number>) => {
  // np.argmax: the first maximum
  const argmax = (values: ReadonlyArray<number>) => values.indexOf(Math.max(...values))
  const pred = argmax(lls)
  const predNorm = argmax(lls.map((ll, i) => ll / Array.from(options[i]!).length))
  // truthfulqa utils.process_results_mc2: exp, normalise, sum over the true options
  const p = lls.map((ll) => Math.exp(ll))
  const total = p.reduce((a, b) => a + b, 0)
  const mc2 = p.filter((_, i) => labels[i] === 1).reduce((a, b) => a + b, 0) / total
  return { acc: labels[pred] === 1 ? 1 : 0, accNorm: labels[predNorm] === 1 ? 1 : 0, mc2 }
}

const model = Local.layer({ model: "stories260K.gguf", threads: 1 })

describe("MultipleChoice on stories260K", () => {
  it.effect(
    "TruthfulQA MC1 and MC2: log-likelihoods, acc, acc_norm and mc2 equal an independent computation",
    () =>
      Effect.gen(function*() {
        for (const targets of ["mc1", "mc2"] as const) {
          // two real questions: 1 and 164 (whose MC2 labels are not listed true-first)
          const picked = [1, 164]
          const items = picked.map((index) => {
            const options = tasks[index]![`${targets}_targets`]
            const choices = Object.keys(options)
            const labels = choices.map((choice) => options[choice]!)
            return { id: `tqa:${index}`, index, question: tasks[index]!.question, answer: "", choices, labels }
          })
          const dataset: Dataset.Dataset = {
            name: `truthfulqa-${targets}`,
            items,
            report: { source: "memory", rows: items.length, loaded: items.length, skipped: [] }
          }
          const result = yield* MultipleChoice.run({ dataset, candidates: [{ name: "local", model: "stories260K", tokenModel: model }] })
          assert.strictEqual(result.report.config.scorer, `loglikelihood-${targets}`)
          const records = result.report.results[0]!.items
          const expected: Array<ReturnType<typeof harnessScores>> = []
          for (const item of items) {
            const record = records.find((candidate) => candidate.itemId === item.id)!
            assert.strictEqual(record.status, "ok", JSON.stringify(record.error))
            const context = MultipleChoice.truthfulQaContext(item)
            const expectedLls = yield* Effect.promise(() => referenceLogLikelihoods(context, item.choices))
            const lls = record.details!.logLikelihoods as Array<number>
            assert.strictEqual(lls.length, item.choices.length)
            // TokenModel's probabilities are single precision: agreement to ~1e-6 nats per token
            lls.forEach((ll, i) => assert.closeTo(ll, expectedLls[i]!, 1e-4, `${item.id} option ${i}`))
            const scores = harnessScores(expectedLls, item.choices, item.labels)
            assert.strictEqual(record.details!.acc, scores.acc, item.id)
            assert.strictEqual(record.details!.accNorm, scores.accNorm, item.id)
            assert.closeTo(record.details!.mc2 as number, scores.mc2, 1e-4, item.id)
            assert.closeTo(record.score!, targets === "mc1" ? scores.acc : scores.mc2, 1e-4)
            expected.push(scores)
          }
          const summary = result.report.results[0]!.summary.multipleChoice!
          const mean = (key: "acc" | "accNorm" | "mc2") => expected.reduce((sum, scores) => sum + scores[key], 0) / expected.length
          assert.closeTo(summary.acc, mean("acc"), 1e-6)
          assert.closeTo(summary.accNorm, mean("accNorm"), 1e-6)
          assert.closeTo(summary.mc2, mean("mc2"), 1e-4)
          // the numbers are not degenerate: options get distinct log-likelihoods
          assert.isAbove(new Set(records.flatMap((record) => record.details!.logLikelihoods as Array<number>)).size, 6)
        }
      }),
    { timeout: 120_000 }
  )

  it("scoreChoices: acc, acc_norm by characters as the harness counts them (not bytes), mc2 over true labels, ties to the first", () => {
    // option 1 has the highest log-likelihood; per character, option 0 ("é" is 1 character, 2 bytes)
    // per character (2 and 3): -1.1 < -1, so "abc"; per byte (4 and 3) it would be "éé"
    const scores = MultipleChoice.scoreChoices([-2.2, -3], ["éé", "abc"], [1, 0])
    assert.deepStrictEqual([scores.predicted, scores.predictedNorm, scores.acc, scores.accNorm], [0, 1, 1, 0])
    // mc2 sums the options labelled true wherever they are listed
    const mixed = MultipleChoice.scoreChoices([-2, -1.5, -9], ["a", "b", "c"], [1, 0, 1])
    const p = [-2, -1.5, -9].map(Math.exp)
    assert.closeTo(mixed.mc2, (p[0]! + p[2]!) / (p[0]! + p[1]! + p[2]!), 1e-12)
    // a tie: the first option wins, as np.argmax does
    assert.strictEqual(MultipleChoice.scoreChoices([-1, -1], ["a", "b"], [0, 1]).predicted, 0)
    // very negative log-likelihoods: still a number (the harness's plain exp would give 0/0)
    assert.closeTo(MultipleChoice.scoreChoices([-2000, -2001], ["a", "b"], [1, 0]).mc2, 1 / (1 + Math.exp(-1)), 1e-12)
  })

  it.effect("refuses a dataset without labelled options, naming the item", () =>
    Effect.gen(function*() {
      const dataset: Dataset.Dataset = {
        name: "qa",
        items: [{ id: "qa:0", index: 0, question: "q", answer: "a" }],
        report: { source: "memory", rows: 1, loaded: 1, skipped: [] }
      }
      const error = yield* Effect.flip(MultipleChoice.run({ dataset, candidates: [{ name: "local", model: "m", tokenModel: model }] }))
      assert.strictEqual(error.reason._tag, "InvalidOptions")
      assert.match(error.message, /item qa:0 has no options with labels/)
    }))
})

describe("hasten-eval --scorer loglikelihood", () => {
  const run = async (argv: ReadonlyArray<string>) => {
    let out = ""
    let err = ""
    const code = await Command.main(argv, { out: (text) => (out += text), err: (text) => (err += text) })
    return { code, out, err }
  }

  it("scores truthfulqa-mc2 from shared/data on a local model and writes the harness's numbers", async () => {
    const dir = mkdtempSync(Path.join(tmpdir(), "hasten-mc-"))
    const result = await run([
      "--dataset",
      "truthfulqa-mc2",
      "--candidate",
      "local:stories260K.gguf",
      "--questions",
      "2",
      "--out",
      dir,
      "--no-cache",
      "--no-perf"
    ])
    assert.strictEqual(result.code, 0, result.err)
    assert.match(result.out, /log-likelihood acc \d\.\d{4}, acc_norm \d\.\d{4}, mc2 0\.\d{4}/)
    const report = JSON.parse(readFileSync(Path.join(dir, "report.json"), "utf8")).report
    assert.strictEqual(report.config.scorer, "loglikelihood-mc2")
    assert.strictEqual(report.results[0].summary.scored, 2)
    // deterministic: a second run writes the same report, byte for byte
    const again = await run([
      "--dataset",
      "truthfulqa-mc2",
      "--candidate",
      "local:stories260K.gguf",
      "--questions",
      "2",
      "--out",
      dir,
      "--no-perf"
    ])
    assert.strictEqual(again.code, 0, again.err)
    assert.strictEqual(JSON.stringify(JSON.parse(readFileSync(Path.join(dir, "report.json"), "utf8")).report), JSON.stringify(report))
  }, 120_000)

  it("refuses a remote candidate (no token probabilities), trials, self-correction and a judge", async () => {
    const dir = mkdtempSync(Path.join(tmpdir(), "hasten-mc-"))
    const dataset = Path.join(dir, "mc.json")
    writeFileSync(dataset, JSON.stringify([{ question: "q", mc1_targets: { a: 1, b: 0 } }]))
    const result = await run(["--dataset", dataset, "--candidate", "openai:gpt-4o-mini", "--scorer", "loglikelihood", "--out", dir])
    assert.strictEqual(result.code, 1)
    assert.match(
      result.err,
      /--scorer loglikelihood needs token probabilities, which only local: candidates give; "openai:gpt-4o-mini" is openai/
    )
    for (
      const [flags, pattern] of [
        [["--trials", "2", "--temperature", "0.5"], /--trials must be 1/],
        [["--self-correct", "1"], /drop --self-correct/],
        [["--judge", "echo:j"], /needs no judge/]
      ] as const
    ) {
      const refused = await run([
        "--dataset",
        dataset,
        "--candidate",
        "local:stories260K.gguf",
        "--scorer",
        "loglikelihood",
        "--out",
        dir,
        ...flags
      ])
      assert.strictEqual(refused.code, 1)
      assert.match(refused.err, pattern)
    }
  })
})
