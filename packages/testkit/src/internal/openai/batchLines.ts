/**
 * The lines of a batch input file: parsed and checked when the batch is created, then
 * each answered as its endpoint would (without rate limits or faults).
 * @since 0.1.0
 */
import type { Engine } from "../engine/engine.js"
import { shape } from "../engine/generation.js"
import { isObject } from "../engine/http.js"
import { countTokens } from "../tokens.js"
import { chatCompletionBody, seconds } from "./bodies.js"
import { embeddingVector } from "./embeddings.js"
import type { Batch, BatchLine, BatchResult } from "./store.js"
import { isProblem, type Problem, sampling, validateChat, validateEmbeddings } from "./validation.js"

/** The endpoints a batch may target. */
export const batchEndpoints = new Set(["/v1/chat/completions", "/v1/embeddings", "/v1/completions"])

/** Parses an input file's lines, or names the first bad line (the batch then fails). */
export const parseBatchLines = (
  content: Buffer,
  endpoint: string
): { lines: Array<BatchLine> } | { failure: NonNullable<Batch["failure"]> } => {
  const lines: Array<BatchLine> = []
  const seen = new Set<string>()
  const texts = content.toString("utf8").split("\n")
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]!.trim()
    if (text.length === 0) continue
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return { failure: { code: "invalid_json_line", message: `This line is not parseable as valid JSON.`, line: i + 1, param: null } }
    }
    if (!isObject(value) || typeof value.custom_id !== "string") {
      return {
        failure: {
          code: "missing_required_parameter",
          message: "Missing required parameter: 'custom_id'.",
          line: i + 1,
          param: "custom_id"
        }
      }
    }
    if (seen.has(value.custom_id)) {
      return {
        failure: {
          code: "duplicate_custom_id",
          message: `The custom_id '${value.custom_id}' is used more than once.`,
          line: i + 1,
          param: "custom_id"
        }
      }
    }
    seen.add(value.custom_id)
    if (value.method !== "POST") {
      return { failure: { code: "invalid_request", message: "The 'method' of every line must be POST.", line: i + 1, param: "method" } }
    }
    if (value.url !== endpoint) {
      return {
        failure: {
          code: "mismatched_endpoint",
          message: `The url '${String(value.url)}' does not match the batch endpoint '${endpoint}'.`,
          line: i + 1,
          param: "url"
        }
      }
    }
    lines.push({ custom_id: value.custom_id, body: value.body })
  }
  if (lines.length === 0) return { failure: { code: "empty_file", message: "The input file has no requests.", line: null, param: null } }
  return { lines }
}

/** Answers one line as its endpoint would. */
export const runBatchLine = async (engine: Engine, endpoint: string, line: BatchLine): Promise<BatchResult> => {
  const requestId = engine.id("req_")
  const lineId = engine.id("batch_req_")
  const failed = (problem: Problem): BatchResult => ({
    customId: line.custom_id,
    ok: false,
    line: JSON.stringify({
      id: lineId,
      custom_id: line.custom_id,
      response: {
        status_code: 400,
        request_id: requestId,
        body: { error: { message: problem.message, type: "invalid_request_error", param: problem.param, code: null } }
      },
      error: null
    })
  })
  const succeeded = (body: unknown): BatchResult => ({
    customId: line.custom_id,
    ok: true,
    line: JSON.stringify({
      id: lineId,
      custom_id: line.custom_id,
      response: { status_code: 200, request_id: requestId, body },
      error: null
    })
  })
  if (endpoint === "/v1/embeddings") {
    const input = validateEmbeddings(line.body)
    if (isProblem(input)) return failed(input)
    const dimensions = input.dimensions ?? engine.options.embeddingDimensions ?? 16
    return succeeded({
      object: "list",
      data: input.texts.map((text, index) => ({ object: "embedding", index, embedding: embeddingVector(input.model, text, dimensions) })),
      model: input.model,
      usage: { prompt_tokens: input.inputTokens, total_tokens: input.inputTokens }
    })
  }
  if (endpoint === "/v1/completions") {
    const body = line.body
    if (!isObject(body) || typeof body.prompt !== "string") {
      return failed({ param: "prompt", message: "Missing required parameter: 'prompt'." })
    }
    const common = sampling(body, ["max_tokens"])
    if (isProblem(common)) return failed(common)
    const maxTokens = common.maxTokens ?? 16
    const raw = await engine.responder({
      api: "openai",
      route: "POST /v1/completions",
      model: common.model,
      messages: [],
      prompt: body.prompt,
      maxTokens,
      body
    })
    const generated = shape(raw, maxTokens, common.stop)
    const inputTokens = countTokens(body.prompt)
    engine.counters.outputTokens += generated.tokens.length
    return succeeded({
      id: engine.id("cmpl-"),
      object: "text_completion",
      created: seconds(),
      model: common.model,
      choices: [{ text: generated.text, index: 0, logprobs: null, finish_reason: generated.finishReason }],
      usage: { prompt_tokens: inputTokens, completion_tokens: generated.tokens.length, total_tokens: inputTokens + generated.tokens.length }
    })
  }
  const input = validateChat(line.body)
  if (isProblem(input)) return failed(input)
  const raw = await engine.responder({
    api: "openai",
    route: "POST /v1/chat/completions",
    model: input.model,
    messages: input.messages,
    ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
    ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
    ...(input.stop !== undefined ? { stop: input.stop } : {}),
    body: line.body
  })
  const generated = shape(raw, input.maxTokens, input.stop)
  engine.counters.outputTokens += generated.tokens.length
  return succeeded(chatCompletionBody(engine.id("chatcmpl-"), input.model, input.inputTokens, generated))
}
