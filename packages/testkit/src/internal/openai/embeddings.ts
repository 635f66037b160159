/**
 * `POST /v1/embeddings`: deterministic vectors (`float` or `base64`, any `dimensions`);
 * a call reserves its input tokens only.
 * @since 0.1.0
 */
import { hashVector } from "@hasten/core/Embedder"
import { admitCall } from "../engine/admission.js"
import { sendJson } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import { invalid } from "./errors.js"
import { commonHeaders } from "./headers.js"
import { readJson } from "./request.js"
import { isProblem, validateEmbeddings } from "./validation.js"
import { vendor } from "./vendor.js"

/** The same vector every time for the same text, model and dimensions. */
export const embeddingVector = (model: string, text: string, dimensions: number): Array<number> =>
  hashVector(`${model}\u0000${text}`, dimensions)

const toBase64 = (vector: ReadonlyArray<number>): string => Buffer.from(new Float32Array(vector).buffer).toString("base64")

/** Handles `POST /v1/embeddings`. */
export const embeddings = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  const input = validateEmbeddings(body)
  if (isProblem(input)) return invalid(context, input.message, input.param)
  const { engine, response } = context
  const call = admitEmbedding(context, input.inputTokens)
  if (call === undefined) return
  await engine.sleep(call.ttftMs)
  if (response.destroyed || engine.closed) return
  if (call.cut) return void response.socket?.destroy()
  const dimensions = input.dimensions ?? engine.options.embeddingDimensions ?? 16
  sendJson(engine, response, 200, {
    object: "list",
    data: input.texts.map((text, index) => {
      const vector = embeddingVector(input.model, text, dimensions)
      return { object: "embedding", index, embedding: input.base64 ? toBase64(vector) : vector }
    }),
    model: input.model,
    usage: { prompt_tokens: input.inputTokens, total_tokens: input.inputTokens }
  }, commonHeaders(context, call.state))
}

/** Embeddings reserve their input tokens only. */
const admitEmbedding = (context: RouteContext, inputTokens: number) => {
  const index = context.engine.nextCall()
  const admission = admitCall(context.engine, vendor, context.response, {
    key: context.key,
    route: context.route,
    inputTokens,
    reservedTokens: inputTokens,
    index
  })
  if (admission === undefined) return undefined
  return { state: admission.state, ttftMs: context.engine.latency(index).ttftMs, cut: admission.cut === true }
}
