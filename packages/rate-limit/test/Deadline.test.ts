import { assert, describe, it } from "@effect/vitest"
import { LatencyTracker, MIN_SAMPLES } from "../src/internal/deadline.js"

const policy = { multiple: 4, floorMillis: 100, capMillis: 60_000, initialMillis: 30_000 }

describe("LatencyTracker", () => {
  it("uses the initial deadline until enough calls have succeeded", () => {
    const tracker = new LatencyTracker(policy)
    for (let i = 0; i < MIN_SAMPLES - 1; i++) tracker.record(1_000, 48)
    assert.strictEqual(tracker.deadlineMillis(48), 30_000)
    tracker.record(1_000, 48)
    assert.notStrictEqual(tracker.deadlineMillis(48), 30_000)
  })

  it("is a multiple of the p99 latency per sized token, scaled to the attempt's maxTokens", () => {
    const tracker = new LatencyTracker(policy)
    // 64 ms for 48 tokens + 16 allowance = 1 ms per sized token
    for (let i = 0; i < 100; i++) tracker.record(64, 48)
    assert.strictEqual(tracker.deadlineMillis(48), 4 * 64)
    assert.strictEqual(tracker.deadlineMillis(984), 4 * 1000)
  })

  it("follows the slow tail, not the median", () => {
    const tracker = new LatencyTracker(policy)
    for (let i = 0; i < 96; i++) tracker.record(64, 48)
    // 4 % of the calls are slow; the percentile is recomputed every few samples
    for (let i = 0; i < 8; i++) tracker.record(640, 48)
    assert.strictEqual(tracker.deadlineMillis(48), 4 * 640)
  })

  it("clamps to the floor and the cap", () => {
    const fast = new LatencyTracker(policy)
    for (let i = 0; i < 10; i++) fast.record(1, 48)
    assert.strictEqual(fast.deadlineMillis(48), 100)
    const slow = new LatencyTracker(policy)
    for (let i = 0; i < 10; i++) slow.record(50_000, 0)
    assert.strictEqual(slow.deadlineMillis(4096), 60_000)
  })
})
