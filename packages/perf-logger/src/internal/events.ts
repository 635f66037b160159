/**
 * The writer and reader of the run log, `events.jsonl` (its records are in `RunLog.ts`).
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import { Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { InvalidRunFile, PerfLoggerError } from "../PerfLoggerError.js"
import type { Event, FlushMode } from "../RunLog.js"
import { EventSchema, eventTypes } from "./eventSchema.js"

const flushSignals = ["SIGINT", "SIGTERM", "SIGHUP"] as const

/**
 * The logs with events that must reach the file when the process ends. One `exit` listener
 * and one listener per signal serve them all, however many runs are open (no
 * MaxListenersExceededWarning with many recorders).
 */
const openLogs = new Set<EventLog>()
const flushOpenLogs = (): void => {
  for (const log of openLogs) log.flush()
}
const onSignal = (signal: NodeJS.Signals): void => {
  flushOpenLogs()
  removeProcessHandlers()
  // Unless someone else handles the signal, end the process as the signal would have
  // (exit status 128 + signal number, what a shell reports for a signal death).
  if (process.listenerCount(signal) === 0) process.exit(128 + (Os.constants.signals[signal] ?? 0))
}
const removeProcessHandlers = (): void => {
  process.off("exit", flushOpenLogs)
  for (const signal of flushSignals) process.off(signal, onSignal)
}
const register = (log: EventLog): void => {
  if (openLogs.size === 0) {
    process.on("exit", flushOpenLogs)
    for (const signal of flushSignals) process.on(signal, onSignal)
  }
  openLogs.add(log)
}
const unregister = (log: EventLog): void => {
  if (openLogs.delete(log) && openLogs.size === 0) removeProcessHandlers()
}

/**
 * The run's event log. The hot path hands it a builder (`record`); the log builds the event,
 * passes it to `onEvent` (the in-memory aggregation) and appends it to `events.jsonl`:
 *
 * - `"event"`: at once, one `writeSync` per event, before `record` returns. Any crash loses
 *   at most the event being written, at the price of a system call per measured call.
 * - `{ intervalMs, maxEvents }`, group commit (as databases commit a log): an event that
 *   arrives when nothing was written for `intervalMs` is written at the end of the current
 *   event-loop turn; events that arrive sooner join one write at most `intervalMs` after the
 *   previous one (or when `maxEvents` are pending). Building, aggregating and writing run in
 *   that batch, off the measured call's path. Everything pending is written when the process
 *   exits (normal end, `process.exit`, an uncaught exception), on SIGINT/SIGTERM/SIGHUP (then
 *   the process still ends as the signal would have), and when the run closes. SIGKILL, a
 *   native abort or a power loss lose what arrived after the last write: for calls that end
 *   more than `intervalMs` apart, at most the last event (of the current event-loop turn);
 *   for faster calls, at most the last `intervalMs` of them.
 *
 * Without a `path` (the in-memory recorder) events are built and aggregated at once.
 */
export class EventLog {
  private fd: number | undefined
  /** Whether events still go to the file (false after a write error or `close`). */
  private writing: boolean
  /** Where the next write goes (the file's size when opened, plus everything written since). */
  private position = 0
  private readonly inFlight = new Set<{ readonly data: Buffer; readonly position: number }>()
  private pending: Array<() => Event> = []
  private armed = false
  private immediate: ReturnType<typeof setImmediate> | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private lastWrite = Number.NEGATIVE_INFINITY
  private readonly intervalMs: number
  private readonly maxEvents: number
  private grouped: boolean
  private readonly onEvent: (event: Event) => void
  private readonly onError: (error: unknown) => void
  private readonly onTimer = () => {
    this.immediate = undefined
    this.timer = undefined
    this.flush(false)
  }
  readonly path: string | undefined

  constructor(
    path: string | undefined,
    mode: FlushMode,
    onEvent: (event: Event) => void,
    onError: (error: unknown) => void
  ) {
    this.path = path
    this.onEvent = onEvent
    this.onError = onError
    this.grouped = path !== undefined && mode !== "event"
    this.intervalMs = mode === "event" ? 0 : Math.max(0, mode.intervalMs)
    this.maxEvents = mode === "event" ? 1 : Math.max(1, mode.maxEvents)
    this.writing = path !== undefined
    if (path !== undefined) {
      Fs.mkdirSync(Path.dirname(path), { recursive: true })
      // not O_APPEND: Linux ignores pwrite's offset on such descriptors
      this.fd = Fs.openSync(path, Fs.constants.O_WRONLY | Fs.constants.O_CREAT)
      this.position = Fs.fstatSync(this.fd).size
    }
    if (this.grouped) {
      register(this)
    }
  }

  /** Records the event `build` returns (the hot path: in group mode only stores `build`). */
  record(build: () => Event): void {
    if (!this.grouped) {
      this.commit([build], true)
      return
    }
    this.pending.push(build)
    if (this.pending.length >= this.maxEvents) {
      this.flush(false)
      return
    }
    if (this.armed) return
    this.armed = true
    const since = performance.now() - this.lastWrite
    if (since >= this.intervalMs) {
      this.immediate = setImmediate(this.onTimer)
    } else {
      this.timer = setTimeout(this.onTimer, this.intervalMs - since)
      this.timer.unref()
    }
  }

  /**
   * Builds and aggregates everything pending and writes it: with `sync: false` (the group
   * timer) through an asynchronous positional write, off the event loop's thread; with
   * `sync: true` (the run's flush and close, exit, signals) with `writeSync` before
   * returning, writing again any asynchronous write that may not have reached the file.
   */
  flush(sync = true): void {
    if (this.armed) {
      this.armed = false
      if (this.immediate !== undefined) clearImmediate(this.immediate)
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.immediate = undefined
      this.timer = undefined
    }
    if (sync) this.rewriteInFlight()
    if (this.pending.length === 0) return
    const batch = this.pending
    this.pending = []
    this.commit(batch, sync)
  }

  private commit(batch: ReadonlyArray<() => Event>, sync: boolean): void {
    let data = ""
    for (const build of batch) {
      let event: Event
      try {
        event = build()
      } catch (error) {
        process.emitWarning(`perf-logger: recording an event failed: ${String(error)}`)
        continue
      }
      this.onEvent(event)
      if (this.writing) data += JSON.stringify(event) + "\n"
    }
    if (data.length > 0) this.write(Buffer.from(data), sync)
    this.lastWrite = performance.now()
  }

  /**
   * Writes at explicit offsets (`pwrite`): an asynchronous write that a process exit may have
   * cut off can be written again, synchronously, at the same place with the same bytes.
   * Measuring must never fail the measured program: a failed write (disk full, folder gone)
   * stops the log and is reported once through `onError`; aggregation carries on.
   */
  private write(data: Buffer, sync: boolean): void {
    const position = this.position
    this.position += data.length
    if (sync) {
      this.writeSyncAt(data, position)
      return
    }
    const entry = { data, position }
    this.inFlight.add(entry)
    Fs.write(this.fd!, data, 0, data.length, position, (error, written) => {
      this.inFlight.delete(entry)
      if (error !== null) this.stop(error)
      // a short write (a full disk) leaves the rest to be written synchronously, or stops the log
      else if (written < data.length) this.writeSyncAt(data.subarray(written), position + written)
      this.closeWhenIdle()
    })
  }

  private writeSyncAt(data: Buffer, position: number): void {
    if (!this.writing) return
    try {
      let written = 0
      while (written < data.length) {
        const wrote = Fs.writeSync(this.fd!, data, written, data.length - written, position + written)
        if (wrote === 0) throw new Error(`no progress writing ${this.path}`)
        written += wrote
      }
    } catch (error) {
      this.stop(error)
      this.closeWhenIdle()
    }
  }

  private rewriteInFlight(): void {
    for (const entry of this.inFlight) this.writeSyncAt(entry.data, entry.position)
  }

  private stop(error: unknown): void {
    if (!this.writing) return
    this.writing = false
    this.onError(error)
  }

  /** Closes the descriptor once nothing writes to it (an asynchronous write may still run). */
  private closeWhenIdle(): void {
    if (this.writing || this.fd === undefined || this.inFlight.size > 0) return
    const fd = this.fd
    this.fd = undefined
    try {
      Fs.closeSync(fd)
    } catch {
      // already unusable
    }
  }

  /** Writes everything pending and closes the file; later events are only aggregated. */
  close(): void {
    this.flush(true)
    if (this.grouped) unregister(this)
    this.grouped = false
    this.writing = false
    this.closeWhenIdle()
  }
}

const decodeLine = Boundary.jsonDecoder(EventSchema)
const typeOf = Boundary.jsonDecoder(Schema.Struct({ type: Schema.String }))

/**
 * Reads `events.jsonl`, each line decoded with the event schema: a torn last line (the one
 * event a crash may cut short) is skipped, and so is an event of a type this version does
 * not know (a newer writer's). A malformed line elsewhere is an error that names the line
 * and the field.
 */
export const parseEvents = (text: string, source = "events.jsonl"): Array<Event> => {
  const lines = text.split("\n")
  const events: Array<Event> = []
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!
    if (line.trim().length === 0) continue
    const decoded = decodeLine(line)
    if (decoded._tag === "Success") {
      events.push(decoded.value)
      continue
    }
    const typed = typeOf(line)
    if (typed._tag === "Success" && !eventTypes.has(typed.value.type)) continue
    const isLast = lines.slice(index + 1).every((rest) => rest.trim().length === 0)
    if (isLast && !text.endsWith("\n") && typed._tag === "Failure") continue
    const what = typed._tag === "Failure" ? "not a JSON event" : `not a valid ${typed.value.type} event`
    throw new PerfLoggerError({
      reason: new InvalidRunFile({
        path: source,
        line: index + 1,
        description: `${source}:${index + 1}: ${what} (${Boundary.formatProblems(decoded.problems)})`
      })
    })
  }
  return events
}
