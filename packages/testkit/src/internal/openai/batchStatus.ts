/**
 * A batch's life, derived from the clock: `validating`, `in_progress`, `finalizing`, then
 * `completed`, `expired`, `failed` or (after a cancel) `cancelling` and `cancelled`, with
 * the output and error files written when it ends.
 * @since 0.1.0
 */
import type { Engine } from "../engine/engine.js"
import { type Batch, saveFile } from "./store.js"

const batchTiming = (engine: Engine) => {
  const options = engine.options.batch
  return {
    validatingMs: options?.validatingMs ?? 20,
    perRequestMs: options?.perRequestMs ?? 2,
    finalizingMs: options?.finalizingMs ?? 20,
    expiresAfterMs: options?.expiresAfterMs ?? 24 * 3_600_000
  }
}

const toSeconds = (ms: number) => Math.floor(ms / 1000)

/** Advances a batch to where the clock says it is, and renders it. */
export const renderBatch = (engine: Engine, batch: Batch, at: number) => {
  const timing = batchTiming(engine)
  const total = batch.lines.length
  const inProgressAt = batch.createdAt + timing.validatingMs
  const processingEnd = inProgressAt + timing.perRequestMs * total
  const expiresAt = batch.createdAt + timing.expiresAfterMs
  const processedBy = (instant: number) =>
    instant < inProgressAt
      ? 0
      : timing.perRequestMs <= 0
      ? total
      : Math.min(total, Math.floor((instant - inProgressAt) / timing.perRequestMs))
  const base = {
    id: batch.id,
    object: "batch",
    endpoint: batch.endpoint,
    model: null,
    errors: null as unknown,
    input_file_id: batch.inputFileId,
    completion_window: "24h",
    status: "validating",
    output_file_id: null as string | null,
    error_file_id: null as string | null,
    created_at: toSeconds(batch.createdAt),
    in_progress_at: null as number | null,
    expires_at: toSeconds(expiresAt),
    finalizing_at: null as number | null,
    completed_at: null as number | null,
    failed_at: null as number | null,
    expired_at: null as number | null,
    cancelling_at: null as number | null,
    cancelled_at: null as number | null,
    request_counts: { total: batch.failure === undefined ? total : 0, completed: 0, failed: 0 },
    metadata: batch.metadata ?? null,
    usage: null
  }
  if (batch.failure !== undefined) {
    if (at < inProgressAt) return base
    return {
      ...base,
      status: "failed",
      failed_at: toSeconds(inProgressAt),
      errors: { object: "list", data: [batch.failure] }
    }
  }
  const finish = (status: string, atInstant: number, processed: number, reason: { code: string; message: string } | undefined) => {
    if (batch.terminal === undefined) {
      const results = batch.results!
      const done = results.slice(0, processed)
      const outputs = done.filter((result) => result.ok).map((result) => result.line)
      const errors = done.filter((result) => !result.ok).map((result) => result.line)
      if (reason !== undefined) {
        for (const line of batch.lines.slice(processed)) {
          errors.push(JSON.stringify({ id: engine.id("batch_req_"), custom_id: line.custom_id, response: null, error: reason }))
        }
      }
      const outputFileId = outputs.length > 0
        ? saveFile(engine, `${batch.id}_output.jsonl`, "batch_output", Buffer.from(outputs.join("\n") + "\n")).meta.id
        : null
      const errorFileId = errors.length > 0
        ? saveFile(engine, `${batch.id}_error.jsonl`, "batch_output", Buffer.from(errors.join("\n") + "\n")).meta.id
        : null
      batch.terminal = { status, at: atInstant, outputFileId, errorFileId, completed: outputs.length, failed: errors.length }
    }
    const terminal = batch.terminal
    return {
      ...base,
      status: terminal.status,
      in_progress_at: toSeconds(inProgressAt),
      output_file_id: terminal.outputFileId,
      error_file_id: terminal.errorFileId,
      request_counts: { total, completed: terminal.completed, failed: terminal.failed }
    }
  }
  if (batch.cancelledAt !== undefined) {
    const cancelledAt = batch.cancelledAt
    if (at < cancelledAt + timing.finalizingMs || batch.results === undefined) {
      return {
        ...base,
        status: "cancelling",
        in_progress_at: at >= inProgressAt ? toSeconds(inProgressAt) : null,
        cancelling_at: toSeconds(cancelledAt)
      }
    }
    return {
      ...finish("cancelled", cancelledAt + timing.finalizingMs, processedBy(cancelledAt), undefined),
      cancelling_at: toSeconds(cancelledAt),
      cancelled_at: toSeconds(cancelledAt + timing.finalizingMs)
    }
  }
  if (at < inProgressAt) return base
  if (processingEnd > expiresAt && at >= expiresAt && batch.results !== undefined) {
    return {
      ...finish("expired", expiresAt, processedBy(expiresAt), {
        code: "batch_expired",
        message: "This request could not be executed before the completion window expired."
      }),
      expired_at: toSeconds(expiresAt)
    }
  }
  const processed = processedBy(Math.min(at, expiresAt))
  if (at < processingEnd || processingEnd > expiresAt || batch.results === undefined) {
    const completed = batch.results === undefined ? 0 : batch.results.slice(0, processed).filter((result) => result.ok).length
    return {
      ...base,
      status: at >= processingEnd && processingEnd <= expiresAt ? "finalizing" : "in_progress",
      in_progress_at: toSeconds(inProgressAt),
      request_counts: { total, completed, failed: Math.min(processed, batch.results?.length ?? 0) - completed }
    }
  }
  if (at < processingEnd + timing.finalizingMs) {
    return { ...base, status: "finalizing", in_progress_at: toSeconds(inProgressAt), finalizing_at: toSeconds(processingEnd) }
  }
  return {
    ...finish("completed", processingEnd + timing.finalizingMs, total, undefined),
    finalizing_at: toSeconds(processingEnd),
    completed_at: toSeconds(processingEnd + timing.finalizingMs)
  }
}
