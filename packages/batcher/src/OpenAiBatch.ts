/**
 * The OpenAI Batch API for offline jobs: JSONL upload, create, poll with backoff,
 * download output and error files, map results back by `custom_id`, and resubmit only
 * the items that failed transiently or expired. Usable alone (`runJob`) or as a batch
 * backend for `Batcher.layer` (`backend`). Takes an `OpenAI` client from the official SDK
 * (any object with the same `files`/`batches` methods), so this package does not import
 * the SDK itself.
 * @since 0.1.0
 */
import { Boundary, Completion, type CompletionRequest, FieldSupport, LlmError } from "@hasten/core"
import { Duration, Effect, Exit, Schema } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import type { BatchBackend } from "./Batcher.js"

/** The batch object as the API returns it (fields used here). @category models @since 0.1.0 */
export interface BatchObject {
  readonly id: string
  readonly status: "validating" | "failed" | "in_progress" | "finalizing" | "completed" | "expired" | "cancelling" | "cancelled" | string
  readonly output_file_id?: string | null
  readonly error_file_id?: string | null
  readonly errors?: {
    readonly data?: ReadonlyArray<{ readonly code?: string | null; readonly message?: string | null; readonly line?: number | null }>
  } | null
}

/** The slice of the official `OpenAI` client this module uses. @category models @since 0.1.0 */
export interface BatchClient {
  readonly files: {
    create(body: { file: File; purpose: "batch" }, options?: { signal?: AbortSignal }): Promise<{ readonly id: string }>
    content(fileId: string, options?: { signal?: AbortSignal }): Promise<{ text(): Promise<string> }>
  }
  readonly batches: {
    create(
      body: {
        input_file_id: string
        endpoint: "/v1/chat/completions" | "/v1/embeddings" | "/v1/completions"
        completion_window: "24h"
        metadata?: Record<string, string>
      },
      options?: { signal?: AbortSignal }
    ): Promise<BatchObject>
    retrieve(batchId: string, options?: { signal?: AbortSignal }): Promise<BatchObject>
    cancel(batchId: string, options?: { signal?: AbortSignal }): Promise<BatchObject>
  }
}

/** One line of a job. @category models @since 0.1.0 */
export interface JobItem {
  readonly customId: string
  /** The request body for `endpoint` (e.g. a chat completion body). */
  readonly body: Record<string, unknown>
}

/** One result, by `customId`. @category models @since 0.1.0 */
export type JobResult =
  | { readonly customId: string; readonly ok: true; readonly status: number; readonly body: Record<string, unknown> }
  | { readonly customId: string; readonly ok: false; readonly status?: number; readonly code: string; readonly message: string }

/** Options for {@link runJob}. @category configuration @since 0.1.0 */
export interface JobOptions {
  readonly endpoint?: "/v1/chat/completions" | "/v1/embeddings" | "/v1/completions"
  /** First poll delay (default 1 s); doubles each poll up to `maxPollInterval`. */
  readonly pollInterval?: Duration.Input
  /** Cap on the poll delay (default 60 s). */
  readonly maxPollInterval?: Duration.Input
  /** How many times items that failed transiently or expired are resubmitted (default 2). */
  readonly maxResubmits?: number
  readonly metadata?: Record<string, string>
  /**
   * Where the ids of in-flight batches are kept ({@link journalFile}): a job whose exact
   * items already have a batch in flight re-attaches to it (polls it, downloads its results)
   * instead of uploading and paying for it again, so a restarted run picks up where the
   * killed one left off. With a journal, interrupting the job leaves the batch running (a
   * restart re-attaches) instead of cancelling it.
   * @since 0.3.0
   */
  readonly journal?: Journal
}

/** What a journal keeps for one in-flight batch. @category models @since 0.3.0 */
export interface JournalEntry {
  readonly batchId: string
  readonly inputFileId: string
  /** The custom ids of the batch's items, in order. */
  readonly customIds: ReadonlyArray<string>
}

/**
 * Persists in-flight batches by job key (a hash of the endpoint and the exact JSONL), so a
 * restarted run finds the batch its items were sent in.
 * @category models @since 0.3.0
 */
export interface Journal {
  readonly get: (key: string) => Effect.Effect<JournalEntry | undefined>
  readonly set: (key: string, entry: JournalEntry) => Effect.Effect<void>
  readonly remove: (key: string) => Effect.Effect<void>
}

/** The key a journal files a batch under: sha256 of the endpoint and the batch's JSONL. @category constructors @since 0.3.0 */
export const jobKey = (endpoint: string, jsonl: string): string => createHash("sha256").update(`${endpoint}\n${jsonl}`).digest("hex")

/**
 * A journal in a JSON file (`{ [jobKey]: JournalEntry }`), rewritten atomically (a temporary
 * file renamed over it) on every change, so a kill never leaves it half written. A file that
 * cannot be read as a journal is treated as empty.
 * @category constructors @since 0.3.0
 */
export const journalFile = (path: string): Journal => {
  const read = (): Record<string, JournalEntry> => {
    if (!existsSync(path)) return {}
    try {
      const value = JSON.parse(readFileSync(path, "utf8")) as unknown
      return typeof value === "object" && value !== null && !Array.isArray(value) ? value as Record<string, JournalEntry> : {}
    } catch {
      return {}
    }
  }
  const write = (entries: Record<string, JournalEntry>) => {
    mkdirSync(Path.dirname(Path.resolve(path)), { recursive: true })
    const temporary = `${path}.${process.pid}.tmp`
    writeFileSync(temporary, JSON.stringify(entries, null, 2) + "\n")
    renameSync(temporary, path)
  }
  return {
    get: (key) => Effect.sync(() => read()[key]),
    set: (key, entry) => Effect.sync(() => write({ ...read(), [key]: entry })),
    remove: (key) =>
      Effect.sync(() => {
        const entries = read()
        if (!(key in entries)) return
        delete entries[key]
        write(entries)
      })
  }
}

/** A journal in memory (one process; for tests and for sharing between jobs of one run). @category constructors @since 0.3.0 */
export const journalMemory = (): Journal => {
  const entries = new Map<string, JournalEntry>()
  return {
    get: (key) => Effect.sync(() => entries.get(key)),
    set: (key, entry) => Effect.sync(() => void entries.set(key, entry)),
    remove: (key) => Effect.sync(() => void entries.delete(key))
  }
}

const provider = "openai-batch"

const failure = (description: string, error?: unknown): LlmError.LlmError => {
  const status = typeof error === "object" && error !== null && "status" in error
    ? Number((error as { status: unknown }).status)
    : undefined
  const message = error instanceof Error ? `${description}: ${error.message}` : description
  return LlmError.make(
    provider,
    status !== undefined && Number.isFinite(status)
      ? LlmError.fromHttpStatus({ status, message })
      : new LlmError.Transport({ description: message })
  )
}

const call = <A>(description: string, run: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (error) => failure(description, error) })

/** Whether a failed item is worth resubmitting (expired, rate-limited, 5xx). @category predicates @since 0.1.0 */
export const isTransient = (result: Extract<JobResult, { ok: false }>): boolean =>
  result.code === "batch_expired" || result.code === "batch_cancelled" || result.status === 429 ||
  (result.status !== undefined && result.status >= 500) || result.code === "rate_limit_exceeded" || result.code === "server_error"

const optional = Schema.optionalKey
const nullable = <S extends Schema.Constraint>(schema: S) => optional(Schema.NullOr(schema))

/** One line of a Batch API output or error file. */
const ResultLine = Schema.Struct({
  custom_id: Schema.String,
  response: nullable(Schema.Struct({
    status_code: optional(Schema.Number),
    body: optional(Schema.Record(Schema.String, Schema.Unknown))
  })),
  error: nullable(Schema.Struct({ code: nullable(Schema.String), message: nullable(Schema.String) }))
})

const resultLines = Boundary.decodeJsonLines(ResultLine)

/**
 * Parses a Batch API output or error file (JSONL) into results, each line decoded by a
 * schema. A bad line fails with its number and the field (`result file line 3: custom_id:
 * Missing key`).
 * @category parsers @since 0.1.0
 */
export const parseResults = (jsonl: string): Effect.Effect<Array<JobResult>, LlmError.LlmError> =>
  Effect.suspend(() => {
    const results: Array<JobResult> = []
    for (const { line, result } of resultLines(jsonl)) {
      if (result._tag === "Failure") {
        return Effect.fail(LlmError.make(
          provider,
          new LlmError.BadResponse({
            description: `result file line ${line}: ${Boundary.formatProblems(result.problems)}`
          })
        ))
      }
      const row = result.value
      const customId = row.custom_id
      const status = row.response?.status_code
      if (row.error == null && status !== undefined && status >= 200 && status < 300 && row.response?.body !== undefined) {
        results.push({ customId, ok: true, status, body: row.response.body })
      } else {
        const bodyError = (row.response?.body as { error?: { code?: string; message?: string } } | undefined)?.error
        results.push({
          customId,
          ok: false,
          ...(status !== undefined ? { status } : {}),
          code: row.error?.code ?? bodyError?.code ?? "unknown",
          message: row.error?.message ?? bodyError?.message ?? "no message"
        })
      }
    }
    return Effect.succeed(results)
  })

const terminal = new Set(["completed", "failed", "expired", "cancelled"])

/** Submits one JSONL file, polls it to a terminal state and returns its results. */
const submitOnce = (client: BatchClient, items: ReadonlyArray<JobItem>, options: JobOptions) =>
  Effect.gen(function*() {
    const endpoint = options.endpoint ?? "/v1/chat/completions"
    const jsonl = items.map((item) =>
      JSON.stringify({ custom_id: item.customId, method: "POST", url: endpoint, body: item.body })
    ).join("\n") + "\n"
    const journal = options.journal
    const key = jobKey(endpoint, jsonl)
    // A batch of exactly these items already in flight (a restarted run): re-attach to it.
    const previous = journal === undefined ? undefined : yield* journal.get(key)
    let attached: BatchObject | undefined
    if (previous !== undefined) {
      const found = yield* Effect.exit(call("re-attaching to the batch", (signal) => client.batches.retrieve(previous.batchId, { signal })))
      if (Exit.isSuccess(found)) attached = found.value
      else if (
        found.cause.reasons.some((reason) =>
          reason._tag === "Fail" && reason.error.reason._tag === "InvalidRequest" && reason.error.reason.status === 404
        )
      ) {
        // the API no longer knows it (404): submit again
        yield* journal!.remove(key)
      } else return yield* Effect.failCause(found.cause)
    }
    let batch: BatchObject
    if (attached !== undefined) {
      batch = attached
      yield* Effect.annotateCurrentSpan({ "openai.batch.reattached": true })
    } else {
      const file = yield* call(
        "uploading the batch file",
        (signal) =>
          client.files.create({ file: new File([jsonl], "hasten-batch.jsonl", { type: "application/jsonl" }), purpose: "batch" }, {
            signal
          })
      )
      batch = yield* call("creating the batch", (signal) =>
        client.batches.create({
          input_file_id: file.id,
          endpoint,
          completion_window: "24h",
          ...(options.metadata ? { metadata: options.metadata } : {})
        }, { signal }))
      if (journal !== undefined) {
        yield* journal.set(key, {
          batchId: batch.id,
          inputFileId: file.id,
          customIds: items.map((item) => item.customId)
        })
      }
    }
    yield* Effect.annotateCurrentSpan({ "openai.batch.id": batch.id, "openai.batch.items": items.length })
    let delay = Duration.toMillis(Duration.fromInputUnsafe(options.pollInterval ?? "1 second"))
    const maxDelay = Duration.toMillis(Duration.fromInputUnsafe(options.maxPollInterval ?? "60 seconds"))
    // Without a journal an interrupted job cancels its batch; with one the batch runs on, for a restart to re-attach to.
    const cancelOnInterrupt = journal !== undefined
      ? <A, E, R>(effect: Effect.Effect<A, E, R>) => effect
      : Effect.onInterrupt(() => Effect.ignore(call("cancelling the batch", (signal) => client.batches.cancel(batch.id, { signal }))))
    while (!terminal.has(batch.status)) {
      yield* Effect.sleep(Duration.millis(delay)).pipe(cancelOnInterrupt)
      delay = Math.min(maxDelay, delay * 2)
      const id = batch.id
      batch = yield* call("polling the batch", (signal) => client.batches.retrieve(id, { signal })).pipe(cancelOnInterrupt)
    }
    if (batch.status === "failed") {
      if (journal !== undefined) yield* journal.remove(key)
      const reasons = (batch.errors?.data ?? []).map((error) =>
        `${error.code ?? "error"}${error.line != null ? ` (line ${error.line})` : ""}: ${error.message ?? ""}`
      )
      return yield* Effect.fail(
        LlmError.make(
          provider,
          new LlmError.InvalidRequest({ description: `batch ${batch.id} failed validation: ${reasons.join("; ") || "no reason given"}` })
        )
      )
    }
    const download = (fileId: string | null | undefined) =>
      fileId == null
        ? Effect.succeed([] as Array<JobResult>)
        : call("downloading a result file", (signal) => client.files.content(fileId, { signal }).then((response) => response.text())).pipe(
          Effect.flatMap(parseResults)
        )
    const output = yield* download(batch.output_file_id)
    const errors = yield* download(batch.error_file_id)
    // the results are in hand: the batch is no longer in flight
    if (journal !== undefined) yield* journal.remove(key)
    const byId = new Map<string, JobResult>()
    for (const result of [...errors, ...output]) {
      byId.set(result.customId, result)
    }
    // Items the batch never reached (expired or cancelled before them) are transient failures.
    return items.map((item): JobResult =>
      byId.get(item.customId) ??
        {
          customId: item.customId,
          ok: false,
          code: `batch_${batch.status}`,
          message: `batch ${batch.id} ended ${batch.status} before this item ran`
        }
    )
  })

/**
 * Runs a job to completion: submit, poll with exponential backoff, collect results,
 * and resubmit only transient failures (expired, 429, 5xx) up to `maxResubmits` times.
 * Results come back in input order. Interrupting the effect cancels the batch (unless
 * `journal` is set: then the batch runs on, and a restarted job with the same items
 * re-attaches to it instead of submitting again).
 * @category constructors @since 0.1.0
 */
export const runJob = Effect.fn("OpenAiBatch.runJob")(
  function*(client: BatchClient, items: ReadonlyArray<JobItem>, options: JobOptions = {}) {
    const ids = new Set<string>()
    for (const item of items) {
      if (ids.has(item.customId)) {
        return yield* Effect.fail(
          LlmError.make(provider, new LlmError.InvalidRequest({ description: `duplicate custom_id ${item.customId}` }))
        )
      }
      ids.add(item.customId)
    }
    const final = new Map<string, JobResult>()
    let pending = items
    const maxResubmits = options.maxResubmits ?? 2
    for (let round = 0; round <= maxResubmits && pending.length > 0; round++) {
      const results = yield* submitOnce(client, pending, options)
      const retry: Array<JobItem> = []
      results.forEach((result, index) => {
        final.set(result.customId, result)
        if (!result.ok && isTransient(result)) retry.push(pending[index]!)
      })
      yield* Effect.annotateCurrentSpan({ [`openai.batch.round${round}.retry`]: retry.length })
      pending = retry
    }
    return items.map((item) => final.get(item.customId)!)
  }
)

/**
 * How the Batch API backend treats every request field: OpenAI's chat-completions members
 * are sent, the rest refused with `InvalidRequest` naming the field — never dropped.
 * @category utils @since 0.3.0
 */
export const fieldSupport: FieldSupport.FieldSupport = {
  model: FieldSupport.mapped("`model`"),
  messages: FieldSupport.mapped("`messages`"),
  prompt: FieldSupport.mapped("one user message"),
  maxTokens: FieldSupport.param("max_tokens"),
  temperature: FieldSupport.param("temperature"),
  topP: FieldSupport.param("top_p"),
  topK: FieldSupport.refused("OpenAI's API takes no top-k parameter"),
  seed: FieldSupport.param("seed"),
  stop: FieldSupport.param("stop"),
  adapter: FieldSupport.refused("OpenAI serves fine-tunes as model ids: name the fine-tuned model in `model`"),
  responseFormat: FieldSupport.mapped("`response_format` (`json_schema`, or `json_object`)"),
  repeatPenalty: FieldSupport.refused("OpenAI's API takes no repeat penalty: use frequencyPenalty or presencePenalty"),
  frequencyPenalty: FieldSupport.param("frequency_penalty"),
  presencePenalty: FieldSupport.param("presence_penalty"),
  penaltyWindow: FieldSupport.refused("OpenAI's penalties look at the whole output"),
  logprobs: FieldSupport.refused("the Batch API backend does not read logprobs back: use the OpenAI provider"),
  topLogprobs: FieldSupport.refused("the Batch API backend does not read logprobs back: use the OpenAI provider"),
  contextOverflow: FieldSupport.refused(
    "the API fails an oversized prompt itself; truncate it before sending",
    FieldSupport.onlyErrorOverflow,
    "`error`"
  ),
  providerOptions: FieldSupport.mapped("spread onto the body last"),
  trial: FieldSupport.identity("cache key only")
}

/**
 * The chat-completions body for a request (what the OpenAI provider would send); a field
 * the Batch API cannot take ({@link fieldSupport}) throws an `LlmError` (`InvalidRequest`
 * naming it) — {@link backend} checks first and fails that item.
 * @category constructors @since 0.1.0
 */
export const chatBody = (request: CompletionRequest.CompletionRequest): Record<string, unknown> => {
  const refusal = FieldSupport.firstRefusal(provider, fieldSupport, request)
  if (refusal !== undefined) throw refusal
  return {
    model: request.model,
    messages: request.prompt !== undefined && request.messages.length === 0
      ? [{ role: "user", content: request.prompt }]
      : request.messages,
    ...FieldSupport.params(fieldSupport, request),
    ...(request.responseFormat?.type === "json"
      ? {
        response_format: request.responseFormat.schema !== undefined
          ? { type: "json_schema", json_schema: { name: request.responseFormat.name ?? "response", schema: request.responseFormat.schema } }
          : { type: "json_object" }
      }
      : {}),
    ...request.providerOptions
  }
}

const finishReasons: Record<string, Completion.FinishReason> = {
  stop: "stop",
  length: "length",
  content_filter: "content_filter",
  tool_calls: "tool_calls"
}

const toCompletion = (request: CompletionRequest.CompletionRequest, body: Record<string, unknown>, now: number): Completion.Completion => {
  const choice = (body.choices as Array<{ message?: { content?: string | null }; finish_reason?: string }> | undefined)?.[0]
  const usage = body.usage as
    | { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } }
    | undefined
  return new Completion.Completion({
    text: choice?.message?.content ?? "",
    finishReason: finishReasons[choice?.finish_reason ?? ""] ?? "unknown",
    usage: {
      inputTokens: usage?.prompt_tokens ?? 0,
      outputTokens: usage?.completion_tokens ?? 0,
      ...(usage?.prompt_tokens_details?.cached_tokens !== undefined ? { cachedInputTokens: usage.prompt_tokens_details.cached_tokens } : {})
    },
    model: typeof body.model === "string" ? body.model : request.model,
    provider,
    timing: { start: now, end: now }
  })
}

/**
 * A batch backend that sends every batch as one Batch API job (half price, hours of
 * latency: for offline pipelines). Each caller gets its own item's result or error.
 * @category constructors @since 0.1.0
 */
export const backend = (client: BatchClient, options: JobOptions = {}): BatchBackend => ({
  name: provider,
  run: (requests: NonEmptyReadonlyArray<CompletionRequest.CompletionRequest>) =>
    Effect.gen(function*() {
      // a field the Batch API cannot take fails its own item, before anything is uploaded
      const refusals = requests.map((request) => FieldSupport.firstRefusal(provider, fieldSupport, request))
      const accepted = requests.flatMap((request, index) => refusals[index] === undefined ? [index] : [])
      if (accepted.length === 0) return refusals.map((refusal) => Exit.fail(refusal!))
      const items = accepted.map((index) => ({ customId: `item-${index}`, body: chatBody(requests[index]!) }))
      const exit = yield* Effect.exit(runJob(client, items, { ...options, endpoint: "/v1/chat/completions" }))
      if (Exit.isFailure(exit)) {
        return requests.map((_, index) =>
          refusals[index] !== undefined ? Exit.fail(refusals[index]) : exit as Exit.Exit<never, LlmError.LlmError>
        )
      }
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const results = new Map(accepted.map((index, at) => [index, exit.value[at]!]))
      return requests.map((request, index): Exit.Exit<Completion.Completion, LlmError.LlmError> => {
        if (refusals[index] !== undefined) return Exit.fail(refusals[index])
        const result = results.get(index)!
        return result.ok
          ? Exit.succeed(toCompletion(request, result.body, now))
          : Exit.fail(LlmError.make(
            provider,
            result.status !== undefined
              ? LlmError.fromHttpStatus({ status: result.status, message: result.message, code: result.code })
              : result.code === "batch_expired"
              ? new LlmError.Timeout({ description: result.message })
              : new LlmError.ServerError({ status: 500, description: `${result.code}: ${result.message}` })
          ))
      })
    })
})
