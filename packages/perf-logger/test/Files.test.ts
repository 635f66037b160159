import { assert, describe, it } from "@effect/vitest"
import { type Completion, Llm } from "@hasten/core"
import { ConfigProvider, Effect, Layer, Stream } from "effect"
import { TestClock, TestConsole } from "effect/testing"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { PerfLogger } from "../src/index.js"
import * as Scripted from "./fixtures/ScriptedLlm.js"

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-"))
const child = fileURLToPath(new URL("./fixtures/crash-child.mjs", import.meta.url))
const packageRoot = fileURLToPath(new URL("..", import.meta.url))

const lines = (path: string) => Fs.readFileSync(path, "utf8").split("\n").filter((line) => line.length > 0)

const crash = (
  dir: string,
  runId: string,
  calls: number,
  death: "kill" | "exit" | "throw" | "term",
  flush: "event" | "buffered" | "slow" | "default",
  gapMs = 0
) => {
  const result = spawnSync(
    process.execPath,
    ["--conditions=@hasten/source", child, dir, runId, String(calls), death, flush, String(gapMs)],
    {
      cwd: packageRoot,
      encoding: "utf8",
      timeout: 60_000
    }
  )
  return result
}

describe("run files", () => {
  it.effect("writes events.jsonl as the run goes, then summary.json and report.html when the scope closes", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const layer = PerfLogger.layer.pipe(
        Layer.provideMerge(Scripted.layer),
        Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "run-1", console: false, summaryInterval: false, flush: "event" }))
      )
      const events = Path.join(dir, "run-1", "events.jsonl")
      const live = yield* Effect.gen(function*() {
        yield* Llm.complete(Scripted.request({ outputTokens: 4 }))
        // the call is on disk before the run ends (flush "event": before the call returns)
        assert.strictEqual(lines(events).filter((line) => line.includes("\"type\":\"call\"")).length, 1)
        yield* PerfLogger.stage(
          "s",
          Llm.stream(Scripted.request({ chunks: [{ afterMs: 0, text: "a" }, { afterMs: 0, text: "b" }] })).pipe(Stream.runDrain)
        )
        assert.isFalse(Fs.existsSync(Path.join(dir, "run-1", "summary.json")))
        return yield* PerfLogger.summary
      }).pipe(Effect.provide(layer))
      const written = lines(events).map((line) => JSON.parse(line))
      assert.deepStrictEqual(written.map((event) => event.type), ["run_start", "memory", "call", "call", "stage", "memory", "run_end"])
      const summary = JSON.parse(Fs.readFileSync(Path.join(dir, "run-1", "summary.json"), "utf8"))
      assert.strictEqual(summary.runId, "run-1")
      assert.isTrue(summary.complete)
      assert.strictEqual(summary.overall.calls, 2)
      assert.strictEqual(summary.byStage.s.calls, 1)
      assert.deepStrictEqual(summary.overall.tokens, live.overall.tokens)
      // the same numbers come back from the event log alone
      const reread = PerfLogger.readRun(Path.join(dir, "run-1")).summary
      assert.deepStrictEqual(reread.overall, summary.overall)
      assert.include(Fs.readFileSync(Path.join(dir, "run-1", "report.html"), "utf8"), "id=\"perf-data\"")
    }))

  it.effect(
    "group commit: the first call is written at the end of its turn, the next ones together one window later",
    () =>
      Effect.gen(function*() {
        const dir = tmp()
        const events = Path.join(dir, "group", "events.jsonl")
        const callsOnDisk = () => lines(events).filter((line) => line.includes("\"type\":\"call\"")).length
        const sleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))
        yield* Effect.gen(function*() {
          // the log has written nothing yet, so this call is not held for the (60 s) window
          yield* Llm.complete(Scripted.request({ outputTokens: 4 }))
          assert.strictEqual(callsOnDisk(), 0, "nothing is written on the measured call's path")
          while (callsOnDisk() < 1) yield* sleep(2) // the asynchronous write issued at the end of the turn
          yield* Llm.complete(Scripted.request({ outputTokens: 4 }))
          yield* Llm.complete(Scripted.request({ outputTokens: 4 }))
          yield* sleep(50)
          assert.strictEqual(callsOnDisk(), 1, "within the window after the last write: they wait for the group's write")
          // the summary includes every call, and a flush of the run writes what is pending
          assert.strictEqual((yield* PerfLogger.summary).overall.calls, 3)
          assert.strictEqual(callsOnDisk(), 3)
          yield* Llm.complete(Scripted.request({ outputTokens: 4 }))
        }).pipe(Effect.provide(PerfLogger.layer.pipe(
          Layer.provideMerge(Scripted.layer),
          Layer.provideMerge(PerfLogger.layerRun({
            dir,
            runId: "group",
            console: false,
            summaryInterval: false,
            memoryInterval: false,
            report: false,
            flush: { intervalMs: 60_000, maxEvents: 1_000 }
          }))
        )))
        // closing the run wrote the last one
        assert.strictEqual(PerfLogger.readRun(Path.join(dir, "group")).summary.overall.calls, 4)
      }),
    { timeout: 10_000 }
  )

  it.effect("rewrites summary.json every summaryInterval while the run goes, and prints the table at the end", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const file = Path.join(dir, "periodic", "summary.json")
      yield* Effect.gen(function*() {
        yield* Llm.complete(Scripted.request({ latencyMs: 0, outputTokens: 4 }))
        assert.isFalse(Fs.existsSync(file))
        yield* TestClock.adjust("5 seconds")
        const partial = JSON.parse(Fs.readFileSync(file, "utf8"))
        assert.strictEqual(partial.overall.calls, 1)
        assert.isFalse(partial.complete)
        assert.strictEqual((yield* TestConsole.logLines).length, 0)
      }).pipe(Effect.provide(PerfLogger.layer.pipe(
        Layer.provideMerge(Scripted.layer),
        Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "periodic", summaryInterval: "5 seconds", report: false }))
      )))
      const printed = (yield* TestConsole.logLines).map(String).join("\n")
      assert.match(printed, /perf-logger run periodic: 1 calls/)
      assert.match(printed, /scripted\/fake-model\s+1\s+0\s/)
      assert.isTrue(JSON.parse(Fs.readFileSync(file, "utf8")).complete)
    }))

  it.effect("rejects a run id that would escape the log folder with PerfLoggerError (InvalidRunId) naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(PerfLogger.make({ dir: tmp(), runId: "../evil", console: false })))
      assert.instanceOf(error, PerfLogger.PerfLoggerError)
      assert.strictEqual(error.reason._tag, "InvalidRunId")
      assert.match(error.message, /runId "..\/evil" must be a plain folder name/)
      const memory = yield* Effect.flip(Layer.build(PerfLogger.layerMemory({ runId: "a/b" })).pipe(Effect.scoped))
      assert.strictEqual(memory.reason._tag, "InvalidRunId")
    }))

  it.effect("bad options fail the run with PerfLoggerError (InvalidOptions) naming the field, every problem listed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(PerfLogger.make({
        dir: tmp(),
        console: false,
        flush: { intervalMs: -1, maxEvents: 10 },
        memoryInterval: "soon" as never,
        prices: { m: { input: 1, output: -2 } }
      })))
      assert.strictEqual(error.reason._tag, "InvalidOptions")
      assert.strictEqual(error.reason._tag === "InvalidOptions" ? error.reason.field : "", "prices.m.output")
      assert.strictEqual(
        error.message,
        "perf-logger: invalid options: prices.m.output must be >= 0, got -2; flush.intervalMs must be >= 0, got -1; memoryInterval must be a duration (\"1 second\", milliseconds) or false, got soon"
      )
    }))

  it("parses a log with a torn last line and names a malformed line elsewhere", () => {
    const good = JSON.stringify({ type: "run_end", t: 1 })
    assert.strictEqual(PerfLogger.parseEvents(`${good}\n${good}\n{"type":"ca`).length, 2)
    assert.throws(
      () => PerfLogger.parseEvents(`${good}\n{"type":"ca\n${good}\n`, "x.jsonl"),
      PerfLogger.PerfLoggerError,
      /x\.jsonl:2: not a JSON event/
    )
  })

  it("decodes each line with the event schema: a bad field is named with its line, an unknown event type is skipped", () => {
    const good = JSON.stringify({ type: "run_end", t: 1 })
    const badCall = JSON.stringify({ type: "call", op: "complete", provider: "p", model: "m", start: 1, latencyMs: "5", ok: true })
    try {
      PerfLogger.parseEvents(`${good}\n${badCall}\n${good}\n`, "x.jsonl")
      assert.fail("expected a PerfLoggerError")
    } catch (error) {
      assert.instanceOf(error, PerfLogger.PerfLoggerError)
      assert.strictEqual(error.reason._tag === "InvalidRunFile" ? error.reason.line : undefined, 2)
      assert.match(error.message, /x\.jsonl:2: not a valid call event \(latencyMs: Expected number, got "5"\)/)
    }
    const events = PerfLogger.parseEvents(`${good}\n{"type":"gpu","t":2}\n${good}\n`)
    assert.deepStrictEqual(events.map((event) => event.type), ["run_end", "run_end"])
  })

  it("the file readers throw PerfLoggerError naming the path; InvalidOptions (deprecated) still matches it", () => {
    const dir = tmp()
    const thrown = (run: () => unknown): PerfLogger.PerfLoggerError => {
      try {
        run()
      } catch (error) {
        assert.instanceOf(error, PerfLogger.InvalidOptions)
        return error as PerfLogger.PerfLoggerError
      }
      assert.fail("did not throw")
    }
    const noRun = thrown(() => PerfLogger.readRun(dir))
    assert.strictEqual(noRun.reason._tag, "RunNotFound")
    assert.include(noRun.message, dir)
    Fs.writeFileSync(Path.join(dir, "summary.json"), "not json")
    const foreign = thrown(() => PerfLogger.readSummary(dir))
    assert.strictEqual(foreign.reason._tag, "InvalidRunFile")
    assert.match(foreign.message, /summary\.json is not a perf-logger summary/)
  })
})

describe("crash safety of events.jsonl", () => {
  /** `lost`: how many of the last calls a crash may have lost. */
  const check = (runDir: string, calls: number, lost = 0) => {
    const events = lines(Path.join(runDir, "events.jsonl")).map((line) => JSON.parse(line))
    const written = events.filter((event) => event.type === "call").length
    assert.isAtLeast(written, calls - lost)
    assert.isAtMost(written, calls)
    calls = written
    assert.isFalse(events.some((event) => event.type === "run_end"))
    assert.isFalse(Fs.existsSync(Path.join(runDir, "summary.json")))
    // hasten-perf report recovers the summary and report of the crashed run
    const summary = PerfLogger.writeReport(runDir)
    assert.strictEqual(summary.overall.calls, calls)
    assert.isFalse(summary.complete)
    assert.isTrue(Fs.existsSync(Path.join(runDir, "report.html")))
  }

  for (const death of ["kill", "exit", "throw"] as const) {
    it(`flush "event": a process that dies by ${death} leaves every recorded call on disk, line by line parseable`, () => {
      const dir = tmp()
      // 40 calls to an in-process model in one event-loop turn, then the death in the same turn
      const result = crash(dir, "crashed", 40, death, "event")
      assert.notStrictEqual(result.status, 0, result.stderr)
      check(Path.join(dir, "crashed"), 40)
    })
  }

  it("default group commit: SIGKILL loses at most the last call when calls end more than 10 ms apart", () => {
    const dir = tmp()
    const result = crash(dir, "group-kill", 12, "kill", "default", 25)
    assert.notStrictEqual(result.status, 0, result.stderr)
    check(Path.join(dir, "group-kill"), 12, 1)
  })

  for (const death of ["exit", "throw", "term"] as const) {
    it(`default group commit: a process that dies by ${death} leaves every recorded call on disk`, () => {
      const dir = tmp()
      const result = crash(dir, "crashed", 40, death, "default")
      if (death === "term") assert.strictEqual(result.status, 128 + 15, "ends as SIGTERM would have, after the flush")
      else assert.notStrictEqual(result.status, 0, result.stderr)
      check(Path.join(dir, "crashed"), 40)
    })
  }

  for (const death of ["exit", "throw", "term"] as const) {
    it(`buffered flush: a process that dies by ${death} still writes every recorded call`, () => {
      const dir = tmp()
      const result = crash(dir, "buffered", 40, death, "buffered")
      if (death === "term") assert.strictEqual(result.status, 128 + 15, "ends as SIGTERM would have, after the flush")
      else assert.notStrictEqual(result.status, 0, result.stderr)
      check(Path.join(dir, "buffered"), 40)
    })
  }

  it("buffered flush can lose the pending interval on SIGKILL (the documented trade-off)", () => {
    const dir = tmp()
    crash(dir, "buffered-kill", 40, "kill", "slow")
    const path = Path.join(dir, "buffered-kill", "events.jsonl")
    const calls = lines(path).map((line) => JSON.parse(line)).filter((event) => event.type === "call")
    assert.isBelow(calls.length, 40)
  })
})

describe("plain async TypeScript", () => {
  it("measure() wraps an Llm layer in a Promise facade and close() ends the run", async () => {
    const dir = tmp()
    const llm = PerfLogger.measure(Scripted.layer, { dir, runId: "facade", console: false })
    await llm.complete(Scripted.request({ outputTokens: 2 }))
    await llm.stage("classify", () => llm.complete(Scripted.request({ outputTokens: 3 }), { stage: "classify" }))
    const chunks: Array<Completion.CompletionChunk> = []
    for await (
      const chunk of llm.stream(Scripted.request({ chunks: [{ afterMs: 0, text: "a" }, { afterMs: 0, text: "b" }] }), { stage: "align" })
    ) chunks.push(chunk)
    assert.strictEqual(chunks.length, 2)
    const summary = await llm.close()
    assert.isTrue(summary.complete)
    assert.strictEqual(summary.overall.calls, 3)
    assert.strictEqual(summary.overall.tokens.output, 7)
    assert.strictEqual(summary.byStage["classify"]?.calls, 1)
    assert.strictEqual(summary.byStage["align"]?.calls, 1)
    assert.strictEqual(summary.byStage["classify"]?.invocations, 1)
    assert.isTrue(Fs.existsSync(Path.join(dir, "facade", "report.html")))
  })

  it.effect("layerConfig reads HASTEN_PERF_* from the environment", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const runDir = yield* Effect.gen(function*() {
        const recorder = yield* PerfLogger.PerfLogger
        return recorder.runDir
      }).pipe(
        Effect.provide(PerfLogger.layerConfig()),
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          HASTEN_PERF_DIR: dir,
          HASTEN_PERF_RUN_ID: "from-env",
          HASTEN_PERF_CONSOLE: "false"
        })))
      )
      assert.strictEqual(runDir, Path.join(dir, "from-env"))
      assert.isTrue(Fs.existsSync(Path.join(dir, "from-env", "summary.json")))
    }))

  it.effect("layerConfig(options): explicit options win over the environment", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const runDir = yield* Effect.gen(function*() {
        const recorder = yield* PerfLogger.PerfLogger
        return recorder.runDir
      }).pipe(
        Effect.provide(PerfLogger.layerConfig({ runId: "from-options", console: false })),
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          HASTEN_PERF_DIR: dir,
          HASTEN_PERF_RUN_ID: "from-env",
          HASTEN_PERF_CONSOLE: "true"
        })))
      )
      assert.strictEqual(runDir, Path.join(dir, "from-options"))
      assert.isFalse(Fs.existsSync(Path.join(dir, "from-env")))
    }))
})

describe("robustness", () => {
  it.effect("many open runs share one exit listener and one listener per signal", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const before = { exit: process.listenerCount("exit"), term: process.listenerCount("SIGTERM") }
      const recorders = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        (i) => PerfLogger.make({ dir, runId: `many-${i}`, console: false, report: false, summaryInterval: false, memoryInterval: false })
      )
      assert.strictEqual(recorders.length, 12)
      assert.isAtMost(process.listenerCount("exit") - before.exit, 1)
      assert.isAtMost(process.listenerCount("SIGTERM") - before.term, 1)
    }).pipe(Effect.scoped))

  for (const flush of ["event", "group"] as const) {
    it.effect(`a failing log write (disk full, flush ${flush}) never fails the measured call`, () =>
      Effect.gen(function*() {
        const dir = tmp()
        // events.jsonl is /dev/full: every write fails with ENOSPC
        Fs.mkdirSync(Path.join(dir, "full"))
        Fs.symlinkSync("/dev/full", Path.join(dir, "full", "events.jsonl"))
        const warnings: Array<string> = []
        const onWarning = (warning: Error) => warnings.push(warning.message)
        process.on("warning", onWarning)
        const summary = yield* Effect.gen(function*() {
          yield* Llm.complete(Scripted.request({ outputTokens: 1 }))
          yield* Llm.complete(Scripted.request({ outputTokens: 2 }))
          return yield* PerfLogger.summary
        }).pipe(Effect.provide(PerfLogger.layer.pipe(
          Layer.provideMerge(Scripted.layer),
          Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "full", console: false, ...(flush === "event" ? { flush } : {}) }))
        )))
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        process.off("warning", onWarning)
        assert.strictEqual(summary.overall.calls, 2)
        assert.strictEqual(summary.overall.tokens.output, 3)
        assert.strictEqual(warnings.length, 1)
        assert.match(warnings[0]!, /events\.jsonl failed, the run log stops here/)
        // the summary still lands next to the log
        assert.strictEqual(JSON.parse(Fs.readFileSync(Path.join(dir, "full", "summary.json"), "utf8")).overall.calls, 2)
      }))
  }
})
