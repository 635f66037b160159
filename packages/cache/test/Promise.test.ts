import { assert, describe, it } from "@effect/vitest"
import { Cache } from "@hasten/cache"
import { CompletionRequest } from "@hasten/core"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { answer, makeCounting } from "./fakes.js"

const deterministic = (content: string) =>
  CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content }], temperature: 0 })

describe("createCachedLlm (plain async TypeScript)", () => {
  it("completes, streams, reports stats, prunes, clears, disposes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hasten-cache-promise-"))
    const fake = makeCounting({ chunks: 3 })
    const llm = Cache.createCachedLlm(fake.layer, { store: "sqlite", path: join(dir, "cache.db"), namespace: "demo" })
    try {
      const first = await llm.complete(deterministic("p"))
      const second = await llm.complete(deterministic("p"))
      assert.strictEqual(first.text, answer(deterministic("p")))
      assert.isTrue(second.cached)
      const chunks: Array<string> = []
      for await (const chunk of llm.stream(deterministic("s"))) chunks.push(chunk.text)
      assert.strictEqual(chunks.length, 3)
      const replay: Array<boolean | undefined> = []
      for await (const chunk of llm.stream(deterministic("s"))) replay.push(chunk.cached)
      assert.deepStrictEqual(replay, [true, true, true])
      assert.strictEqual((await llm.stats()).entries, 2)
      assert.strictEqual(await llm.prune({ namespace: "other" }), 0)
      assert.strictEqual(await llm.prune({ namespace: "demo", olderThan: "1 hour" }), 0)
      assert.strictEqual(await llm.prune({ namespace: "demo" }), 2)
      await llm.complete(deterministic("p"))
      await llm.clear()
      assert.strictEqual((await llm.stats()).entries, 0)
      assert.strictEqual(fake.completeCalls, 2)
      assert.strictEqual(fake.streamCalls, 1)
    } finally {
      await llm.dispose()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("is core's PromiseLlm: plain-object requests, and await using closes the store", async () => {
    const fake = makeCounting({ chunks: 1 })
    let escaped: Cache.CachedLlm | undefined
    {
      await using llm = Cache.createCachedLlm(fake.layer, { store: "memory" })
      escaped = llm
      const input = { model: "m", messages: [{ role: "user" as const, content: "q" }], temperature: 0 }
      await llm.complete(input)
      assert.isTrue((await llm.complete(input)).cached)
    }
    const afterClose = await escaped.stats().then(() => "resolved", () => "rejected")
    assert.strictEqual(afterClose, "rejected")
  })
})
