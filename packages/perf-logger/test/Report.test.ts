import { assert, describe, it } from "@effect/vitest"
import { Llm } from "@hasten/core"
import { Effect, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { PerfLogger } from "../src/index.js"
import * as Scripted from "./fixtures/ScriptedLlm.js"

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((path) => Fs.existsSync(path))

/** Loads a page in headless Chromium (no network) and returns the DOM after its scripts ran. */
export const dumpDom = (file: string): string => {
  if (chromium === undefined) throw new Error("chromium is not installed (apt-get install chromium)")
  const profile = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-chromium-"))
  try {
    return execFileSync(chromium, [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      "--virtual-time-budget=5000",
      "--dump-dom",
      `file://${file}`
    ], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] })
  } finally {
    Fs.rmSync(profile, { recursive: true, force: true })
  }
}

const attribute = (dom: string, pattern: RegExp): string | undefined => pattern.exec(dom)?.[1]

/** A run that exercises every chart: upstream and cached calls, streams, stages, speculative statistics. */
const scriptedRun = (dir: string) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.gen(function*() {
      yield* Effect.forEach(Array.from({ length: 30 }, (_, index) => index), (index) =>
        PerfLogger.stage(
          "classify",
          Llm.complete(Scripted.request({
            latencyMs: 20 + (index % 7) * 15,
            outputTokens: 10 + index,
            cached: index % 4 === 0,
            facts: { speculative: { acceptanceRate: 0.7, meanAcceptedLength: 2.1, perPosition: [0.9, 0.7, 0.4, 0.2] } }
          }))
        ), { concurrency: 3 })
      yield* Effect.forEach([1, 2, 3, 4, 5], () =>
        PerfLogger.stage(
          "generate",
          Llm.stream(Scripted.request({ chunks: [{ afterMs: 40, text: "a" }, { afterMs: 10, text: "b" }, { afterMs: 10, text: "c" }] }))
            .pipe(Stream.runDrain)
        ))
      yield* Effect.ignore(Llm.complete(Scripted.request({ latencyMs: 5, fail: "Timeout" })))
    }))
    yield* TestClock.adjust("1 hour")
    yield* Fiber.join(fiber)
  }).pipe(
    Effect.provide(PerfLogger.layer.pipe(
      Layer.provideMerge(Scripted.layer),
      Layer.provideMerge(PerfLogger.layerRun({
        dir,
        runId: "report-run",
        console: false,
        summaryInterval: false,
        prices: { "fake-model": { input: 0.15, output: 0.6 } }
      }))
    ))
  )

describe("report.html", () => {
  it.effect("renders in headless Chromium with every chart drawn from the run's data", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-report-"))
      yield* scriptedRun(dir)
      const file = Path.join(dir, "report-run", "report.html")
      const html = Fs.readFileSync(file, "utf8")
      // self-contained: no external resources
      assert.notMatch(html, /(src|href)=["']?(https?:)?\/\//)
      const dom = dumpDom(file)
      assert.strictEqual(attribute(dom, /<body[^>]*data-ready="([^"]*)"/), "1")
      assert.isUndefined(attribute(dom, /<body[^>]*data-error="([^"]*)"/))
      assert.strictEqual(attribute(dom, /<body[^>]*data-charts-drawn="(\d+)"/), "5")
      for (const id of ["latency-histogram", "throughput", "stages", "acceptance", "cache"]) {
        const drawn = Number(attribute(dom, new RegExp(`<figure id="${id}"[^>]*data-drawn="(\\d+)"`)))
        assert.isAbove(drawn, 0, id)
      }
      // 4 draft positions → 4 bars; 2 stages → 2 bars
      assert.strictEqual(attribute(dom, /<figure id="acceptance"[^>]*data-drawn="(\d+)"/), "4")
      assert.strictEqual(attribute(dom, /<figure id="stages"[^>]*data-drawn="(\d+)"/), "2")
      const rects = (dom.match(/<rect /g) ?? []).length
      assert.isAbove(rects, 10)
    }))

  it("a run without stages or speculative statistics draws those charts empty, and says so", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-report-"))
    const file = Path.join(dir, "report.html")
    Fs.writeFileSync(
      file,
      PerfLogger.renderReportHtml([
        { type: "run_start", runId: "r", t: 0, pid: 1, node: "v24" },
        { type: "call", op: "complete", provider: "p", model: "m", start: 1, latencyMs: 10, ok: true, outputTokens: 3, inputTokens: 1 },
        { type: "call", op: "complete", provider: "p", model: "m", start: 2, latencyMs: 30, ok: true, outputTokens: 3, inputTokens: 1 },
        { type: "run_end", t: 40 }
      ])
    )
    const dom = dumpDom(file)
    assert.strictEqual(attribute(dom, /<body[^>]*data-charts-drawn="(\d+)"/), "3")
    assert.strictEqual(attribute(dom, /<figure id="stages"[^>]*data-drawn="(\d+)"/), "0")
    assert.strictEqual(attribute(dom, /<figure id="acceptance"[^>]*data-drawn="(\d+)"/), "0")
    assert.include(dom, "no stages recorded")
  })

  it("samples a large run's calls for the charts and says so", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-report-"))
    const file = Path.join(dir, "report.html")
    const events: Array<PerfLogger.Event> = [{ type: "run_start", runId: "big", t: 0, pid: 1, node: "v24" }]
    for (let index = 0; index < 25_000; index++) {
      events.push({
        type: "call",
        op: "complete",
        provider: "p",
        model: "m",
        start: index,
        latencyMs: 1 + (index % 50),
        ok: true,
        outputTokens: 2
      })
    }
    const html = PerfLogger.renderReportHtml(events)
    assert.include(html, "Charts use an even sample of 20000 of the 25000 calls")
    const embedded = JSON.parse(/<script type="application\/json" id="perf-data">(.*?)<\/script>/s.exec(html)![1]!)
    assert.strictEqual(embedded.points.length, 20_000 * 4)
    assert.strictEqual(embedded.pointWeight, 1.25)
    Fs.writeFileSync(file, html)
    const dom = dumpDom(file)
    assert.strictEqual(attribute(dom, /<body[^>]*data-charts-drawn="(\d+)"/), "3")
  })
  it("keeps a bounded, evenly spread set of points however long the run (each standing for more calls)", () => {
    const events: Array<PerfLogger.Event> = [{ type: "run_start", runId: "long", t: 0, pid: 1, node: "v24" }]
    for (let index = 0; index < 100_000; index++) {
      events.push({ type: "call", op: "complete", provider: "p", model: "m", start: index, latencyMs: 1, ok: true, outputTokens: 2 })
    }
    const html = PerfLogger.renderReportHtml(events)
    assert.include(html, "Charts use an even sample of 20000 of the 100000 calls")
    const embedded = JSON.parse(/<script type="application\/json" id="perf-data">(.*?)<\/script>/s.exec(html)![1]!)
    // the aggregator thinned its points twice (stride 4: 25,000 kept), the report sampled those
    assert.strictEqual(embedded.points.length, 20_000 * 4)
    assert.strictEqual(embedded.pointWeight, 5)
    const starts = embedded.points.filter((_: number, index: number) => index % 4 === 0) as Array<number>
    assert.strictEqual(starts[0], 0)
    assert.isAbove(starts[starts.length - 1]!, 99_000)
    for (let index = 1; index < starts.length; index++) {
      const gap = starts[index]! - starts[index - 1]!
      assert.isTrue(gap === 4 || gap === 8, `gap ${gap} at ${index}`)
    }
  })
})
