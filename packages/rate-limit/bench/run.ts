/**
 * Benchmark: a GSM8K-shaped workload (many short multi-turn calls) against the testkit
 * simulator in a separate process, admitting as OpenAI documents: each request is charged
 * at admission ceil(characters / 4) of its prompt plus `max_tokens`, not refunded; failed and
 * refused calls take a place in the request window ("unsuccessful requests contribute to
 * your per-minute limit"); latency and 2% injected 5xx. Side by side in one run:
 *   (a) naive: Promise.all over every call, OpenAI SDK default retries
 *   (b) before: 2 calls at a time, SDK default retries (the seeds' setup)
 *   (c) bottleneck: Bottleneck configured by hand with the same limits + p-retry
 *   (d) defaults: RateLimit.layer over the OpenAI provider, the limits configured and every
 *       other option at its default
 *   (e) zeroConfig: nothing configured, 60-second windows, the limits learnt from the headers
 *   (f) 3 processes sharing one key through Redis, limits configured (combined rate vs the
 *       limit in every window), and the same with nothing configured
 *   (g) hangs: 2% of calls never answered plus 2% 5xx/resets, against the same run without
 *       the hangs (default options: hung attempts are cut at the learnt deadline)
 *   (h) seed 000's scenario on Replicate (bench/replicate.ts): the seed's loop against
 *       Hasten with nothing configured, and with stuck predictions
 *       (`pnpm bench -- --only-replicate` runs it alone)
 * The provider declares what the simulator is: a server that admits and counts as OpenAI
 * does, with 2-second windows (`rateLimitPolicy: { ...RateLimitPolicy.openAi,
 * headerWindowMillis: 2000 }`) — a user of api.openai.com gets OpenAI's policy (minute
 * windows) without saying so. The 2-second window lets 3,000 calls span 15 windows in 30 s.
 *
 *   pnpm bench [-- --quick]           (from source: NODE_OPTIONS="--conditions=@hasten/source --import tsx")
 *
 * Prints a table and, last, one JSON line.
 */
import { CompletionRequest, Llm, RateLimitPolicy } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { RateLimit } from "@hasten/rate-limit"
import { RedisServer } from "@hasten/testkit"
import Bottleneck from "bottleneck"
import { Effect, Exit, Layer, Logger, Redacted } from "effect"
import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import OpenAI from "openai"
import pRetry from "p-retry"
import { replicateScenario } from "./replicate.js"
import { control, startSimulator } from "./simulator.js"

const here = dirname(fileURLToPath(import.meta.url))
const quick = process.argv.includes("--quick")
const API_KEY = "sk-bench"
const MODEL = "gpt-4o-mini"

// ---------------------------------------------------------------------------
// workload
// ---------------------------------------------------------------------------

interface Item {
  readonly messages: ReadonlyArray<{ readonly role: "system" | "user" | "assistant"; readonly content: string }>
  readonly maxTokens: number
}

const findData = (): string | undefined => {
  const fromEnv = process.env["HASTEN_DATA_DIR"]
  if (fromEnv !== undefined && existsSync(join(fromEnv, "gsm8k", "test.jsonl"))) return join(fromEnv, "gsm8k", "test.jsonl")
  let dir = here
  for (let i = 0; i < 8; i++) {
    for (const candidate of [join(dir, "shared", "data"), join(dir, "..", "shared", "data")]) {
      if (existsSync(join(candidate, "gsm8k", "test.jsonl"))) return join(candidate, "gsm8k", "test.jsonl")
    }
    dir = resolve(dir, "..")
  }
  return undefined
}

const questions = (): Array<string> => {
  const file = findData()
  if (file === undefined) {
    return Array.from(
      { length: 200 },
      (_, i) => `A farmer has ${i + 3} cows and buys ${i % 7 + 2} more each week for ${i % 5 + 1} weeks. How many cows?`
    )
  }
  return readFileSync(file, "utf8").split("\n").filter((line) => line.trim().length > 0).map((line) =>
    (JSON.parse(line) as { question: string }).question
  )
}

/** The seeds' GSM8K run: a question, the model's first attempt, a self-check turn. */
const workload = (n: number): Array<Item> => {
  const pool = questions()
  return Array.from({ length: n }, (_, i) => ({
    messages: [
      { role: "system", content: "You are a careful math tutor. Answer with the final number." },
      { role: "user", content: pool[i % pool.length]! },
      { role: "assistant", content: "Let me work through it step by step." },
      { role: "user", content: "Check your arithmetic and give only the final number." }
    ],
    maxTokens: 48
  }))
}

/** What the simulator charges at admission (`--prompt-charge characters`): ceil(prompt characters / 4) + max_tokens. */
const charged = (item: Item): number =>
  Math.ceil(item.messages.reduce((sum, message) => sum + message.content.length, 0) / 4) + item.maxTokens

// ---------------------------------------------------------------------------
// the simulator in its own process
// ---------------------------------------------------------------------------

interface Counters {
  readonly requests: number
  readonly admitted: number
  readonly http429: { readonly requests: number; readonly tokens: number; readonly quota: number; readonly concurrency: number }
  readonly faults: number
}
interface SimEvent {
  readonly t: number
  readonly status: number
  readonly reservedTokens: number
}

// ---------------------------------------------------------------------------
// the four ways to run the workload
// ---------------------------------------------------------------------------

interface Run {
  readonly name: string
  readonly wallMs: number
  readonly ok: number
  readonly failed: number
  readonly lost: number
  readonly http429: number
  readonly retries: number
  readonly efficiency: number
}

interface Setup {
  readonly url: string
  readonly items: ReadonlyArray<Item>
  readonly requestLimit: number
  readonly tokenLimit: number
  readonly windowMs: number
  readonly concurrency: number
  readonly latencyMs: number
}

const sdk = (url: string, maxRetries?: number) =>
  new OpenAI({ apiKey: API_KEY, baseURL: `${url}/v1`, ...(maxRetries !== undefined ? { maxRetries } : {}) })

const sdkCall = (client: OpenAI, item: Item) =>
  client.chat.completions.create({ model: MODEL, messages: [...item.messages], max_tokens: item.maxTokens, temperature: 0 })

const idealMs = (setup: Setup): number => {
  const n = setup.items.length
  const tokens = setup.items.reduce((sum, item) => sum + charged(item), 0)
  return Math.max(
    (n / setup.requestLimit) * setup.windowMs,
    (tokens / setup.tokenLimit) * setup.windowMs,
    (n * setup.latencyMs) / setup.concurrency
  )
}

const measure = async (
  name: string,
  setup: Setup,
  body: () => Promise<{ readonly ok: number; readonly failed: number; readonly lost: number }>
): Promise<Run> => {
  await control(setup.url, "/_hasten/reset", "POST")
  const start = performance.now()
  const outcome = await body()
  const wallMs = performance.now() - start
  const counters = await control<Counters>(setup.url, "/_hasten/counters")
  const http429 = counters.http429.requests + counters.http429.tokens + counters.http429.concurrency
  return {
    name,
    wallMs,
    ...outcome,
    http429,
    retries: counters.requests - setup.items.length,
    efficiency: idealMs(setup) / wallMs
  }
}

/** (a) Every call at once; the first failure rejects Promise.all and every result is lost. */
const naive = (setup: Setup) =>
  measure("naive", setup, async () => {
    const client = sdk(setup.url)
    const calls = setup.items.map((item) => sdkCall(client, item))
    const rejected = await Promise.all(calls).then(() => false, () => true)
    // The script is over (or crashed); wait for the stragglers so the next run starts quiet.
    const settled = await Promise.allSettled(calls)
    const failed = settled.filter((result) => result.status === "rejected").length
    return rejected ? { ok: 0, failed, lost: setup.items.length - failed } : { ok: setup.items.length, failed: 0, lost: 0 }
  })

/** A pool of `width` workers over the items; failures are recorded per item. */
const pool = async <A>(items: ReadonlyArray<A>, width: number, f: (item: A) => Promise<unknown>) => {
  let next = 0
  let ok = 0
  let failed = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const item = items[next++]!
      try {
        await f(item)
        ok++
      } catch {
        failed++
      }
    }
  }))
  return { ok, failed, lost: 0 }
}

/** (b) The seeds' "before": two at a time, SDK default retries. */
const before = (setup: Setup) =>
  measure("before", setup, () => {
    const client = sdk(setup.url)
    return pool(setup.items, 2, (item) => sdkCall(client, item))
  })

const retryable = (error: unknown): boolean => {
  const status = (error as { status?: number }).status
  return status === undefined || status === 429 || status >= 500
}

/** (c) Bottleneck with the same limits, by hand, plus p-retry. */
const bottleneck = (setup: Setup) =>
  measure("bottleneck", setup, async () => {
    const client = sdk(setup.url, 0)
    const requests = new Bottleneck({ maxConcurrent: setup.concurrency, minTime: setup.windowMs / setup.requestLimit })
    const tokens = new Bottleneck({
      reservoir: setup.tokenLimit,
      reservoirRefreshAmount: setup.tokenLimit,
      reservoirRefreshInterval: setup.windowMs
    })
    const result = await pool(setup.items, setup.items.length, (item) =>
      pRetry(
        () => tokens.schedule({ weight: charged(item) }, () => requests.schedule(() => sdkCall(client, item))),
        { retries: 6, minTimeout: 200, factor: 2, shouldRetry: ({ error }) => retryable(error) }
      ))
    await requests.stop({ dropWaitingJobs: false })
    await tokens.stop({ dropWaitingJobs: false })
    return result
  })

/**
 * The limits configured — what a user who knows their provider's limits writes — and every
 * other option at its default (no bench-only accounting, estimator or retry settings).
 */
const configuredOptions = (setup: Omit<Setup, "url" | "items">): RateLimit.Options => ({
  maxConcurrency: setup.concurrency,
  requestsPerMinute: setup.requestLimit,
  requestWindowMillis: setup.windowMs,
  tokensPerMinute: setup.tokenLimit,
  tokenWindowMillis: setup.windowMs,
  apiKey: API_KEY
})

/** Nothing configured: what a user who sets nothing gets. */
const zeroOptions: RateLimit.Options = {}

/** The simulator's window: two seconds, so that 3,000 calls span 15 windows in 30 s (OpenAI's minute would take 15 minutes). */
const WINDOW_MS = 2_000
/** OpenAI's policy with the simulator's window: its headers state limits per `WINDOW_MS`, not per minute. */
const simulatorPolicy: RateLimitPolicy.RateLimitPolicy = { ...RateLimitPolicy.openAi, headerWindowMillis: WINDOW_MS }

const hastenStack = (url: string, options: RateLimit.Options) =>
  RateLimit.layer(options).pipe(Layer.provide(OpenAi.layer({
    model: MODEL,
    apiKey: Redacted.make(API_KEY),
    baseURL: `${url}/v1`,
    rateLimitPolicy: simulatorPolicy
  })))

// The wait and backoff events go to the log; the bench keeps its output to the table.
const hastenCalls = (items: ReadonlyArray<Item>) =>
  Effect.forEach(
    items,
    (item) =>
      Effect.exit(
        Llm.complete(CompletionRequest.makeUnsafe({ model: MODEL, messages: item.messages, maxTokens: item.maxTokens, temperature: 0 }))
      ),
    { concurrency: "unbounded" }
  ).pipe(Effect.provide(Logger.layer([])))

/** (d), (e), (g) Hasten with the given options. */
const hasten = (name: string, setup: Setup, options: RateLimit.Options) =>
  measure(name, setup, async () => {
    const exits = await Effect.runPromise(hastenCalls(setup.items).pipe(Effect.provide(hastenStack(setup.url, options))))
    const ok = exits.filter(Exit.isSuccess).length
    return { ok, failed: exits.length - ok, lost: 0 }
  })

// ---------------------------------------------------------------------------
// three processes, one key, one Redis
// ---------------------------------------------------------------------------

interface WorkerOptions {
  readonly url: string
  /** `configured`: the limits set, defaults otherwise; `zero`: nothing set but Redis. */
  readonly mode: "configured" | "zero"
  readonly redisUrl: string
  readonly prefix: string
  /** This worker's share of `workload(n)`: items `from` to `to`. */
  readonly n: number
  readonly from: number
  readonly to: number
  readonly setup: Omit<Setup, "url" | "items">
}

const worker = async (options: WorkerOptions) => {
  const items = workload(options.n).slice(options.from, options.to)
  const layer = hastenStack(options.url, {
    ...(options.mode === "configured" ? configuredOptions(options.setup) : zeroOptions),
    redis: { url: options.redisUrl },
    redisPrefix: options.prefix
  })
  // Warm this process's HTTP client up under another API key (its own simulator budget),
  // so cold-start delays do not skew the shared run's arrival times.
  await pool(
    items.slice(0, 4),
    4,
    (item) => sdkCall(new OpenAI({ apiKey: "sk-warm-up", baseURL: `${options.url}/v1`, maxRetries: 0 }), item)
  )
  process.stdout.write("ready\n")
  await new Promise<void>((resolveGo) => process.stdin.once("data", () => resolveGo()))
  const exits = await Effect.runPromise(hastenCalls(items).pipe(Effect.provide(layer)))
  process.stdout.write(`${JSON.stringify({ ok: exits.filter(Exit.isSuccess).length, failed: exits.filter(Exit.isFailure).length })}\n`)
  process.exit(0)
}

const redisRun = async (setup: Setup, mode: WorkerOptions["mode"]) => {
  const redis = await RedisServer.start()
  try {
    const share = Math.ceil(setup.items.length / 3)
    const prefix = `bench-${Date.now()}:`
    const children = await Promise.all(
      [0, 1, 2].map((index) =>
        new Promise<{ readonly go: () => Promise<{ ok: number; failed: number }> }>((resolveReady, reject) => {
          const options: WorkerOptions = {
            url: setup.url,
            mode,
            redisUrl: redis.url,
            prefix,
            n: setup.items.length,
            from: index * share,
            to: Math.min(setup.items.length, (index + 1) * share),
            setup: {
              requestLimit: setup.requestLimit,
              tokenLimit: setup.tokenLimit,
              windowMs: setup.windowMs,
              concurrency: setup.concurrency,
              latencyMs: setup.latencyMs
            }
          }
          const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--worker", JSON.stringify(options)], {
            stdio: ["pipe", "pipe", "inherit"]
          })
          const lines = createInterface({ input: child.stdout! })
          let report: { ok: number; failed: number } | undefined
          const done = new Promise<{ ok: number; failed: number }>((resolveDone, rejectDone) =>
            child.once(
              "exit",
              (code) => (report === undefined ? rejectDone(new Error(`worker ${index} exited ${code}`)) : resolveDone(report))
            )
          )
          lines.on("line", (line) => {
            if (line === "ready") resolveReady({ go: () => (child.stdin!.write("go\n"), done) })
            else if (line.startsWith("{")) report = JSON.parse(line) as { ok: number; failed: number }
          })
          child.once("error", reject)
        })
      )
    )
    await control(setup.url, "/_hasten/reset", "POST")
    const start = performance.now()
    const reports = await Promise.all(children.map((child) => child.go()))
    const wallMs = performance.now() - start
    const events = (await control<Array<SimEvent>>(setup.url, "/_hasten/events")).filter((event) => event.status === 200)
    const counters = await control<Counters>(setup.url, "/_hasten/counters")
    // Requests in the window (t - W, t] ending at each admission, against the limit.
    let maxWindowRatio = 0
    let maxTokenRatio = 0
    let lo = 0
    let tokensInWindow = 0
    for (let hi = 0; hi < events.length; hi++) {
      tokensInWindow += events[hi]!.reservedTokens
      while (events[lo]!.t <= events[hi]!.t - setup.windowMs) {
        tokensInWindow -= events[lo]!.reservedTokens
        lo++
      }
      maxWindowRatio = Math.max(maxWindowRatio, (hi - lo + 1) / setup.requestLimit)
      maxTokenRatio = Math.max(maxTokenRatio, tokensInWindow / setup.tokenLimit)
    }
    return {
      processes: 3,
      wallMs,
      ok: reports.reduce((sum, report) => sum + report.ok, 0),
      failed: reports.reduce((sum, report) => sum + report.failed, 0),
      http429: counters.http429.requests + counters.http429.tokens + counters.http429.concurrency,
      maxWindowRatio,
      maxTokenRatio,
      efficiency: idealMs(setup) / wallMs
    }
  } finally {
    await redis.stop()
  }
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

const simulatorArgs = (options: {
  readonly requestLimit: number
  readonly tokenLimit: number
  readonly windowMs: number
  readonly faultRate: number
  readonly faultKinds: string
}) => [
  "--seed",
  "7",
  "--rpm",
  String(options.requestLimit),
  "--tpm",
  String(options.tokenLimit),
  "--window-ms",
  String(options.windowMs),
  "--ttft-ms",
  String(TTFT_MS),
  "--per-token-ms",
  String(PER_TOKEN_MS),
  "--jitter",
  "0.2",
  "--fault-rate",
  String(options.faultRate),
  "--fault-kinds",
  options.faultKinds,
  // As OpenAI documents: the prompt estimated from its characters, and "unsuccessful
  // requests contribute to your per-minute limit".
  "--prompt-charge",
  "characters",
  "--count-unsuccessful"
]

const TTFT_MS = 20
const PER_TOKEN_MS = 0.5

/** Starts a simulator, warms it and this process's HTTP client up, runs `f`, stops it. */
const withSimulator = async <A>(args: ReadonlyArray<string>, f: (url: string) => Promise<A>): Promise<A> => {
  const sim = await startSimulator(args)
  try {
    await pool(workload(8), 8, (item) => sdkCall(new OpenAI({ apiKey: "sk-warm-up", baseURL: `${sim.url}/v1`, maxRetries: 0 }), item))
      .catch(() => undefined)
    return await f(sim.url)
  } finally {
    sim.child.kill("SIGTERM")
  }
}

const tokenLimitFor = (items: ReadonlyArray<Item>, requestLimit: number) =>
  // Tokens bind about as hard as requests (the token ideal is 90% of the request ideal).
  Math.ceil((items.reduce((sum, item) => sum + charged(item), 0) * requestLimit) / (0.9 * items.length))

/** Seed 000's scenario on Replicate (bench/replicate.ts): its table rows, and its JSON. */
const replicate = async () => {
  const problems = quick ? 100 : 1000
  const { runs, summary } = await replicateScenario(questions(), problems)
  const pad = (text: string, width: number) => text.padEnd(width)
  console.log(
    `\nreplicate: seed 000's GSM8K self-correction, ${problems} problems x 3 turns to Llama-3-70B through the Replicate provider; ` +
      `simulator as Replicate documents, time scaled 1/100 (600 creations per 600 ms, ~45 ms answers, 1.2 s cold start, ` +
      `Prefer: wait held 600 ms, 2% faults)`
  )
  console.log(
    `${pad("variant", 20)}${pad("wall s", 9)}${pad("failed", 8)}${pad("429s", 7)}${pad("429 %", 8)}${pad("stuck", 7)}${
      pad("cancelled", 11)
    }orphaned`
  )
  for (const run of runs) {
    console.log(
      `${pad(run.name, 20)}${pad((run.wallMs / 1000).toFixed(2), 9)}${pad(String(run.failed), 8)}${pad(String(run.http429), 7)}${
        pad(run.http429Pct.toFixed(2), 8)
      }${pad(String(run.stuck), 7)}${pad(String(run.cancellations), 11)}${run.orphanedPredictions}`
    )
  }
  console.log(`speedup (before / hasten): ${summary.speedup}x`)
  return summary
}

const main = async () => {
  if (process.argv.includes("--only-replicate")) {
    const summary = await replicate()
    console.log(JSON.stringify({ bench: "rate-limit", quick, replicate: summary }))
    return
  }
  const n = quick ? 300 : 3000
  const windowMs = WINDOW_MS
  const requestLimit = quick ? 100 : 200
  const concurrency = 8
  const items = workload(n)
  const tokenLimit = tokenLimitFor(items, requestLimit)
  const latencyMs = TTFT_MS + PER_TOKEN_MS * 24
  const setupFor = (url: string): Setup => ({ url, items, requestLimit, tokenLimit, windowMs, concurrency, latencyMs })
  const log = (run: { readonly name: string; readonly wallMs: number; readonly efficiency: number; readonly http429: number }) =>
    console.error(`  ${run.name}: ${(run.wallMs / 1000).toFixed(2)} s, efficiency ${run.efficiency.toFixed(3)}, ${run.http429} x 429`)

  const { runs, redis, zero, redisZero } = await withSimulator(
    simulatorArgs({ requestLimit, tokenLimit, windowMs, faultRate: 0.02, faultKinds: "500,503" }),
    async (url) => {
      const setup = setupFor(url)
      const runs: Array<Run> = []
      // (a)-(d): the limits known to the user
      for (const variant of [naive, before, bottleneck, (s: Setup) => hasten("defaults", s, configuredOptions(s))]) {
        const run = await variant(setup)
        runs.push(run)
        log(run)
      }
      // (e) nothing configured: the limits are stated only in the headers
      const zero = await hasten("zeroConfig", setup, zeroOptions)
      log(zero)
      // (f) three processes over Redis, configured and not
      const redis = await redisRun(setup, "configured")
      log({ name: "redis x3", ...redis })
      const redisZero = await redisRun(setup, "zero")
      log({ name: "redis x3 zero", ...redisZero })
      return { runs, redis, zero, redisZero }
    }
  )

  // (g) Hung calls: 2% hangs + 2% 5xx/resets against 2% 5xx/resets alone, default options.
  const hangs = await withSimulator(
    simulatorArgs({ requestLimit, tokenLimit, windowMs, faultRate: 0.04, faultKinds: "hang,hang,500,reset" }),
    async (url) => hasten("hangs", setupFor(url), configuredOptions(setupFor(url)))
  )
  log(hangs)
  const noHangs = await withSimulator(
    simulatorArgs({ requestLimit, tokenLimit, windowMs, faultRate: 0.02, faultKinds: "500,reset" }),
    async (url) => hasten("no hangs", setupFor(url), configuredOptions(setupFor(url)))
  )
  log(noHangs)
  const replicateSummary = await replicate()

  const pad = (text: string, width: number) => text.padEnd(width)
  console.log(
    `\nrate-limit bench: ${n} GSM8K-shaped calls (4 messages, max_tokens 48) against an OpenAI-style simulator ` +
      `(prompt charged as ceil(characters / 4) + max_tokens at admission, unsuccessful requests counted, 2% injected 5xx)`
  )
  console.log(
    `limits ${requestLimit} requests and ${tokenLimit} tokens per ${windowMs / 1000} s window, stated in the ` +
      `headers; configured as well in defaults, redis x3, hangs and no hangs; nothing configured in zeroConfig and redis x3 zero`
  )
  // Efficiency only means something for a run that delivered every answer.
  console.log(
    `${pad("variant", 16)}${pad("wall s", 9)}${pad("efficiency", 12)}${pad("429s", 7)}${pad("429 %", 8)}${pad("retries", 9)}${
      pad("answers", 9)
    }${pad("failed", 8)}lost`
  )
  for (const run of [...runs, zero, hangs, noHangs]) {
    console.log(
      `${pad(run.name, 16)}${pad((run.wallMs / 1000).toFixed(2), 9)}${pad(run.efficiency.toFixed(3), 12)}${pad(String(run.http429), 7)}` +
        `${pad(((100 * run.http429) / n).toFixed(2), 8)}${pad(String(run.retries), 9)}${pad(String(run.ok), 9)}${
          pad(String(run.failed), 8)
        }${run.lost}`
    )
  }
  for (const [name, result] of [["redis x3", redis], ["redis x3 zero", redisZero]] as const) {
    console.log(
      `${pad(name, 16)}${pad((result.wallMs / 1000).toFixed(2), 9)}${pad(result.efficiency.toFixed(3), 12)}${
        pad(String(result.http429), 7)
      }` +
        `max requests/window ${result.maxWindowRatio.toFixed(3)} of the limit, max tokens/window ${
          result.maxTokenRatio.toFixed(3)
        }; ok ${result.ok}, failed ${result.failed}`
    )
  }
  const summary = (run: Run) => ({
    wallMs: Math.round(run.wallMs),
    efficiency: Number(run.efficiency.toFixed(3)),
    http429: run.http429,
    http429Pct: Number(((100 * run.http429) / n).toFixed(2)),
    retries: run.retries,
    answers: run.ok,
    failed: run.failed,
    lost: run.lost + run.failed
  })
  const byName = Object.fromEntries(runs.map((run) => [run.name, summary(run)]))
  const redisSummary = (result: typeof redis) => ({
    processes: 3,
    maxWindowRatio: Number(result.maxWindowRatio.toFixed(4)),
    maxTokenWindowRatio: Number(result.maxTokenRatio.toFixed(4)),
    efficiency: Number(result.efficiency.toFixed(3)),
    http429: result.http429,
    http429Pct: Number(((100 * result.http429) / n).toFixed(2)),
    ok: result.ok,
    failed: result.failed
  })
  console.log(JSON.stringify({
    bench: "rate-limit",
    quick,
    calls: n,
    defaults: byName["defaults"],
    zeroConfig: summary(zero),
    redis: redisSummary(redis),
    redisZeroConfig: redisSummary(redisZero),
    hangs: {
      answered: hangs.ok,
      lost: n - hangs.ok,
      wallRatio: Number((hangs.wallMs / noHangs.wallMs).toFixed(3)),
      retries: hangs.retries,
      wallMs: Math.round(hangs.wallMs),
      withoutHangsWallMs: Math.round(noHangs.wallMs)
    },
    replicate: replicateSummary,
    baselines: { naive: byName["naive"], before: byName["before"], bottleneck: byName["bottleneck"] }
  }))
}

const workerAt = process.argv.indexOf("--worker")
if (workerAt >= 0) {
  await worker(JSON.parse(process.argv[workerAt + 1]!) as WorkerOptions)
} else {
  await main()
}
