/**
 * LoRA adapters per request: a request's `adapter` (a path, or a file name in the model
 * folders) selects a pooled context with that adapter applied to the one loaded base model;
 * requests without one run on the base context.
 * @since 0.1.0
 */
import type { CompletionRequest, LlmError } from "@hasten/core"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import { modelFolders } from "../LocalModelFile.js"
import type * as ModelPool from "../ModelPool.js"
import type { LoadedModel } from "./loadedModel.js"
import { invalid } from "./localErrors.js"
import { isFile } from "./localFiles.js"

/** The context a request runs on, held for the current scope. */
export type ContextFor = (
  request: CompletionRequest.CompletionRequest
) => Effect.Effect<ModelPool.PooledContext, LlmError.LlmError, Scope.Scope>

/** The context for each request of a loaded model: the base one, or the pooled one of its adapter. */
export const make = ({ base, key, options, pool }: LoadedModel): ContextFor => {
  const adapterContext = (adapter: string): Effect.Effect<ModelPool.PooledContext, LlmError.LlmError, Scope.Scope> =>
    Effect.suspend(() => {
      const candidates = [adapter, ...modelFolders(options).map((folder) => Path.join(folder, adapter))]
      const found = candidates.find(isFile)
      if (found === undefined) {
        return Effect.fail(
          invalid(
            `LoRA adapter file not found: "${adapter}" (looked in the cwd and ${
              modelFolders(options).join(", ") || "no shared/models folder"
            })`
          )
        )
      }
      return pool.context({ ...key, adapter: Path.resolve(found) })
    })
  return (request) => request.adapter === undefined || request.adapter.length === 0 ? Effect.succeed(base) : adapterContext(request.adapter)
}
