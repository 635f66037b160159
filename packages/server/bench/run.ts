/**
 * What hasten-serve adds to a call, against the testkit simulator at zero latency (its own
 * process), measured in one run, interleaved request by request in rotating order:
 *   direct      the openai SDK calling the simulator
 *   bare proxy  the SDK through a minimal node:http keep-alive proxy (the floor for any gateway)
 *   routing     the SDK through hasten-serve, no middleware
 *   full        through hasten-serve with cache (a miss: every prompt new) + rate limit + perf logs
 *   cache hit   through hasten-serve, a prompt the cache has
 * then where the time goes (in-process: parse, validation, stack, upstream client,
 * serialisation) and 64 concurrent clients. hasten-serve runs as its CLI in its own process.
 * `npx -y pnpm@12.21.0 --filter @hasten/server bench [-- --quick]`. A table, then ONE JSON line.
 */
import { Cache } from "@hasten/cache"
import { CompletionRequest, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { OpenAi } from "@hasten/providers/openai"
import { RateLimit } from "@hasten/rate-limit"
import { Layer, ManagedRuntime } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import OpenAI from "openai"
import { OpenAiRequest } from "../src/index.js"

const quick = process.argv.includes("--quick")
const rounds = quick ? 150 : 500
const loadSeconds = quick ? 1.5 : 5
const children: Array<ChildProcess> = []
const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-server-bench-"))

const firstLine = (child: ChildProcess, what: string) =>
  new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.once("line", resolve)
    child.once("exit", (code) => reject(new Error(`${what} exited with ${code}`)))
  })

const startSimulator = async (): Promise<string> => {
  const cli = fileURLToPath(import.meta.resolve("@hasten/testkit/cli"))
  const child = spawn(process.execPath, [cli, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  return (JSON.parse(await firstLine(child, "simulator")) as { openaiBaseUrl: string }).openaiBaseUrl
}

const startServe = async (upstream: string): Promise<string> => {
  const config = Path.join(tmp, "serve.json")
  Fs.writeFileSync(
    config,
    JSON.stringify({
      port: 0,
      perfLogsDir: Path.join(tmp, "perf"),
      models: [
        { id: "routing", upstreams: [{ url: upstream, model: "gpt-4o-mini" }] },
        {
          id: "full",
          upstreams: [{ url: upstream, model: "gpt-4o-mini" }],
          middleware: { cache: `sqlite:${Path.join(tmp, "cache.db")}`, rateLimit: { requestsPerSecond: 1_000_000 }, perfLogs: true }
        }
      ]
    })
  )
  const serve = fileURLToPath(new URL("../src/serve.ts", import.meta.url))
  const child = spawn(process.execPath, [serve, "--config", config], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  const info = JSON.parse(await firstLine(child, "hasten-serve")) as { baseUrl: string }
  // wait until ready
  for (;;) {
    const ready = await fetch(`${info.baseUrl.replace(/\/v1$/, "")}/ready`).then((response) => response.ok, () => false)
    if (ready) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return info.baseUrl
}

/** The floor: a node:http proxy that pipes each request to the upstream over a keep-alive agent. */
const startBareProxy = (upstream: string): Promise<string> => {
  const target = new URL(upstream)
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 256 })
  const server = Http.createServer((request, response) => {
    const forward = Http.request({
      host: target.hostname,
      port: target.port,
      method: request.method,
      path: request.url,
      headers: request.headers,
      agent
    }, (upstreamResponse) => {
      response.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers)
      upstreamResponse.pipe(response)
    })
    forward.on("error", () => {
      response.writeHead(502)
      response.end()
    })
    request.pipe(forward)
  })
  server.keepAliveTimeout = 65_000
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`))
  )
}

const percentile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
const round = (value: number, digits = 3): number => Number(value.toFixed(digits))

const upstream = await startSimulator()
const proxyUrl = await startBareProxy(upstream)
const serveUrl = await startServe(upstream)

const client = (baseURL: string) => new OpenAI({ baseURL, apiKey: "bench", maxRetries: 0 })
const direct = client(upstream)
const proxy = client(proxyUrl)
const served = client(serveUrl)
const ask = (openai: OpenAI, model: string, content: string) =>
  openai.chat.completions.create({ model, messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 })

// warm up every path (JIT, sockets, the cache entry the hit path reads)
for (let index = 0; index < 50; index++) {
  await ask(direct, "gpt-4o-mini", `warm ${index}`)
  await ask(proxy, "gpt-4o-mini", `warm ${index}`)
  await ask(served, "routing", `warm ${index}`)
  await ask(served, "full", `warm ${index}`)
}
await ask(served, "full", "the cached question")

const variants = {
  direct: (index: number) => ask(direct, "gpt-4o-mini", `question ${index}`),
  bareProxy: (index: number) => ask(proxy, "gpt-4o-mini", `question ${index}`),
  routing: (index: number) => ask(served, "routing", `question ${index}`),
  full: (index: number) => ask(served, "full", `fresh question ${index}`),
  cacheHit: (_index: number) => ask(served, "full", "the cached question")
}
type Variant = keyof typeof variants
const names = Object.keys(variants) as Array<Variant>
const samples: Record<Variant, Array<number>> = { direct: [], bareProxy: [], routing: [], full: [], cacheHit: [] }
for (let index = 0; index < rounds; index++) {
  for (let offset = 0; offset < names.length; offset++) {
    const name = names[(index + offset) % names.length]!
    const start = performance.now()
    await variants[name](index)
    samples[name].push(performance.now() - start)
  }
}
const p50 = Object.fromEntries(names.map((name) => [name, percentile(samples[name], 0.5)])) as Record<Variant, number>
const p99 = Object.fromEntries(names.map((name) => [name, percentile(samples[name], 0.99)])) as Record<Variant, number>

// --- where the time goes, in this process ---------------------------------------------------
const body = JSON.stringify({ model: "full", messages: [{ role: "user", content: "fresh question 1" }], max_tokens: 8, temperature: 0 })
const micro = (count: number, run: (index: number) => void): number => {
  const times: Array<number> = []
  for (let index = 0; index < count; index++) {
    const start = performance.now()
    run(index)
    times.push(performance.now() - start)
  }
  return percentile(times, 0.5)
}
const parsed = JSON.parse(body) as Record<string, unknown>
const parseMs = micro(5000, () => JSON.parse(body))
let built: CompletionRequest.CompletionRequest | undefined
const validationMs = micro(5000, () => {
  const call = OpenAiRequest.decodeChat(parsed, OpenAiRequest.upstreamCapabilities)
  if (!(call instanceof Error)) built = new CompletionRequest.CompletionRequest(call.request)
})
if (built === undefined) throw new Error("the bench body did not validate")
const sampleResponse = {
  id: "chatcmpl-req_1",
  object: "chat.completion",
  created: 1,
  model: "full",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "a short answer of eight tokens", refusal: null },
    logprobs: null,
    finish_reason: "stop"
  }],
  usage: { prompt_tokens: 4, completion_tokens: 8, total_tokens: 12 }
}
const serialiseMs = micro(5000, () => JSON.stringify(sampleResponse))

// the stack over an upstream that answers at once: what cache (miss) + perf + rate limit add
const instant = Llm.Llm.layerEcho
const bare = ManagedRuntime.make(instant)
const stacked = ManagedRuntime.make(
  Llm.stack(
    instant,
    Cache.layer({ store: "sqlite", path: Path.join(tmp, "micro.db"), namespace: "micro" }),
    PerfLogger.layer,
    RateLimit.layer({ requestsPerSecond: 1_000_000, tokensPerMinute: Infinity, maxConcurrency: 256 })
  ).pipe(Layer.provide(PerfLogger.layerRun({ dir: Path.join(tmp, "perf-micro") })))
)
const timeRuntime = async (runtime: ManagedRuntime.ManagedRuntime<Llm.Llm, unknown>, count: number, tag: string) => {
  const times: Array<number> = []
  for (let index = 0; index < count; index++) {
    const request = CompletionRequest.user("gpt-4o-mini", `${tag} ${index}`, { maxTokens: 8, temperature: 0 })
    const start = performance.now()
    await runtime.runPromise(Llm.complete(request))
    times.push(performance.now() - start)
  }
  return percentile(times, 0.5)
}
await timeRuntime(bare, 300, "warm")
await timeRuntime(stacked, 300, "warm")
const bareRunMs = await timeRuntime(bare, 2000, "bare")
const stackRunMs = await timeRuntime(stacked, 2000, "stack")

// the upstream client: the OpenAI provider (official SDK) vs a raw fetch of the same body
const provider = ManagedRuntime.make(OpenAi.layer({ baseURL: upstream, apiKey: undefined }))
const rawFetch = async (index: number) => {
  const response = await fetch(`${upstream}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer bench" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `raw ${index}` }], max_tokens: 8, temperature: 0 })
  })
  await response.json()
}
const providerTimes: Array<number> = []
const fetchTimes: Array<number> = []
for (let index = 0; index < (quick ? 150 : 400); index++) {
  let start = performance.now()
  await provider.runPromise(Llm.complete(CompletionRequest.user("gpt-4o-mini", `client ${index}`, { maxTokens: 8, temperature: 0 })))
  providerTimes.push(performance.now() - start)
  start = performance.now()
  await rawFetch(index)
  fetchTimes.push(performance.now() - start)
}
const providerMs = percentile(providerTimes, 0.5)
const fetchMs = percentile(fetchTimes, 0.5)

// --- 64 concurrent clients through the full stack (misses) ----------------------------------------
const clients = Array.from({ length: 64 }, () => client(serveUrl))
let completed = 0
let errors = 0
const deadline = performance.now() + loadSeconds * 1000
await Promise.all(clients.map(async (openai, worker) => {
  let index = 0
  while (performance.now() < deadline) {
    try {
      await ask(openai, "full", `load ${worker} ${index++}`)
      completed++
    } catch {
      errors++
    }
  }
}))
const rps64 = completed / loadSeconds

for (const child of children) child.kill("SIGTERM")
await Promise.all([bare.dispose(), stacked.dispose(), provider.dispose()])

// --- report ---------------------------------------------------------------------------------------
const overhead = (name: Variant) => p50[name] - p50.direct
const rows: Array<[string, string, string, string]> = [
  ["direct (openai SDK → simulator)", `${round(p50.direct)} ms`, `${round(p99.direct)} ms`, "—"],
  ["bare node:http proxy (the floor)", `${round(p50.bareProxy)} ms`, `${round(p99.bareProxy)} ms`, `+${round(overhead("bareProxy"))} ms`],
  ["hasten-serve, routing only", `${round(p50.routing)} ms`, `${round(p99.routing)} ms`, `+${round(overhead("routing"))} ms`],
  ["hasten-serve, cache miss + rate limit + perf logs", `${round(p50.full)} ms`, `${round(p99.full)} ms`, `+${round(overhead("full"))} ms`],
  ["hasten-serve, cache hit", `${round(p50.cacheHit)} ms`, `${round(p99.cacheHit)} ms`, `${round(p50.cacheHit - p50.direct)} ms`]
]
const widths = [0, 1, 2, 3].map((column) => Math.max(...rows.map((row) => row[column].length), 12))
const line = (cells: ReadonlyArray<string>) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ")
console.log(`${rounds} rounds, interleaved; simulator at zero latency in its own process; hasten-serve as its CLI`)
console.log(line(["path", "p50", "p99", "added p50"]))
console.log(widths.map((width) => "-".repeat(width)).join("-|-"))
for (const row of rows) console.log(line(row))
console.log("")
console.log("where the time goes (p50, in-process):")
console.log(`  parse (JSON.parse of the body)                       ${round(parseMs * 1000, 1)} µs`)
console.log(`  validation (OpenAiRequest.decodeChat + CompletionRequest) ${round(validationMs * 1000, 1)} µs`)
console.log(
  `  stack: cache miss + perf logs + rate limit           ${round((stackRunMs - bareRunMs) * 1000, 1)} µs (over a bare Effect run of ${
    round(bareRunMs * 1000, 1)
  } µs)`
)
console.log(
  `  upstream client: OpenAi provider (SDK)               ${round(providerMs)} ms vs raw fetch ${round(fetchMs)} ms (+${
    round(providerMs - fetchMs)
  } ms)`
)
console.log(`  serialisation (JSON.stringify of the response)       ${round(serialiseMs * 1000, 1)} µs`)
console.log(`64 concurrent clients, ${loadSeconds} s, cache misses through the full stack: ${round(rps64, 0)} requests/s, ${errors} errors`)
const ratio = overhead("full") / overhead("bareProxy")
console.log(
  `added p50 with everything on: ${round(ratio, 2)}x the bare proxy's (goal ≤ 2x, aim 1.5x); cache hit ${
    p50.cacheHit < p50.direct ? "faster" : "slower"
  } than the direct call`
)
console.log(JSON.stringify({
  bench: "server",
  quick,
  overheadP50Ms: round(overhead("full")),
  routingOverheadP50Ms: round(overhead("routing")),
  bareProxyOverheadP50Ms: round(overhead("bareProxy")),
  ratioToBareProxy: round(ratio, 2),
  cacheHitP50Ms: round(p50.cacheHit),
  directP50Ms: round(p50.direct),
  rps64: round(rps64, 0),
  errors64: errors,
  breakdownUs: {
    parse: round(parseMs * 1000, 1),
    validation: round(validationMs * 1000, 1),
    stack: round((stackRunMs - bareRunMs) * 1000, 1),
    upstreamClientOverFetch: round((providerMs - fetchMs) * 1000, 1),
    serialisation: round(serialiseMs * 1000, 1)
  }
}))
Fs.rmSync(tmp, { recursive: true, force: true })
process.exit(0)
