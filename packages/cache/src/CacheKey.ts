/**
 * The keys entries are stored under. A completion's key is core's canonical
 * `RequestKey` (every output-affecting field, the provider, a namespace and a key
 * version); an embedding's key covers one text, the model and its dimensions.
 * @since 0.1.0
 */
import { type CompletionRequest, RequestKey } from "@hasten/core"
import { createHash } from "node:crypto"

/** The key of a completion request (the same for `complete` and `stream`). @category utils @since 0.1.0 */
export const completionKey = (request: CompletionRequest.CompletionRequest, options: RequestKey.KeyOptions): string =>
  RequestKey.make(request, options)

/** The key of one embedded text. @category utils @since 0.1.0 */
export const embeddingKey = (
  text: string,
  options: {
    readonly provider: string
    readonly model: string
    readonly dimensions?: number | undefined
    readonly namespace?: string | undefined
    readonly version?: number | undefined
  }
): string =>
  createHash("sha256").update(RequestKey.canonicalJson({
    v: options.version ?? 1,
    namespace: options.namespace ?? "default",
    provider: options.provider,
    embedding: { model: options.model, dimensions: options.dimensions, text }
  })).digest("hex")
