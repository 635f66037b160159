/**
 * One suite every `CacheStore` backend must pass: `conformance(name, store)` registers the
 * same tests for a store given as a `Layer` or as a scoped constructor. Each test gets a
 * fresh store (built in the test's scope, then cleared) and runs under `TestClock`, which
 * every store reads time through.
 */
import { assert, describe, it } from "@effect/vitest"
import { CacheStore } from "@hasten/cache"
import { Context, Effect, Layer, type Scope } from "effect"
import { TestClock } from "effect/testing"

type Make<E> = Effect.Effect<CacheStore.CacheStoreService, E, Scope.Scope>

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

/** Entries as a store may return them: an absent `expiresAt` and `expiresAt: undefined` are the same. */
const normalize = (entry: CacheStore.Entry | undefined) =>
  entry === undefined
    ? undefined
    : { key: entry.key, namespace: entry.namespace, value: entry.value, createdAt: entry.createdAt, expiresAt: entry.expiresAt }

const assertEntry = (actual: CacheStore.Entry | undefined, expected: CacheStore.Entry, message?: string) =>
  assert.deepStrictEqual(normalize(actual), normalize(expected), message)

/** Registers the conformance tests for one backend. */
export const conformance = <E>(name: string, store: Layer.Layer<CacheStore.CacheStore, E> | Make<E>) => {
  const make: Make<E> = Effect.isEffect(store)
    ? store
    : Effect.map(Layer.build(Layer.fresh(store)), (context) => Context.get(context, CacheStore.CacheStore))
  const test = (title: string, body: (store: CacheStore.CacheStoreService) => Effect.Effect<void, E | CacheStore.CacheStoreError>) =>
    it.effect(title, () =>
      Effect.scoped(Effect.gen(function*() {
        const store = yield* make
        yield* store.clear
        yield* body(store)
      })))

  describe(`CacheStore conformance: ${name}`, () => {
    test("get of a key never set is undefined", (store) =>
      Effect.gen(function*() {
        assert.isUndefined(yield* store.get("missing"))
      }))

    test("set then get returns the entry as written, with and without an expiry instant", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        const plain: CacheStore.Entry = { key: "plain", namespace: "n", value: "{\"a\":1}", createdAt: t }
        const expiring: CacheStore.Entry = { key: "expiring", namespace: "n", value: "{\"b\":2}", createdAt: t, expiresAt: t + 60_000 }
        assert.strictEqual(yield* store.set(plain), 0) // nothing evicted
        assert.strictEqual(yield* store.set(expiring), 0)
        assertEntry(yield* store.get("plain"), plain)
        assertEntry(yield* store.get("expiring"), expiring)
      }))

    test("set replaces the entry under the same key: value, namespace and times", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        yield* store.set({ key: "k", namespace: "a", value: "first", createdAt: t, expiresAt: t + 1_000 })
        yield* TestClock.adjust("10 minutes")
        const second: CacheStore.Entry = { key: "k", namespace: "b", value: "second", createdAt: yield* now }
        yield* store.set(second)
        assertEntry(yield* store.get("k"), second)
        // The old expiry went with the old entry.
        yield* TestClock.adjust("1 hour")
        assertEntry(yield* store.get("k"), second)
        assert.strictEqual((yield* store.stats).entries, 1)
        // The entry now belongs to namespace b only.
        assert.strictEqual(yield* store.prune({ namespace: "a" }), 0)
        assertEntry(yield* store.get("k"), second)
        assert.strictEqual(yield* store.prune({ namespace: "b" }), 1)
        assert.isUndefined(yield* store.get("k"))
      }))

    test("delete removes one entry and says whether it was there", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        yield* store.set({ key: "gone", namespace: "n", value: "1", createdAt: t })
        yield* store.set({ key: "kept", namespace: "n", value: "2", createdAt: t })
        assert.isTrue(yield* store.delete("gone"))
        assert.isUndefined(yield* store.get("gone"))
        assert.isFalse(yield* store.delete("gone"))
        assert.isFalse(yield* store.delete("never-set"))
        assert.strictEqual((yield* store.get("kept"))?.value, "2")
        assert.strictEqual((yield* store.stats).entries, 1)
      }))

    test("TTL: an entry is served until its expiry instant and is a miss from then on (Clock)", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        yield* store.set({ key: "ttl", namespace: "n", value: "v", createdAt: t, expiresAt: t + 60_000 })
        yield* store.set({ key: "forever", namespace: "n", value: "f", createdAt: t })
        yield* TestClock.adjust(59_999)
        assert.strictEqual((yield* store.get("ttl"))?.value, "v")
        yield* TestClock.adjust(1)
        assert.isUndefined(yield* store.get("ttl"))
        yield* TestClock.adjust("365 days")
        assert.strictEqual((yield* store.get("forever"))?.value, "f")
      }))

    test("large values round trip intact (2 MiB, multi-byte characters and newlines)", (store) =>
      Effect.gen(function*() {
        const value = JSON.stringify({ text: "añ😀\n\"x\"\\".repeat(200_000) })
        assert.isAbove(Buffer.byteLength(value), 2 * 1024 * 1024)
        const entry: CacheStore.Entry = { key: "large", namespace: "n", value, createdAt: yield* now }
        yield* store.set(entry)
        const read = yield* store.get("large")
        assert.strictEqual(read?.value.length, value.length)
        assert.isTrue(read?.value === value)
        const stats = yield* store.stats
        assert.strictEqual(stats.entries, 1)
        assert.isAtLeast(stats.bytes, Buffer.byteLength(value))
      }))

    test("keys, namespaces and values with odd characters are stored as given and kept apart", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        const keys = [
          "",
          " ",
          "a b",
          "line\nbreak",
          "tab\there",
          "colon:e:x",
          "hasten:cache:e:k",
          "*",
          "?[]{}",
          "%s %d",
          "back\\slash",
          "quote'\"`",
          "'; DROP TABLE hasten_cache; --",
          "emoji 🦊",
          "日本語",
          "k".repeat(2_000)
        ]
        const long = "n".repeat(1_000)
        const namespaces = ["default", "with space", "new\nline", "back\\slash\\n", "ns:colon", "ünïcödé", "", long]
        const entries = keys.map((key, index): CacheStore.Entry => ({
          key,
          namespace: namespaces[index % namespaces.length]!,
          value: `value ${index}\nof ${JSON.stringify(key)}`,
          createdAt: t + index
        }))
        for (const entry of entries) yield* store.set(entry)
        for (const entry of entries) assertEntry(yield* store.get(entry.key), entry, JSON.stringify(entry.key))
        assert.isUndefined(yield* store.get("a  b"))
        assert.isUndefined(yield* store.get("linebreak"))
        assert.strictEqual((yield* store.stats).entries, entries.length)
        for (const namespace of ["new\nline", long]) {
          assert.strictEqual(yield* store.prune({ namespace }), entries.filter((entry) => entry.namespace === namespace).length)
        }
        assert.strictEqual(
          (yield* store.stats).entries,
          entries.filter((entry) => entry.namespace !== "new\nline" && entry.namespace !== long).length
        )
      }))

    test("concurrent sets: distinct keys all land; racing writes to one key leave one whole entry", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        const distinct = Array.from({ length: 200 }, (_, index): CacheStore.Entry => ({
          key: `key-${index}`,
          namespace: `ns-${index % 3}`,
          value: `value-${index}`,
          createdAt: t
        }))
        yield* Effect.forEach(distinct, (entry) => store.set(entry), { concurrency: "unbounded", discard: true })
        for (const entry of distinct) assertEntry(yield* store.get(entry.key), entry)
        assert.strictEqual((yield* store.stats).entries, distinct.length)

        const racing = Array.from({ length: 50 }, (_, index): CacheStore.Entry => ({
          key: "contended",
          namespace: `writer-${index}`,
          value: `from writer ${index}`,
          createdAt: t + index
        }))
        yield* Effect.forEach(racing, (entry) => store.set(entry), { concurrency: "unbounded", discard: true })
        const winner = yield* store.get("contended")
        assert.isDefined(winner)
        const written = racing.find((entry) => entry.value === winner?.value)
        assert.isDefined(written, "the value is one of the written ones")
        assertEntry(winner, written!) // and the rest of the entry is from the same write
        assert.strictEqual((yield* store.stats).entries, distinct.length + 1)
      }))

    test("prune by namespace and age: removes entries created at least that long ago in that namespace", (store) =>
      Effect.gen(function*() {
        const start = yield* now
        yield* store.set({ key: "old-a", namespace: "a", value: "1", createdAt: start })
        yield* store.set({ key: "old-b", namespace: "b", value: "1", createdAt: start })
        yield* TestClock.adjust(1)
        yield* store.set({ key: "younger-a", namespace: "a", value: "1", createdAt: yield* now })
        yield* TestClock.adjust(5 * 60_000 - 1) // now exactly 5 minutes after `start`
        yield* store.set({ key: "new-a", namespace: "a", value: "1", createdAt: yield* now })
        // old-a is exactly 5 minutes old: removed; younger-a is 1 ms short of it: kept.
        assert.strictEqual(yield* store.prune({ namespace: "a", olderThan: "5 minutes" }), 1)
        assert.isUndefined(yield* store.get("old-a"))
        assert.isDefined(yield* store.get("younger-a"))
        assert.isDefined(yield* store.get("new-a"))
        assert.isDefined(yield* store.get("old-b"))
        assert.strictEqual((yield* store.stats).entries, 3)
        // Without an age, the whole namespace goes.
        assert.strictEqual(yield* store.prune({ namespace: "a" }), 2)
        assert.strictEqual((yield* store.stats).entries, 1)
        assert.strictEqual(yield* store.prune({ namespace: "nobody" }), 0)
      }))

    test("prune by age alone covers every namespace; prune without options removes everything", (store) =>
      Effect.gen(function*() {
        const start = yield* now
        for (const namespace of ["a", "b", "c"]) {
          yield* store.set({ key: `old-${namespace}`, namespace, value: "1", createdAt: start })
        }
        yield* TestClock.adjust("1 hour")
        for (const namespace of ["a", "b", "c"]) {
          yield* store.set({ key: `new-${namespace}`, namespace, value: "1", createdAt: yield* now })
        }
        assert.strictEqual(yield* store.prune({ olderThan: "30 minutes" }), 3)
        assert.strictEqual((yield* store.stats).entries, 3)
        assert.strictEqual(yield* store.prune(), 3)
        assert.deepStrictEqual(yield* store.stats, { entries: 0, bytes: 0 })
      }))

    test("prune also removes expired entries, in every namespace, and counts them", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        yield* store.set({ key: "expiring-a", namespace: "a", value: "1", createdAt: t, expiresAt: t + 60_000 })
        yield* store.set({ key: "expiring-b", namespace: "b", value: "1", createdAt: t, expiresAt: t + 60_000 })
        yield* store.set({ key: "live-b", namespace: "b", value: "1", createdAt: t, expiresAt: t + 3_600_000 })
        yield* store.set({ key: "forever-c", namespace: "c", value: "1", createdAt: t })
        yield* TestClock.adjust("1 minute")
        // Namespace a, and only entries a day old by age: the expired ones go anyway, in a and in b.
        assert.strictEqual(yield* store.prune({ namespace: "a", olderThan: "1 day" }), 2)
        assert.strictEqual((yield* store.stats).entries, 2)
        assert.isDefined(yield* store.get("live-b"))
        assert.isDefined(yield* store.get("forever-c"))
      }))

    test("stats count the entries and at least the bytes of their values", (store) =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* store.stats, { entries: 0, bytes: 0 })
        const t = yield* now
        const values = ["a", "bb".repeat(100), "ccc".repeat(1_000)]
        for (const [index, value] of values.entries()) {
          yield* store.set({ key: `k${index}`, namespace: `n${index}`, value, createdAt: t })
        }
        const stats = yield* store.stats
        assert.strictEqual(stats.entries, 3)
        assert.isAtLeast(stats.bytes, values.reduce((sum, value) => sum + Buffer.byteLength(value), 0))
        yield* store.set({ key: "k2", namespace: "n2", value: "c", createdAt: t })
        const smaller = yield* store.stats
        assert.strictEqual(smaller.entries, 3)
        assert.isBelow(smaller.bytes, stats.bytes)
      }))

    test("clear removes every entry in every namespace; the store stays usable", (store) =>
      Effect.gen(function*() {
        const t = yield* now
        for (const namespace of ["a", "b", "c"]) {
          yield* store.set({ key: `k-${namespace}`, namespace, value: "1", createdAt: t })
        }
        yield* store.set({ key: "expiring", namespace: "a", value: "1", createdAt: t, expiresAt: t + 60_000 })
        yield* store.clear
        assert.deepStrictEqual(yield* store.stats, { entries: 0, bytes: 0 })
        for (const key of ["k-a", "k-b", "k-c", "expiring"]) assert.isUndefined(yield* store.get(key))
        yield* store.clear
        const again: CacheStore.Entry = { key: "k-a", namespace: "a", value: "2", createdAt: t }
        yield* store.set(again)
        assertEntry(yield* store.get("k-a"), again)
      }))

    test("name says which backend it is", (store) =>
      Effect.sync(() => {
        assert.isString(store.name)
        assert.isAbove(store.name.length, 0)
      }))
  })
}
