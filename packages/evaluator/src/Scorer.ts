/**
 * Scorers: GSM8K exact match with lm-evaluation-harness extraction (strict `#### n` and
 * flexible last number), multiple choice (letter or option text), normalized exact match,
 * and LLM-as-judge with a rubric producing JSON `{score, reason}`.
 * @since 0.1.0
 */
import { CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Context, Effect } from "effect"
import type { Item } from "./Dataset.js"
import { EvaluatorError, JudgeParseError } from "./EvaluatorError.js"

type Message = CompletionRequest.Message

/** The result of scoring one output. `score` is in [0, 1]. @category models @since 0.1.0 */
export interface Score {
  readonly score: number
  readonly correct: boolean
  /** What the scorer read out of the output (a number, a letter), `null` when nothing. */
  readonly extracted: string | null
  /** Scorer-specific facts (strict vs flexible match, judge reason). */
  readonly details?: Record<string, unknown>
  /** Text a self-correction turn may show the learner. */
  readonly feedback?: string
}

/** What a scorer sees. @category models @since 0.1.0 */
export interface ScoreInput {
  readonly item: Item
  readonly output: string
  readonly trial: number
  readonly turn: number
}

/** The judge's output could not be read: a reason of `EvaluatorError`. @category errors @since 0.1.0 */
export { EvaluatorError, JudgeParseError } from "./EvaluatorError.js"

/** What a score can fail with: the judge's `LlmError`, or `EvaluatorError` (`JudgeParseError`). @category models @since 0.1.0 */
export type ScoreError = EvaluatorError | LlmError.LlmError

/**
 * The LLM used as a judge, with its model id and a bound on concurrent judge calls.
 * Provide it with {@link Judge.fromLlm}.
 * @category services @since 0.1.0
 */
export class Judge extends Context.Service<Judge, {
  readonly llm: Llm.LlmService
  readonly model: string
  /** Wraps one judge call: bounded concurrency (a semaphore). */
  readonly withPermit: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly seed: number
}>()("@hasten/evaluator/Judge") {}

/**
 * A scorer: how to prompt the candidate for an item, and how to score its output.
 * @category models @since 0.1.0
 */
export interface Scorer {
  readonly name: string
  /** True when `score` needs the `Judge` service. */
  readonly usesJudge: boolean
  readonly prompt: (item: Item) => ReadonlyArray<Message>
  readonly score: (input: ScoreInput) => Effect.Effect<Score, ScoreError, Judge>
}

// ---------------------------------------------------------------------------
// GSM8K (lm-evaluation-harness `gsm8k` task: strict-match and flexible-extract)

const strictPattern = /#### (-?[0-9.,]+)/
const flexiblePattern = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g

/**
 * Normalizes a number the way the harness's exact_match does for GSM8K
 * (`regexes_to_ignore`: `,`, `$`, `(?s).*#### `, `\.$`), plus surrounding whitespace.
 * @category gsm8k @since 0.1.0
 */
export const normalizeNumber = (text: string): string =>
  text.replace(/^[\s\S]*#### /, "").replace(/,/g, "").replace(/\$/g, "").trim().replace(/\.$/, "")

/** Strict extraction: the first `#### n`; `null` when absent. @category gsm8k @since 0.1.0 */
export const extractStrict = (output: string): string | null => {
  const match = strictPattern.exec(output)
  return match === null ? null : match[1]!
}

/** Flexible extraction: the last number-like span in the output; `null` when none. @category gsm8k @since 0.1.0 */
export const extractFlexible = (output: string): string | null => {
  let last: string | null = null
  for (const match of output.matchAll(flexiblePattern)) last = match[1] ?? match[2] ?? null
  return last
}

/** Whether an extracted answer equals the target after normalization. @category gsm8k @since 0.1.0 */
export const numbersMatch = (extracted: string | null, target: string): boolean =>
  extracted !== null && normalizeNumber(extracted) === normalizeNumber(target)

/** The GSM8K prompt: chain of thought, final answer on a `#### n` line. @category gsm8k @since 0.1.0 */
export const gsm8kPrompt = (item: Item): ReadonlyArray<Message> => [{
  role: "user",
  content:
    `Solve the problem step by step. Write the final answer on its own line as "#### <number>".\n\nQuestion: ${item.question}\nAnswer:`
}]

/**
 * GSM8K exact match. Reports both harness filters in `details`; the score uses
 * `mode` (default `"flexible"`, which also accepts a correct strict answer).
 * @category gsm8k @since 0.1.0
 */
export const gsm8k = (options?: { readonly mode?: "strict" | "flexible" }): Scorer => ({
  name: options?.mode === "strict" ? "gsm8k-strict" : "gsm8k",
  usesJudge: false,
  prompt: gsm8kPrompt,
  score: ({ item, output }) =>
    Effect.sync(() => {
      const strict = extractStrict(output)
      const flexible = extractFlexible(output)
      const strictMatch = numbersMatch(strict, item.answer)
      const flexibleMatch = numbersMatch(flexible, item.answer)
      const useStrict = options?.mode === "strict"
      const correct = useStrict ? strictMatch : flexibleMatch
      const extracted = useStrict ? strict : flexible
      return {
        score: correct ? 1 : 0,
        correct,
        extracted: extracted === null ? null : normalizeNumber(extracted),
        details: { strict: strictMatch, flexible: flexibleMatch },
        feedback: "Your previous answer may contain a mistake. Check each step and give your final answer again as \"#### <number>\"."
      }
    })
})

// ---------------------------------------------------------------------------
// Multiple choice

const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

const normalizeText = (text: string): string => text.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, " ").replace(/\s+/g, " ").trim()

/**
 * Reads a choice out of an output: an explicit `Answer: B` / `(B)` / leading `B.`, else
 * the one option whose text the output contains (the longest when several). `null` when none.
 * @category multiple-choice @since 0.1.0
 */
export const extractChoice = (output: string, choices: ReadonlyArray<string>): number | null => {
  const valid = (letter: string | undefined): number | null => {
    if (letter === undefined) return null
    const index = letters.indexOf(letter.toUpperCase())
    return index >= 0 && index < choices.length ? index : null
  }
  const explicit = /\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Za-z])\)?(?![A-Za-z])/i.exec(output)
  const fromExplicit = valid(explicit?.[1])
  if (fromExplicit !== null) return fromExplicit
  const leading = /^\s*\(?([A-Z])(?:[).:]|[ \t]*(?:\n|$))/.exec(output)
  const fromLeading = valid(leading?.[1])
  if (fromLeading !== null) return fromLeading
  const text = normalizeText(output)
  let best: number | null = null
  choices.forEach((choice, index) => {
    const option = normalizeText(choice)
    if (option.length > 0 && text.includes(option) && (best === null || option.length > normalizeText(choices[best]!).length)) best = index
  })
  return best
}

/** Options lettered A, B, C…; the model answers with a letter. @category multiple-choice @since 0.1.0 */
export const multipleChoicePrompt = (item: Item): ReadonlyArray<Message> => [{
  role: "user",
  content: `${item.question}\n\n${
    (item.choices ?? []).map((choice, index) => `${letters[index]}. ${choice}`).join("\n")
  }\n\nAnswer with the letter of the correct option.\nAnswer:`
}]

/** Multiple choice: correct when the extracted option is the item's `correct` one. @category multiple-choice @since 0.1.0 */
export const multipleChoice: Scorer = {
  name: "multiple-choice",
  usesJudge: false,
  prompt: multipleChoicePrompt,
  score: ({ item, output }) =>
    Effect.sync(() => {
      const chosen = extractChoice(output, item.choices ?? [])
      const correct = chosen !== null && chosen === item.correct
      return {
        score: correct ? 1 : 0,
        correct,
        extracted: chosen === null ? null : letters[chosen]!,
        feedback: "Your previous answer may be wrong. Reconsider the options and answer again with one letter."
      }
    })
}

// ---------------------------------------------------------------------------
// Exact match

/** SQuAD-style normalization: lower case, no punctuation or articles, single spaces. @category exact-match @since 0.1.0 */
export const normalizeAnswer = (text: string): string => normalizeText(text).replace(/\b(a|an|the)\b/g, " ").replace(/\s+/g, " ").trim()

/** Exact match on normalized text, for generic question/answer pairs. @category exact-match @since 0.1.0 */
export const exactMatch: Scorer = {
  name: "exact-match",
  usesJudge: false,
  prompt: (item) => [{ role: "user", content: `Answer briefly.\n\nQuestion: ${item.question}\nAnswer:` }],
  score: ({ item, output }) =>
    Effect.sync(() => {
      const extracted = normalizeAnswer(output.split("\n").find((line) => line.trim().length > 0) ?? "")
      const correct = extracted === normalizeAnswer(item.answer)
      return { score: correct ? 1 : 0, correct, extracted, feedback: "Your previous answer may be wrong. Answer again, briefly." }
    })
}

// ---------------------------------------------------------------------------
// LLM as judge

/** The judge's verdict. @category judge @since 0.1.0 */
export interface Verdict {
  /** Normalized to [0, 1]. */
  readonly score: number
  readonly reason: string
}

const firstJsonObject = (text: string): string | undefined => {
  const start = text.indexOf("{")
  if (start < 0) return undefined
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const char = text[i]
    if (inString) {
      if (char === "\\") i++
      else if (char === "\"") inString = false
      continue
    }
    if (char === "\"") inString = true
    else if (char === "{") depth++
    else if (char === "}") {
      depth--
      if (depth === 0) return text.slice(start, i + 1)
    }
  }
  return undefined
}

/**
 * Parses a judge's output into a verdict. Accepts a bare JSON object, one inside a
 * fenced code block, or one surrounded by prose; the score may be a number or a numeric
 * string in `[0, scale]`. Anything else fails with an `EvaluatorError` whose `JudgeParseError` reason names what was wrong.
 * @category judge @since 0.1.0
 */
export const parseVerdict = (raw: string, options?: { readonly scale?: number }): Effect.Effect<Verdict, EvaluatorError> =>
  Effect.suspend(() => {
    const scale = options?.scale ?? 1
    const fail = (description: string) => Effect.fail(new EvaluatorError({ reason: new JudgeParseError({ description, raw }) }))
    const fenced = /```(?:json|JSON)?\s*([\s\S]*?)```/.exec(raw)
    const body = firstJsonObject(fenced?.[1] ?? raw) ?? firstJsonObject(raw)
    if (body === undefined) return fail("no JSON object found")
    let value: unknown
    try {
      value = JSON.parse(body)
    } catch (error) {
      return fail(`invalid JSON: ${error instanceof Error ? error.message : String(error)}`)
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) return fail("expected a JSON object")
    const record = value as Record<string, unknown>
    if (!("score" in record)) return fail("missing field \"score\"")
    const score = typeof record.score === "string" && record.score.trim() !== "" ? Number(record.score) : record.score
    if (typeof score !== "number" || !Number.isFinite(score)) return fail("\"score\" is not a number")
    if (score < 0 || score > scale) return fail(`"score" ${score} is outside [0, ${scale}]`)
    if (!("reason" in record)) return fail("missing field \"reason\"")
    if (typeof record.reason !== "string") return fail("\"reason\" is not a string")
    return Effect.succeed({ score: score / scale, reason: record.reason })
  })

/** The default rubric: correctness against the reference. @category judge @since 0.1.0 */
export const defaultRubric =
  "Score 1 if the answer is correct and consistent with the reference answer, 0 if it is wrong, contradicts the reference or does not answer. Use values in between only for partially correct answers."

/** The judge prompt for one answer. @category judge @since 0.1.0 */
export const judgePrompt = (item: Item, output: string, rubric: string, scale: number): ReadonlyArray<Message> => [
  { role: "system", content: "You are a strict, consistent grader. Reply with one JSON object and nothing else." },
  {
    role: "user",
    content: [
      `Rubric: ${rubric}`,
      `Question: ${item.question}`,
      `Reference answer: ${item.reference ?? item.answer}`,
      `Answer to grade: ${output}`,
      `Reply with JSON: {"score": <number from 0 to ${scale}>, "reason": "<one sentence>"}`
    ].join("\n\n")
  }
]

const verdictSchema = (scale: number) => ({
  type: "json" as const,
  name: "verdict",
  schema: {
    type: "object",
    properties: { score: { type: "number", minimum: 0, maximum: scale }, reason: { type: "string" } },
    required: ["score", "reason"],
    additionalProperties: false
  }
})

/**
 * LLM-as-judge: the `Judge` grades each output against `rubric` at temperature 0 with
 * the run's seed and the trial index (distinct cache keys per trial). Calls go through
 * the judge's concurrency bound. `correct` is `score ≥ threshold` (default 0.5).
 * @category judge @since 0.1.0
 */
export const judge = (options?: {
  readonly rubric?: string
  readonly scale?: number
  readonly threshold?: number
  readonly maxTokens?: number
  readonly prompt?: (item: Item) => ReadonlyArray<Message>
}): Scorer => {
  const scale = options?.scale ?? 1
  const rubric = options?.rubric ?? defaultRubric
  const threshold = options?.threshold ?? 0.5
  return {
    name: "judge",
    usesJudge: true,
    prompt: options?.prompt ??
      ((item) =>
        item.choices !== undefined ? multipleChoicePrompt(item) : [{ role: "user", content: `Question: ${item.question}\nAnswer:` }]),
    score: ({ item, output, trial }) =>
      Effect.gen(function*() {
        const service = yield* Judge
        const request = CompletionRequest.makeUnsafe({
          model: service.model,
          messages: judgePrompt(item, output, rubric, scale),
          temperature: 0,
          seed: service.seed,
          maxTokens: options?.maxTokens ?? 256,
          responseFormat: verdictSchema(scale),
          trial
        })
        const completion = yield* service.withPermit(service.llm.complete(request))
        const verdict = yield* parseVerdict(completion.text, { scale })
        return {
          score: verdict.score,
          correct: verdict.score >= threshold,
          extracted: null,
          details: { reason: verdict.reason },
          feedback: `A grader said: ${verdict.reason} Revise your answer.`
        }
      })
  }
}
