import { assert, describe, it } from "@effect/vitest"
import { SqliteStore } from "@hasten/cache"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { fileURLToPath } from "node:url"
import { SqliteDatabase } from "../src/internal/sqlite.js"
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

conformance(
  "sqlite, writing in set",
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "hasten-cache-conformance-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    return yield* SqliteStore.make({ path: join(dir, "cache.db"), writeBehind: false })
  })
)

conformance(
  "sqlite, committing on a writer thread",
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "hasten-cache-conformance-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    return yield* SqliteStore.make({ path: join(dir, "cache.db"), commitThread: true })
  })
)

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "hasten-cache-behind-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)
/** What another connection to the file sees (not this store's queue). */
const onDisk = (path: string, key: string) => {
  const other = new SqliteDatabase({ path })
  try {
    return other.get(key)?.value
  } finally {
    other.close()
  }
}
const entry = (key: string) => ({ key, namespace: "n", value: JSON.stringify({ key }), createdAt: 0 })

describe("SqliteStore write-behind", () => {
  it.effect("a set is read back at once, and committed with the others queued within the linger", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "cache.db")
      const store = yield* SqliteStore.make({ path })
      yield* store.set(entry("a"))
      yield* TestClock.adjust("19 millis")
      yield* store.set(entry("b"))
      assert.strictEqual((yield* store.get("a"))?.value, JSON.stringify({ key: "a" }))
      assert.isUndefined(onDisk(path, "a"), "queued, not committed yet")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(onDisk(path, "a"), JSON.stringify({ key: "a" }))
      assert.strictEqual(onDisk(path, "b"), JSON.stringify({ key: "b" }), "committed with the first")
      yield* store.set(entry("c"))
      assert.isUndefined(onDisk(path, "c"))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(onDisk(path, "c"), JSON.stringify({ key: "c" }))
    }).pipe(Effect.scoped))

  it.live("closing the store writes what is queued", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "cache.db")
      // set and close in one synchronous run: the next turn never comes before the close
      yield* Effect.scoped(Effect.flatMap(SqliteStore.make({ path }), (store) => store.set(entry("closed"))))
      assert.strictEqual(onDisk(path, "closed"), JSON.stringify({ key: "closed" }))
    }).pipe(Effect.scoped))

  it.live("a process that exits without closing the store writes what is queued", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "cache.db")
      const code = yield* Effect.callback<number | null>((resume) => {
        const child = spawn(process.execPath, ["--conditions=@hasten/source", "--import", "tsx", exiting, path, "50"], {
          stdio: ["ignore", "ignore", "inherit"]
        })
        child.once("exit", (code) => resume(Effect.succeed(code)))
      })
      assert.strictEqual(code, 0)
      assert.strictEqual(onDisk(path, "exit-0"), JSON.stringify({ index: 0 }))
      assert.strictEqual(onDisk(path, "exit-49"), JSON.stringify({ index: 49 }))
    }).pipe(Effect.scoped))

  it.live("commits run on a writer thread: a write lock held by another connection does not stall this thread", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "cache.db")
      const store = yield* SqliteStore.make({ path, busyTimeoutMillis: 2_000, commitThread: true })
      yield* store.set(entry("first"))
      yield* store.stats
      // another process (here: another connection) holds the write lock
      const other = new DatabaseSync(path)
      other.exec("BEGIN IMMEDIATE")
      yield* store.set(entry("while-locked"))
      // the commit is attempted while the lock is held; it waits for the lock on the writer
      // thread, so this thread gets to release the lock. Committed on this thread instead, the
      // commit would hold this thread in SQLite's busy wait until the timeout and then fail.
      yield* Effect.sleep("100 millis")
      other.exec("COMMIT")
      other.close()
      yield* store.stats
      assert.strictEqual(onDisk(path, "while-locked"), JSON.stringify({ key: "while-locked" }))
      // no failed background commit to report
      yield* store.set(entry("after"))
    }).pipe(Effect.scoped))

  it.live("by default, commits run on this thread", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir, "cache.db")
      const store = yield* SqliteStore.make({ path })
      yield* store.set(entry("here"))
      yield* Effect.sleep("20 millis")
      // committed by the timer on this thread: visible without waiting for a thread
      assert.strictEqual(onDisk(path, "here"), JSON.stringify({ key: "here" }))
    }).pipe(Effect.scoped))

  it.live("operations over many rows see queued entries: stats, prune, delete", () =>
    Effect.gen(function*() {
      const store = yield* SqliteStore.make({ path: join(yield* tempDir, "cache.db") })
      yield* store.set(entry("x"))
      yield* store.set(entry("y"))
      assert.strictEqual((yield* store.stats).entries, 2)
      yield* store.set(entry("z"))
      assert.isTrue(yield* store.delete("z"))
      assert.strictEqual(yield* store.prune({ namespace: "n" }), 2)
    }).pipe(Effect.scoped))
})

const exiting = fileURLToPath(new URL("./fixtures/sqlite-exit.ts", import.meta.url))
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
