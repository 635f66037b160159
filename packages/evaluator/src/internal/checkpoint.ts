/**
 * The run's JSONL checkpoint as the store of its records. Finished items are appended one
 * line each; the runner remembers where each line starts and how long it is, and keeps in
 * memory only what the summaries read (`Report.slim`) and the item's timing, so a 100k-item
 * run does not hold 100k records. The report reads each record back from its line when it
 * is written. The file is read in chunks, never whole.
 * @internal
 */
import { Boundary } from "@hasten/core"
import { Schema } from "effect"
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs"
import type { ItemRecord, ItemTiming } from "../ItemRecord.js"

/** One line of a checkpoint that holds an item. */
export interface ItemLine {
  readonly type: "item"
  readonly record: ItemRecord
  readonly timing: ItemTiming
}

// What identifies a checkpoint line; an item line is kept as written.
const checkpointLine = Boundary.decoder(Schema.Union([
  Schema.Struct({ type: Schema.Literal("header"), config: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("item"),
    record: Schema.Struct({ candidate: Schema.String, itemId: Schema.String, trial: Schema.Number }),
    timing: Schema.Unknown
  })
]))

const CHUNK = 1 << 20
const NEWLINE = 0x0a

/**
 * Calls `f` with each complete line of the file open at `fd` (up to `size` bytes), its
 * byte offset and byte length (without the newline).
 */
const forEachLine = (fd: number, size: number, f: (line: string, offset: number, length: number) => void): void => {
  let carry = Buffer.alloc(0)
  let carryAt = 0
  const chunk = Buffer.allocUnsafe(CHUNK)
  for (let position = 0; position < size;) {
    const read = readSync(fd, chunk, 0, Math.min(CHUNK, size - position), position)
    if (read === 0) break
    const buffer = carry.length === 0 ? chunk.subarray(0, read) : Buffer.concat([carry, chunk.subarray(0, read)])
    const base = carry.length === 0 ? position : carryAt
    let start = 0
    for (let end = buffer.indexOf(NEWLINE, start); end >= 0; end = buffer.indexOf(NEWLINE, start)) {
      if (end > start) f(buffer.toString("utf8", start, end), base + start, end - start)
      start = end + 1
    }
    carry = Buffer.from(buffer.subarray(start))
    carryAt = base + start
    position += read
  }
}

/** The last newline at or before `size - 1`, or -1: reads backwards in chunks. */
const lastNewline = (fd: number, size: number): number => {
  const chunk = Buffer.allocUnsafe(64 * 1024)
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length)
    const read = readSync(fd, chunk, 0, end - start, start)
    const index = chunk.subarray(0, read).lastIndexOf(NEWLINE)
    if (index >= 0) return start + index
    end = start
  }
  return -1
}

/** What reading a checkpoint found. */
export interface Found {
  /** The config hash of its header line. */
  readonly header: string | undefined
  /** Item lines read (a later line of the same item replaces an earlier one). */
  readonly items: number
  /** Lines that did not parse (cut off when a run was killed): those items run again. */
  readonly torn: number
}

/**
 * The run's finished tasks, by task index: what summaries read (`Report.slim`), the timing,
 * the place of the record's checkpoint line, and the whole record when the run keeps
 * records in memory. Columns of typed arrays, so a 100k-task run holds no per-task map entry
 * or key string.
 */
export class RecordTable {
  readonly #done: Uint8Array
  readonly #slim: Array<ItemRecord | undefined>
  readonly #keep: "full" | "slim"
  /** Whole records: every one with `keep: "full"`, else only those without a checkpoint line. */
  readonly #full: Array<ItemRecord | undefined>
  readonly #at: Float64Array
  readonly #length: Uint32Array
  readonly #millis: Float64Array
  readonly #calls: Uint32Array
  readonly #cachedCalls: Uint32Array
  readonly #resumed: Uint8Array
  constructor(readonly size: number, keep: "full" | "slim") {
    this.#done = new Uint8Array(size)
    this.#slim = Array.from({ length: size })
    this.#keep = keep
    this.#full = Array.from({ length: size })
    this.#at = new Float64Array(size).fill(-1)
    this.#length = new Uint32Array(size)
    this.#millis = new Float64Array(size)
    this.#calls = new Uint32Array(size)
    this.#cachedCalls = new Uint32Array(size)
    this.#resumed = new Uint8Array(size)
  }

  /** Files task `index`'s record; `slim` is `Report.slim(record)`. */
  set(
    index: number,
    record: ItemRecord,
    slim: ItemRecord,
    timing: ItemTiming,
    line: { readonly at: number; readonly length: number } | undefined
  ): void {
    this.#done[index] = 1
    this.#slim[index] = slim
    this.#full[index] = this.#keep === "full" || line === undefined ? record : undefined
    this.#at[index] = line?.at ?? -1
    this.#length[index] = line?.length ?? 0
    this.#millis[index] = timing.millis
    this.#calls[index] = timing.calls
    this.#cachedCalls[index] = timing.cachedCalls
    this.#resumed[index] = timing.resumed ? 1 : 0
  }

  /** Forgets task `index` (an errored record that runs again). */
  clear(index: number): void {
    this.#done[index] = 0
    this.#slim[index] = undefined
    this.#full[index] = undefined
  }

  has(index: number): boolean {
    return this.#done[index] === 1
  }

  slim(index: number): ItemRecord {
    return this.#slim[index]!
  }

  timing(index: number): ItemTiming {
    return {
      millis: this.#millis[index]!,
      cachedCalls: this.#cachedCalls[index]!,
      calls: this.#calls[index]!,
      resumed: this.#resumed[index] === 1
    }
  }

  /** The whole record: kept, or read back from its checkpoint line. */
  full(index: number, checkpoint: Checkpoint | undefined): ItemRecord {
    const kept = this.#full[index]
    if (kept !== undefined) return kept
    if (checkpoint === undefined || this.#at[index]! < 0) throw new Error(`record ${index} is neither kept nor in the checkpoint`)
    return checkpoint.record(this.#at[index]!, this.#length[index]!)
  }
}

/**
 * An open checkpoint: reads what it holds, appends records, reads a record back. Torn
 * tails (a run killed mid-write) are cut off when it opens, so new lines start on their own.
 */
export class Checkpoint {
  private size: number
  private constructor(private readonly fd: number, readonly path: string) {
    this.size = fstatSync(fd).size
  }

  /** Opens (creating) the checkpoint at `path` for reading and appending. */
  static open(path: string): Checkpoint {
    const checkpoint = new Checkpoint(openSync(path, "a+"), path)
    if (checkpoint.size > 0) {
      const last = lastNewline(checkpoint.fd, checkpoint.size)
      if (last !== checkpoint.size - 1) {
        ftruncateSync(checkpoint.fd, last + 1)
        checkpoint.size = last + 1
      }
    }
    return checkpoint
  }

  /** Whether the file has any line. */
  get empty(): boolean {
    return this.size === 0
  }

  /**
   * Reads every line: the header's config hash, and each item line to `onItem` with the
   * place of its line (a later line of the same item comes later and replaces it).
   */
  read(onItem: (record: ItemRecord, timing: ItemTiming, line: { readonly at: number; readonly length: number }) => void): Found {
    let header: string | undefined
    let items = 0
    let torn = 0
    forEachLine(this.fd, this.size, (text, at, length) => {
      if (text.trim().length === 0) return
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch {
        torn++
        return
      }
      const line = checkpointLine(value)
      if (line._tag === "Failure") return // not a line this version writes
      if (line.value.type === "header") {
        header = line.value.config
        return
      }
      items++
      const entry = value as ItemLine
      onItem(entry.record, entry.timing, { at, length })
    })
    return { header, items, torn }
  }

  /** Appends one line (no newline in `text`); returns its byte offset and length. */
  append(text: string): { readonly at: number; readonly length: number } {
    const bytes = Buffer.from(text + "\n", "utf8")
    const at = this.size
    writeSync(this.fd, bytes, 0, bytes.length)
    this.size += bytes.length
    return { at, length: bytes.length - 1 }
  }

  /** The record of the item line at `at`. */
  record(at: number, length: number): ItemRecord {
    const buffer = Buffer.allocUnsafe(length)
    readSync(this.fd, buffer, 0, length, at)
    return (JSON.parse(buffer.toString("utf8")) as ItemLine).record
  }

  close(): void {
    closeSync(this.fd)
  }
}
