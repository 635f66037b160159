/**
 * `POST /v1/completions`, the legacy text completions: JSON or SSE, `max_tokens` 16 by default.
 * @since 0.1.0
 */
import { runCall } from "../engine/call.js"
import { isObject, sendJson } from "../engine/http.js"
import { paceTokens, waitWhole } from "../engine/pacing.js"
import type { RouteContext } from "../engine/route.js"
import { startSse, writeSse } from "../engine/sse.js"
import { countTokens } from "../tokens.js"
import { seconds, textLogprobs } from "./bodies.js"
import { invalid } from "./errors.js"
import { commonHeaders } from "./headers.js"
import { readJson, responderRequest } from "./request.js"
import { isProblem, sampling } from "./validation.js"
import { vendor } from "./vendor.js"

/** Handles `POST /v1/completions`. */
export const completions = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  if (!isObject(body)) return invalid(context, "The request body must be a JSON object.", "body")
  const common = sampling(body, ["max_tokens"])
  if (isProblem(common)) return invalid(context, common.message, common.param)
  const promptValue = body.prompt
  const prompt = typeof promptValue === "string"
    ? promptValue
    : Array.isArray(promptValue) && promptValue.length === 1 && typeof promptValue[0] === "string"
    ? promptValue[0]
    : undefined
  if (prompt === undefined) {
    return invalid(
      context,
      promptValue === undefined ? "Missing required parameter: 'prompt'." : "Invalid type for 'prompt': expected a string.",
      "prompt"
    )
  }
  // The legacy endpoint defaults to 16 output tokens.
  const maxTokens = common.maxTokens ?? 16
  const input = { ...common, maxTokens, prompt }
  const inputTokens = countTokens(prompt)
  const call = await runCall(context, vendor, {
    inputTokens,
    promptCharacters: prompt.length,
    maxTokens,
    responderRequest: responderRequest(context, input, body)
  })
  if (call === undefined) return
  const { engine, response } = context
  const id = engine.id("cmpl-")
  const headers = commonHeaders(context, call.admission.state)
  const created = seconds()
  const choice = (text: string, finishReason: string | null, logprobs: unknown = null) => ({
    text,
    index: 0,
    logprobs,
    finish_reason: finishReason
  })
  if (!common.stream) {
    if (!(await waitWhole(engine, response, call))) return
    return sendJson(engine, response, 200, {
      id,
      object: "text_completion",
      created,
      model: common.model,
      choices: [choice(call.generated.text, call.generated.finishReason, textLogprobs(call.generated.tokens, common.logprobs))],
      usage: {
        prompt_tokens: inputTokens,
        completion_tokens: call.generated.tokens.length,
        total_tokens: inputTokens + call.generated.tokens.length
      }
    }, headers)
  }
  const chunk = (choices: Array<unknown>, usage: unknown = null) => ({
    id,
    object: "text_completion",
    created,
    model: common.model,
    choices,
    ...(common.includeUsage ? { usage } : {})
  })
  startSse(engine, response, headers)
  let position = 0
  let offset = 0
  const finished = await paceTokens(engine, response, call, (token) => {
    const logprobs = textLogprobs([token], common.logprobs, position++, offset)
    offset += token.length
    writeSse(response, JSON.stringify(chunk([choice(token, null, logprobs)])))
  })
  if (!finished) return
  writeSse(response, JSON.stringify(chunk([choice("", call.generated.finishReason)])))
  if (common.includeUsage) {
    writeSse(
      response,
      JSON.stringify(
        chunk([], {
          prompt_tokens: inputTokens,
          completion_tokens: call.generated.tokens.length,
          total_tokens: inputTokens + call.generated.tokens.length
        })
      )
    )
  }
  writeSse(response, "[DONE]")
  response.end()
}
