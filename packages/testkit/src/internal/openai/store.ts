/**
 * The files and batches one simulator holds, and saving a file.
 * @since 0.1.0
 */
import type { Engine } from "../engine/engine.js"
import { seconds } from "./bodies.js"

/** An uploaded or generated file: its OpenAI metadata and bytes. */
export interface StoredFile {
  readonly meta: {
    readonly id: string
    readonly object: "file"
    readonly bytes: number
    readonly created_at: number
    readonly filename: string
    readonly purpose: string
    readonly status: "processed"
    readonly status_details: null
    readonly expires_at: null
  }
  readonly content: Buffer
}

/** One request line of a batch input file. */
export interface BatchLine {
  readonly custom_id: string
  readonly body: unknown
}

/** One processed line: a line of the output file (`ok`) or of the error file. */
export interface BatchResult {
  readonly customId: string
  readonly ok: boolean
  readonly line: string
}

/** A batch as created; its status is derived from the clock when read (see `renderBatch`). */
export interface Batch {
  readonly id: string
  readonly endpoint: string
  readonly inputFileId: string
  readonly metadata: unknown
  readonly createdAt: number
  readonly lines: ReadonlyArray<BatchLine>
  readonly failure?: { readonly code: string; readonly message: string; readonly line: number | null; readonly param: string | null }
  results?: ReadonlyArray<BatchResult>
  cancelledAt?: number
  terminal?: { status: string; at: number; outputFileId: string | null; errorFileId: string | null; completed: number; failed: number }
}

/** Files and batches of one simulator. */
export interface BatchStore {
  readonly files: Map<string, StoredFile>
  readonly batches: Map<string, Batch>
}

const stores = new WeakMap<Engine, BatchStore>()

/** The engine's files and batches, created empty on first use. */
export const storeOf = (engine: Engine): BatchStore => {
  let store = stores.get(engine)
  if (store === undefined) {
    store = { files: new Map(), batches: new Map() }
    stores.set(engine, store)
  }
  return store
}

/** Stores a file and returns it. */
export const saveFile = (engine: Engine, filename: string, purpose: string, content: Buffer): StoredFile => {
  const file: StoredFile = {
    meta: {
      id: engine.id("file-"),
      object: "file",
      bytes: content.length,
      created_at: seconds(),
      filename,
      purpose,
      status: "processed",
      status_details: null,
      expires_at: null
    },
    content
  }
  storeOf(engine).files.set(file.meta.id, file)
  return file
}
