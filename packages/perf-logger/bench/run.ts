/**
 * Cost of measuring: the same sequential workload with and without `PerfLogger.layer` +
 * `PerfLogger.layer` (writing events.jsonl to a temp folder), side by side in one process run.
 *
 *   1. the zero-latency `@hasten/testkit` simulator (its CLI, in its own process; an inline
 *      loopback server when testkit is not built) over real HTTP — the headline `overheadPct`;
 *   2. an in-process zero-latency fake `Llm` (no I/O at all) — the absolute CPU cost per call
 *      of measuring, where a relative overhead is meaningless.
 *
 * Modes: baseline, the baseline again on its own runtime (A/A: what the estimator reads with
 * nothing to measure, the run's noise floor), perf-logger with its defaults (10 ms group commit of events.jsonl), with
 * `flush: "event"` (one writeSync per event before the call returns), and with
 * `metrics: false` (run files only, no Effect metric updates). They take turns in blocks of
 * 20 calls, in rotating order, so machine load hits them alike. Two estimates of the wall
 * overhead: the ratio of the summed times, and the median over blocks of the ratio to the
 * baseline block next to it (robust to the load spikes that skew a sum). The headline
 * `overheadPct` is the median; both are printed. `--quick` runs 1,000 calls per mode instead
 * of 10,000.
 * Run with `pnpm bench` (from source), or `node bench/run.ts` after `tsup` in core, testkit and perf-logger.
 */
import { Completion, CompletionRequest, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { Effect, Layer, ManagedRuntime } from "effect"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const quick = process.argv.includes("--quick")
const calls = quick ? 1_000 : 10_000

// A zero-latency OpenAI-style chat completions server, in its own process.
const serverSource = `
const http = require("node:http")
const body = JSON.stringify({
  id: "c", object: "chat.completion", created: 0, model: "bench-model",
  choices: [{ index: 0, message: { role: "assistant", content: "ok ok ok" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 }
})
const server = http.createServer((request, response) => {
  request.resume()
  request.on("end", () => {
    response.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    response.end(body)
  })
})
server.keepAliveTimeout = 60000
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ url: "http://127.0.0.1:" + server.address().port })))
`

/** The testkit simulator CLI (its source under the `@hasten/source` condition, as `pnpm bench` runs it; else its build), or the inline server. */
const simulatorCli = (): string | undefined => {
  try {
    const cli = fileURLToPath(import.meta.resolve("@hasten/testkit/cli"))
    return Fs.existsSync(cli) ? cli : undefined
  } catch {
    return undefined
  }
}

const startServer = async () => {
  const cli = simulatorCli()
  const args = cli !== undefined ? [cli, "--port", "0"] : ["-e", serverSource]
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] })
  const lines = createInterface({ input: child.stdout! })
  const url = await new Promise<string>((resolve, reject) => {
    lines.once("line", (line) => resolve(JSON.parse(line).url as string))
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)))
  })
  return { url, kind: cli !== undefined ? "testkit simulator" : "inline loopback server", close: () => child.kill() }
}

/** A minimal `Llm` over the loopback server's `/v1/chat/completions`. */
const httpLlm = (url: string): Layer.Layer<Llm.Llm> =>
  Layer.succeed(
    Llm.Llm,
    Llm.fromComplete("loopback", (request: CompletionRequest.CompletionRequest) =>
      Effect.clockWith((clock) =>
        Effect.promise(async () => {
          const start = clock.currentTimeMillisUnsafe()
          const response = await fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: "Bearer bench" },
            body: JSON.stringify({ model: request.model, messages: request.messages, max_tokens: 8 })
          })
          const json = (await response.json()) as any
          const end = clock.currentTimeMillisUnsafe()
          return new Completion.Completion({
            text: json.choices[0].message.content,
            finishReason: json.choices[0].finish_reason === "length" ? "length" : "stop",
            usage: { inputTokens: json.usage.prompt_tokens, outputTokens: json.usage.completion_tokens },
            model: json.model,
            provider: "loopback",
            timing: { start, end }
          })
        })
      ))
  )

/** A zero-latency in-process fake. */
const fakeLlm: Layer.Layer<Llm.Llm> = Layer.succeed(
  Llm.Llm,
  Llm.fromComplete("fake", (request) =>
    Effect.succeed(
      new Completion.Completion({
        text: "ok ok ok",
        finishReason: "stop",
        usage: { inputTokens: 12, outputTokens: 3 },
        model: request.model,
        provider: "fake",
        timing: { start: 0, end: 0 }
      })
    ))
)

const request = CompletionRequest.user("bench-model", "say ok")

/** Calls per block: the modes take turns block by block, so all see the same machine load. */
const block = 20

const blockOfCalls = Effect.gen(function*() {
  const llm = yield* Llm.Llm
  for (let index = 0; index < block; index++) yield* llm.complete(request)
})

const logRoot = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-bench-"))
let runCounter = 0

type Mode = "baseline" | "baseline (A/A)" | "perf-logger" | "perf-logger flush:event" | "perf-logger metrics:false"

const stackFor = (mode: Mode, llm: Layer.Layer<Llm.Llm>): Layer.Layer<Llm.Llm, PerfLogger.PerfLoggerError> =>
  mode === "baseline" || mode === "baseline (A/A)"
    ? llm
    : PerfLogger.layer.pipe(
      Layer.provide(llm),
      Layer.provide(PerfLogger.layerRun({
        dir: logRoot,
        runId: `run-${runCounter++}`,
        console: false,
        report: false,
        summaryInterval: false,
        ...(mode === "perf-logger flush:event" ? { flush: "event" as const } : {}),
        ...(mode === "perf-logger metrics:false" ? { metrics: false } : {})
      }))
    )

/**
 * "baseline (A/A)" is the baseline again on its own runtime: its reading against the baseline
 * is the estimator's noise floor in this run (it would be 0 on a quiet, deterministic machine).
 */
const modes: ReadonlyArray<Mode> = ["baseline", "baseline (A/A)", "perf-logger", "perf-logger flush:event", "perf-logger metrics:false"]

interface Totals {
  wallMs: number
  /** CPU time of this (client) process: what measuring adds, whatever the server does. */
  cpuMs: number
  /** Per block: this mode's wall time over the baseline's in the same rotation. */
  ratios: Array<number>
}

/**
 * One run of `calls` calls per mode, each mode on its own runtime, interleaved block by block
 * in rotating order; wall and CPU time summed per mode (runtime start and close excluded).
 */
const measure = async (llm: Layer.Layer<Llm.Llm>) => {
  const runtimes = new Map(modes.map((mode) => [mode, ManagedRuntime.make(stackFor(mode, llm))]))
  const totals = new Map<Mode, Totals>(modes.map((mode) => [mode, { wallMs: 0, cpuMs: 0, ratios: [] }]))
  // warm-up: JIT, sockets, first events written
  for (let index = 0; index < 10; index++) for (const runtime of runtimes.values()) await runtime.runPromise(blockOfCalls)
  const blocks = Math.ceil(calls / block)
  for (let index = 0; index < blocks; index++) {
    const walls = new Map<Mode, number>()
    for (let turn = 0; turn < modes.length; turn++) {
      const mode = modes[(index + turn) % modes.length]!
      const runtime = runtimes.get(mode)!
      const cpu = process.cpuUsage()
      const start = performance.now()
      await runtime.runPromise(blockOfCalls)
      const wallMs = performance.now() - start
      const used = process.cpuUsage(cpu)
      const total = totals.get(mode)!
      total.wallMs += wallMs
      total.cpuMs += (used.user + used.system) / 1000
      walls.set(mode, wallMs)
    }
    for (const mode of modes) totals.get(mode)!.ratios.push(walls.get(mode)! / walls.get("baseline")!)
  }
  for (const runtime of runtimes.values()) await runtime.dispose()
  return totals
}

const server = await startServer()
// the simulator is a child process: never leave it running, whatever ends this one
process.on("exit", () => server.close())
const loopback = await measure(httpLlm(server.url))
server.close()
const inProcess = await measure(fakeLlm)

const pct = (base: number, value: number) => ((value - base) / base) * 100
const medianPct = (ratios: ReadonlyArray<number>) => {
  const sorted = [...ratios].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return (median - 1) * 100
}
const usPerCall = (ms: number) => (ms * 1000) / calls
const signed = (value: number, digits: number) => `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`

const rows: Array<Array<string>> = [[
  "upstream",
  "mode",
  "wall µs/call",
  "wall overhead (sum)",
  "(median of blocks)",
  "cpu µs/call",
  "cpu added µs/call"
]]
for (const [name, results] of [[server.kind, loopback], ["in-process fake", inProcess]] as const) {
  const base = results.get("baseline")!
  for (const mode of modes) {
    const value = results.get(mode)!
    rows.push([
      name,
      mode,
      usPerCall(value.wallMs).toFixed(2),
      mode === "baseline" ? "-" : `${signed(pct(base.wallMs, value.wallMs), 2)}%`,
      mode === "baseline" ? "-" : `${signed(medianPct(value.ratios), 2)}%`,
      usPerCall(value.cpuMs).toFixed(2),
      mode === "baseline" ? "-" : signed(usPerCall(value.cpuMs) - usPerCall(base.cpuMs), 2)
    ])
  }
}
console.log(
  `${calls} sequential calls per mode, the modes interleaved in blocks of ${block} calls; wall overhead as the ratio of sums and as the median of per-block ratios`
)
console.log(PerfLogger.renderTable(rows))
const events = Fs.readdirSync(logRoot).reduce(
  (sum, run) =>
    sum +
    Fs.readFileSync(Path.join(logRoot, run, "events.jsonl"), "utf8").split("\n").filter((line) => line.includes("\"type\":\"call\""))
      .length,
  0
)
console.log(`events written: ${events} call lines`)
Fs.rmSync(logRoot, { recursive: true, force: true })

const loopbackBase = loopback.get("baseline")!
const fakeBase = inProcess.get("baseline")!
const result = {
  bench: "perf-logger",
  calls,
  upstream: server.kind,
  overheadPct: Number(medianPct(loopback.get("perf-logger")!.ratios).toFixed(2)),
  overheadPctSum: Number(pct(loopbackBase.wallMs, loopback.get("perf-logger")!.wallMs).toFixed(2)),
  overheadPctFlushEvent: Number(medianPct(loopback.get("perf-logger flush:event")!.ratios).toFixed(2)),
  noiseFloorPct: Number(medianPct(loopback.get("baseline (A/A)")!.ratios).toFixed(2)),
  noiseFloorPctSum: Number(pct(loopbackBase.wallMs, loopback.get("baseline (A/A)")!.wallMs).toFixed(2)),
  cpuMicrosPerCall: Number((usPerCall(inProcess.get("perf-logger")!.cpuMs) - usPerCall(fakeBase.cpuMs)).toFixed(2)),
  overheadPctNoMetrics: Number(medianPct(loopback.get("perf-logger metrics:false")!.ratios).toFixed(2)),
  cpuMicrosPerCallNoMetrics: Number((usPerCall(inProcess.get("perf-logger metrics:false")!.cpuMs) - usPerCall(fakeBase.cpuMs)).toFixed(2)),
  cpuMicrosPerCallFlushEvent: Number((usPerCall(inProcess.get("perf-logger flush:event")!.cpuMs) - usPerCall(fakeBase.cpuMs)).toFixed(2)),
  baselineWallMicrosPerCall: Number(usPerCall(loopbackBase.wallMs).toFixed(1))
}
console.log(JSON.stringify(result))
