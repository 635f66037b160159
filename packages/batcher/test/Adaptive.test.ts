import { assert, describe, it } from "@effect/vitest"
import { Adaptive } from "@hasten/batcher"
import { Effect } from "effect"
import { TestClock } from "effect/testing"

describe("Adaptive", () => {
  it("starts from free memory and the per-item cost, within [min, max]", () => {
    const gib = 1024 ** 3
    assert.strictEqual(Adaptive.initialSize({ max: 32, perItemBytes: gib }, 8 * gib), 4) // half of 8 GiB / 1 GiB
    assert.strictEqual(Adaptive.initialSize({ max: 32, perItemBytes: gib, memoryFraction: 1 }, 100 * gib), 32)
    assert.strictEqual(Adaptive.initialSize({ max: 32, perItemBytes: 10 * gib }, gib), 1)
    assert.strictEqual(Adaptive.initialSize({ max: 16 }, gib), 16)
    assert.strictEqual(Adaptive.initialSize({ max: 16, initial: 40 }, gib), 16)
  })

  // Completes `count` items spread evenly over `millis` of virtual time.
  const run = (controller: Adaptive.Controller, count: number, millis: number) =>
    Effect.forEach(Array.from({ length: count }), () => TestClock.adjust(millis / count).pipe(Effect.andThen(controller.record("ok"))), {
      discard: true
    })

  it.effect("grows while throughput rises and turns around when it falls", () =>
    Effect.gen(function*() {
      const controller = yield* Adaptive.make({ max: 8, initial: 2, sampleSize: 4 })
      yield* run(controller, 4, 400) // 10 items/s: first sample, probe upwards
      assert.strictEqual(controller.current(), 3)
      yield* run(controller, 4, 200) // 20 items/s: better, keep growing
      assert.strictEqual(controller.current(), 4)
      yield* run(controller, 4, 800) // 5 items/s: worse, turn around
      assert.strictEqual(controller.current(), 3)
      yield* run(controller, 4, 790) // flat (within 5%): hold
      assert.strictEqual(controller.current(), 3)
      assert.deepStrictEqual(controller.history(), [2, 3, 4, 3])
    }))

  it.effect("halves on allocation failure, never below min", () =>
    Effect.gen(function*() {
      const controller = yield* Adaptive.make({ max: 16, initial: 16, min: 2 })
      yield* controller.shrinkOnAllocationFailure
      assert.strictEqual(controller.current(), 8)
      yield* controller.shrinkOnAllocationFailure
      yield* controller.shrinkOnAllocationFailure
      yield* controller.shrinkOnAllocationFailure
      assert.strictEqual(controller.current(), 2)
    }))

  it("recognises allocation failures by message", () => {
    assert.isTrue(Adaptive.isAllocationFailure(new Error("ggml: failed to allocate buffer")))
    assert.isTrue(Adaptive.isAllocationFailure({ message: "local: ServerError: out of memory" }))
    assert.isFalse(Adaptive.isAllocationFailure(new Error("bad request")))
  })
})
