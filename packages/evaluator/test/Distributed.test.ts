/**
 * Distributed runs on real parts: a real redis-server, `hasten-eval worker` processes
 * run from source, an OpenAI-SDK candidate against the testkit simulator. The report of
 * a run on the fleet is the report of the same run in one process; a worker killed with
 * SIGKILL mid-run and a coordinator killed and restarted lose nothing and duplicate
 * nothing; an unreachable Redis is one line naming the URL without its password.
 */
import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import { Command } from "@hasten/evaluator"
import { RedisServer, Simulator } from "@hasten/testkit"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url))
const dir = mkdtempSync(Path.join(tmpdir(), "hasten-dist-"))
const dataset = (name: string, count: number) => {
  const file = Path.join(dir, `${name}.jsonl`)
  writeFileSync(
    file,
    Array.from({ length: count }, (_, i) => JSON.stringify({ question: `${name}: what is ${i} + ${i}?`, answer: String(2 * i) })).join(
      "\n"
    ) + "\n"
  )
  return file
}

let redis: RedisServer.RedisServer
const children: Array<ChildProcess> = []
const outputs: Array<() => string> = []
beforeAll(async () => {
  redis = await RedisServer.start()
})
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL")
      await once(child, "exit")
    }
  }
})
afterAll(async () => {
  await redis?.stop()
})

const env = (sim: Simulator.Instance) => ({
  ...process.env,
  OPENAI_BASE_URL: sim.openaiBaseUrl,
  OPENAI_API_KEY: "sk-test",
  CI: "1",
  MAX_CONCURRENCY: "16",
  RPS_LIMIT: "1000",
  TPM_LIMIT: "100000000",
  // short locks, so a killed worker's items come back within seconds
  HASTEN_WORKERS_LOCK_MS: "1500",
  HASTEN_WORKERS_STALLED_MS: "500"
})

/** Runs `src/cli.ts` from source in its own Node process. */
const launch = (args: ReadonlyArray<string>, environment: NodeJS.ProcessEnv) => {
  const child = spawn(process.execPath, ["--conditions=@hasten/source", "--import", "tsx", cli, ...args], {
    env: environment,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  children.push(child)
  outputs.push(() => output)
  return { child, output: () => output }
}

const worker = (name: string, sim: Simulator.Instance, concurrency = 4) =>
  launch(["worker", "--redis", redis.url, "--name", name, "--no-cache", "--concurrency", String(concurrency)], env(sim))

/** Waits until every worker process has loaded and connected (slow on a busy machine). */
const ready = (...workers: ReadonlyArray<{ readonly output: () => string }>) =>
  until(() => workers.every((one) => one.output().includes("serving runs on")), "the workers to start", 100_000)

const until = async (condition: () => boolean, what: string, timeoutMillis = 60_000) => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; processes said:\n${outputs.map((output) => output()).join("\n---\n")}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Runs the command in this process with the simulator's environment. */
const inProcess = async (argv: ReadonlyArray<string>, sim: Simulator.Instance) => {
  const saved = { ...process.env }
  const { HASTEN_WORKERS_LOCK_MS: _lock, HASTEN_WORKERS_STALLED_MS: _stalled, ...simulator } = env(sim)
  Object.assign(process.env, simulator)
  let out = ""
  let err = ""
  try {
    const code = await Command.main(argv, { out: (text) => (out += text), err: (text) => (err += text) })
    return { code, out, err }
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key]
    Object.assign(process.env, saved)
  }
}

const reportOf = (out: string) =>
  JSON.stringify((JSON.parse(readFileSync(Path.join(out, "report.json"), "utf8")) as { report: unknown }).report)

const args = (file: string, out: string) => [
  "--dataset",
  file,
  "--candidate",
  "openai:gpt-4o-mini",
  "--max-tokens",
  "16",
  "--out",
  out,
  "--no-cache",
  "--no-perf"
]

describe("hasten-eval --redis with worker processes", () => {
  it("two workers give the one-process report; a re-run reads the results from Redis and calls nothing", async () => {
    const sim = await Simulator.start({ seed: 5 })
    try {
      const file = dataset("fleet", 24)
      const local = await inProcess(args(file, Path.join(dir, "local")), sim)
      assert.strictEqual(local.code, 0, local.err)
      assert.strictEqual(sim.counters().requests, 24)
      const workers = [worker("wA", sim), worker("wB", sim)]
      await ready(...workers)
      await ready(...workers)
      const fleet = await inProcess([...args(file, Path.join(dir, "fleet")), "--redis", redis.url], sim)
      assert.strictEqual(fleet.code, 0, fleet.err)
      assert.strictEqual(reportOf(Path.join(dir, "fleet")), reportOf(Path.join(dir, "local")))
      assert.strictEqual(sim.counters().requests, 48)
      // the progress line counts items per worker
      assert.match(fleet.err, /eval 24\/24 .*\| workers (wA|wB) \d+/)
      // the same run again, checkpoint deleted: every result is read back from Redis
      const again = await inProcess([...args(file, Path.join(dir, "fleet")), "--redis", redis.url, "--fresh"], sim)
      assert.strictEqual(again.code, 0, again.err)
      assert.strictEqual(reportOf(Path.join(dir, "fleet")), reportOf(Path.join(dir, "local")))
      assert.strictEqual(sim.counters().requests, 48)
      assert.isTrue(workers.every(({ child }) => child.exitCode === null))
    } finally {
      await sim.close()
    }
  }, 180_000)

  it(
    "a worker killed with SIGKILL mid-run: its items finish on the others, no row lost or duplicated, calls re-spent only for its items in flight",
    async () => {
      const sim = await Simulator.start({ seed: 6, latency: { ttftMs: 150, perTokenMs: 2 } })
      try {
        const file = dataset("kill", 30)
        const local = await inProcess([...args(file, Path.join(dir, "kill-local")), "--concurrency", "8"], sim)
        assert.strictEqual(local.code, 0, local.err)
        sim.reset()
        const victim = worker("victim", sim, 4)
        await ready(victim, worker("w2", sim, 2), worker("w3", sim, 2))
        const running = inProcess([...args(file, Path.join(dir, "kill-fleet")), "--redis", redis.url], sim)
        await until(() => sim.counters().requests >= 8, "the first calls")
        victim.child.kill("SIGKILL")
        const fleet = await running
        assert.strictEqual(fleet.code, 0, fleet.err)
        const report = JSON.parse(readFileSync(Path.join(dir, "kill-fleet", "report.json"), "utf8")) as {
          report: { results: ReadonlyArray<{ items: ReadonlyArray<{ itemId: string }> }> }
        }
        const ids = report.report.results[0]!.items.map((item) => item.itemId)
        assert.strictEqual(ids.length, 30)
        assert.strictEqual(new Set(ids).size, 30)
        assert.strictEqual(reportOf(Path.join(dir, "kill-fleet")), reportOf(Path.join(dir, "kill-local")))
        // at most the victim's concurrency (4) calls were in flight at the kill
        const calls = sim.counters().requests
        assert.isAtLeast(calls, 30)
        assert.isAtMost(calls, 34)
      } finally {
        await sim.close()
      }
    },
    180_000
  )

  it("a coordinator killed with SIGKILL and started again resumes collecting: the same report, no item evaluated twice", async () => {
    const sim = await Simulator.start({ seed: 7, latency: { ttftMs: 250, perTokenMs: 1 } })
    try {
      const file = dataset("coord", 24)
      const local = await inProcess([...args(file, Path.join(dir, "coord-local")), "--concurrency", "8"], sim)
      assert.strictEqual(local.code, 0, local.err)
      sim.reset()
      await ready(worker("c1", sim, 2))
      const argv = [...args(file, Path.join(dir, "coord-fleet")), "--redis", redis.url]
      const first = launch(argv, env(sim))
      await until(() => sim.counters().requests >= 4, "the first calls")
      assert.isNull(first.child.exitCode, "the first coordinator finished before it could be killed")
      const exited = once(first.child, "exit")
      first.child.kill("SIGKILL")
      await exited
      assert.isBelow(sim.counters().requests, 24, "killed mid-run")
      const second = launch(argv, env(sim))
      const [code] = (await once(second.child, "exit")) as [number]
      assert.strictEqual(code, 0, second.output())
      assert.strictEqual(reportOf(Path.join(dir, "coord-fleet")), reportOf(Path.join(dir, "coord-local")))
      assert.strictEqual(sim.counters().requests, 24)
    } finally {
      await sim.close()
    }
  }, 180_000)

  it("an unreachable Redis ends the run and the worker with one line naming the URL, password redacted", async () => {
    const sim = await Simulator.start({ seed: 8 })
    try {
      const url = "redis://:hunter2@127.0.0.1:1"
      const run = await inProcess([...args(dataset("down", 2), Path.join(dir, "down")), "--redis", url], sim)
      assert.strictEqual(run.code, 1)
      assert.match(run.err, /hasten-eval: distributed run failed to start: cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1: /)
      const lone = launch(["worker", "--redis", url], env(sim))
      const [code] = (await once(lone.child, "exit")) as [number]
      assert.strictEqual(code, 1)
      assert.match(lone.output(), /hasten-eval worker: cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1: /)
      for (const text of [run.err, lone.output()]) assert.notInclude(text, "hunter2")
    } finally {
      await sim.close()
    }
  }, 30_000)
})
