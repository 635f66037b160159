/**
 * The default responder: deterministic text hashed from the model and the prompt.
 * @since 0.1.0
 */
import type { Responder } from "../../SimulatorOptions.js"
import { hash, mulberry32 } from "../random.js"

const vocabulary = [
  "the",
  "model",
  "answers",
  "quickly",
  "with",
  "a",
  "simulated",
  "reply",
  "about",
  "your",
  "question",
  "and",
  "then",
  "stops",
  "here",
  "is",
  "some",
  "deterministic",
  "text",
  "from",
  "loopback",
  "server",
  "every",
  "token",
  "arrives",
  "in",
  "order",
  "so",
  "tests",
  "can",
  "check",
  "it",
  "carefully",
  "today",
  "while",
  "limits",
  "hold"
]

/**
 * The default responder: a 12-word sentence chosen by hashing the model and the last
 * user message (or the prompt), so the same prompt always gets the same answer.
 */
export const defaultResponder: Responder = (request) => {
  const last = request.prompt ?? [...request.messages].reverse().find((message) => message.role === "user")?.content ??
    request.messages.at(-1)?.content ?? ""
  const random = mulberry32(hash("responder", request.model, last))
  const words: Array<string> = []
  for (let i = 0; i < 12; i++) words.push(vocabulary[Math.floor(random() * vocabulary.length)]!)
  const sentence = words.join(" ")
  return `Simulated ${hash(last).toString(16).padStart(8, "0")}: ${sentence.charAt(0).toUpperCase()}${sentence.slice(1)}.`
}
