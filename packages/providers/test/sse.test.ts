import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Stream } from "effect"
import * as Sse from "../src/internal/sse.js"

const encoder = new TextEncoder()

/** A body that sends `chunks`, then fails with `failure` (or ends); records whether it was cancelled. */
const body = (chunks: ReadonlyArray<string>, failure?: Error) => {
  const state = { cancelled: false }
  let index = 0
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (index < chunks.length) controller.enqueue(encoder.encode(chunks[index++]!))
      else if (failure !== undefined) controller.error(failure)
      else controller.close()
    },
    cancel() {
      state.cancelled = true
    }
  })
  return { stream, state }
}

describe("internal/sse (effect/encoding Sse parser)", () => {
  it.effect("parses events split across chunks, CRLF, comments, ids and named events without data; ignores retry", () =>
    Effect.gen(function*() {
      const { stream } = body([
        "event: output\r\ndata: he",
        "llo\r\n\r\n: comment\nretry: 10\nid: 7\ndata: a\ndata: b\n\n",
        "event: done\n\n"
      ])
      const events = Array.from(yield* Stream.runCollect(Sse.events(stream, String)))
      assert.deepStrictEqual(events, [
        { event: "output", data: "hello" },
        { event: "message", data: "a\nb", id: "7" },
        { event: "done", data: "", id: "7" }
      ])
    }))

  it.effect("a body that fails mid-stream fails the stream with onError after the events before it", () =>
    Effect.gen(function*() {
      const { stream } = body(["event: output\ndata: one\n\n", "event: output\ndata: tw"], new Error("socket hang up"))
      const seen: Array<string> = []
      const exit = yield* Effect.exit(
        Stream.runForEach(Sse.events(stream, (error) => `failed: ${String(error)}`), (event) => Effect.sync(() => seen.push(event.data)))
      )
      assert.deepStrictEqual(seen, ["one"])
      assert.deepStrictEqual(exit, Exit.fail("failed: Error: socket hang up"))
    }))

  it.effect("stopping early cancels the body", () =>
    Effect.gen(function*() {
      const { state, stream } = body(["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"])
      const first = yield* Stream.runCollect(Sse.events(stream, String).pipe(Stream.take(1)))
      assert.strictEqual(Array.from(first)[0]!.data, "1")
      assert.isTrue(state.cancelled)
    }))
})
