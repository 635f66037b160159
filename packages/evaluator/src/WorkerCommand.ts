/**
 * `hasten-eval worker`: one process of a distributed evaluation's fleet. It connects to
 * the Redis given by `--redis` (or `HASTEN_REDIS_URL`), serves every run a coordinator
 * started there, builds each candidate's stack once per process (a local model loads
 * once per machine) and stops cleanly on SIGINT/SIGTERM, letting active items finish.
 * A worker killed with SIGKILL loses nothing: its items go back to the queue when their
 * locks expire.
 * @since 0.3.0
 */
import { Boundary } from "@hasten/core"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer, Redacted } from "effect"
import * as Command from "./Command.js"
import { EvaluatorError, UsageError } from "./EvaluatorError.js"
import * as Memory from "./internal/memory.js"
import * as Stack from "./Stack.js"

/** The usage text of `hasten-eval worker`. @category configuration @since 0.3.0 */
export const usage = `Usage: hasten-eval worker --redis <url> [options]

  --redis <url>           the fleet's Redis, redis://[:password@]host:port (default: HASTEN_REDIS_URL)
  --concurrency <n>       items evaluated at once (default 4)
  --threads <n>           CPU threads of local models (default 1)
  --cache <path>          SQLite response cache on this machine (default .hasten/cache.db)
  --no-cache              do not read or write the response cache
  --name <name>           this worker's name in the progress line (default <hostname>:<pid>)
  --fleet-concurrency <n> remote calls at once across the whole fleet (default: no fleet-wide cap)
  --no-single-flight      do not coalesce identical remote calls in flight across the fleet
  --memory <mode>         saver | default: V8's memory-saver mode, the heap kept near what is live
                          (default saver)
  --help

Serves every run started with \`hasten-eval ... --redis <url>\` on that Redis until stopped
(Ctrl-C or SIGTERM lets active items finish). Needs what the run's candidates need on
this machine: model files (HASTEN_MODELS_DIR), API keys (OPENAI_API_KEY, ...).`

const flags = {
  redis: Boundary.Flag.string(),
  concurrency: Boundary.Flag.integer(1),
  threads: Boundary.Flag.integer(1),
  cache: Boundary.Flag.string(),
  "no-cache": Boundary.Flag.boolean(),
  name: Boundary.Flag.string(),
  "fleet-concurrency": Boundary.Flag.integer(1),
  "no-single-flight": Boundary.Flag.boolean(),
  memory: Boundary.Flag.choice(Memory.modes),
  help: Boundary.Flag.boolean({ short: "h" })
}

const usageError = (description: string, flag?: string) =>
  new EvaluatorError({ reason: new UsageError(flag === undefined ? { description } : { flag, description }) })

/**
 * Runs a worker until SIGINT/SIGTERM; returns the exit code (0 stopped, 1 failed — e.g.
 * Redis unreachable, named with its password redacted — 2 bad usage).
 * @category runners @since 0.3.0
 */
export const main = async (
  argv: ReadonlyArray<string>,
  io: { readonly out: (text: string) => void; readonly err: (text: string) => void } = {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text)
  }
): Promise<number> => {
  const parsed = Boundary.parseFlags(argv, flags)
  if (parsed._tag === "Failure") {
    io.err(`hasten-eval worker: ${usageError(`${parsed.problem.message}\n\n${usage}`, parsed.problem.flag).message}\n`)
    return 2
  }
  const values = parsed.flags.values
  if (values.help === true) {
    io.out(`${usage}\n`)
    return 0
  }
  const redis = values.redis ?? process.env.HASTEN_REDIS_URL
  if (redis === undefined || redis.length === 0) {
    io.err(`hasten-eval worker: --redis <url> (or HASTEN_REDIS_URL) is required\n\n${usage}\n`)
    return 2
  }
  const concurrency = values.concurrency ?? 4
  const cache = values["no-cache"] === true ? undefined : Stack.cacheStore({ path: values.cache ?? ".hasten/cache.db" })
  const { FleetConcurrency, FleetSingleFlight, RedisConnection } = await import("@hasten/workers")
  const Distributed = await import("./Distributed.js")
  const url = Redacted.make(redis)
  // Shared through the fleet's Redis: identical calls in flight anywhere make one upstream
  // call; remote budgets (rate-limit's Redis store) and, with --fleet-concurrency, calls at once.
  const fleetConcurrency = values["fleet-concurrency"]
  const fleet = fleetConcurrency === undefined
    ? FleetSingleFlight.layer({ redis: url })
    : FleetSingleFlight.layer({ redis: url }).pipe(Layer.provide(FleetConcurrency.layer({ redis: url, limit: fleetConcurrency })))
  const stackFor = Command.stacks(
    values.threads ?? 1,
    { ...(cache !== undefined ? { cache } : {}), ...(values["no-single-flight"] === true ? {} : { fleet }) },
    { redis: { url: redis } }
  )
  const program = Distributed.serve({
    redis: url,
    ...(values.name !== undefined ? { name: values.name } : {}),
    concurrency,
    candidate: (name) =>
      Effect.map(Command.parseSpec(name), (spec) => ({
        name,
        model: Command.modelId(spec),
        ...(spec.adapter !== undefined ? { adapter: spec.adapter } : {}),
        llm: stackFor(spec, Math.min(concurrency, 8))
      })),
    judge: (name) =>
      Effect.map(
        Command.parseSpec(name),
        (spec) => ({ name, model: Command.modelId(spec), llm: stackFor(spec, Math.min(concurrency, 8)) })
      ),
    scorer: Command.scorerOf,
    onEvent: (event) =>
      io.err(`hasten-eval worker: ${event.type} run ${event.run.slice(0, 12)}${event.detail !== undefined ? `: ${event.detail}` : ""}\n`)
  }).pipe(Effect.scoped, Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv()))
  io.err(`hasten-eval worker: serving runs on ${RedisConnection.redact(redis)} (concurrency ${concurrency})\n`)
  const fiber = Effect.runFork(program)
  const stop = () => {
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  process.removeListener("SIGINT", stop)
  process.removeListener("SIGTERM", stop)
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    const message = failure?._tag === "Fail"
      ? (failure.error as { message?: string }).message ?? String(failure.error)
      : Cause.pretty(exit.cause)
    io.err(`hasten-eval worker: ${message}\n`)
    return 1
  }
  io.err("hasten-eval worker: stopped\n")
  return 0
}
