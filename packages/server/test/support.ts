/** Helpers for the server tests: an `Llm` whose calls wait until released, raw HTTP, and bounded waits. */
import { Completion, Llm } from "@hasten/core"
import { Deferred, Effect, Layer } from "effect"
import type { Server } from "../src/Server.js"

/** An `Llm` whose calls all wait for `release`; `started` counts calls that reached it. */
export const gatedLlm = Effect.gen(function*() {
  const gate = yield* Deferred.make<void>()
  let started = 0
  const service = Llm.fromComplete("gated", (request) =>
    Effect.gen(function*() {
      started++
      yield* Deferred.await(gate)
      return new Completion.Completion({
        text: `answer to ${request.messages.at(-1)?.content ?? request.prompt ?? ""}`,
        finishReason: "stop",
        usage: { inputTokens: 3, outputTokens: 4 },
        model: request.model,
        provider: "gated",
        timing: { start: 0, firstToken: 0, end: 0 }
      })
    }))
  return {
    layer: Layer.succeed(Llm.Llm, service),
    release: Deferred.succeed(gate, undefined),
    started: () => started
  }
})

/** Waits (event-loop turns, not time) until `done()` holds; fails the test after many turns. */
export const until = (done: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 20_000 && !done(); turn++) {
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
    if (!done()) return yield* Effect.die(new Error(`never happened: ${what}`))
  })

/** A raw HTTP exchange with node's fetch. */
export const http = (
  server: Server["Service"],
  path: string,
  init: { readonly method?: string; readonly body?: string | unknown; readonly headers?: Record<string, string> } = {}
) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.url}${path}`, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: { "content-type": "application/json", ...init.headers },
      ...(init.body !== undefined ? { body: typeof init.body === "string" ? init.body : JSON.stringify(init.body) } : {})
    })
    const text = await response.text()
    let json: any
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: response.status, headers: response.headers, text, json }
  })
