/**
 * The Batch API routes: `POST/GET /v1/batches`, `GET /v1/batches/{id}`,
 * `POST /v1/batches/{id}/cancel`.
 * @since 0.1.0
 */
import { isObject, sendJson } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import { batchEndpoints, parseBatchLines, runBatchLine } from "./batchLines.js"
import { renderBatch } from "./batchStatus.js"
import { invalid, notFound } from "./errors.js"
import { commonHeaders } from "./headers.js"
import { readJson } from "./request.js"
import { type Batch, type BatchResult, storeOf } from "./store.js"

export const createBatch = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  if (!isObject(body)) return invalid(context, "The request body must be a JSON object.", "body")
  if (typeof body.input_file_id !== "string") return invalid(context, "Missing required parameter: 'input_file_id'.", "input_file_id")
  if (typeof body.endpoint !== "string" || !batchEndpoints.has(body.endpoint)) {
    return invalid(
      context,
      `Invalid value for 'endpoint': expected one of /v1/chat/completions, /v1/embeddings, /v1/completions.`,
      "endpoint"
    )
  }
  if (body.completion_window !== "24h") {
    return invalid(context, "Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
  }
  const { engine } = context
  const file = storeOf(engine).files.get(body.input_file_id)
  if (file === undefined) return invalid(context, `Invalid 'input_file_id': no file with id '${body.input_file_id}'.`, "input_file_id")
  if (file.meta.purpose !== "batch") {
    return invalid(context, `Invalid 'input_file_id': the file's purpose must be 'batch', not '${file.meta.purpose}'.`, "input_file_id")
  }
  const parsed = parseBatchLines(file.content, body.endpoint)
  const batch: Batch = {
    id: engine.id("batch_"),
    endpoint: body.endpoint,
    inputFileId: body.input_file_id,
    metadata: body.metadata,
    createdAt: Date.now(),
    lines: "lines" in parsed ? parsed.lines : [],
    ...("failure" in parsed ? { failure: parsed.failure } : {})
  }
  storeOf(engine).batches.set(batch.id, batch)
  if (batch.failure === undefined) {
    const endpoint = batch.endpoint
    void (async () => {
      const results: Array<BatchResult> = []
      for (const line of batch.lines) {
        try {
          results.push(await runBatchLine(engine, endpoint, line))
        } catch (error) {
          results.push({
            customId: line.custom_id,
            ok: false,
            line: JSON.stringify({
              id: engine.id("batch_req_"),
              custom_id: line.custom_id,
              response: null,
              error: { code: "server_error", message: String(error) }
            })
          })
        }
      }
      batch.results = results
    })()
  }
  sendJson(engine, context.response, 200, renderBatch(engine, batch, batch.createdAt), commonHeaders(context))
}

export const getBatch = async (context: RouteContext): Promise<void> => {
  const batch = storeOf(context.engine).batches.get(context.params[0]!)
  if (batch === undefined) return notFound(context, `No batch found with id '${context.params[0]}'.`)
  sendJson(context.engine, context.response, 200, renderBatch(context.engine, batch, Date.now()), commonHeaders(context))
}

export const cancelBatch = async (context: RouteContext): Promise<void> => {
  const { engine } = context
  const batch = storeOf(engine).batches.get(context.params[0]!)
  if (batch === undefined) return notFound(context, `No batch found with id '${context.params[0]}'.`)
  const at = Date.now()
  const current = renderBatch(engine, batch, at)
  if (!["validating", "in_progress", "finalizing"].includes(current.status)) {
    return invalid(context, `Cannot cancel a batch with status '${current.status}'.`, null)
  }
  if (batch.cancelledAt === undefined) {
    batch.cancelledAt = at
    engine.counters.cancellations += 1
  }
  sendJson(engine, context.response, 200, renderBatch(engine, batch, at), commonHeaders(context))
}

export const listBatches = async (context: RouteContext): Promise<void> => {
  const { engine } = context
  const limit = Math.min(100, Math.max(1, Number(context.url.searchParams.get("limit") ?? 20) || 20))
  const after = context.url.searchParams.get("after")
  const all = [...storeOf(engine).batches.values()].reverse()
  const start = after === null ? 0 : all.findIndex((batch) => batch.id === after) + 1
  const page = all.slice(start, start + limit)
  const at = Date.now()
  const data = page.map((batch) => renderBatch(engine, batch, at))
  sendJson(engine, context.response, 200, {
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: start + limit < all.length
  }, commonHeaders(context))
}
