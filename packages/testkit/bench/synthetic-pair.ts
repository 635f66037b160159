/**
 * Measures a synthetic draft/target pair with node-llama-cpp (CPU): the cost of one greedy
 * decoding step of each model, their ratio, and the draft's per-token greedy acceptance
 * (how often the draft's greedy next token equals the target's, along the target's greedy
 * text). Not a test: timings depend on the machine.
 *
 *   node --conditions=@hasten/source --import tsx bench/synthetic-pair.ts [15M,42M,110M] [tokens] [threads]
 *
 * Step times are medians over `ROUNDS` (default 3) interleaved runs of each model; `floor`
 * is the same step on the donor file (8 wide, one layer, the same vocabulary): node-llama-cpp's
 * fixed cost per step, which no draft can go under. `DRAFT=64x1x1x192` (embedding x layers x
 * heads x feedForward) picks another draft, `QUANTIZATION=F16` the other weight type.
 */
import { SyntheticModel } from "@hasten/testkit"
import { getLlama, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"

const targets = (process.argv[2] ?? "15M").split(",") as Array<SyntheticModel.ShapeName>
const count = Number(process.argv[3] ?? 128)
const threads = Number(process.argv[4] ?? 2)
const quantization = (process.env.QUANTIZATION ?? "Q8_0") as SyntheticModel.Quantization
const rounds = Number(process.env.ROUNDS ?? 3)
const draftShape = process.env.DRAFT === undefined ? "4M" as const : (() => {
  const [embedding, layers, heads, feedForward] = process.env.DRAFT.split("x").map(Number) as [number, number, number, number]
  return { embedding, layers, heads, feedForward }
})()
const prompt = "Once upon a time, in a small village at the edge of the forest, there lived"

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Greedy generation, one token per step: the tokens and each step's milliseconds. */
const generate = async (model: LlamaModel, input: ReadonlyArray<Token>) => {
  const context = await model.createContext({ contextSize: 1024, threads })
  const sequence = context.getSequence()
  const tokens: Array<Token> = []
  const steps: Array<number> = []
  let last = performance.now()
  for await (const token of sequence.evaluate([...input], { temperature: 0 })) {
    const now = performance.now()
    if (tokens.length > 0) steps.push(now - last)
    last = now
    tokens.push(token)
    if (tokens.length >= count) break
  }
  await context.dispose()
  return { tokens, stepMillis: median(steps) }
}

/** The model's greedy next token after each position of `tokens` from `from` on (one batch). */
const predictions = async (model: LlamaModel, tokens: ReadonlyArray<Token>, from: number) => {
  const context = await model.createContext({ contextSize: 1024, threads })
  const sequence = context.getSequence()
  const results = await sequence.controlledEvaluate(
    tokens.map((token, index) => index >= from ? [token, { generateNext: { token: true, options: { temperature: 0 } } }] : token)
  )
  await context.dispose()
  return results.slice(from).map((result) => result?.next?.token)
}

const floorModel = await llama.loadModel({ modelPath: SyntheticModel.donorPath(), gpuLayers: 0 })

for (const target of targets) {
  const started = performance.now()
  const pair = await SyntheticModel.pair({ target, draft: draftShape, quantization })
  const prepared = performance.now() - started
  const draftModel = await llama.loadModel({ modelPath: pair.draft.path, gpuLayers: 0 })
  const targetModel = await llama.loadModel({ modelPath: pair.target.path, gpuLayers: 0 })
  const input = [targetModel.tokens.bos!, ...targetModel.tokenize(prompt)]
  const targetSteps: Array<number> = []
  const draftSteps: Array<number> = []
  const floorSteps: Array<number> = []
  let targetRun = await generate(targetModel, input)
  for (let round = 0; round < rounds; round++) {
    targetRun = await generate(targetModel, input)
    targetSteps.push(targetRun.stepMillis)
    draftSteps.push((await generate(draftModel, input)).stepMillis)
    floorSteps.push((await generate(floorModel, input)).stepMillis)
  }
  const targetStep = median(targetSteps)
  const draftStep = median(draftSteps)
  // along the target's greedy text: [input, t1 … t(n-1)] predicts t1 … tn
  const along = [...input, ...targetRun.tokens.slice(0, -1)]
  const drafted = await predictions(draftModel, along, input.length - 1)
  const check = await predictions(targetModel, along, input.length - 1)
  const accepted = drafted.filter((token, index) => token === targetRun.tokens[index]).length
  const selfAgreement = check.filter((token, index) => token === targetRun.tokens[index]).length
  console.log(JSON.stringify({
    target,
    quantization,
    threads,
    tokens: count,
    files: { target: pair.target.bytes, draft: pair.draft.bytes, preparedMillis: Math.round(prepared) },
    draft: pair.draft.shape,
    stepMillis: { target: +targetStep.toFixed(2), draft: +draftStep.toFixed(2), floor: +median(floorSteps).toFixed(2) },
    draftCostRatio: +(draftStep / targetStep).toFixed(3),
    acceptance: +(accepted / count).toFixed(3),
    targetBatchMatchesSteps: +(selfAgreement / count).toFixed(3),
    distinctTargetTokens: new Set(targetRun.tokens).size,
    text: targetModel.detokenize(targetRun.tokens.slice(0, 24))
  }))
  await draftModel.dispose()
  await targetModel.dispose()
}
