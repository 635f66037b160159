import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm } from "@hasten/core"
import { Context, Effect, Layer } from "effect"

const request = CompletionRequest.user("m", "hi")

/** A provider that answers with its own name. */
const answering = (name: string): Layer.Layer<Llm.Llm> =>
  Layer.succeed(Llm.Llm, Llm.fromComplete(name, (request) =>
    Effect.succeed(new Completion.Completion({
      text: name,
      finishReason: "stop",
      usage: { inputTokens: 1, outputTokens: 1 },
      model: request.model,
      provider: name,
      timing: { start: 0, firstToken: 0, end: 0 }
    }))))

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
          return { ...inner, complete: (request) => Effect.map(inner.complete(request), (completion) => new Completion.Completion({ ...completion, text: `${completion.text}#${++calls}` })) }
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
        Llm.middleware((inner) => Effect.succeed({ ...inner, complete: (request) => Effect.andThen(Effect.sync(() => path.push(name)), inner.complete(request)) }))
      const completion = yield* Llm.complete(request).pipe(Effect.provide(Llm.stack(answering("p"), step("cache"), step("perf"), step("rate-limit"))))
      assert.deepStrictEqual(path, ["cache", "perf", "rate-limit"])
      assert.strictEqual(completion.text, "p")
    }))

  it.effect("what the middleware still needs is provided once to the stack and shared", () =>
    Effect.gen(function*() {
      class Shared extends Context.Service<Shared, { readonly id: number }>()("test/Shared") {}
      let opened = 0
      const shared = Layer.sync(Shared, () => ({ id: ++opened }))
      const tagging = Llm.middleware((inner) =>
        Effect.map(Effect.service(Shared), (s) => ({ ...inner, name: `${inner.name}@${s.id}` })))
      const both = Layer.mergeAll(
        Layer.effect(A, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("a"), tagging))),
        Layer.effect(B, Effect.service(Llm.Llm)).pipe(Layer.provide(Llm.stack(answering("b"), tagging)))
      ).pipe(Layer.provide(shared))
      const [a, b] = yield* Effect.all([Effect.service(A), Effect.service(B)]).pipe(Effect.provide(both))
      assert.deepStrictEqual([a.name, b.name, opened], ["a@1", "b@1", 1])
    }))

  it.effect("with no middleware it is the provider", () =>
    Effect.map(Llm.complete(request).pipe(Effect.provide(Llm.stack(answering("p")))), (completion) => assert.strictEqual(completion.text, "p")))
})
