// Benchmark for @hasten/workers: `npx -y pnpm@12.21.0 --filter @hasten/workers bench [-- --quick] [-- --items N]`.
// Real parts throughout: a real redis-server, `hasten-eval worker` processes and
// coordinators run from source (`../evaluator/src/cli.ts`), the OpenAI SDK against the
// testkit simulator. Scenarios:
//   (a) remote workload, each worker's concurrency the bound: 3 workers vs 1 (items/s)
//   (b) local model (stories260K, threads 1): 2 workers vs 1 on this machine's cores
//   (c) kill -9 one of 3 workers mid-run: rows lost, report identical, upstream calls re-spent
//   (d) 3 processes × 100 identical concurrent requests through FleetSingleFlight
//   (e) many items (default 100k) through a simulated model: peak RSS of coordinator and workers
// Prints a table for people, then one JSON line last.
import { RedisServer, Simulator } from "@hasten/testkit"
import { Queue } from "bullmq"
import { Redis } from "ioredis"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const argv = process.argv.slice(2)
const quick = argv.includes("--quick")
const itemsFlag = argv.indexOf("--items")
const bigItems = itemsFlag >= 0 ? Number(argv[itemsFlag + 1]) : quick ? 5_000 : 100_000
const only = argv.includes("--only") ? argv[argv.indexOf("--only") + 1]!.split(",") : ["a", "b", "c", "d", "e"]
// `--dist`: run the built CLI (`turbo run build` first), as deployed, instead of the sources through tsx.
const dist = argv.includes("--dist")
const cli = fileURLToPath(new URL(dist ? "../../evaluator/dist/cli.js" : "../../evaluator/src/cli.ts", import.meta.url))
const flightClient = fileURLToPath(new URL("./fixtures/flight-client.ts", import.meta.url))
const work = mkdtempSync(join(tmpdir(), "hasten-workers-bench-"))
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits

const redis = await RedisServer.start()
const admin = new Redis(redis.url)
const children = new Set<ChildProcess>()
const cleanup = async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  admin.disconnect()
  await redis.stop()
  rmSync(work, { recursive: true, force: true })
}

/** Peak resident set (VmHWM) of a live process, in MB. */
const peakRssMb = (pid: number): number => {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) / 1024
  } catch {
    return 0
  }
}

interface Proc {
  readonly child: ChildProcess
  readonly output: () => string
  /** Largest VmHWM seen (sampled every 200 ms and at exit). */
  readonly peak: () => number
}

const launch = (args: ReadonlyArray<string>, env: Record<string, string>, script = cli): Proc => {
  const fromDist = dist && script === cli
  const child = spawn(process.execPath, [...(fromDist ? [] : ["--conditions=@hasten/source", "--import", "tsx"]), script, ...args], {
    // the bench's own NODE_OPTIONS (tsx) stay out of the children: they get what they need above
    env: { ...process.env, NODE_OPTIONS: "", CI: "1", ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  children.add(child)
  let output = ""
  let peak = 0
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)))
  const sampler = setInterval(() => (peak = Math.max(peak, peakRssMb(child.pid!))), 200)
  child.once("exit", () => {
    clearInterval(sampler)
    children.delete(child)
  })
  return { child, output: () => output, peak: () => Math.max(peak, child.exitCode === null ? peakRssMb(child.pid!) : 0) }
}

const until = async (condition: () => boolean, what: string, timeoutMillis = 120_000) => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const remoteEnv = (sim: Simulator.Instance): Record<string, string> => ({
  OPENAI_BASE_URL: sim.openaiBaseUrl,
  OPENAI_API_KEY: "sk-bench",
  MAX_CONCURRENCY: "64",
  RPS_LIMIT: "10000",
  TPM_LIMIT: "1000000000"
})

const startWorkers = async (
  names: ReadonlyArray<string>,
  concurrency: number,
  env: Record<string, string>,
  extra: ReadonlyArray<string> = []
) => {
  const workers = names.map((name) =>
    launch(["worker", "--redis", redis.url, "--name", name, "--no-cache", "--concurrency", String(concurrency), ...extra], env)
  )
  await until(() => workers.every((worker) => worker.output().includes("serving runs on")), "workers to start")
  return workers
}
const stopWorkers = async (workers: ReadonlyArray<Proc>) => {
  for (const worker of workers) {
    if (worker.child.exitCode === null && worker.child.signalCode === null) {
      const exited = once(worker.child, "exit")
      worker.child.kill("SIGKILL")
      await exited
    }
  }
}

const dataset = (name: string, count: number) => {
  const file = join(work, `${name}.jsonl`)
  const lines: Array<string> = []
  for (let i = 0; i < count; i++) lines.push(JSON.stringify({ question: `What is ${i} + ${i}?`, answer: String(2 * i) }))
  writeFileSync(file, lines.join("\n") + "\n")
  return file
}

interface RunResult {
  readonly report: string
  readonly wallMillis: number
  readonly items: number
  readonly peakRssMb: number
  readonly output: string
}

/** Runs a coordinator (or, without `--redis`, a one-process run) as its own process. */
const evaluate = async (args: ReadonlyArray<string>, env: Record<string, string>): Promise<RunResult> => {
  const out = join(work, `out-${Math.random().toString(36).slice(2)}`)
  const run = launch([...args, "--out", out, "--no-cache", "--no-perf"], env)
  const [code] = (await once(run.child, "exit")) as [number]
  if (code !== 0) throw new Error(`hasten-eval exited ${code}:\n${run.output().slice(-3000)}`)
  const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as {
    report: { results: ReadonlyArray<{ items: ReadonlyArray<unknown> }> }
    timing: { wallMillis: number }
  }
  const result = {
    report: JSON.stringify(json.report),
    wallMillis: json.timing.wallMillis,
    items: json.report.results[0]!.items.length,
    peakRssMb: run.peak(),
    output: run.output()
  }
  rmSync(out, { recursive: true, force: true })
  return result
}

const rows: Array<[string, string, string]> = []
const summary: Record<string, unknown> = {}

try {
  // (a) remote workload: 3 workers vs 1, each worker's concurrency the bound
  let remoteReport: string | undefined
  let remoteFile: string | undefined
  const remoteItems = quick ? 120 : 300
  if (only.includes("a") || only.includes("c")) {
    remoteFile = dataset("remote", remoteItems)
  }
  if (only.includes("a")) {
    const sim = await Simulator.start({ seed: 1, latency: { ttftMs: 200, perTokenMs: 1 } })
    const env = remoteEnv(sim)
    const args = ["--dataset", remoteFile!, "--candidate", "openai:gpt-4o-mini", "--max-tokens", "16", "--redis", redis.url]
    // Each fleet is warmed up first (clients made, code compiled) on other items: steady state is measured.
    const warm = [...args.slice(0, 1), dataset("remote-warm", 24), ...args.slice(2)]
    const one = await startWorkers(["solo"], 4, env)
    await evaluate(warm, env)
    const single = await evaluate(args, env)
    await stopWorkers(one)
    await admin.flushall()
    const three = await startWorkers(["w1", "w2", "w3"], 4, env)
    await evaluate(warm, env)
    const fleet = await evaluate(args, env)
    await stopWorkers(three)
    await admin.flushall()
    const rate1 = single.items / (single.wallMillis / 1000)
    const rate3 = fleet.items / (fleet.wallMillis / 1000)
    remoteReport = fleet.report
    summary.scaling3Remote = round(rate3 / rate1)
    summary.remoteReportsIdentical = single.report === fleet.report
    rows.push([
      `(a) ${remoteItems} remote items, 1 worker × 4 in flight`,
      `${round(rate1, 1)} items/s`,
      `${(single.wallMillis / 1000).toFixed(1)} s`
    ])
    rows.push([`(a) same, 3 workers × 4 in flight`, `${round(rate3, 1)} items/s`, `${round(rate3 / rate1)}x (goal ≥ 2.7x)`])
    await sim.close()
  }

  // (b) local model: 2 workers vs 1, one thread each
  if (only.includes("b")) {
    const models = fileURLToPath(new URL("../../../../shared/models", import.meta.url))
    if (!existsSync(join(models, "stories260K.gguf"))) {
      rows.push(["(b) local model", "skipped", "no ../shared/models/stories260K.gguf"])
    } else {
      const localItems = quick ? 24 : 60
      const file = dataset("local", localItems)
      const env = { HASTEN_MODELS_DIR: models }
      const args = ["--dataset", file, "--candidate", "local:stories260K.gguf", "--max-tokens", "48", "--redis", redis.url]
      // Each worker loads the model once, on its first item: warm up on other items first.
      const warm = [...args.slice(0, 1), dataset("local-warm", 8), ...args.slice(2)]
      const one = await startWorkers(["solo"], 1, env, ["--threads", "1"])
      await evaluate(warm, env)
      const single = await evaluate(args, env)
      await stopWorkers(one)
      await admin.flushall()
      const two = await startWorkers(["l1", "l2"], 1, env, ["--threads", "1"])
      await evaluate(warm, env)
      const fleet = await evaluate(args, env)
      await stopWorkers(two)
      await admin.flushall()
      const rate1 = single.items / (single.wallMillis / 1000)
      const rate2 = fleet.items / (fleet.wallMillis / 1000)
      summary.scaling2Local = round(rate2 / rate1)
      summary.localReportsIdentical = single.report === fleet.report
      rows.push([
        `(b) ${localItems} items on stories260K, 1 worker`,
        `${round(rate1, 1)} items/s`,
        `${(single.wallMillis / 1000).toFixed(1)} s`
      ])
      rows.push([`(b) same, 2 workers`, `${round(rate2, 1)} items/s`, `${round(rate2 / rate1)}x (goal ≥ 1.7x)`])
    }
  }

  // (c) kill -9 one of three workers mid-run
  if (only.includes("c")) {
    const sim = await Simulator.start({ seed: 1, latency: { ttftMs: 300, perTokenMs: 1 } })
    const env = { ...remoteEnv(sim), HASTEN_WORKERS_LOCK_MS: "3000", HASTEN_WORKERS_STALLED_MS: "1000" }
    const args = ["--dataset", remoteFile!, "--candidate", "openai:gpt-4o-mini", "--max-tokens", "16"]
    if (remoteReport === undefined) remoteReport = (await evaluate([...args, "--concurrency", "12"], env)).report
    sim.reset()
    const workers = await startWorkers(["victim", "k2", "k3"], 4, env)
    const running = evaluate([...args, "--redis", redis.url], env)
    await until(() => sim.counters().requests >= remoteItems / 3, "a third of the calls")
    workers[0]!.child.kill("SIGKILL")
    // The victim's jobs stay active (locked by it) until their locks expire: those were in flight.
    const queues = (await admin.keys("hasten:run-*:meta")).map((key) => key.split(":")[1]!)
    let inFlightAtKill = 0
    for (const name of queues) {
      const queue = new Queue(name, { connection: admin.duplicate(), prefix: "hasten" })
      inFlightAtKill += (await queue.getActive()).filter((job) => job.processedBy === "victim").length
      await queue.close()
    }
    const fleet = await running
    await stopWorkers(workers)
    await admin.flushall()
    const calls = sim.counters().requests
    const rowsSeen =
      (JSON.parse(fleet.report) as { results: ReadonlyArray<{ items: ReadonlyArray<{ itemId: string }> }> }).results[0]!.items
    summary.lost = remoteItems - new Set(rowsSeen.map((item) => item.itemId)).size
    summary.duplicated = rowsSeen.length - new Set(rowsSeen.map((item) => item.itemId)).size
    summary.identicalReport = fleet.report === remoteReport && summary.remoteReportsIdentical !== false
    summary.reSpentAfterKill = calls - remoteItems
    summary.inFlightAtKill = inFlightAtKill
    rows.push([
      `(c) ${remoteItems} items, kill -9 1 of 3 workers at ${Math.round(remoteItems / 3)} calls`,
      `lost ${summary.lost}, duplicated ${summary.duplicated}, report identical ${summary.identicalReport}`,
      `re-spent ${summary.reSpentAfterKill} calls (in flight at the kill: ${inFlightAtKill})`
    ])
    await sim.close()
  }

  // (d) fleet-wide single-flight: 3 processes × 100 identical concurrent requests
  if (only.includes("d")) {
    const sim = await Simulator.start({ seed: 1, latency: { ttftMs: 500, perTokenMs: 1 } })
    const fire = async (flight: boolean) => {
      sim.reset()
      await admin.flushall()
      const clients = [0, 1, 2].map(() =>
        launch([JSON.stringify({ baseURL: sim.openaiBaseUrl, redis: redis.url, calls: 100, flight })], {}, flightClient)
      )
      await until(() => clients.every((client) => client.output().includes("ready")), "clients")
      for (const client of clients) client.child.stdin!.write("go\n")
      await Promise.all(clients.map((client) => once(client.child, "exit")))
      const answers = clients.map((client) =>
        JSON.parse(client.output().split("\n").find((line) => line.startsWith("{"))!) as { answered: number }
      )
      return { calls: sim.counters().requests, answered: answers.reduce((sum, answer) => sum + answer.answered, 0) }
    }
    const without = await fire(false)
    const withFlight = await fire(true)
    summary.fleetSingleFlightUpstreamCalls = withFlight.calls
    rows.push([
      "(d) 3 processes × 100 identical requests, no single-flight",
      `${without.calls} upstream calls`,
      `${without.answered} answered`
    ])
    rows.push(["(d) same, FleetSingleFlight", `${withFlight.calls} upstream call(s)`, `${withFlight.answered} answered`])
    await sim.close()
  }

  // (e) many items through a simulated model: peak RSS of coordinator and workers
  if (only.includes("e")) {
    const file = dataset("big", bigItems)
    // Defaults only: hasten-eval turns on V8's memory-saver mode itself for workers and for
    // runs of 10,000+ tasks (`--memory auto`); no heap flags here.
    const workers = await startWorkers(["m1", "m2", "m3"], 16, {})
    const fleet = await evaluate(["--dataset", file, "--candidate", "echo:sim", "--redis", redis.url], {})
    const workerPeak = Math.max(...workers.map((worker) => worker.peak()))
    await stopWorkers(workers)
    await admin.flushall()
    const local = await evaluate(["--dataset", file, "--candidate", "echo:sim", "--concurrency", "16"], {})
    summary.peakRssMb100k = { coordinator: Math.round(fleet.peakRssMb), worker: Math.round(workerPeak) }
    summary.bigItems = bigItems
    summary.bigFrom = dist ? "dist" : "source"
    summary.peakRssMbOneProcess = Math.round(local.peakRssMb)
    summary.bigReportsIdentical = local.report === fleet.report
    rows.push([
      `(e) ${bigItems} items, echo model, 3 workers × 16, defaults${dist ? ", built CLI" : ", from source (tsx)"}`,
      `peak RSS coordinator ${Math.round(fleet.peakRssMb)} MB, worker ${Math.round(workerPeak)} MB`,
      `${round(fleet.items / (fleet.wallMillis / 1000), 0)} items/s; one process: ${Math.round(local.peakRssMb)} MB`
    ])
  }
} finally {
  await cleanup()
}

const width = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length), 8))
console.log(`\n@hasten/workers bench${quick ? " (quick)" : ""}\n`)
for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(width[column]!)).join("  "))
console.log(
  JSON.stringify({
    scaling3Remote: summary.scaling3Remote ?? null,
    scaling2Local: summary.scaling2Local ?? null,
    lost: summary.lost ?? null,
    identicalReport: summary.identicalReport ?? null,
    reSpentAfterKill: summary.reSpentAfterKill ?? null,
    inFlightAtKill: summary.inFlightAtKill ?? null,
    fleetSingleFlightUpstreamCalls: summary.fleetSingleFlightUpstreamCalls ?? null,
    peakRssMb100k: summary.peakRssMb100k ?? null,
    ...summary
  })
)
process.exit(0)
