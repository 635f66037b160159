/**
 * A test-only `TokenModel` over node-llama-cpp that also offers the optional
 * `SequenceExtensions` (`appendGreedy`): the fast greedy path the
 * benchmark measures. The contract path is tested through `Local.layer` as well.
 */
import { LlmError, TokenModel } from "@hasten/core"
import { Effect } from "effect"
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { SequenceExtensions } from "../../src/Drafter.js"

/** shared/models: env HASTEN_MODELS_DIR, else the first `shared/models` walking up from the cwd. */
export const modelsDir = (): string => {
  const fromEnv = process.env["HASTEN_MODELS_DIR"]
  if (fromEnv !== undefined && fromEnv.length > 0) return fromEnv
  let dir = process.cwd()
  for (;;) {
    for (const candidate of [NodePath.join(dir, "shared", "models"), NodePath.join(dir, "..", "shared", "models")]) {
      if (NodeFs.existsSync(NodePath.join(candidate, "stories260K.gguf"))) return candidate
    }
    const parent = NodePath.dirname(dir)
    if (parent === dir) throw new Error("shared/models not found; set HASTEN_MODELS_DIR")
    dir = parent
  }
}

let llama: Promise<Llama> | undefined
export const loadModel = async (file: string): Promise<LlamaModel> => {
  llama ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
  return (await llama).loadModel({ modelPath: NodePath.join(modelsDir(), file) })
}

const failure = (name: string, what: string) => (cause: unknown) =>
  LlmError.make(name, new LlmError.BadResponse({ description: `${what}: ${String(cause)}` }))

export const tokenModel = (
  model: LlamaModel,
  options: { readonly name: string; readonly contextSize?: number }
): TokenModel.TokenModelService => {
  const name = options.name
  const vocabulary = (model.fileInfo.metadata as any).tokenizer.ggml.tokens as ReadonlyArray<string>
  const vocabularySize = vocabulary.length
  const bos = model.tokens.bos ?? undefined
  return {
    name,
    vocabularySize,
    vocabularyId: NodeCrypto.createHash("sha256").update(vocabulary.join("\u0000")).digest("hex").slice(0, 16),
    bos,
    endTokens: [model.tokens.eos, model.tokens.eot].filter((token): token is Token => token !== null),
    tokenize: (text, tokenizeOptions) =>
      Effect.sync(() => {
        const tokens = model.tokenize(text, false) as Array<number>
        return tokenizeOptions?.addBos === true && bos !== undefined ? [bos, ...tokens] : tokens
      }),
    detokenize: (tokens) => Effect.sync(() => model.detokenize(tokens as Array<Token>)),
    sequence: () =>
      Effect.gen(function*() {
        const context = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => model.createContext({ contextSize: options.contextSize ?? 512, threads: 1, sequences: 1, flashAttention: false }),
            catch: failure(name, "createContext")
          }),
          (context) => Effect.promise(() => context.dispose())
        )
        const sequence = context.getSequence()
        const tokens: Array<number> = []
        // A long-lived greedy generator for steps that need one output: node-llama-cpp's
        // controlledEvaluate builds a sampler per call, which costs more than a tiny model's
        // forward pass; the generator keeps one (driven with next(tokens), as in plain decoding).
        let generator: AsyncGenerator<Token, void, void | Token | Array<Token>> | undefined
        yield* Effect.addFinalizer(() => Effect.promise(async () => void (await generator?.return())))
        const stepGreedy = (newTokens: ReadonlyArray<number>) =>
          Effect.tryPromise({
            try: async () => {
              let result: IteratorResult<Token, void>
              if (generator === undefined) {
                generator = sequence.evaluate(newTokens as Array<Token>, { temperature: 0, yieldEogToken: true })
                result = await generator.next()
              } else {
                result = await generator.next(newTokens as Array<Token>)
              }
              if (result.done === true) throw new Error("the greedy generator ended")
              tokens.push(...newTokens)
              return [result.value as number]
            },
            catch: failure(name, "evaluate")
          })
        const evaluate = <A>(newTokens: ReadonlyArray<number>, generateNext: object, read: (output: any) => A, from = 0) =>
          Effect.tryPromise({
            try: () =>
              sequence.controlledEvaluate(newTokens.map((token, i) => i >= from ? [token as Token, { generateNext }] : token as Token)),
            catch: failure(name, "evaluate")
          }).pipe(Effect.map((results) => {
            tokens.push(...newTokens)
            return newTokens.slice(from).map((_, i) => read(results[from + i]!.next))
          }))
        const result: TokenModel.TokenSequence & SequenceExtensions = {
          tokens: () => tokens,
          append: (newTokens) =>
            evaluate(newTokens, { logits: true }, (next) => {
              const out = new Float32Array(vocabularySize)
              let max = -Infinity
              for (const value of next.logits.values()) if (value > max) max = value
              let sum = 0
              for (const [token, value] of next.logits) sum += out[token] = Math.exp(value - max)
              for (let i = 0; i < vocabularySize; i++) out[i] = out[i]! / sum
              return out
            }),
          appendGreedy: (newTokens, from?: number) =>
            (from ?? 0) === newTokens.length - 1
              ? stepGreedy(newTokens)
              : evaluate(newTokens, { token: true }, (next) => next.token as number, from),
          truncate: (length) =>
            length >= tokens.length ? Effect.void : Effect.tryPromise({
              try: () => sequence.eraseContextTokenRanges([{ start: length, end: sequence.nextTokenIndex }]),
              catch: failure(name, "truncate")
            }).pipe(Effect.map(() => void (tokens.length = length)))
        }
        return result
      })
  }
}

/** Plain greedy decoding with node-llama-cpp alone (the reference): prompt tokens → output tokens. */
export const greedyReference = async (model: LlamaModel, prompt: ReadonlyArray<number>, maxTokens: number): Promise<Array<number>> => {
  const context = await model.createContext({ contextSize: 512, threads: 1, sequences: 1, flashAttention: false })
  try {
    const out: Array<number> = []
    const ends = new Set([model.tokens.eos, model.tokens.eot].filter((token) => token !== null))
    if (maxTokens === 0) return out
    for await (const token of context.getSequence().evaluate(prompt as Array<Token>, { temperature: 0 })) {
      if (ends.has(token)) break
      out.push(token)
      if (out.length >= maxTokens) break
    }
    return out
  } finally {
    await context.dispose()
  }
}

/**
 * |logit(a) − logit(b)| after `prompt + expected[0..position)`, evaluated as plain decoding
 * does (prompt in one batch, then one token at a time): how near a tie the two tokens were.
 */
export const logitGap = async (
  model: LlamaModel,
  prompt: ReadonlyArray<number>,
  expected: ReadonlyArray<number>,
  position: number,
  a: number,
  b: number
): Promise<number> => {
  const context = await model.createContext({ contextSize: 512, threads: 1, sequences: 1, flashAttention: false })
  try {
    const sequence = context.getSequence()
    const generateNext = { logits: true }
    let results = await sequence.controlledEvaluate(
      prompt.map((token, i) => i === prompt.length - 1 ? [token as Token, { generateNext }] : token as Token)
    )
    for (let i = 0; i < position; i++) results = await sequence.controlledEvaluate([[expected[i]! as Token, { generateNext }]])
    const logits = results[results.length - 1]!.next.logits!
    return Math.abs(logits.get(a as Token)! - logits.get(b as Token)!)
  } finally {
    await context.dispose()
  }
}
