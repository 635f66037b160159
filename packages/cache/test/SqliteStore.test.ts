import { assert, describe, it } from "@effect/vitest"
import { SqliteStore } from "@hasten/cache"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { conformance } from "./CacheStoreConformance.js"

conformance(
  "sqlite",
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "hasten-cache-conformance-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    return yield* SqliteStore.make({ path: join(dir, "cache.db") })
  })
)

const writer = fileURLToPath(new URL("./fixtures/sqlite-writer.mjs", import.meta.url))

describe("SqliteStore shared by two processes", () => {
  it.live("a child process writes while this process writes and reads; nothing is lost", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "hasten-cache-mp-"))
      const path = join(dir, "cache.db")
      const childWrites = 3_000
      yield* Effect.gen(function*() {
        const store = yield* SqliteStore.make({ path })
        const child = spawn(process.execPath, [writer, path, "child", String(childWrites)], { stdio: ["ignore", "pipe", "pipe"] })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (data) => (stdout += data))
        child.stderr.on("data", (data) => (stderr += data))
        let exited: number | null | undefined
        child.once("exit", (code) => (exited = code))
        let parentWrites = 0
        let childSeenWhileRunning = 0
        // Write and read until the child is done (at least 500 writes), yielding so its exit is noticed.
        // oxlint-disable-next-line eslint/no-unmodified-loop-condition -- set by the child's "exit" listener
        while (exited === undefined || parentWrites < 500) {
          yield* store.set({ key: `parent-${parentWrites}`, namespace: "parent", value: JSON.stringify({ parentWrites }), createdAt: 0 })
          assert.isDefined(yield* store.get(`parent-${parentWrites}`))
          if (exited === undefined && (yield* store.get("child-0")) !== undefined) childSeenWhileRunning++
          parentWrites++
          if (parentWrites % 10 === 0) yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
        assert.strictEqual(exited, 0, stderr)
        assert.deepStrictEqual(JSON.parse(stdout), { written: childWrites, reads: childWrites })
        // The two processes really overlapped: this one saw the child's rows while the child ran.
        assert.isAbove(childSeenWhileRunning, 0)
        assert.deepStrictEqual((yield* store.stats).entries, childWrites + parentWrites)
        for (const index of [0, 1_234, childWrites - 1]) {
          assert.strictEqual((yield* store.get(`child-${index}`))?.value, JSON.stringify({ index }))
        }
        assert.strictEqual(yield* store.prune({ namespace: "child" }), childWrites)
        assert.strictEqual((yield* store.stats).entries, parentWrites)
      }).pipe(Effect.scoped)
      rmSync(dir, { recursive: true, force: true })
    }))
})
