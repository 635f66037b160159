import { assert, describe, it } from "@effect/vitest"
import { LlmError } from "@hasten/core"
import { Server } from "@hasten/providers/server"
import { Deferred, Effect, Fiber } from "effect"
import OpenAI from "openai"

describe("hasten-serve", () => {
  it("parses flags with defaults and rejects bad values by name", () => {
    const options = Server.parseCli(["--model", "stories260K.gguf", "--port", "0", "--sequences", "4"])
    assert.deepStrictEqual(options, {
      model: "stories260K.gguf",
      port: 0,
      host: "127.0.0.1",
      sequences: 4,
      threads: 1,
      contextSize: undefined,
      gpu: false,
      id: undefined
    })
    assert.throws(() => Server.parseCli(["--sequences", "0"]), /--sequences must be an integer >= 1/)
    assert.throws(() => Server.parseCli(["--port", "http"]), /--port must be an integer/)
    assert.throws(() => Server.parseCli(["--modle", "x"]), /Unknown option '--modle'/)
    assert.throws(() => Server.parseCli(["--help"]), /hasten-serve --model/)
  })

  it("throws ProviderError: InvalidOptions naming the flag, Usage for --help", () => {
    const reasonOf = (argv: Array<string>) => {
      try {
        Server.parseCli(argv)
      } catch (error) {
        assert.instanceOf(error, Server.ProviderError)
        return (error as Server.ProviderError).reason
      }
      return assert.fail("did not throw")
    }
    for (
      const [argv, option] of [
        [["--sequences", "0"], "sequences"],
        [["--context-size", "8"], "context-size"],
        [["--modle", "x"], "modle"],
        [["--port"], "port"]
      ] as const
    ) {
      const reason = reasonOf([...argv])
      assert.strictEqual(reason._tag, "InvalidOptions")
      assert.strictEqual(reason._tag === "InvalidOptions" ? reason.option : undefined, option)
    }
    assert.strictEqual(reasonOf(["--help"])._tag, "Usage")
  })

  it("the HTTP errors are OpenAI-shaped bodies", () => {
    const error = Server.fromLlmError(LlmError.make("local", new LlmError.ContextLengthExceeded({ description: "too long" })))
    assert.strictEqual(error.status, 400)
    assert.strictEqual(error.message, "too long")
    assert.deepStrictEqual(JSON.parse(error.body()), {
      error: { message: "too long", type: "invalid_request_error", param: "messages", code: "context_length_exceeded" }
    })
  })

  it.effect("serves the model until interrupted", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ readonly baseUrl: string; readonly model: string }>()
      const fiber = yield* Effect.forkChild(
        Server.serve(Server.parseCli(["--model", "stories260K", "--port", "0", "--sequences", "2", "--context-size", "128"]), (info) => {
          Deferred.doneUnsafe(listening, Effect.succeed(info))
        })
      )
      const info = yield* Deferred.await(listening)
      assert.strictEqual(info.model, "stories260K")
      const openai = new OpenAI({ baseURL: info.baseUrl, apiKey: "local", maxRetries: 0 })
      const response = yield* Effect.promise(() =>
        openai.completions.create({ model: "stories260K", prompt: "Once upon a time", temperature: 0, max_tokens: 8 })
      )
      assert.isTrue(response.choices[0]!.text.startsWith(", there was a little girl"))
      yield* Fiber.interrupt(fiber)
      const refused = yield* Effect.promise(() => fetch(`${info.baseUrl}/models`).then(() => false, () => true))
      assert.isTrue(refused)
    }))
})
