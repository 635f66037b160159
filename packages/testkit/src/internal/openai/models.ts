/**
 * `GET /v1/models` and `GET /v1/models/{id}`.
 * @since 0.1.0
 */
import { sendJson } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import { commonHeaders } from "./headers.js"

const modelIds = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small", "text-embedding-3-large"]

const modelObject = (id: string) => ({ id, object: "model", created: 1_700_000_000, owned_by: "hasten-simulator" })

/** Handles `GET /v1/models`. */
export const listModels = async (context: RouteContext): Promise<void> => {
  sendJson(context.engine, context.response, 200, { object: "list", data: modelIds.map(modelObject) }, commonHeaders(context))
}

/** Handles `GET /v1/models/{id}`. */
export const getModel = async (context: RouteContext): Promise<void> => {
  sendJson(context.engine, context.response, 200, modelObject(context.params[0]!), commonHeaders(context))
}
