/**
 * Server-sent events of Replicate's prediction stream (the `replicate` SDK does not export
 * its own reader for a prediction we created), parsed by `effect/encoding`'s `Sse` parser.
 * Its `decode` channel ends the stream at a `retry:` directive; a prediction stream is read
 * once and never reconnected, so the parser is used directly and `retry:` is ignored.
 * @internal
 */
import { Effect, Stream } from "effect"
import { Sse } from "effect/encoding"

/** One SSE event: its name (`message` when none), data lines joined by `\n`, and its id. */
export interface SseEvent {
  readonly event: string
  readonly data: string
  readonly id?: string
}

/**
 * The events of a byte stream; the body is cancelled when the stream stops early. A read
 * error fails with `onError`, an event over the parser's size limit (10 MiB) with
 * `onError` of its `SseError`.
 */
export const events = <E>(body: ReadableStream<Uint8Array>, onError: (error: unknown) => E): Stream.Stream<SseEvent, E> =>
  Stream.suspend(() => {
    let parsed: Array<SseEvent> = []
    const parser = Sse.makeParser((event) => {
      if (event._tag !== "Event") return
      parsed.push(
        event.id === undefined ? { event: event.event, data: event.data } : { event: event.event, data: event.data, id: event.id }
      )
    }, { dispatchEmptyNamedEvents: true })
    return Stream.fromReadableStream({ evaluate: () => body, onError }).pipe(
      Stream.decodeText(),
      Stream.mapEffect((text) => {
        const error = parser.feed(text)
        if (error !== undefined) return Effect.fail(onError(error))
        const out = parsed
        parsed = []
        return Effect.succeed(out)
      }),
      Stream.flattenIterable
    )
  })
