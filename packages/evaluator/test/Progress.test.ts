import { assert, describe, it } from "@effect/vitest"
import { Progress } from "@hasten/evaluator"

const sink = (isTTY: boolean) => {
  const writes: Array<string> = []
  return { writes, stream: { isTTY, write: (text: string) => writes.push(text) } }
}

describe("Progress", () => {
  it("draws a bar with done/total, rate, ETA and errors on a TTY", () => {
    let now = 0
    const { stream, writes } = sink(true)
    const progress = Progress.make({ stream, tty: true, now: () => now, label: "eval" })
    progress.start({ total: 10, done: 2, errors: 1 })
    now = 2000
    progress.advance({ error: false })
    progress.advance({ error: true })
    const last = writes.at(-1)!
    assert.match(last, /^\r\[#{10}-{14}\] eval 4\/10 1\.0\/s ETA 6s errors 2/)
    progress.finish()
    assert.strictEqual(writes.at(-1), "\n")
  })

  it("prints plain lines in CI: at start, every 10% and at the end", () => {
    const { stream, writes } = sink(false)
    const progress = Progress.make({ stream, tty: false, now: () => 0 })
    progress.start({ total: 20, done: 0, errors: 0 })
    for (let i = 0; i < 20; i++) progress.advance({ error: i === 3 })
    progress.finish()
    assert.strictEqual(writes.length, 11)
    assert.isTrue(writes.every((text) => text.endsWith("\n") && !text.includes("\r")))
    assert.match(writes.at(-1)!, /20\/20 .* ETA 0s errors 1\n$/)
  })

  it("shows the rate limiter's waits, retries, 429s and timeouts once there are any", () => {
    const { stream, writes } = sink(true)
    const progress = Progress.make({ stream, tty: true, now: () => 0 })
    progress.start({ total: 3, done: 0, errors: 0 })
    progress.advance({ error: false, rateLimit: { retries: 0, waitMillis: 0, http429: 0, timeouts: 0 } })
    assert.notInclude(writes.at(-1)!, "retries")
    progress.advance({ error: false, rateLimit: { retries: 2, waitMillis: 1500, http429: 1, timeouts: 1 } })
    progress.advance({ error: false, rateLimit: { retries: 1, waitMillis: 61_000, http429: 0, timeouts: 0 } })
    assert.match(writes.at(-1)!, /errors 0 \| waited 1m03s retries 3 429s 1 timeouts 1/)
  })

  it("is interactive only on a TTY outside CI", () => {
    const saved = process.env.CI
    process.env.CI = "1"
    assert.isFalse(Progress.isInteractive())
    if (saved === undefined) delete process.env.CI
    else process.env.CI = saved
  })
})
