import { CacheStore, MemoryStore, SqliteStore } from "@hasten/cache"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { conformance } from "./CacheStoreConformance.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "hasten-cache-tier-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

conformance(
  "memory in front of SQLite (tiered)",
  Effect.gen(function*() {
    const dir = yield* tempDir
    return CacheStore.tiered(MemoryStore.makeUnsafe(), yield* SqliteStore.make({ path: join(dir, "cache.db") }))
  })
)
