/**
 * The limiter's events: every pre-call wait, backoff, header hold and concurrency change
 * is an `Effect.log` event with annotations, also appended to the log file when
 * `logFile` is set.
 * @internal
 */
import { createWriteStream, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Clock, Effect } from "effect"
import type { Resolved } from "../Options.js"

/** Milliseconds as seconds with two decimals, the precision of the events. */
export const seconds = (millis: number) => (millis / 1000).toFixed(2)

/** Logs one event. */
export type Event = (message: string, annotations: Record<string, unknown>) => Effect.Effect<void>

/** Opens the log file (closed when the scope closes) and returns the event logger. */
export const make = Effect.fnUntraced(function*(options: Resolved) {
  const file = options.logFile === undefined ? undefined : yield* Effect.acquireRelease(
    Effect.sync(() => {
      mkdirSync(dirname(options.logFile!), { recursive: true })
      return createWriteStream(options.logFile!, { flags: "a" })
    }),
    (stream) =>
      Effect.callback<void>((resume) => {
        stream.end(() => resume(Effect.void))
      })
  )

  const event: Event = (message, annotations) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(message).pipe(Effect.annotateLogs(annotations))
      if (file !== undefined) {
        const now = yield* Clock.currentTimeMillis
        const fields = Object.entries(annotations).map(([name, value]) => `${name}=${String(value)}`).join(" ")
        file.write(`${new Date(now).toISOString()} ${message} ${fields}\n`)
      }
    })
  return event
})
