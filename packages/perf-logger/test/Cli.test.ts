import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { main } from "../src/cli.js"
import type { PerfLogger } from "../src/index.js"

const call = (start: number, latencyMs: number, outputTokens: number): PerfLogger.CallEvent => ({
  type: "call",
  op: "complete",
  provider: "p",
  model: "m",
  start,
  latencyMs,
  ok: true,
  inputTokens: 10,
  outputTokens
})

/** Writes a run folder with an events.jsonl of sequential calls of the given latencies. */
const writeRun = (root: string, runId: string, latencies: ReadonlyArray<number>, withSummary: boolean) => {
  const dir = Path.join(root, "performance_logs", runId)
  Fs.mkdirSync(dir, { recursive: true })
  const events: Array<PerfLogger.Event> = [{ type: "run_start", runId, t: 0, pid: 1, node: "v24" }]
  let t = 0
  for (const latency of latencies) {
    events.push(call(t, latency, 20))
    t += latency
  }
  events.push({ type: "run_end", t })
  Fs.writeFileSync(Path.join(dir, "events.jsonl"), events.map((event) => JSON.stringify(event)).join("\n") + "\n")
  if (withSummary) main(["report", dir], root)
  return dir
}

const row = (output: string, label: string) => {
  const line = output.split("\n").find((text) => text.startsWith(label + " "))
  assert.isDefined(line, `${label} row in\n${output}`)
  return line!.trim().split(/\s{2,}/)
}

describe("hasten-perf", () => {
  it("compare prints B/A ratios of two runs' summaries", () => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-cli-"))
    writeRun(root, "slow", [100, 100, 100, 100], true)
    writeRun(root, "fast", [50, 50, 50, 50], true)
    const { code, output } = main(["compare", "slow", "fast"], root)
    assert.strictEqual(code, 0, output)
    // latency halves, throughput doubles, wall time halves
    assert.deepStrictEqual(row(output, "latency p50"), ["latency p50", "100ms", "50ms", "0.50x"])
    assert.deepStrictEqual(row(output, "output tok/s"), ["output tok/s", "200.0", "400.0", "2.00x"])
    assert.deepStrictEqual(row(output, "requests/s"), ["requests/s", "10.0", "20.0", "2.00x"])
    assert.deepStrictEqual(row(output, "wall time"), ["wall time", "400ms", "200ms", "0.50x"])
    assert.deepStrictEqual(row(output, "calls"), ["calls", "4", "4", "1.00x"])
  })

  it("compare falls back to events.jsonl when a run has no summary.json (a crashed run)", () => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-cli-"))
    writeRun(root, "a", [10, 10], false)
    const b = writeRun(root, "b", [20, 20], false)
    const { code, output } = main(["compare", Path.join(root, "performance_logs", "a"), b], root)
    assert.strictEqual(code, 0, output)
    assert.deepStrictEqual(row(output, "latency p50"), ["latency p50", "10ms", "20ms", "2.00x"])
  })

  it("report regenerates summary.json and report.html", () => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-cli-"))
    const dir = writeRun(root, "r", [10, 30], false)
    const { code, output } = main(["report", "r"], root)
    assert.strictEqual(code, 0, output)
    const summary = JSON.parse(Fs.readFileSync(Path.join(dir, "summary.json"), "utf8"))
    assert.strictEqual(summary.overall.latencyMs.p90, 30)
    assert.include(Fs.readFileSync(Path.join(dir, "report.html"), "utf8"), "<!doctype html>")
    assert.include(output, "p/m")
  })

  it("names a missing run and rejects bad usage", () => {
    const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-cli-"))
    const missing = main(["compare", "nope", "nada"], root)
    assert.strictEqual(missing.code, 2)
    assert.match(missing.output, /^hasten-perf: no run at .*nope/)
    Fs.writeFileSync(Path.join(root, "foreign.json"), "{\"version\": 7}")
    const foreign = main(["summary", "foreign.json"], root)
    assert.strictEqual(foreign.code, 2)
    assert.match(foreign.output, /foreign\.json is not a perf-logger summary/)
    assert.strictEqual(main(["compare", "one"], root).code, 2)
    assert.match(main(["frobnicate"], root).output, /unknown command frobnicate/)
    const flag = main(["summary", "r", "--json"], root)
    assert.strictEqual(flag.code, 2)
    assert.match(flag.output, /^hasten-perf: Unknown option '--json'/)
    assert.strictEqual(main(["--help"], root).code, 0)
    assert.strictEqual(main(["-h"], root).code, 0)
  })
})
