/**
 * Content-addressed work on BullMQ: a run (identified by its fingerprint) is one BullMQ
 * queue whose job ids are `sha256(fingerprint, item key)`, so enqueuing an item twice is a
 * no-op and a re-run enqueues only what has no result yet. Workers write each result once
 * (`HSETNX`) into the run's result hash and append its id to the run's finished list, in
 * one Lua script; the coordinator reads that list from the start, so merging is a read and
 * a restarted coordinator resumes where the results are. A worker killed mid-job loses its
 * lock and BullMQ's stalled-job check hands the job to another worker; a job that fails
 * for good gets an error result written by the coordinator, never a lost or duplicated row.
 * @since 0.1.0
 */
import { Queue, Worker } from "bullmq"
import { Clock, Effect, Exit, Option, Scope } from "effect"
import { createHash } from "node:crypto"
import { hostname } from "node:os"
import * as RedisConnection from "./RedisConnection.js"
import { InvalidOptions, WorkersError } from "./WorkersError.js"

/** One unit of work: `key` identifies it within the run (e.g. its request key); `data` is what a worker needs. @category models @since 0.1.0 */
export interface WorkItem<In> {
  readonly key: string
  readonly data: In
}

/**
 * Lock and stalled-job settings of a worker. A killed worker's jobs go back to the queue
 * once their lock expires (`lockDurationMillis`, renewed every half of it while the job
 * runs) and the next stalled check (`stalledIntervalMillis`) finds them: recovery within
 * about `lockDurationMillis + 2 × stalledIntervalMillis`.
 * @category configuration @since 0.1.0
 */
export interface Settings {
  /** How long a job's lock lasts without renewal. Default 15,000 ms (`HASTEN_WORKERS_LOCK_MS`). */
  readonly lockDurationMillis?: number
  /** How often workers look for stalled jobs. Default 5,000 ms (`HASTEN_WORKERS_STALLED_MS`). */
  readonly stalledIntervalMillis?: number
  /** How often one job may stall (its worker died) before it fails for good. Default 3. */
  readonly maxStalledCount?: number
  /** Attempts per job when the handler throws (a defect; item errors are results). Default 2. */
  readonly attempts?: number
}

/** Redis key layout shared by coordinator and workers. @category models @since 0.1.0 */
export interface Keys {
  readonly prefix: string
  /** The set of runs workers should serve. */
  readonly runs: string
  /** The channel a coordinator publishes on when it registers a run, so workers look at once. */
  readonly wake: string
  readonly queue: (run: string) => string
  readonly spec: (run: string) => string
  readonly results: (run: string) => string
  readonly finished: (run: string) => string
}

/** The key layout under `prefix` (default `hasten`). @category constructors @since 0.1.0 */
export const keys = (prefix = "hasten"): Keys => ({
  prefix,
  runs: `${prefix}:workers:runs`,
  wake: `${prefix}:workers:wake`,
  // BullMQ queue names may not hold ':'; the fingerprint is hex.
  queue: (run) => `run-${run.slice(0, 40)}`,
  spec: (run) => `${prefix}:workers:run:${run}:spec`,
  results: (run) => `${prefix}:workers:run:${run}:results`,
  finished: (run) => `${prefix}:workers:run:${run}:finished`
})

/**
 * The BullMQ job id of an item: SHA-256 of the run's fingerprint and the item's key (hex).
 * The same item of the same run always gets the same id, whoever enqueues it.
 * @category utils @since 0.1.0
 */
export const jobId = (fingerprint: string, key: string): string =>
  createHash("sha256").update(fingerprint).update("\u0000").update(key).digest("hex")

/** What the result hash holds for one job: the item's key, its result and the worker that produced it. */
interface Envelope<Out> {
  readonly worker: string
  readonly key: string
  readonly result: Out
}

/** A job's data: the item's key (returned with its result, so the coordinator keeps no item in memory) and its data. */
interface JobData<In> {
  readonly key: string
  readonly data: In
}

// Records a result exactly once: the first writer wins and appends the id to the finished list.
const recordScript = `if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0`

const recordResult = (redis: ReturnType<typeof RedisConnection.client>, layout: Keys, run: string, id: string, envelope: string) =>
  redis.eval(recordScript, 2, layout.results(run), layout.finished(run), id, envelope)

const envNumber = (name: string): number | undefined => {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value > 0 ? value : undefined
}

const resolveSettings = (settings: Settings | undefined) => ({
  lockDuration: settings?.lockDurationMillis ?? envNumber("HASTEN_WORKERS_LOCK_MS") ?? 15_000,
  stalledInterval: settings?.stalledIntervalMillis ?? envNumber("HASTEN_WORKERS_STALLED_MS") ?? 5_000,
  maxStalledCount: settings?.maxStalledCount ?? 3,
  attempts: settings?.attempts ?? 2
})

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** Options of {@link coordinate}. @category models @since 0.1.0 */
export interface CoordinateOptions<In, Out> {
  readonly redis: RedisConnection.Url
  /** The run's fingerprint: everything that changes an item's result (dataset, seed, scorer, candidate stack). */
  readonly run: string
  /** What workers prepare the run from (JSON): stored once per run in Redis. */
  readonly spec: unknown
  /** The run's items, iterated once in chunks (they are streamed into the queue). */
  readonly items: Iterable<WorkItem<In>>
  /**
   * Called once per item with its key, its result and the worker that produced it. The
   * coordinator keeps only the job ids of pending items (not their data), so memory stays
   * flat however many items the run has.
   */
  readonly onResult: (key: string, result: Out, worker: string) => Effect.Effect<void>
  /** The result of an item whose job failed for good (the handler kept throwing, or it stalled too often); the item is read back from its job. */
  readonly onFailed: (item: WorkItem<In>, reason: string) => Out
  /** Called once items are enqueued: how many, and how many already had a result or a job. */
  readonly onEnqueued?: (counts: { readonly items: number; readonly added: number }) => void
  /** Key prefix (default `hasten`). */
  readonly prefix?: string
  /** How often the finished list is read while nothing new arrives. Default 100 ms. */
  readonly pollMillis?: number
  /** Items enqueued per `addBulk`. Default 500. */
  readonly chunkSize?: number
  /**
   * How long a finished run's results, finished list and spec stay in Redis (a re-run within
   * it reads every result back without a call); its BullMQ queue is removed at once.
   * Default 7 days (`HASTEN_WORKERS_RETAIN_MS`).
   */
  readonly retainMillis?: number
  /** Job attempts (`settings.attempts`). */
  readonly settings?: Settings
}

/**
 * The coordinator: registers the run, streams the items into the run's queue (each
 * under its content-addressed job id, skipping items that already have a result), then
 * collects every result by reading the run's finished list. Returns once every item has a
 * result. Interrupting it (or killing it) loses nothing: run it again to resume.
 * @category runners @since 0.1.0
 */
export const coordinate = Effect.fn("WorkQueue.coordinate")(function*<In, Out>(options: CoordinateOptions<In, Out>) {
  const layout = keys(options.prefix)
  const run = options.run
  if (!/^[0-9a-f]{16,}$/i.test(run)) {
    return yield* new WorkersError({
      reason: new InvalidOptions({ field: "run", description: `a run fingerprint is hex (16+ digits), got "${run}"` })
    })
  }
  const redis = yield* RedisConnection.scoped(options.redis)
  // BullMQ does not close a connection it is given: close it after the queue.
  const queue = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const connection = redis.duplicate()
      return { queue: new Queue(layout.queue(run), { connection, prefix: layout.prefix }), connection }
    }),
    ({ connection, queue }) => Effect.promise(() => queue.close().catch(() => undefined).then(() => connection.disconnect()))
  ).pipe(Effect.map(({ queue }) => queue))
  const redisFailure = (error: unknown) =>
    Effect.die(new Error(`Redis at ${RedisConnection.redact(options.redis)} failed: ${describe(error)}`))
  const call = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (error) => error }).pipe(Effect.catch(redisFailure))

  yield* call(() =>
    redis.multi().set(layout.spec(run), JSON.stringify(options.spec)).sadd(layout.runs, run).publish(layout.wake, run).exec()
  )

  // Enqueue in chunks; an item with a result is not enqueued, an item with a job is a no-op.
  // Only the ids of items without a result: a 64-character string each, never the items.
  const pending = new Set<string>()
  const chunkSize = options.chunkSize ?? 500
  const attempts = resolveSettings(options.settings).attempts
  let chunk: Array<readonly [string, WorkItem<In>]> = []
  let added = 0
  let total = 0
  const flush = Effect.suspend(() => {
    const batch = chunk
    chunk = []
    if (batch.length === 0) return Effect.void
    return call(async () => {
      const have = await redis.hmget(layout.results(run), ...batch.map(([id]) => id))
      const missing = batch.filter((_, index) => have[index] === null)
      if (missing.length === 0) return
      await queue.addBulk(missing.map(([id, item]) => ({
        name: "item",
        data: { key: item.key, data: item.data } satisfies JobData<In>,
        opts: { jobId: id, attempts, removeOnComplete: { count: 1000 }, removeOnFail: false }
      })))
      added += missing.length
    })
  })
  for (const item of options.items) {
    const id = jobId(run, item.key)
    if (pending.has(id)) continue
    pending.add(id)
    total++
    chunk.push([id, item])
    if (chunk.length >= chunkSize) yield* flush
  }
  yield* flush
  options.onEnqueued?.({ items: total, added })

  // Collect: read the finished list from the start (a restarted coordinator re-reads it).
  const pollMillis = options.pollMillis ?? 100
  let cursor = 0
  let failedSeen = -1
  let idle = 0
  while (pending.size > 0) {
    const ids = yield* call(() => redis.lrange(layout.finished(run), cursor, cursor + 999))
    if (ids.length > 0) {
      idle = 0
      cursor += ids.length
      const wanted = ids.filter((id) => pending.has(id))
      if (wanted.length === 0) continue
      const values = yield* call(() => redis.hmget(layout.results(run), ...wanted))
      for (let index = 0; index < wanted.length; index++) {
        const id = wanted[index]!
        const envelope = JSON.parse(values[index]!) as Envelope<Out>
        pending.delete(id)
        yield* options.onResult(envelope.key, envelope.result, envelope.worker)
      }
      continue
    }
    // Nothing new: every so often, turn jobs that failed for good into error results.
    if (idle++ % 10 === 0) {
      const failed = yield* call(() => queue.getFailedCount())
      if (failed !== failedSeen) {
        failedSeen = failed
        const jobs = yield* call(() => queue.getFailed(0, -1))
        for (const job of jobs) {
          if (job?.id === undefined || !pending.has(job.id)) continue
          const item = job.data as JobData<In>
          const envelope: Envelope<Out> = {
            worker: "coordinator",
            key: item.key,
            result: options.onFailed({ key: item.key, data: item.data }, job.failedReason ?? "job failed")
          }
          yield* call(() => recordResult(redis, layout, run, job.id!, JSON.stringify(envelope)))
        }
      }
    }
    yield* Effect.sleep(pollMillis)
  }
  // The run is done: workers stop serving it; what it left in Redis expires (nothing grows forever).
  const retain = options.retainMillis ?? envNumber("HASTEN_WORKERS_RETAIN_MS") ?? 7 * 24 * 3_600_000
  yield* call(() =>
    redis.multi()
      .srem(layout.runs, run)
      .pexpire(layout.results(run), retain)
      .pexpire(layout.finished(run), retain)
      .pexpire(layout.spec(run), retain)
      .exec()
  )
  // No job of the run is waiting or active any more; failed ones were recorded as results.
  yield* call(() => queue.obliterate({ force: true }))
  return { items: total, added }
})

/** A prepared run on a worker: how to turn one job's data into its result. @category models @since 0.1.0 */
export type Handler<In, Out> = (data: In) => Effect.Effect<Out, unknown>

/** Options of {@link serve}. @category models @since 0.1.0 */
export interface ServeOptions<In, Out, R> {
  readonly redis: RedisConnection.Url
  /** This worker's name in results and progress. Default `<hostname>:<pid>`. */
  readonly name?: string
  /** Jobs this worker runs at once (per run). Default 4. */
  readonly concurrency?: number
  /**
   * Prepares a run from its spec, once per run and worker process (build its stacks here;
   * the scope closes when the run ends or the worker stops).
   */
  readonly prepare: (run: string, spec: unknown) => Effect.Effect<Handler<In, Out>, unknown, R | Scope.Scope>
  readonly settings?: Settings
  readonly prefix?: string
  /** How often the set of active runs is read. Default 200 ms. */
  readonly pollMillis?: number
  /** Called when the worker starts or stops serving a run, or a run fails to prepare. */
  readonly onEvent?: (
    event: { readonly type: "serving" | "stopped" | "prepare-failed"; readonly run: string; readonly detail?: string }
  ) => void
}

/**
 * A worker: serves every active run found in Redis — prepares it once (its models load
 * once), then takes its jobs from BullMQ, runs them through the handler and records each
 * result once. Runs until interrupted; on interruption it stops taking jobs and lets the
 * active ones finish.
 * @category runners @since 0.1.0
 */
export const serve = Effect.fn("WorkQueue.serve")(function*<In, Out, R>(options: ServeOptions<In, Out, R>) {
  const layout = keys(options.prefix)
  const settings = resolveSettings(options.settings)
  const name = options.name ?? `${hostname()}:${process.pid}`
  const redis = yield* RedisConnection.scoped(options.redis)
  const context = yield* Effect.context<R>()
  const runPromise = Effect.runPromiseWith(context)
  const served = new Map<
    string,
    { readonly worker: Worker; readonly scope: Scope.Closeable; readonly connection: { disconnect(): void } }
  >()

  const retryAt = new Map<string, number>()
  const start = (run: string) =>
    Effect.gen(function*() {
      const specText = yield* Effect.promise(() => redis.get(layout.spec(run)))
      if (specText === null) return
      const scope = yield* Scope.make()
      const handler = yield* options.prepare(run, JSON.parse(specText)).pipe(Scope.provide(scope), Effect.exit)
      if (Exit.isFailure(handler)) {
        yield* Scope.close(scope, Exit.void)
        // Try this run again in 10 s, not on every poll.
        retryAt.set(run, (yield* Clock.currentTimeMillis) + 10_000)
        options.onEvent?.({ type: "prepare-failed", run, detail: String(handler.cause) })
        return
      }
      const connection = RedisConnection.client(options.redis, { blocking: true })
      const worker = new Worker<JobData<In>, number>(
        layout.queue(run),
        async (job) => {
          const result = await runPromise(handler.value(job.data.data))
          return await recordResult(
            redis,
            layout,
            run,
            job.id!,
            JSON.stringify({ worker: name, key: job.data.key, result } satisfies Envelope<Out>)
          ) as number
        },
        {
          connection,
          prefix: layout.prefix,
          name,
          concurrency: options.concurrency ?? 4,
          lockDuration: settings.lockDuration,
          stalledInterval: settings.stalledInterval,
          maxStalledCount: settings.maxStalledCount,
          drainDelay: 1
        }
      )
      worker.on("error", () => {})
      served.set(run, { worker, scope, connection })
      options.onEvent?.({ type: "serving", run })
    })

  const stop = (run: string) =>
    Effect.gen(function*() {
      const entry = served.get(run)
      if (entry === undefined) return
      served.delete(run)
      // Let active jobs finish; if Redis is gone, close at once rather than wait on it.
      yield* Effect.promise(() => entry.worker.close().catch(() => undefined)).pipe(
        Effect.timeoutOrElse({ duration: 30_000, orElse: () => Effect.promise(() => entry.worker.close(true).catch(() => undefined)) }),
        Effect.ensuring(Effect.sync(() => entry.connection.disconnect()))
      )
      yield* Scope.close(entry.scope, Exit.void)
      options.onEvent?.({ type: "stopped", run })
    })

  yield* Effect.addFinalizer(() => Effect.forEach([...served.keys()], stop, { discard: true }))
  // A new run wakes the loop at once (pub/sub); polling catches anything missed.
  let wake: (() => void) | undefined
  const subscriber = yield* Effect.acquireRelease(
    Effect.sync(() => RedisConnection.client(options.redis)),
    (client) => Effect.sync(() => client.disconnect())
  )
  subscriber.on("message", () => wake?.())
  yield* Effect.tryPromise(() => subscriber.subscribe(layout.wake)).pipe(Effect.ignore)
  const pollMillis = options.pollMillis ?? 200
  const nap = Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), pollMillis)
    wake = () => resume(Effect.void)
    return Effect.sync(() => {
      clearTimeout(timer)
      wake = undefined
    })
  })
  while (true) {
    const runs = yield* Effect.tryPromise(() => redis.smembers(layout.runs)).pipe(Effect.option)
    if (Option.isSome(runs)) {
      const active = new Set(runs.value)
      const now = yield* Clock.currentTimeMillis
      for (const run of active) if (!served.has(run) && (retryAt.get(run) ?? 0) <= now) yield* start(run)
      for (const run of served.keys()) if (!active.has(run)) yield* stop(run)
    }
    yield* nap
  }
})

/** The default worker name: `<hostname>:<pid>`. @category utils @since 0.1.0 */
export const defaultName = (): string => `${hostname()}:${process.pid}`

/** Settings with their defaults and environment overrides applied. @category configuration @since 0.1.0 */
export const settingsOf = (settings?: Settings): Required<Settings> => {
  const resolved = resolveSettings(settings)
  return {
    lockDurationMillis: resolved.lockDuration,
    stalledIntervalMillis: resolved.stalledInterval,
    maxStalledCount: resolved.maxStalledCount,
    attempts: resolved.attempts
  }
}
