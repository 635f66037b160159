/**
 * Providers benchmark (remote half): run as `node bench/run.ts [--quick]` after `tsup`
 * in core, testkit and providers.
 *
 * (c) Replicate streamed-output collection: the provider's collector (push tokens into an
 *     array, join once) against naive string concatenation and naive array spreading,
 *     in isolation and end to end over the simulator's SSE stream.
 * (f) Routing: 3 simulated OpenAI-compatible endpoints (one failing every call, each with a
 *     concurrency cap) through `Router.layer`, against a single endpoint and against naive
 *     round-robin over the same three.
 * Also runs the local provider's `bench/local.ts` as a child process when it exists and
 * includes its JSON, and (g) `bench/pool-size.ts` (ModelPool vs a new process per question
 * at real sizes, synthetic weights: `--shapes 42M,110M`, default `110M`, `--quick` → `15M`,
 * 3 prompts) as `poolBySize`, and (h) `bench/penalties-size.ts` (penalties on vs off at real sizes,
 * through Hasten and node-llama-cpp alone; default `42M`) as `penaltyRatioBySize`. Prints a
 * table, then ONE JSON line last.
 */
import { Completion, CompletionRequest, Llm } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { Replicate } from "@hasten/providers/replicate"
import { Router } from "@hasten/providers/router"
import { Simulator } from "@hasten/testkit"
import { Effect, Layer, Redacted, Stream } from "effect"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import ReplicateClient from "replicate"

const quick = process.argv.includes("--quick")
const here = dirname(fileURLToPath(import.meta.url))
const rows: Array<{ bench: string; variant: string; value: string; ratio: string }> = []
const result: Record<string, unknown> = { bench: "providers", quick }

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const time = (run: () => unknown, repeats: number): number => {
  for (let i = 0; i < 2; i++) run() // warm up the JIT before measuring
  const samples: Array<number> = []
  for (let i = 0; i < repeats; i++) {
    const start = performance.now()
    run()
    samples.push(performance.now() - start)
  }
  return median(samples)
}

const timeAsync = async (run: () => Promise<unknown>, repeats: number): Promise<number> => {
  const samples: Array<number> = []
  for (let i = 0; i < repeats; i++) {
    const start = performance.now()
    await run()
    samples.push(performance.now() - start)
  }
  return median(samples)
}

// ---------------------------------------------------------------------------------------
// (c) collection of streamed output
// ---------------------------------------------------------------------------------------
const collection = async () => {
  const tokenCount = quick ? 20_000 : 100_000
  const tokens = Simulator.tokenize("The quick brown fox jumps over the lazy dog and keeps running. ".repeat(Math.ceil(tokenCount / 12)))
    .slice(0, tokenCount)
  const expected = tokens.join("")

  // What the provider does: push each event's text, join once at the end.
  const hasten = () => {
    const parts: Array<string> = []
    for (const token of tokens) parts.push(token)
    return parts.join("")
  }
  // Naive: `text += token` on every event (V8 builds ropes, flattened on first read).
  const concat = () => {
    let text = ""
    for (const token of tokens) text += token
    return text.length === expected.length ? text : ""
  }
  // Naive concatenation that also reads the text on every event (a stop-sequence check,
  // a progress display): each read flattens V8's rope, so the whole text is copied per event.
  const concatRead = () => {
    let text = ""
    let hits = 0
    for (const token of spreadTokens) {
      text += token
      if (text.endsWith("\u0000")) hits++
    }
    return hits === 0 ? text : ""
  }
  // Naive immutable update: `output = [...output, token]` on every event (quadratic copying).
  const spreadLimit = quick ? 5_000 : 20_000
  const spreadTokens = tokens.slice(0, spreadLimit)
  const spread = () => {
    let output: Array<string> = []
    // oxlint-disable-next-line oxc/no-accumulating-spread -- the quadratic copy is what this measures
    for (const token of spreadTokens) output = [...output, token]
    return output.join("")
  }
  const hastenSpreadSize = () => {
    const parts: Array<string> = []
    for (const token of spreadTokens) parts.push(token)
    return parts.join("")
  }
  if (hasten() !== expected || concat() !== expected) throw new Error("collector mismatch")
  const repeats = quick ? 5 : 9
  const hastenMs = time(hasten, repeats)
  const concatMs = time(concat, repeats)
  const spreadMs = time(spread, 3)
  const concatReadMs = time(concatRead, 3)
  const hastenSpreadMs = time(hastenSpreadSize, repeats)

  // End to end: a long streamed answer through the simulator's SSE stream.
  const streamTokens = quick ? 2_000 : 8_000
  const answer = Simulator.tokenize("Tokens stream from the prediction one by one. ".repeat(Math.ceil(streamTokens / 9))).slice(
    0,
    streamTokens
  ).join("")
  const sim = await Simulator.start({ responder: () => answer })
  const token = Redacted.make("r8_bench")
  const llm = Replicate.make({ apiToken: token, baseUrl: sim.replicateBaseUrl })
  const request = CompletionRequest.user("meta/meta-llama-3-70b-instruct", "tell a long story")
  const viaProvider = async () => {
    const completion = await Effect.runPromise(Completion.fromStream(llm.stream(request), { model: request.model, provider: "replicate" }))
    if (completion.text !== answer) throw new Error("provider stream mismatch")
  }
  const sdk = new ReplicateClient({ auth: "r8_bench", baseUrl: sim.replicateBaseUrl, useFileOutput: false })
  const viaSdkSpread = async () => {
    let output: Array<string> = []
    // oxlint-disable-next-line oxc/no-accumulating-spread -- the quadratic copy is what this measures
    for await (const event of sdk.stream("meta/meta-llama-3-70b-instruct", { input: { prompt: "tell a long story" } })) {
      if (event.event === "output") output = [...output, event.data]
    }
    if (output.join("") !== answer) throw new Error("sdk stream mismatch")
  }
  const viaSdkConcat = async () => {
    let text = ""
    for await (const event of sdk.stream("meta/meta-llama-3-70b-instruct", { input: { prompt: "tell a long story" } })) {
      if (event.event === "output") text += event.data
    }
    if (text !== answer) throw new Error("sdk stream mismatch")
  }
  const e2eRepeats = quick ? 3 : 5
  await viaProvider()
  const providerMs = await timeAsync(viaProvider, e2eRepeats)
  const sdkConcatMs = await timeAsync(viaSdkConcat, e2eRepeats)
  const sdkSpreadMs = await timeAsync(viaSdkSpread, e2eRepeats)
  await sim.close()

  rows.push(
    { bench: "(c) collect", variant: `push+join, ${tokenCount} tokens`, value: `${hastenMs.toFixed(2)} ms`, ratio: "1.00x" },
    {
      bench: "(c) collect",
      variant: `text += token, ${tokenCount} tokens`,
      value: `${concatMs.toFixed(2)} ms`,
      ratio: `${(concatMs / hastenMs).toFixed(2)}x`
    },
    { bench: "(c) collect", variant: `push+join, ${spreadLimit} tokens`, value: `${hastenSpreadMs.toFixed(2)} ms`, ratio: "1.00x" },
    {
      bench: "(c) collect",
      variant: `[...output, token], ${spreadLimit} tokens`,
      value: `${spreadMs.toFixed(1)} ms`,
      ratio: `${(spreadMs / hastenSpreadMs).toFixed(0)}x`
    },
    {
      bench: "(c) collect",
      variant: `text += token + read per event, ${spreadLimit} tokens`,
      value: `${concatReadMs.toFixed(1)} ms`,
      ratio: `${(concatReadMs / hastenSpreadMs).toFixed(1)}x`
    },
    {
      bench: "(c) e2e SSE",
      variant: `Replicate.stream + fromStream, ${streamTokens} tokens`,
      value: `${providerMs.toFixed(1)} ms`,
      ratio: "1.00x"
    },
    {
      bench: "(c) e2e SSE",
      variant: "SDK replicate.stream (own SSE reader), +=",
      value: `${sdkConcatMs.toFixed(1)} ms`,
      ratio: `${(sdkConcatMs / providerMs).toFixed(2)}x`
    },
    {
      bench: "(c) e2e SSE",
      variant: "SDK replicate.stream (own SSE reader), spread",
      value: `${sdkSpreadMs.toFixed(1)} ms`,
      ratio: `${(sdkSpreadMs / providerMs).toFixed(2)}x`
    }
  )
  result.collection = {
    tokens: tokenCount,
    concatOverHasten: round(concatMs / hastenMs),
    spreadTokens: spreadLimit,
    spreadOverHasten: round(spreadMs / hastenSpreadMs),
    concatReadOverHasten: round(concatReadMs / hastenSpreadMs),
    e2eTokens: streamTokens,
    e2eSdkConcatOverProvider: round(sdkConcatMs / providerMs),
    e2eSdkSpreadOverProvider: round(sdkSpreadMs / providerMs)
  }
}

const round = (value: number): number => Math.round(value * 100) / 100

// ---------------------------------------------------------------------------------------
// (f) routing
// ---------------------------------------------------------------------------------------
const routing = async () => {
  const requests = quick ? 60 : 200
  const concurrency = 8
  const latency = { ttftMs: 15, perTokenMs: 1 }
  const limits = { maxConcurrency: 4 }
  const key = Redacted.make("sk-bench")
  const start = () =>
    Promise.all([
      Simulator.start({ latency, limits, faults: { rate: 1, kinds: ["500"] } }),
      Simulator.start({ latency, limits }),
      Simulator.start({ latency, limits })
    ])
  const work = Array.from({ length: requests }, (_, i) => CompletionRequest.user("gpt-4o-mini", `question ${i}`, { maxTokens: 24 }))

  const drive = async (layer: Layer.Layer<Llm.Llm>) => {
    const begin = performance.now()
    const outcomes = await Effect.runPromise(
      Effect.forEach(work, (request) => Effect.result(Llm.complete(request)), { concurrency }).pipe(Effect.provide(layer))
    )
    const ms = performance.now() - begin
    const ok = outcomes.filter((outcome) => outcome._tag === "Success").length
    return { ms, ok, successRate: ok / requests, successPerSecond: ok / (ms / 1000) }
  }
  const endpoint = (sim: Simulator.Instance) => OpenAi.layer({ apiKey: key, baseURL: sim.openaiBaseUrl })

  // single healthy endpoint
  let sims = await start()
  const single = await drive(endpoint(sims[1]!) as Layer.Layer<Llm.Llm>)
  await Promise.all(sims.map((sim) => sim.close()))

  // naive round-robin over the three (no failover, no cooldown)
  sims = await start()
  const services = sims.map((sim) => OpenAi.make({ apiKey: key, baseURL: sim.openaiBaseUrl }).llm)
  let turn = 0
  const roundRobin: Llm.LlmService = {
    name: "round-robin",
    complete: (request) => Effect.suspend(() => services[turn++ % services.length]!.complete(request)),
    stream: (request) => Stream.suspend(() => services[turn++ % services.length]!.stream(request))
  }
  const naive = await drive(Layer.succeed(Llm.Llm, roundRobin))
  await Promise.all(sims.map((sim) => sim.close()))

  // Router over the three, one failing
  sims = await start()
  const routed = await drive(Router.layer({
    endpoints: [
      { name: "failing", layer: endpoint(sims[0]!) },
      { name: "healthy-1", layer: endpoint(sims[1]!) },
      { name: "healthy-2", layer: endpoint(sims[2]!) }
    ],
    cooldown: "30 seconds"
  }) as Layer.Layer<Llm.Llm>)
  const failingHits = sims[0]!.counters().requests
  await Promise.all(sims.map((sim) => sim.close()))

  const pct = (value: number) => `${(value * 100).toFixed(0)}% ok`
  rows.push(
    {
      bench: "(f) routing",
      variant: `single endpoint (cap 4), ${requests} req @${concurrency}`,
      value: `${pct(single.successRate)}, ${single.successPerSecond.toFixed(0)} ok/s`,
      ratio: "1.00x"
    },
    {
      bench: "(f) routing",
      variant: "naive round-robin over 3, one failing",
      value: `${pct(naive.successRate)}, ${naive.successPerSecond.toFixed(0)} ok/s`,
      ratio: `${(naive.successPerSecond / single.successPerSecond).toFixed(2)}x`
    },
    {
      bench: "(f) routing",
      variant: "Router over 3, one failing",
      value: `${pct(routed.successRate)}, ${routed.successPerSecond.toFixed(0)} ok/s`,
      ratio: `${(routed.successPerSecond / single.successPerSecond).toFixed(2)}x`
    }
  )
  result.routing = {
    requests,
    concurrency,
    singleSuccessRate: round(single.successRate),
    roundRobinSuccessRate: round(naive.successRate),
    routerSuccessRate: round(routed.successRate),
    routerOverSingleThroughput: round(routed.successPerSecond / single.successPerSecond),
    routerOverRoundRobinThroughput: round(routed.successPerSecond / naive.successPerSecond),
    failingEndpointRequests: failingHits
  }
}

// ---------------------------------------------------------------------------------------
// the local provider's benchmark, as a child process
// ---------------------------------------------------------------------------------------
const childJson = async (name: string, args: ReadonlyArray<string>): Promise<unknown> => {
  const script = join(here, name)
  if (!existsSync(script)) return null
  const output = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd: join(here, ".."),
      stdio: ["ignore", "pipe", "inherit"]
    })
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
      process.stdout.write(chunk)
    })
    child.on("close", (code) => resolve({ code, stdout }))
  })
  const last = output.stdout.trim().split("\n").reverse().find((line) => line.trim().startsWith("{"))
  try {
    return last === undefined ? { error: `bench/${name} exited ${output.code} without JSON` } : JSON.parse(last)
  } catch {
    return { error: `bench/${name} printed no parsable JSON (exit ${output.code})` }
  }
}

const local = async () => {
  result.local = await childJson("local.ts", quick ? ["--quick"] : [])
}

// (g) ModelPool vs reload per call (a new process per question) at real sizes
const poolSize = async () => {
  const at = process.argv.indexOf("--shapes")
  const shapes = at >= 0 ? ["--shapes", process.argv[at + 1]!] : []
  const output = await childJson("pool-size.ts", [...(quick ? ["--quick"] : []), ...shapes]) as { poolBySize?: unknown } | null
  result.poolBySize = output?.poolBySize ?? output
}

// (h) penalties on vs off at real sizes
const penaltiesSize = async () => {
  const at = process.argv.indexOf("--shapes")
  const shapes = at >= 0 ? ["--shapes", process.argv[at + 1]!] : []
  const output = await childJson("penalties-size.ts", [...(quick ? ["--quick"] : []), ...shapes]) as
    | { penaltyRatioBySize?: unknown }
    | null
  result.penaltyRatioBySize = output?.penaltyRatioBySize ?? output
}

await collection()
await routing()
await local()
await poolSize()
await penaltiesSize()

const widths = [14, 52, 28, 8]
const line = (cells: ReadonlyArray<string>) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")
console.log(line(["bench", "variant", "measured", "ratio"]))
console.log(widths.map((width) => "-".repeat(width)).join("-|-"))
for (const row of rows) console.log(line([row.bench, row.variant, row.value, row.ratio]))
console.log(
  "ratios: (c) collect rows are time over push+join (higher = naive is slower); (f) rows are successful requests/s over the single endpoint"
)
console.log(JSON.stringify(result))
