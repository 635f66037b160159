/**
 * The stand-in judge: the testkit simulator (OpenAI API over real HTTP, with latency) whose
 * responder grades the candidate's answer deterministically: the share of the reference's
 * content words that the answer contains, as `{"score": 0..1, "reason": "…"}`. Real judges
 * replace it with `--judge openai:<model>`.
 */
import type { Simulator } from "@hasten/testkit"

const stopWords = new Set([
  "a",
  "an",
  "the",
  "is",
  "are",
  "was",
  "were",
  "be",
  "of",
  "to",
  "in",
  "on",
  "at",
  "by",
  "for",
  "with",
  "and",
  "or",
  "it",
  "its",
  "they",
  "their",
  "that",
  "this",
  "your",
  "you",
  "as",
  "from"
])

const words = (text: string): Array<string> => text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []

/** The verdict for one answer: reference content words found in the answer, over all of them. */
export const grade = (reference: string, answer: string): { readonly score: number; readonly reason: string } => {
  const wanted = [...new Set(words(reference).filter((word) => !stopWords.has(word)))]
  if (wanted.length === 0) return { score: 0, reason: "the reference has no content words to look for" }
  const seen = new Set(words(answer))
  const found = wanted.filter((word) => seen.has(word))
  const score = Math.round((found.length / wanted.length) * 100) / 100
  return {
    score,
    reason: found.length === 0
      ? `the answer mentions none of: ${wanted.join(", ")}`
      : `the answer mentions ${found.join(", ")} of ${wanted.join(", ")}`
  }
}

/**
 * Reads the evaluator's judge prompt (`Reference answer: …`, `Answer to grade: …`) and answers
 * with the verdict as JSON. TruthfulQA references list the best answer first; that one counts.
 */
export const responder = (request: Simulator.ResponderRequest): string => {
  const prompt = request.messages.map((message) => message.content).join("\n")
  const reference = /Reference answer: ([\s\S]*?)\n\nAnswer to grade:/.exec(prompt)?.[1]
  const answer = /Answer to grade: ([\s\S]*?)\n\nReply with JSON/.exec(prompt)?.[1]
  if (reference === undefined || answer === undefined) return JSON.stringify({ score: 0, reason: "not a grading request" })
  const best = /^Best answer: (.*)$/m.exec(reference)?.[1] ?? reference
  return JSON.stringify(grade(best, answer))
}

/** The simulator's latency: time to first token and per output token, with seeded jitter. */
export interface Latency {
  readonly ttftMs: number
  readonly perTokenMs: number
}

/** Simulator settings for the judge: generous limits (the judge is not what is measured), the latency asked for. */
export const simulatorOptions = (latency: Latency): Simulator.Options => ({
  seed: 7,
  latency: { ...latency, jitter: 0.1 },
  limits: { rpm: 3000, maxConcurrency: 32 },
  responder
})
