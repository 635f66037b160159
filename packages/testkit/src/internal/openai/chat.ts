/**
 * `POST /v1/chat/completions`: a JSON answer, or an SSE stream of `chat.completion.chunk`s
 * ending in `[DONE]` (with a usage chunk when `stream_options.include_usage` is set).
 * @since 0.1.0
 */
import { runCall } from "../engine/call.js"
import { sendJson } from "../engine/http.js"
import { paceTokens, waitWhole } from "../engine/pacing.js"
import type { RouteContext } from "../engine/route.js"
import { startSse, writeSse } from "../engine/sse.js"
import { chatCompletionBody, chatLogprobs, seconds, usageOf } from "./bodies.js"
import { invalid } from "./errors.js"
import { commonHeaders } from "./headers.js"
import { readJson, responderRequest } from "./request.js"
import { isProblem, validateChat } from "./validation.js"
import { vendor } from "./vendor.js"

/** Handles `POST /v1/chat/completions`. */
export const chatCompletions = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  const input = validateChat(body)
  if (isProblem(input)) return invalid(context, input.message, input.param)
  const call = await runCall(context, vendor, {
    inputTokens: input.inputTokens,
    promptCharacters: input.messages.reduce((sum, message) => sum + message.content.length, 0),
    maxTokens: input.maxTokens,
    responderRequest: responderRequest(context, input, body)
  })
  if (call === undefined) return
  const { engine, response } = context
  const id = engine.id("chatcmpl-")
  const headers = commonHeaders(context, call.admission.state)
  if (!input.stream) {
    if (!(await waitWhole(engine, response, call))) return
    return sendJson(engine, response, 200, chatCompletionBody(id, input.model, input.inputTokens, call.generated, input.logprobs), headers)
  }
  const created = seconds()
  const chunk = (delta: Record<string, unknown>, finishReason: string | null, logprobs: unknown = null) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model: input.model,
    service_tier: "default",
    system_fingerprint: "fp_hasten_sim",
    choices: [{ index: 0, delta, logprobs, finish_reason: finishReason }],
    ...(input.includeUsage ? { usage: null } : {})
  })
  startSse(engine, response, headers)
  writeSse(response, JSON.stringify(chunk({ role: "assistant", content: "", refusal: null }, null)))
  let position = 0
  const finished = await paceTokens(
    engine,
    response,
    call,
    (token) => writeSse(response, JSON.stringify(chunk({ content: token }, null, chatLogprobs([token], input.logprobs, position++))))
  )
  if (!finished) return
  writeSse(response, JSON.stringify(chunk({}, call.generated.finishReason)))
  if (input.includeUsage) {
    writeSse(response, JSON.stringify({ ...chunk({}, null), choices: [], usage: usageOf(input.inputTokens, call.generated.tokens.length) }))
  }
  writeSse(response, "[DONE]")
  response.end()
}
