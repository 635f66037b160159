/**
 * The seeds' evaluator, the "before" of the timing table (the same scenario as
 * `packages/evaluator/bench/run.ts`, which is a script, not reusable code): node-llama-cpp
 * used directly, the llama.cpp binding and the model loaded for every question (and freed
 * after it), the judge called one answer after another through the OpenAI SDK, no cache.
 * An unreadable verdict counts as 0, as the seeds counted it.
 */
import { getLlama, LlamaCompletion, LlamaLogLevel } from "node-llama-cpp"
import { performance } from "node:perf_hooks"
import OpenAI from "openai"

/** One local candidate: its report name, model file and optional LoRA adapter file. */
export interface LocalCandidate {
  readonly name: string
  readonly modelPath: string
  readonly adapterPath?: string | undefined
}

/** What the baseline needs: prompts and judge messages come from the evaluator's scorer. */
export interface Options<Item> {
  readonly candidates: ReadonlyArray<LocalCandidate>
  readonly items: ReadonlyArray<Item>
  readonly prompt: (item: Item) => string
  readonly judgeMessages: (
    item: Item,
    output: string
  ) => ReadonlyArray<{ readonly role: "system" | "user" | "assistant"; readonly content: string }>
  readonly judge: { readonly model: string; readonly baseURL: string | undefined; readonly apiKey: string }
  readonly maxTokens: number
  readonly contextSize: number
  readonly threads: number
}

/** Time, calls, model loads and each candidate's scores (in item order). */
export interface Result {
  readonly seconds: number
  readonly modelLoads: number
  readonly candidateCalls: number
  readonly judgeCalls: number
  /** Where the time went: binding + model load + context, generation, judge calls (seconds). */
  readonly breakdown: { readonly load: number; readonly generate: number; readonly judge: number }
  readonly scores: ReadonlyMap<string, ReadonlyArray<number>>
}

const verdictScore = (text: string): number => {
  try {
    const score = Number((JSON.parse(text) as { score?: unknown }).score)
    return Number.isFinite(score) ? score : 0
  } catch {
    return 0
  }
}

/** Runs the baseline; rejects on the first failure (the seeds had no error isolation). */
export const run = async <Item>(options: Options<Item>): Promise<Result> => {
  // maxRetries 0: an unreachable judge fails at once instead of backing off.
  const client = new OpenAI({ baseURL: options.judge.baseURL, apiKey: options.judge.apiKey, maxRetries: 0 })
  const scores = new Map<string, Array<number>>()
  let modelLoads = 0
  let candidateCalls = 0
  let judgeCalls = 0
  const breakdown = { load: 0, generate: 0, judge: 0 }
  let mark = performance.now()
  const lap = (phase: keyof typeof breakdown) => {
    const now = performance.now()
    breakdown[phase] += (now - mark) / 1000
    mark = now
  }
  const start = mark
  for (const candidate of options.candidates) {
    const own: Array<number> = []
    scores.set(candidate.name, own)
    for (const item of options.items) {
      const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
      const model = await llama.loadModel({ modelPath: candidate.modelPath })
      modelLoads++
      let output: string
      try {
        const context = await model.createContext({
          contextSize: options.contextSize,
          threads: options.threads,
          ...(candidate.adapterPath !== undefined ? { lora: { adapters: [{ filePath: candidate.adapterPath }] } } : {})
        })
        lap("load")
        try {
          const completion = new LlamaCompletion({ contextSequence: context.getSequence() })
          output = await completion.generateCompletion(options.prompt(item), { maxTokens: options.maxTokens })
          candidateCalls++
          lap("generate")
        } finally {
          await context.dispose()
        }
      } finally {
        await model.dispose()
        await llama.dispose()
        lap("load")
      }
      const response = await client.chat.completions.create({
        model: options.judge.model,
        messages: options.judgeMessages(item, output).map((message) => ({ role: message.role, content: message.content })),
        max_tokens: 256
      })
      judgeCalls++
      lap("judge")
      own.push(verdictScore(response.choices[0]?.message.content ?? ""))
    }
  }
  return { seconds: (performance.now() - start) / 1000, modelLoads, candidateCalls, judgeCalls, breakdown, scores }
}
