/**
 * The Files API: `POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`.
 * @since 0.1.0
 */
import { countStatus, readBody, sendJson } from "../engine/http.js"
import type { RouteContext } from "../engine/route.js"
import { invalid, notFound } from "./errors.js"
import { commonHeaders } from "./headers.js"
import { saveFile, storeOf } from "./store.js"

export const uploadFile = async (context: RouteContext): Promise<void> => {
  const body = await readBody(context.request)
  const contentType = context.request.headers["content-type"] ?? ""
  if (!contentType.startsWith("multipart/form-data")) {
    return invalid(context, "Invalid Content-Type header: expected multipart/form-data.", "file")
  }
  let form: FormData
  try {
    form = await new Request("http://simulator/upload", {
      method: "POST",
      headers: { "content-type": contentType },
      body: new Uint8Array(body)
    }).formData()
  } catch (error) {
    return invalid(context, `Could not parse the multipart body: ${(error as Error).message}`, "file")
  }
  const purpose = form.get("purpose")
  const file = form.get("file")
  if (typeof purpose !== "string") return invalid(context, "Missing required parameter: 'purpose'.", "purpose")
  if (!["batch", "fine-tune", "assistants", "vision", "user_data", "evals"].includes(purpose)) {
    return invalid(context, `Invalid value for 'purpose': ${purpose}.`, "purpose")
  }
  if (file === null || typeof file === "string") return invalid(context, "Missing required parameter: 'file'.", "file")
  const content = Buffer.from(await file.arrayBuffer())
  const saved = saveFile(context.engine, file.name || "upload.jsonl", purpose, content)
  sendJson(context.engine, context.response, 200, saved.meta, commonHeaders(context))
}

export const listFiles = async (context: RouteContext): Promise<void> => {
  const purpose = context.url.searchParams.get("purpose")
  const data = [...storeOf(context.engine).files.values()]
    .filter((file) => purpose === null || file.meta.purpose === purpose)
    .map((file) => file.meta)
  sendJson(context.engine, context.response, 200, {
    object: "list",
    data,
    has_more: false,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null
  }, commonHeaders(context))
}

export const getFile = async (context: RouteContext): Promise<void> => {
  const file = storeOf(context.engine).files.get(context.params[0]!)
  if (file === undefined) return notFound(context, `No such File object: ${context.params[0]}`)
  sendJson(context.engine, context.response, 200, file.meta, commonHeaders(context))
}

export const fileContent = async (context: RouteContext): Promise<void> => {
  const file = storeOf(context.engine).files.get(context.params[0]!)
  if (file === undefined) return notFound(context, `No such File object: ${context.params[0]}`)
  countStatus(context.engine, 200)
  context.response.writeHead(200, {
    ...commonHeaders(context),
    "content-type": "application/octet-stream",
    "content-length": file.content.length
  })
  context.response.end(file.content)
}

export const deleteFile = async (context: RouteContext): Promise<void> => {
  const id = context.params[0]!
  const deleted = storeOf(context.engine).files.delete(id)
  if (!deleted) return notFound(context, `No such File object: ${id}`)
  sendJson(context.engine, context.response, 200, { id, object: "file", deleted: true }, commonHeaders(context))
}
