/**
 * The limiter's events: every pre-call wait, backoff, header hold and concurrency change
 * is an `Effect.log` event with annotations, also appended to the log file when
 * `logFile` is set.
 * @internal
 */
import { Clock, Effect } from "effect"
import { createWriteStream, mkdirSync } from "node:fs"
import { dirname } from "node:path"
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

  // One line per event: the seeds' `pre_wait=1.50` / `backoff=2.30 attempt=2` first, then the
  // key and reason. At debug level on the console (a 3,000-call run would flood it; the
  // run's one-line summary is at info), always in the log file when one is set.
  const event: Event = (message, annotations) =>
    Effect.gen(function*() {
      const fields = Object.entries(annotations)
        // the message already says `pre_wait=1.50`: no `pre_wait_seconds=1.50` after it
        .filter(([name, value]) => name !== "event" && !message.includes(`=${String(value)}`))
        .map(([name, value]) => `${name}=${String(value)}`)
        .join(" ")
      const line = `${message} ${fields}`
      yield* Effect.logDebug(line).pipe(Effect.annotateLogs("event", String(annotations["event"])))
      if (file !== undefined) {
        const now = yield* Clock.currentTimeMillis
        file.write(`${new Date(now).toISOString()} ${line}\n`)
      }
    })
  return event
})
