// Benchmark for @hasten/cache: `node bench/run.ts [--quick]` (Node 24 strips the types).
// Compares the cache with the seeds' "before" (one JSON file per key named by md5 in a
// folder) and measures hit latency per store, a 200-request evaluation run twice
// against the testkit simulator through the real OpenAI provider, and single-flight.
// Prints a table for people and, last, one JSON line for machines.
import { Cache, SqliteStore } from "@hasten/cache"
import { Completion, CompletionRequest, Llm } from "@hasten/core"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"

const quick = process.argv.includes("--quick")
const hitSamples = quick ? 2_000 : 20_000
const writeSamples = quick ? 1_000 : 5_000
// Untimed iterations before every timed hit loop, the same for each side, so the JIT has
// settled on both before a sample counts.
const warmup = quick ? 2_000 : 5_000
const warm = (f: (index: number) => unknown) => {
  for (let index = 0; index < warmup; index++) f(index)
}
const evalRequests = 200
const workDir = mkdtempSync(join(tmpdir(), "hasten-cache-bench-"))

const percentile = (values: Array<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}
const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits

const request = (index: number): CompletionRequest.CompletionRequest =>
  CompletionRequest.makeUnsafe({
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: "Answer the grade-school math question. End with 'The answer is N'." },
      {
        role: "user",
        content:
          `Question ${index}: Natalia sold clips to ${index} of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?`
      }
    ],
    temperature: 0,
    maxTokens: 64
  })

// An instant upstream for hit latency: what is measured is the cache alone.
const instant = Layer.succeed(
  Llm.Llm,
  Llm.fromComplete("bench", (req) =>
    Effect.succeed(
      new Completion.Completion({
        text: "Natalia sold 48 clips in April and 24 in May. The answer is 72",
        finishReason: "stop",
        usage: { inputTokens: 60, outputTokens: 20 },
        model: req.model,
        provider: "bench",
        timing: { start: 0, firstToken: 1, end: 2 }
      })
    ))
)

/** p50/p99 (µs) of a cache hit through the Cache layer, timed inside one Effect loop. */
const hitLatency = async (options: Cache.Options) => {
  const runtime = ManagedRuntime.make(Cache.layer(options).pipe(Layer.provide(instant)))
  try {
    return await runtime.runPromise(Effect.gen(function*() {
      const llm = yield* Effect.service(Llm.Llm)
      const keys = Array.from({ length: 100 }, (_, index) => request(index))
      for (const req of keys) yield* llm.complete(req)
      for (const req of keys) {
        const warm = yield* llm.complete(req)
        if (warm.cached !== true) throw new Error(`${options.store}: expected a hit`)
      }
      for (let index = 0; index < warmup; index++) yield* llm.complete(keys[index % keys.length]!)
      const samples: Array<number> = []
      for (let index = 0; index < hitSamples; index++) {
        const req = keys[index % keys.length]!
        const start = performance.now()
        yield* llm.complete(req)
        samples.push((performance.now() - start) * 1_000)
      }
      return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
    }))
  } finally {
    await runtime.dispose()
  }
}

// The seeds' "before": one JSON file per key, named by the md5 of the request.
const baselineKey = (req: CompletionRequest.CompletionRequest) =>
  createHash("md5").update(
    JSON.stringify({ model: req.model, messages: req.messages, temperature: req.temperature, max_tokens: req.maxTokens })
  ).digest("hex")

const baselineFiles = () => {
  const dir = join(workDir, "json-cache")
  mkdirSync(dir, { recursive: true })
  const completion = {
    text: "Natalia sold 48 clips in April and 24 in May. The answer is 72",
    finish_reason: "stop",
    usage: { prompt_tokens: 60, completion_tokens: 20 },
    model: "gpt-4o-mini"
  }
  const writes: Array<number> = []
  for (let index = 0; index < writeSamples; index++) {
    const start = performance.now()
    const file = join(dir, `${baselineKey(request(100_000 + index))}.json`)
    writeFileSync(file, JSON.stringify(completion))
    writes.push((performance.now() - start) * 1_000)
  }
  const requests = Array.from({ length: 100 }, (_, index) => request(100_000 + index))
  warm((index) => {
    const file = join(dir, `${baselineKey(requests[index % requests.length]!)}.json`)
    if (existsSync(file)) JSON.parse(readFileSync(file, "utf8"))
  })
  const hitsUs: Array<number> = []
  for (let index = 0; index < hitSamples; index++) {
    const req = requests[index % requests.length]!
    const start = performance.now()
    const file = join(dir, `${baselineKey(req)}.json`)
    if (existsSync(file)) JSON.parse(readFileSync(file, "utf8"))
    hitsUs.push((performance.now() - start) * 1_000)
  }
  // Storage alone: the key is known; read and JSON.parse.
  const files = requests.map((req) => join(dir, `${baselineKey(req)}.json`))
  warm((index) => JSON.parse(readFileSync(files[index % files.length]!, "utf8")))
  const storage: Array<number> = []
  for (let index = 0; index < hitSamples; index++) {
    const start = performance.now()
    JSON.parse(readFileSync(files[index % files.length]!, "utf8"))
    storage.push((performance.now() - start) * 1_000)
  }
  return {
    hitP50: percentile(hitsUs, 50),
    hitP99: percentile(hitsUs, 99),
    storageHitP50: percentile(storage, 50),
    writeP50: percentile(writes, 50),
    writeP99: percentile(writes, 99)
  }
}

/** SQLite storage alone, like the file read above: the key is known; SELECT and JSON.parse. */
const sqliteStorageHits = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const store = yield* SqliteStore.make({ path: join(workDir, "storage.db") })
    const value = JSON.stringify({
      text: "Natalia sold 48 clips in April and 24 in May. The answer is 72",
      finish_reason: "stop",
      usage: { prompt_tokens: 60, completion_tokens: 20 },
      model: "gpt-4o-mini"
    })
    const keys = Array.from({ length: 100 }, (_, index) => createHash("sha256").update(String(index)).digest("hex"))
    for (const key of keys) yield* store.set({ key, namespace: "default", value, createdAt: 0 })
    for (let index = 0; index < warmup; index++) JSON.parse((yield* store.get(keys[index % keys.length]!))!.value)
    const samples: Array<number> = []
    for (let index = 0; index < hitSamples; index++) {
      const start = performance.now()
      const entry = yield* store.get(keys[index % keys.length]!)
      JSON.parse(entry!.value)
      samples.push((performance.now() - start) * 1_000)
    }
    return percentile(samples, 50)
  })))

/** SQLite write latency: encode a completion and upsert it (committed in `set`, as with `writeBehind: false`; write-behind defers the commit). */
const sqliteWrites = () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const store = yield* SqliteStore.make({ path: join(workDir, "writes.db"), writeBehind: false })
    const completion = new Completion.Completion({
      text: "Natalia sold 48 clips in April and 24 in May. The answer is 72",
      finishReason: "stop",
      usage: { inputTokens: 60, outputTokens: 20 },
      model: "gpt-4o-mini",
      provider: "openai",
      timing: { start: 0, firstToken: 1, end: 2 }
    })
    const samples: Array<number> = []
    for (let index = 0; index < writeSamples; index++) {
      const start = performance.now()
      const key = `${index}`.padStart(64, "0")
      const value = Cache.encodePayload({ _tag: "completion", completion })!
      yield* store.set({ key, namespace: "default", value, createdAt: index })
      samples.push((performance.now() - start) * 1_000)
    }
    return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
  })))

// ---------------------------------------------------------------------------
// upstream: testkit simulator + real OpenAI provider, or a fake with the same latency
// ---------------------------------------------------------------------------

interface Upstream {
  readonly layer: Layer.Layer<Llm.Llm>
  readonly calls: () => number
  readonly description: string
  readonly close: () => Promise<void>
}

// The same latency in both modes, so the re-run ratio means the same; --quick only takes fewer samples.
const latency = { ttftMs: 400, perTokenMs: 10 }

const simulatorUpstream = async (): Promise<Upstream> => {
  const { Simulator } = await import("@hasten/testkit")
  const { OpenAi } = await import("@hasten/providers/openai")
  const sim = await Simulator.start({
    seed: 1,
    latency: { ...latency, jitter: 0.2 },
    limits: { rpm: 1_000_000, tpm: 1_000_000_000, maxConcurrency: 1_000 }
  })
  const llm = OpenAi.layer({ model: "gpt-4o-mini", apiKey: Redacted.make("sk-bench"), baseURL: sim.openaiBaseUrl })
  return {
    layer: Layer.effect(Llm.Llm, Effect.service(Llm.Llm)).pipe(Layer.provide(llm)) as Layer.Layer<Llm.Llm>,
    calls: () => sim.counters().requests,
    description: `testkit simulator + OpenAi provider (ttft ${latency.ttftMs} ms, ${latency.perTokenMs} ms/token, jitter 0.2)`,
    close: () => sim.close()
  }
}

const fakeUpstream = (reason: string): Upstream => {
  let calls = 0
  const layer = Layer.succeed(
    Llm.Llm,
    Llm.fromComplete("openai", (req) =>
      Effect.gen(function*() {
        calls++
        yield* Effect.sleep(latency.ttftMs + 20 * latency.perTokenMs)
        return new Completion.Completion({
          text: `answer ${req.messages.at(-1)?.content.length ?? 0}`,
          finishReason: "stop",
          usage: { inputTokens: 60, outputTokens: 20 },
          model: req.model,
          provider: "openai",
          timing: { start: 0, end: 0 }
        })
      }))
  )
  return { layer, calls: () => calls, description: `fake upstream with Effect.sleep latency (${reason})`, close: async () => {} }
}

const evaluation = async (upstream: Upstream, path: string) => {
  const runOnce = async () => {
    const runtime = ManagedRuntime.make(Cache.layer({ store: "sqlite", path }).pipe(Layer.provide(upstream.layer)))
    // Build the stack (open the file, construct the SDK client) before the clock starts: both runs time the evaluation only.
    await runtime.runPromise(Effect.service(Llm.Llm))
    const before = upstream.calls()
    const start = performance.now()
    const results = await runtime.runPromise(
      Effect.forEach(Array.from({ length: evalRequests }, (_, index) => request(index)), (req) => Llm.complete(req), { concurrency: 16 })
    )
    const millis = performance.now() - start
    await runtime.dispose()
    return { millis, upstreamCalls: upstream.calls() - before, hits: results.filter((result) => result.cached === true).length }
  }
  const cold = await runOnce()
  // Three re-runs (each a fresh stack on the same file); the median one is reported.
  const reruns = [await runOnce(), await runOnce(), await runOnce()].sort((a, b) => a.millis - b.millis)
  const warm = { ...reruns[1]!, upstreamCalls: reruns.reduce((sum, run) => sum + run.upstreamCalls, 0) }
  return { cold, warm }
}

const singleFlight = async (upstream: Upstream) => {
  const runtime = ManagedRuntime.make(Cache.layer({ store: "memory" }).pipe(Layer.provide(upstream.layer)))
  const before = upstream.calls()
  const same = request(999_999)
  const results = await runtime.runPromise(Effect.all(Array.from({ length: 100 }, () => Llm.complete(same)), { concurrency: "unbounded" }))
  await runtime.dispose()
  return { callers: results.length, upstreamCalls: upstream.calls() - before }
}

// ---------------------------------------------------------------------------

const main = async () => {
  const memory = await hitLatency({ store: "memory" })
  const sqlite = await hitLatency({ store: "sqlite", path: join(workDir, "hits.db") })
  let redis: { p50: number; p99: number } | undefined
  let redisNote = ""
  try {
    const { RedisServer } = await import("@hasten/testkit")
    const server = await RedisServer.start()
    try {
      redis = await hitLatency({ store: "redis", redisUrl: server.url })
    } finally {
      await server.stop()
    }
  } catch (error) {
    redisNote = `redis skipped: ${error instanceof Error ? error.message : String(error)}`
  }
  const baseline = baselineFiles()
  const sqliteStorageHit = await sqliteStorageHits()
  const sqliteWrite = await sqliteWrites()

  let upstream: Upstream
  try {
    upstream = await simulatorUpstream()
  } catch (error) {
    upstream = fakeUpstream(`simulator/provider unavailable: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`)
  }
  const evalRun = await evaluation(upstream, join(workDir, "eval.db"))
  const flight = await singleFlight(upstream)
  await upstream.close()
  rmSync(workDir, { recursive: true, force: true })

  const rerunSpeedup = evalRun.cold.millis / evalRun.warm.millis
  const rows: Array<[string, string, string]> = [
    ["hit p50 / p99, memory", `${round(memory.p50)} / ${round(memory.p99)} µs`, "target p50 < 20 µs"],
    ["hit p50 / p99, SQLite", `${round(sqlite.p50)} / ${round(sqlite.p99)} µs`, "target p50 < 200 µs"],
    ["hit p50 / p99, Redis", redis === undefined ? redisNote : `${round(redis.p50)} / ${round(redis.p99)} µs`, "shared by machines"],
    [
      "before: JSON file hit p50 / p99",
      `${round(baseline.hitP50)} / ${round(baseline.hitP99)} µs`,
      `full path (key + read + parse); SQLite cache hit is ${
        round(baseline.hitP50 / sqlite.p50, 2)
      }x as fast (it also validates, counts, marks)`
    ],
    [
      "storage only: JSON file vs SQLite",
      `${round(baseline.storageHitP50)} vs ${round(sqliteStorageHit)} µs`,
      `read + JSON.parse by known key; SQLite ${round(baseline.storageHitP50 / sqliteStorageHit, 2)}x faster`
    ],
    [
      "before: JSON file write p50 / p99",
      `${round(baseline.writeP50)} / ${round(baseline.writeP99)} µs`,
      `SQLite ${round(baseline.writeP50 / sqliteWrite.p50, 2)}x faster`
    ],
    ["SQLite write p50 / p99", `${round(sqliteWrite.p50)} / ${round(sqliteWrite.p99)} µs`, "encode + upsert"],
    [
      `eval ${evalRequests} requests, cold`,
      `${round(evalRun.cold.millis, 0)} ms, ${evalRun.cold.upstreamCalls} upstream calls`,
      upstream.description
    ],
    [
      `eval ${evalRequests} requests, warm re-run (median of 3)`,
      `${round(evalRun.warm.millis, 1)} ms, ${evalRun.warm.upstreamCalls} upstream calls, ${evalRun.warm.hits} hits`,
      `${round(rerunSpeedup, 0)}x faster (target ≥ 50x)`
    ],
    ["100 concurrent identical requests", `${flight.upstreamCalls} upstream call(s)`, "single-flight"]
  ]
  const width = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)))
  console.log(`@hasten/cache benchmark${quick ? " (--quick)" : ""}: ${hitSamples} hit samples, ${writeSamples} write samples`)
  for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(width[column]!)).join("  │  "))
  console.log(JSON.stringify({
    bench: "cache",
    hitP50Us: { memory: round(memory.p50, 2), sqlite: round(sqlite.p50, 2), redis: redis === undefined ? null : round(redis.p50, 2) },
    rerunSpeedup: round(rerunSpeedup, 1),
    rerunUpstreamCalls: evalRun.warm.upstreamCalls,
    singleFlightUpstreamCalls: flight.upstreamCalls,
    baselineJsonFiles: {
      hitP50Us: round(baseline.hitP50, 2),
      writeP50Us: round(baseline.writeP50, 2),
      storageHitP50Us: round(baseline.storageHitP50, 2),
      sqliteHitP50Us: round(sqlite.p50, 2),
      sqliteStorageHitP50Us: round(sqliteStorageHit, 2),
      sqliteWriteP50Us: round(sqliteWrite.p50, 2),
      sqliteHitSpeedup: round(baseline.hitP50 / sqlite.p50, 2),
      sqliteStorageHitSpeedup: round(baseline.storageHitP50 / sqliteStorageHit, 2),
      sqliteWriteSpeedup: round(baseline.writeP50 / sqliteWrite.p50, 2)
    }
  }))
}

await main()
