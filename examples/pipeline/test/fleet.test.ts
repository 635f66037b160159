/**
 * The pipeline on a fleet: a real redis-server, a `hasten-pipeline --worker` process run
 * from source, the OpenAI SDK against the testkit simulator. The coordinator's output is
 * the one-process run's output, row for row; a second distributed run reads every row back
 * from Redis without a model call.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { RedisServer, Simulator } from "@hasten/testkit"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { runDistributed } from "../src/Fleet.js"
import { type PipelineOptions, run } from "../src/Pipeline.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const dataset = Path.resolve(here, "..", "data", "records.jsonl")
const main = Path.resolve(here, "..", "src", "main.ts")

let redis: RedisServer.RedisServer
let sim: Simulator.Instance
let worker: ChildProcess | undefined
beforeAll(async () => {
  redis = await RedisServer.start()
  sim = await Simulator.start({ seed: 9, latency: { ttftMs: 20 } })
  Object.assign(process.env, { OPENAI_BASE_URL: sim.openaiBaseUrl, OPENAI_API_KEY: "sk-test", RPS_LIMIT: "1000", MAX_CONCURRENCY: "32" })
})
afterAll(async () => {
  if (worker !== undefined && worker.exitCode === null) {
    worker.kill("SIGKILL")
    await once(worker, "exit")
  }
  await sim?.close()
  await redis?.stop()
})

const options = (dir: string): PipelineOptions => ({
  dataset,
  provider: "openai",
  model: "gpt-4o-mini",
  filter: "rules",
  batchSize: 8,
  batchTimeoutSeconds: 0.01,
  batching: true,
  speculative: false,
  draftModel: undefined,
  cache: false,
  cachePath: Path.join(dir, "cache.db"),
  seed: 42,
  limit: 10,
  quick: true,
  out: Path.join(dir, "out.jsonl"),
  logDir: Path.join(dir, "logs"),
  skipBadLines: false,
  log: () => {}
})

describe("examples/pipeline --redis / --worker", () => {
  it.live("a worker process gives the one-process rows; a re-run reads them back without a call", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-fleet-"))
      const local = yield* run(options(dir))
      const calls = sim.counters().requests
      assert.isAbove(calls, 0)
      worker = spawn(process.execPath, [
        "--conditions=@hasten/source",
        "--import",
        "tsx",
        main,
        "--worker",
        "--redis",
        redis.url,
        "--provider",
        "openai",
        "--no-cache",
        "--log-dir",
        Path.join(dir, "worker-logs")
      ], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env } })
      const fleet = yield* runDistributed({ ...options(dir), out: Path.join(dir, "fleet.jsonl") }, redis.url)
      assert.deepStrictEqual(fleet.output, local.output)
      assert.strictEqual(sim.counters().requests, 2 * calls)
      assert.deepStrictEqual([...fleet.perWorker.values()].reduce((sum, count) => sum + count, 0), local.output.length)
      const again = yield* runDistributed({ ...options(dir), out: Path.join(dir, "again.jsonl") }, redis.url)
      assert.deepStrictEqual(again.output, local.output)
      assert.strictEqual(sim.counters().requests, 2 * calls)
    }), { timeout: 90_000 })
})
