import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Context, Effect, Layer, ManagedRuntime, Stream } from "effect"

const request = CompletionRequest.user("m", "hi")

/** A provider that answers with its own name. */
const answering = (name: string): Layer.Layer<Llm.Llm> =>
  Layer.succeed(
    Llm.Llm,
    Llm.fromComplete(name, (request) =>
      Effect.succeed(
        new Completion.Completion({
          text: name,
          finishReason: "stop",
          usage: { inputTokens: 1, outputTokens: 1 },
          model: request.model,
          provider: name,
          timing: { start: 0, firstToken: 0, end: 0 }
        })
      ))
  )

class A extends Context.Service<A, Llm.LlmService>()("test/A") {}
class B extends Context.Service<B, Llm.LlmService>()("test/B") {}

describe("Llm.stack", () => {
  it.effect("two stacks built from the same middleware value get one instance each, over their own provider", () =>
    Effect.gen(function*() {
      let instances = 0
      // a middleware holding state (a count of its calls), as a cache or a budget does
      const counting = Llm.middleware((inner) =>
        Effect.sync(() => {
          instances++
          let calls = 0
          return {
            ...inner,
            complete: (request) =>
              Effect.map(
                inner.complete(request),
                (completion) => new Completion.Completion({ ...completion, text: `${completion.text}#${++calls}` })
              )
          }
        })
      )
      const both = Layer.mergeAll(
        Layer.effect(A, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("a"), counting))),
        Layer.effect(B, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("b"), counting)))
      )
      const [a, b] = yield* Effect.all([Effect.service(A), Effect.service(B)]).pipe(Effect.provide(both))
      assert.strictEqual(instances, 2)
      assert.strictEqual((yield* a.complete(request)).text, "a#1")
      assert.strictEqual((yield* b.complete(request)).text, "b#1")
      assert.strictEqual((yield* a.complete(request)).text, "a#2")
    }))

  it.effect("lists middleware top (outermost) to bottom", () =>
    Effect.gen(function*() {
      const path: Array<string> = []
      const step = (name: string) =>
        Llm.middleware((inner) =>
          Effect.succeed({ ...inner, complete: (request) => Effect.andThen(Effect.sync(() => path.push(name)), inner.complete(request)) })
        )
      const completion = yield* Llm.complete(request).pipe(
        Effect.provide(Llm.stack(answering("p"), step("cache"), step("perf"), step("rate-limit")))
      )
      assert.deepStrictEqual(path, ["cache", "perf", "rate-limit"])
      assert.strictEqual(completion.text, "p")
    }))

  it.effect("what the middleware still needs is provided once to the stack and shared", () =>
    Effect.gen(function*() {
      class Shared extends Context.Service<Shared, { readonly id: number }>()("test/Shared") {}
      let opened = 0
      const shared = Layer.sync(Shared, () => ({ id: ++opened }))
      const tagging = Llm.middleware((inner) => Effect.map(Effect.service(Shared), (s) => ({ ...inner, name: `${inner.name}@${s.id}` })))
      const both = Layer.mergeAll(
        Layer.effect(A, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("a"), tagging))),
        Layer.effect(B, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("b"), tagging)))
      ).pipe(Layer.provide(shared))
      const [a, b] = yield* Effect.all([Effect.service(A), Effect.service(B)]).pipe(Effect.provide(both))
      assert.deepStrictEqual([a.name, b.name, opened], ["a@1", "b@1", 1])
    }))

  it.effect("with no middleware it is the provider", () =>
    Effect.map(
      Llm.complete(request).pipe(Effect.provide(Llm.stack(answering("p")))),
      (completion) => assert.strictEqual(completion.text, "p")
    ))
})

describe("Llm.toPromise", () => {
  it("completes a CompletionRequest or a plain object, and streams", async () => {
    const llm = Llm.toPromise(Llm.Llm.layerEcho)
    assert.strictEqual((await llm.complete(request)).text, "echo: hi")
    assert.strictEqual((await llm.complete({ model: "m", messages: [{ role: "user", content: "plain" }] })).text, "echo: plain")
    const chunks: Array<string> = []
    for await (const chunk of llm.stream({ model: "m", messages: [{ role: "user", content: "streamed" }] })) chunks.push(chunk.text)
    assert.strictEqual(chunks.join(""), "echo: streamed")
    await llm.dispose()
  })

  it("rejects an invalid plain request with an error naming the field", async () => {
    const llm = Llm.toPromise(Llm.Llm.layerEcho)
    const error = await llm.complete({ model: "m", messages: [], maxTokens: -1 }).then(() => undefined, (error: unknown) => error)
    assert.instanceOf(error, CompletionRequest.InvalidCompletionRequest)
    assert.match((error as CompletionRequest.InvalidCompletionRequest).message, /maxTokens/)
    await llm.dispose()
  })

  it("rejects with the LlmError of a failed call", async () => {
    const failing = Layer.succeed(
      Llm.Llm,
      Llm.fromComplete("x", () => Effect.fail(LlmError.make("x", new LlmError.Unauthorized({ description: "no key" }))))
    )
    const llm = Llm.toPromise(failing)
    const error = await llm.complete(request).then(() => undefined, (error: unknown) => error)
    assert.instanceOf(error, LlmError.LlmError)
    await llm.dispose()
  })

  it("dispose (and await using) closes the layer", async () => {
    let closed = 0
    const layer = Layer.effect(Llm.Llm, Effect.acquireRelease(Effect.service(Llm.Llm), () => Effect.sync(() => closed++))).pipe(
      Layer.provide(Llm.Llm.layerEcho)
    )
    {
      await using llm = Llm.toPromise(layer)
      await llm.complete(request)
    }
    assert.strictEqual(closed, 1)
    const llm = Llm.toPromise(layer)
    await llm.complete(request)
    await llm.dispose()
    assert.strictEqual(closed, 2)
  })

  it("runs each call with the services callContext gives for its options", async () => {
    const Stage = Context.Reference<string | undefined>("test/Stage", { defaultValue: () => undefined })
    const seen: Array<string | undefined> = []
    const layer = Layer.effect(
      Llm.Llm,
      Effect.map(Effect.service(Llm.Llm), (inner) => ({
        ...inner,
        complete: (request: CompletionRequest.CompletionRequest) =>
          Effect.andThen(Effect.map(Effect.service(Stage), (stage) => seen.push(stage)), inner.complete(request)),
        stream: (request: CompletionRequest.CompletionRequest) =>
          Stream.unwrap(Effect.map(Effect.service(Stage), (stage) => (seen.push(stage), inner.stream(request))))
      }))
    ).pipe(Layer.provide(Llm.Llm.layerEcho))
    const llm = Llm.promiseFromRuntime<never, never, Llm.PromiseCallOptions & { readonly stage?: string }>(ManagedRuntime.make(layer), {
      callContext: (options) => options?.stage === undefined ? Context.empty() : Context.make(Stage, options.stage)
    })
    await llm.complete(request, { stage: "classify" })
    await llm.complete(request)
    for await (const _ of llm.stream(request, { stage: "align" })) { /* drain */ }
    assert.deepStrictEqual(seen, ["classify", undefined, "align"])
    await llm.dispose()
  })
})
