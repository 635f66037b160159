/**
 * Every route of the simulated OpenAI API.
 * @since 0.1.0
 */
import type { Route } from "../engine/route.js"
import { cancelBatch, createBatch, getBatch, listBatches } from "./batches.js"
import { chatCompletions } from "./chat.js"
import { completions } from "./completions.js"
import { embeddings } from "./embeddings.js"
import { deleteFile, fileContent, getFile, listFiles, uploadFile } from "./files.js"
import { getModel, listModels } from "./models.js"
import { vendor } from "./vendor.js"

const route = (method: string, path: string, handle: Route["handle"]): Route => ({
  method,
  pattern: new RegExp(`^${path.replace(/:[a-z]+/g, "([^/]+)")}$`),
  name: `${method} ${path}`,
  vendor,
  handle
})

/** Every OpenAI route the simulator serves. */
export const routes: ReadonlyArray<Route> = [
  route("POST", "/v1/chat/completions", chatCompletions),
  route("POST", "/v1/completions", completions),
  route("POST", "/v1/embeddings", embeddings),
  route("GET", "/v1/models", listModels),
  route("GET", "/v1/models/:id", getModel),
  route("POST", "/v1/files", uploadFile),
  route("GET", "/v1/files", listFiles),
  route("GET", "/v1/files/:id", getFile),
  route("GET", "/v1/files/:id/content", fileContent),
  route("DELETE", "/v1/files/:id", deleteFile),
  route("POST", "/v1/batches", createBatch),
  route("GET", "/v1/batches", listBatches),
  route("GET", "/v1/batches/:id", getBatch),
  route("POST", "/v1/batches/:id/cancel", cancelBatch)
]
