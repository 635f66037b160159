/**
 * The schema of one line of `events.jsonl`, checked against the event interfaces of
 * `RunLog.ts` both ways, so the reader and the records cannot drift apart.
 * @since 0.2.0
 */
import { Schema } from "effect"
import type { Event } from "../RunLog.js"

const optional = Schema.optionalKey

const Price = Schema.Struct({ input: Schema.Number, output: Schema.Number, cachedInput: optional(Schema.Number) })

const RunStart = Schema.Struct({
  type: Schema.Literal("run_start"),
  runId: Schema.String,
  t: Schema.Number,
  pid: Schema.Number,
  node: Schema.String,
  prices: optional(Schema.Record(Schema.String, Price))
})

const RunEnd = Schema.Struct({ type: Schema.Literal("run_end"), t: Schema.Number })

const Call = Schema.Struct({
  type: Schema.Literal("call"),
  op: Schema.Literals(["complete", "stream"]),
  provider: Schema.String,
  model: Schema.String,
  responseModel: optional(Schema.String),
  stage: optional(Schema.String),
  start: Schema.Number,
  latencyMs: Schema.Number,
  ok: Schema.Boolean,
  error: optional(Schema.String),
  finishReason: optional(Schema.String),
  cached: optional(Schema.Boolean),
  ttftMs: optional(Schema.Number),
  itlMs: optional(Schema.Array(Schema.Number)),
  chunks: optional(Schema.Number),
  inputTokens: optional(Schema.Number),
  outputTokens: optional(Schema.Number),
  cachedInputTokens: optional(Schema.Number),
  tokensEstimated: optional(Schema.Boolean),
  retries: optional(Schema.Number),
  rateLimitWaitMs: optional(Schema.Number),
  backoffMs: optional(Schema.Number),
  timeouts: optional(Schema.Number),
  batchSize: optional(Schema.Number),
  queueWaitMs: optional(Schema.Number),
  speculative: optional(Schema.Struct({
    acceptanceRate: Schema.Number,
    meanAcceptedLength: optional(Schema.Number),
    perPosition: optional(Schema.Array(Schema.Number)),
    targetEvaluations: optional(Schema.Number)
  }))
})

const Stage = Schema.Struct({
  type: Schema.Literal("stage"),
  stage: Schema.String,
  start: Schema.Number,
  durationMs: Schema.Number,
  ok: Schema.Boolean
})

const Items = Schema.Struct({ type: Schema.Literal("items"), stage: Schema.String, t: Schema.Number, n: Schema.Number })

const Memory = Schema.Struct({
  type: Schema.Literal("memory"),
  t: Schema.Number,
  rss: Schema.Number,
  heapUsed: Schema.Number,
  heapTotal: Schema.Number,
  external: Schema.Number
})

const ModelMemory = Schema.Struct({
  type: Schema.Literal("model_memory"),
  t: Schema.Number,
  model: Schema.String,
  weightsBytes: Schema.Number,
  kvCacheBytes: Schema.Number,
  computeBytes: Schema.Number,
  contextSize: Schema.Number,
  sequences: Schema.Number
})

/** One line of `events.jsonl`. */
export const EventSchema = Schema.Union([Call, RunStart, RunEnd, Stage, Items, Memory, ModelMemory])

/** The event types this version writes and reads. */
export const eventTypes: ReadonlySet<string> = new Set(["run_start", "run_end", "call", "stage", "items", "memory", "model_memory"])

// The schema and the interfaces agree both ways.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
const agree: Same<typeof EventSchema.Type, Event> = true
void agree
