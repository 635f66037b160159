/**
 * The SQLite store's commits on a worker thread: the write-behind queue's transactions (and
 * the WAL checkpoints SQLite runs in the committing connection, with their fsyncs) leave the
 * event loop that answers requests. The worker has its own connection to the same file, so
 * the file stays shared with other processes exactly as before (WAL, busy timeout, upserts).
 * @since 0.1.0
 */
import { Worker } from "node:worker_threads"
import { upsertSql } from "./sqlite.js"

/** One row as the worker receives it: key, namespace, value, createdAt, expiresAt or null. */
export type WireRow = readonly [string, string, string, number, number | null]

/** Plain CommonJS run with `eval`, so it loads the same from `src` and `dist`: Node built-ins only. */
const source = `
const { parentPort, workerData } = require("node:worker_threads")
const { DatabaseSync } = require("node:sqlite")
let db
let upsert
let openError
try {
  db = new DatabaseSync(workerData.path, { timeout: workerData.busyTimeoutMillis })
  db.exec("PRAGMA busy_timeout = " + workerData.busyTimeoutMillis)
  db.exec("PRAGMA synchronous = NORMAL")
  upsert = db.prepare(workerData.upsertSql)
} catch (error) {
  openError = error instanceof Error ? error.message : String(error)
}
parentPort.on("message", (message) => {
  if (message.close) {
    try { if (db !== undefined && db.isOpen) db.close() } catch {}
    parentPort.postMessage({ id: message.id, closed: true })
    parentPort.close()
    return
  }
  let error = openError
  if (error === undefined) {
    try {
      db.exec("BEGIN IMMEDIATE")
      try {
        for (const row of message.rows) upsert.run(row[0], row[1], row[2], Buffer.byteLength(row[2]), row[3], row[4])
        db.exec("COMMIT")
      } catch (failure) {
        if (db.isTransaction) db.exec("ROLLBACK")
        throw failure
      }
    } catch (failure) {
      error = failure instanceof Error ? failure.message : String(failure)
    }
  }
  parentPort.postMessage({ id: message.id, error })
})
`

interface Reply {
  readonly id: number
  readonly error?: string | undefined
  readonly closed?: boolean
}

/**
 * A writer thread for one database file. `write` sends a batch and calls `done` with an error
 * message (or `undefined`) once it is committed; `onExit` is told when the thread is gone
 * (batches still unanswered then were not committed). The thread does not keep the process
 * alive while nothing is in flight.
 */
export class SqliteWriter {
  readonly #worker: Worker
  readonly #waiting = new Map<number, (error: string | undefined) => void>()
  #next = 0
  #alive = true

  constructor(path: string, busyTimeoutMillis: number, onExit: () => void) {
    this.#worker = new Worker(source, {
      eval: true,
      workerData: { path, busyTimeoutMillis, upsertSql },
      // the parent's loaders (tsx, --import) are not needed by a thread of built-ins
      execArgv: [],
      env: {}
    })
    this.#worker.unref()
    this.#worker.on("message", (reply: Reply) => {
      const done = this.#waiting.get(reply.id)
      this.#waiting.delete(reply.id)
      if (this.#waiting.size === 0) this.#worker.unref()
      done?.(reply.error)
    })
    const gone = () => {
      if (!this.#alive) return
      this.#alive = false
      const waiting = [...this.#waiting.values()]
      this.#waiting.clear()
      for (const done of waiting) done("the SQLite writer thread stopped")
      onExit()
    }
    this.#worker.on("error", gone)
    this.#worker.on("exit", gone)
  }

  get alive(): boolean {
    return this.#alive
  }

  /** Batches sent and not yet answered. */
  get inFlight(): number {
    return this.#waiting.size
  }

  write(rows: ReadonlyArray<WireRow>, done: (error: string | undefined) => void): void {
    const id = this.#next++
    if (this.#waiting.size === 0) this.#worker.ref()
    this.#waiting.set(id, done)
    // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
    this.#worker.postMessage({ id, rows })
  }

  /** Closes the thread's connection once the batches before it are committed. */
  close(done: () => void): void {
    if (!this.#alive) return done()
    const id = this.#next++
    if (this.#waiting.size === 0) this.#worker.ref()
    this.#waiting.set(id, () => done())
    // oxlint-disable-next-line unicorn/require-post-message-target-origin -- a worker thread, not a window
    this.#worker.postMessage({ id, close: true })
  }
}
