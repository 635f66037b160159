/**
 * A minimal server-sent-events reader for Replicate's prediction stream (the
 * `replicate` SDK does not export its own reader for a prediction we created).
 * @internal
 */

/** One SSE event. */
export interface SseEvent {
  readonly event: string
  readonly data: string
  readonly id?: string
}

/** Reads SSE events from a byte stream; the reader is released when iteration stops early. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  let event = "message"
  let data: Array<string> = []
  let id: string | undefined
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let newline = buffer.search(/\r?\n/)
      while (newline !== -1) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(buffer[newline] === "\r" ? newline + 2 : newline + 1)
        if (line.length === 0) {
          if (data.length > 0 || event !== "message") {
            yield id === undefined ? { event, data: data.join("\n") } : { event, data: data.join("\n"), id }
          }
          event = "message"
          data = []
          id = undefined
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":")
          const field = colon === -1 ? line : line.slice(0, colon)
          let value = colon === -1 ? "" : line.slice(colon + 1)
          if (value.startsWith(" ")) value = value.slice(1)
          if (field === "event") event = value
          else if (field === "data") data.push(value)
          else if (field === "id") id = value
        }
        newline = buffer.search(/\r?\n/)
      }
    }
    if (data.length > 0) yield { event, data: data.join("\n") }
  } finally {
    await reader.cancel().catch(() => undefined)
  }
}
