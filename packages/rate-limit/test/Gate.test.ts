import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Gate } from "../src/internal/gate.js"

describe("Gate", () => {
  it.effect("lets waiters in in arrival order; a newcomer never overtakes a woken waiter", () =>
    Effect.gen(function*() {
      const gate = new Gate(1)
      const order: Array<string> = []
      yield* gate.take
      const b = yield* Effect.forkChild(gate.with(Effect.sync(() => order.push("b"))))
      const c = yield* Effect.forkChild(gate.with(Effect.sync(() => order.push("c"))))
      yield* Effect.yieldNow
      assert.strictEqual(gate.waiting, 2)
      gate.release()
      // b has the permit but has not run yet: this fiber arrives now and must queue behind c
      yield* gate.take
      order.push("d")
      gate.release()
      yield* Fiber.join(b)
      yield* Fiber.join(c)
      assert.deepStrictEqual(order, ["b", "c", "d"])
    }))

  it.effect("an interrupted waiter holds nothing; an interrupted holder gives its permit back", () =>
    Effect.gen(function*() {
      const gate = new Gate(1)
      yield* gate.take
      const waiter = yield* Effect.forkChild(gate.with(Effect.void))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(waiter)
      assert.strictEqual(gate.waiting, 0)
      const holder = yield* Effect.forkChild(gate.with(Effect.never))
      yield* Effect.yieldNow
      gate.release() // handed to `holder`
      yield* Fiber.interrupt(holder)
      // interrupted before or after it resumed, the permit is free again: this take does not wait
      const next = yield* Effect.forkChild(gate.take)
      yield* Effect.yieldNow
      assert.isDefined(next.pollUnsafe())
    }))

  it.effect("resizes as AIMD moves the limit: growing lets waiters in at once, shrinking takes effect as permits come back", () =>
    Effect.gen(function*() {
      const gate = new Gate(2)
      assert.isTrue(gate.tryTake())
      assert.isTrue(gate.tryTake())
      assert.isFalse(gate.tryTake())
      const waiters = yield* Effect.forEach([1, 2], () => Effect.forkChild(gate.take))
      yield* Effect.yieldNow
      gate.resize(3)
      yield* Effect.yieldNow
      // one more permit: the oldest waiter is in, the other still waits
      assert.isDefined(waiters[0]!.pollUnsafe())
      assert.isUndefined(waiters[1]!.pollUnsafe())
      // 3 taken; down to 1: two releases go nowhere, the third lets the waiter in
      gate.resize(1)
      gate.release()
      gate.release()
      yield* Effect.yieldNow
      assert.isUndefined(waiters[1]!.pollUnsafe())
      gate.release()
      yield* Effect.yieldNow
      assert.isDefined(waiters[1]!.pollUnsafe())
      assert.isFalse(gate.tryTake())
      gate.release()
      assert.isTrue(gate.tryTake())
    }))
})
