/**
 * Seed 000's own scenario, on Replicate: a GSM8K self-correction run — each problem asked,
 * then told to check its work twice, every turn sent after the previous answer (3 calls a
 * problem) — to Llama-3-70B through the Replicate provider, against the testkit Replicate
 * simulator behaving as Replicate documents, with time scaled 1/100 so that 3,000 calls
 * take a minute rather than hours:
 *   - 600 predictions created per minute (Replicate's documented limit) → 600 per 600 ms;
 *     a 429 says when to retry ("Expected available in 1 second", `retry-after`);
 *   - an answer in about 4.5 s (0.6 s to the first token) → about 45 ms;
 *   - a 2-minute cold start → 1.2 s; `Prefer: wait` held at most 60 s → 600 ms, then polling;
 *   - 2% of calls fail: a 500 on create, or the prediction failing halfway (a CUDA error).
 * Side by side, each against a fresh simulator:
 *   before: the seed's loop — the official SDK's `replicate.run` (Prefer: wait, polling, its
 *           own 429 retries), 2 problems at a time (the seeds' MAX_CONCURRENCY), no limiter;
 *   hasten: `RateLimit.layer()` with nothing configured over `Replicate.layer` — every
 *           problem at once, admitted by Replicate's documented limit, one retry layer;
 *   stuck:  hasten again with 1% more of the predictions stuck in `starting` forever (a
 *           Replicate failure mode): each cut at the learnt deadline, cancelled, retried.
 * The provider declares what the simulator is (Replicate's policy with the scaled window),
 * as the OpenAI scenarios declare their 2-second windows; nothing else is configured.
 */
import { CompletionRequest, Llm, RateLimitPolicy } from "@hasten/core"
import { Replicate } from "@hasten/providers/replicate"
import { Effect, Exit, Layer, Logger, Redacted } from "effect"
import ReplicateClient from "replicate"
import { RateLimit } from "../src/index.js"
import { control, startSimulator } from "./simulator.js"

const TOKEN = "r8_bench"
const MODEL = "meta/meta-llama-3-70b-instruct"
const MAX_TOKENS = 256
/** Replicate's minute, scaled 1/100. */
const WINDOW_MS = 600
const TURNS = 3

/** What the simulator is: Replicate's policy, its documented 600 creations per (scaled) minute. */
const simulatorPolicy: RateLimitPolicy.RateLimitPolicy = {
  ...RateLimitPolicy.replicate,
  documentedLimits: { requests: 600, windowMillis: WINDOW_MS }
}

const simulatorArgs = (stuckRate: number) => {
  // 2% faults (500 on create, a prediction failing halfway), plus the stuck ones
  const faultRate = 0.02 + stuckRate
  const kinds = stuckRate === 0 ? "500,midstream" : "500,midstream,hang"
  return [
    "--seed",
    "11",
    "--rpm",
    "600",
    "--window-ms",
    String(WINDOW_MS),
    "--count-unsuccessful",
    "--ttft-ms",
    "6",
    "--per-token-ms",
    "1.6",
    "--jitter",
    "0.3",
    "--replicate-cold-start-ms",
    "1200",
    "--replicate-max-wait-ms",
    "600",
    "--fault-rate",
    String(faultRate),
    // hang is drawn with the same weight as each other kind: 3 kinds at 3% is 1% stuck
    "--fault-kinds",
    kinds
  ]
}

type Message = CompletionRequest.Message

const firstTurn = (question: string): Array<Message> => [
  { role: "system", content: "You are a careful math tutor. Solve the problem step by step and end with 'The answer is N'." },
  { role: "user", content: question }
]
const nextTurn = (messages: ReadonlyArray<Message>, answer: string): Array<Message> => [
  ...messages,
  { role: "assistant", content: answer },
  { role: "user", content: "Check your work. If it is wrong, correct it, and end with 'The answer is N'." }
]
const requestOf = (messages: ReadonlyArray<Message>) =>
  CompletionRequest.makeUnsafe({ model: MODEL, messages, maxTokens: MAX_TOKENS, temperature: 0 })

interface Counters {
  readonly requests: number
  readonly http429: { readonly requests: number }
  readonly faults: number
  readonly cancellations: number
  readonly coldStarts: number
  readonly faultsByKind: Record<string, number>
}

/** One variant's outcome. */
export interface ReplicateRun {
  readonly name: string
  readonly wallMs: number
  readonly problems: number
  /** Problems that did not get all their turns answered. */
  readonly failed: number
  readonly calls: number
  readonly http429: number
  readonly http429Pct: number
  /** Predictions still `starting` or `processing` once the run is over: running and billing for nobody. */
  readonly orphanedPredictions: number
  readonly stuck: number
  readonly cancellations: number
  readonly coldStarts: number
}

const measure = async (
  name: string,
  stuckRate: number,
  problems: ReadonlyArray<string>,
  body: (url: string) => Promise<number>
): Promise<ReplicateRun> => {
  const sim = await startSimulator(simulatorArgs(stuckRate))
  try {
    const start = performance.now()
    const failed = await body(sim.url)
    const wallMs = performance.now() - start
    const counters = await control<Counters>(sim.url, "/_hasten/counters")
    const list = await (await fetch(`${sim.url}/v1/predictions`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as {
      results: Array<{ status: string }>
    }
    const orphaned = list.results.filter((prediction) => prediction.status === "starting" || prediction.status === "processing").length
    const calls = problems.length * TURNS
    return {
      name,
      wallMs,
      problems: problems.length,
      failed,
      calls,
      http429: counters.http429.requests,
      http429Pct: Number(((100 * counters.http429.requests) / calls).toFixed(2)),
      orphanedPredictions: orphaned,
      stuck: counters.faultsByKind["hang"] ?? 0,
      cancellations: counters.cancellations,
      coldStarts: counters.coldStarts
    }
  } finally {
    sim.child.kill("SIGTERM")
  }
}

/** The seed's loop: `replicate.run` per turn, 2 problems at a time; a problem whose call throws is recorded as failed. */
const before = (problems: ReadonlyArray<string>) =>
  measure("before", 0, problems, async (url) => {
    const client = new ReplicateClient({ auth: TOKEN, baseUrl: `${url}/v1` })
    let next = 0
    let failed = 0
    await Promise.all(Array.from({ length: 2 }, async () => {
      while (next < problems.length) {
        let messages = firstTurn(problems[next++]!)
        try {
          for (let turn = 0; turn < TURNS; turn++) {
            const output = await client.run(MODEL, { input: Replicate.toInput(requestOf(messages), MODEL) })
            messages = nextTurn(messages, Replicate.joinOutput(output))
          }
        } catch {
          failed++
        }
      }
    }))
    return failed
  })

/** Hasten with nothing configured: every problem at once through RateLimit over the Replicate provider. */
const hasten = (name: string, stuckRate: number, problems: ReadonlyArray<string>) =>
  measure(name, stuckRate, problems, async (url) => {
    const layer = RateLimit.layer().pipe(Layer.provide(Replicate.layer({
      apiToken: Redacted.make(TOKEN),
      baseUrl: `${url}/v1`,
      model: MODEL,
      rateLimitPolicy: simulatorPolicy
    })))
    const solve = (question: string) =>
      Effect.gen(function*() {
        let messages = firstTurn(question)
        for (let turn = 0; turn < TURNS; turn++) {
          const completion = yield* Llm.complete(requestOf(messages))
          messages = nextTurn(messages, completion.text)
        }
      })
    const exits = await Effect.runPromise(
      Effect.forEach(problems, (question) => Effect.exit(solve(question)), { concurrency: "unbounded" }).pipe(
        Effect.provide(layer),
        // the one-line wait and retry events go to the log; the bench keeps its output to the table
        Effect.provide(Logger.layer([]))
      )
    )
    return exits.filter(Exit.isFailure).length
  })

/** The three runs and the summary the bench's JSON line carries as `replicate`. */
export const replicateScenario = async (questions: ReadonlyArray<string>, count: number) => {
  const problems = Array.from({ length: count }, (_, i) => questions[i % questions.length]!)
  const runs: Array<ReplicateRun> = []
  for (const run of [() => before(problems), () => hasten("hasten", 0, problems), () => hasten("hasten, 1% stuck", 0.01, problems)]) {
    const result = await run()
    console.error(
      `  replicate ${result.name}: ${(result.wallMs / 1000).toFixed(2)} s, ${result.failed} failed, ${result.http429} x 429, ` +
        `${result.orphanedPredictions} orphaned`
    )
    runs.push(result)
  }
  const [baseline, withHasten, stuck] = runs as [ReplicateRun, ReplicateRun, ReplicateRun]
  return {
    runs,
    summary: {
      problems: count,
      calls: count * TURNS,
      speedup: Number((baseline.wallMs / withHasten.wallMs).toFixed(2)),
      failed: withHasten.failed + stuck.failed,
      http429Pct: withHasten.http429Pct,
      orphanedPredictions: withHasten.orphanedPredictions + stuck.orphanedPredictions,
      before: { wallMs: Math.round(baseline.wallMs), failed: baseline.failed, http429Pct: baseline.http429Pct },
      hasten: { wallMs: Math.round(withHasten.wallMs), failed: withHasten.failed, http429Pct: withHasten.http429Pct },
      stuck: {
        wallMs: Math.round(stuck.wallMs),
        failed: stuck.failed,
        stuckPredictions: stuck.stuck,
        cancelled: stuck.cancellations,
        orphanedPredictions: stuck.orphanedPredictions,
        wallRatio: Number((stuck.wallMs / withHasten.wallMs).toFixed(3))
      }
    }
  }
}
