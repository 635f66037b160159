/**
 * What a cache entry holds — a completion, the chunks of a finished stream, or one
 * embedding vector — and its encoding as the JSON text a `CacheStore` keeps. Stores never
 * see anything but that text.
 * @since 0.1.0
 */
import { Completion } from "@hasten/core"
import { Exit, Schema } from "effect"

/** What an entry holds: a completion, the chunks of a finished stream, or one embedding vector. @category models @since 0.1.0 */
export const Payload = Schema.Union([
  Schema.TaggedStruct("completion", { completion: Completion.Completion }),
  Schema.TaggedStruct("stream", { chunks: Schema.Array(Completion.CompletionChunk) }),
  Schema.TaggedStruct("embedding", { model: Schema.String, vector: Schema.Array(Schema.Number) })
])
/** @category models @since 0.1.0 */
export type Payload = typeof Payload.Type

const encodePayloadSync = Schema.encodeSync(Payload)
const decodePayloadExit = Schema.decodeUnknownExit(Payload)

/** Encodes a payload as JSON text, or `undefined` when it cannot be (e.g. unserializable metadata). @category utils @since 0.1.0 */
export const encodePayload = (payload: Payload): string | undefined => {
  try {
    // A `Completion`'s encoded form is its own fields (its schema transforms nothing), so
    // the instance is written as is: 4x cheaper than the schema's encoder on every cache
    // miss. A test pins the text to the schema's for a completion with every field.
    if (payload._tag === "completion" && payload.completion instanceof Completion.Completion) {
      return JSON.stringify({ _tag: "completion", completion: payload.completion })
    }
    return JSON.stringify(encodePayloadSync(payload))
  } catch {
    return undefined
  }
}

/**
 * Decodes JSON text into a payload; `undefined` when it is corrupt. With `markCached`,
 * the completion (or every chunk) comes out with `cached: true`, in the same decode.
 * @category utils @since 0.1.0
 */
export const decodePayload = (text: string, markCached = false): Payload | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (markCached && typeof json === "object" && json !== null) {
    const record = json as { _tag?: unknown; completion?: unknown; chunks?: unknown }
    if (record._tag === "completion" && typeof record.completion === "object" && record.completion !== null) {
      ;(record.completion as Record<string, unknown>).cached = true
    } else if (record._tag === "stream" && Array.isArray(record.chunks)) {
      for (const chunk of record.chunks) if (typeof chunk === "object" && chunk !== null) chunk.cached = true
    }
  }
  const exit = decodePayloadExit(json)
  return Exit.isSuccess(exit) ? exit.value : undefined
}
