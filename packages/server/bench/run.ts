/**
 * What hasten-serve adds to a call, against the testkit simulator at zero latency (its own
 * process), measured in one run, interleaved request by request in rotating order:
 *   direct      the openai SDK calling the simulator
 *   bare proxy  the SDK through a minimal node:http keep-alive proxy in its own process (the floor)
 *   routing     the SDK through hasten-serve, no middleware
 *   full        through hasten-serve with cache (a miss: every prompt new) + rate limit + perf logs
 *   cache hit   through hasten-serve, a prompt the cache has
 * then where the time goes (in-process: parse, validation, stack, upstream client,
 * serialisation) and 64 concurrent clients. hasten-serve runs as its CLI in its own process.
 * `npx -y pnpm@12.21.0 --filter @hasten/server bench [-- --quick]`. A table, then ONE JSON line.
 */
import { CompletionRequest, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { OpenAi } from "@hasten/providers/openai"
import { Layer, ManagedRuntime } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import OpenAI from "openai"
import { Gateway, OpenAiRequest, ServerConfig } from "../src/index.js"

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

/**
 * The floor: a node:http proxy that pipes each request to the upstream over a keep-alive
 * agent, in its own process like hasten-serve (so both pay the same process hop).
 */
const proxySource = `
const Http = require("node:http")
const target = new URL(process.argv[1])
const agent = new Http.Agent({ keepAlive: true, maxSockets: 1024 })
const server = Http.createServer((request, response) => {
  const forward = Http.request({ host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers, agent }, (upstream) => {
    response.writeHead(upstream.statusCode ?? 502, upstream.headers)
    upstream.pipe(response)
  })
  forward.on("error", () => { response.writeHead(502); response.end() })
  request.pipe(forward)
})
server.keepAliveTimeout = 65000
server.listen(0, "127.0.0.1", () => console.log(server.address().port))
`
const startBareProxy = async (upstream: string): Promise<string> => {
  // plain JavaScript: no loader needed
  const child = spawn(process.execPath, ["-e", proxySource, upstream], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, NODE_OPTIONS: "" }
  })
  children.push(child)
  return `http://127.0.0.1:${await firstLine(child, "bare proxy")}/v1`
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

// each middleware's share, in this process, over the same lean upstream client hasten-serve
// uses, calling the simulator: what a call costs with it minus without it
const stackOf = (middleware: Record<string, unknown>) =>
  ManagedRuntime.make(
    Gateway.servedModels(ServerConfig.decode({
      perfLogsDir: Path.join(tmp, "perf-micro"),
      middleware,
      models: [{ id: "m", upstreams: [{ url: upstream, model: "gpt-4o-mini" }] }]
    }))[0]!.layer.pipe(Layer.provide(PerfLogger.layerRun({ dir: Path.join(tmp, "perf-micro") }))) as Layer.Layer<Llm.Llm, unknown>
  )
const stacks = {
  none: stackOf({}),
  cacheMiss: stackOf({ cache: `sqlite:${Path.join(tmp, "micro.db")}` }),
  perfLogs: stackOf({ perfLogs: true }),
  rateLimit: stackOf({ rateLimit: { requestsPerSecond: 1_000_000 } }),
  all: stackOf({ cache: `sqlite:${Path.join(tmp, "micro-all.db")}`, perfLogs: true, rateLimit: { requestsPerSecond: 1_000_000 } })
}
type StackName = keyof typeof stacks
const stackTimes: Record<StackName, Array<number>> = { none: [], cacheMiss: [], perfLogs: [], rateLimit: [], all: [] }
const stackNames = Object.keys(stacks) as Array<StackName>
for (let index = 0; index < (quick ? 200 : 600); index++) {
  for (const name of stackNames) {
    const request = CompletionRequest.user("m", `stack ${index}`, { maxTokens: 8, temperature: 0 })
    const start = performance.now()
    await stacks[name].runPromise(Llm.complete(request))
    if (index >= 20) stackTimes[name].push(performance.now() - start)
  }
}
const stackP50 = Object.fromEntries(stackNames.map((name) => [name, percentile(stackTimes[name], 0.5)])) as Record<StackName, number>
const share = (name: StackName) => (stackP50[name] - stackP50.none) * 1000

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
await Promise.all([...Object.values(stacks).map((runtime) => runtime.dispose()), provider.dispose()])

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
  `  stack over the upstream client (${round(stackP50.none)} ms): cache miss (SQLite) +${round(share("cacheMiss"), 0)} µs, perf logs +${
    round(share("perfLogs"), 0)
  } µs, rate limit +${round(share("rateLimit"), 0)} µs; all three +${round(share("all"), 0)} µs`
)
console.log(
  `  upstream client: the SDK (OpenAi provider, streams)  ${round(providerMs)} ms vs raw fetch ${round(fetchMs)} ms (+${
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
    stackCacheMiss: round(share("cacheMiss"), 0),
    stackPerfLogs: round(share("perfLogs"), 0),
    stackRateLimit: round(share("rateLimit"), 0),
    stackAll: round(share("all"), 0),
    upstreamClientOverFetch: round((providerMs - fetchMs) * 1000, 1),
    serialisation: round(serialiseMs * 1000, 1)
  }
}))
Fs.rmSync(tmp, { recursive: true, force: true })
process.exit(0)
