/**
 * What a simulator is started with: rate limits, the latency model, seeded faults, the
 * responder that writes completions, and Batch API timing. `Simulator.Options` and the
 * other `Simulator.*` option types are these.
 * @since 0.1.0
 */

/** Which vendor API a request was addressed to. @category models @since 0.1.0 */
export type Api = "openai" | "anthropic" | "replicate"

/** One chat message as the responder sees it (content flattened to text). @category models @since 0.1.0 */
export interface ResponderMessage {
  readonly role: string
  readonly content: string
}

/** What a responder is asked to answer, normalised across the three APIs. @category models @since 0.1.0 */
export interface ResponderRequest {
  readonly api: Api
  /** The route, e.g. `POST /v1/chat/completions`. */
  readonly route: string
  readonly model: string
  /** Chat messages including the system prompt as a `system` message (empty for text completions). */
  readonly messages: ReadonlyArray<ResponderMessage>
  /** The raw prompt of a text completion or a Replicate prediction. */
  readonly prompt?: string
  readonly maxTokens?: number
  readonly temperature?: number
  readonly stop?: ReadonlyArray<string>
  /** The request body as sent. */
  readonly body: unknown
}

/** Produces the text of a completion. @category models @since 0.1.0 */
export type Responder = (request: ResponderRequest) => string | Promise<string>

/**
 * Kinds of injected fault: `500`, `503` (Anthropic: 529), `reset` (connection destroyed
 * before answering), `hang` (never answers), and — only when listed in `kinds` —
 * `midstream`: the call is admitted and charged, then a stream is closed after half of
 * its tokens (a JSON answer's connection is reset; a Replicate prediction fails halfway).
 * @category models @since 0.1.0
 */
export type FaultKind = "500" | "503" | "reset" | "hang" | "midstream"

/** Rate limits, applied to every API key separately. @category models @since 0.1.0 */
export interface LimitOptions {
  /** Requests per window. */
  readonly rpm?: number
  /** Tokens per window (prompt tokens + `max_tokens` reserved at admission). */
  readonly tpm?: number
  /** Requests in flight at once per key (429, scope concurrency). */
  readonly maxConcurrency?: number
  /** `true` exhausts every key's quota; a list exhausts those keys only. Never recovers. */
  readonly quotaExhausted?: boolean | ReadonlyArray<string>
  /** Total tokens a key may reserve over the simulator's life before its quota is exhausted. */
  readonly quotaTokens?: number
  /** Window length in milliseconds (default 60 000). */
  readonly windowMs?: number
  /** Output tokens reserved when a request sets no `max_tokens` (default 64). */
  readonly defaultMaxTokens?: number
  /**
   * How the prompt is charged at admission: `tokens` (default: the simulator's own token
   * count, the same as `usage` reports) or `characters` — `ceil(characters / 4)` of the
   * prompt's text, the estimate OpenAI documents for its limiter ("based on the number of
   * characters"), while `usage` still reports the real count.
   */
  readonly promptCharge?: "tokens" | "characters"
  /**
   * Whether responses carry the limit headers (`x-ratelimit-limit-*`, `-remaining-*`,
   * `-reset-*`; Anthropic's `anthropic-ratelimit-*`). Default `true`; `false` models a
   * provider that states nothing until it answers 429 (`retry-after` is still sent).
   */
  readonly headers?: boolean
  /**
   * Unsuccessful calls (injected faults and 429s) also take a place in the request window,
   * as OpenAI documents: "unsuccessful requests contribute to your per-minute limit, so
   * continuously resending a request won't work". Default `false` (only admitted calls count).
   */
  readonly countUnsuccessful?: boolean
}

/** Latency model: time to first token plus a time per output token, with seeded jitter. @category models @since 0.1.0 */
export interface LatencyOptions {
  readonly ttftMs?: number
  readonly perTokenMs?: number
  /** Relative jitter in [0, 1]: each request's times are scaled by a seeded factor in [1 - jitter, 1 + jitter]. */
  readonly jitter?: number
}

/** Seeded fault injection on model calls. @category models @since 0.1.0 */
export interface FaultOptions {
  /** Probability in [0, 1] that a model call fails. */
  readonly rate: number
  /** Which faults to draw from (default `500`, `503`, `reset`, `hang`). */
  readonly kinds?: ReadonlyArray<FaultKind>
}

/** Timing of the simulated Batch API. @category models @since 0.1.0 */
export interface BatchOptions {
  /** Time spent `validating` (default 20 ms). */
  readonly validatingMs?: number
  /** Time per request while `in_progress` (default 2 ms). */
  readonly perRequestMs?: number
  /** Time spent `finalizing` (default 20 ms). */
  readonly finalizingMs?: number
  /** A batch whose processing would end later than this after creation expires (default 24 h). */
  readonly expiresAfterMs?: number
}

/**
 * Replicate's prediction lifecycle: cold starts and how long `Prefer: wait` holds a
 * request. A `hang` fault on Replicate is a prediction stuck in `starting` until cancelled.
 * @category models @since 0.2.0
 */
export interface ReplicateOptions {
  /**
   * A model's boot time: its first prediction, and the first after `idleShutdownMs` without
   * any, waits this long in `starting` (predictions arriving meanwhile wait for the same
   * boot). Default 0: always warm.
   */
  readonly coldStartMs?: number
  /** How long a model stays warm after its last prediction (default 60000). */
  readonly idleShutdownMs?: number
  /** The longest a `Prefer: wait` create request is held before the unfinished prediction is returned (Replicate: 60 s, the default). */
  readonly maxWaitMs?: number
}

/** Options of a simulator. @category models @since 0.1.0 */
export interface SimulatorOptions {
  /** Port to listen on (default 0: a free port). */
  readonly port?: number
  /** Host to bind (default 127.0.0.1). */
  readonly host?: string
  /** Seed for jitter, faults and default content (default 0). */
  readonly seed?: number
  readonly limits?: LimitOptions
  readonly latency?: LatencyOptions
  readonly faults?: FaultOptions
  /** Produces completion text (default `Simulator.defaultResponder`). */
  readonly responder?: Responder
  /** When set, only these API keys are accepted (others get 401). Any non-empty key otherwise. */
  readonly apiKeys?: ReadonlyArray<string>
  /** Embedding vector length when a request sets no `dimensions` (default 16). */
  readonly embeddingDimensions?: number
  readonly batch?: BatchOptions
  readonly replicate?: ReplicateOptions
  /**
   * The input fields each Replicate model (`owner/name`) declares in its OpenAPI schema,
   * served by `GET /v1/models/:owner/:name` (and `…/versions/:id`). Models not listed
   * declare `defaultReplicateInputs`.
   */
  readonly replicateInputs?: Readonly<Record<string, ReadonlyArray<string>>>
}

/**
 * The inputs a Replicate model declares when `replicateInputs` does not name it: those of
 * `meta/meta-llama-3-70b-instruct`.
 * @category models @since 0.3.0
 */
export const defaultReplicateInputs: ReadonlyArray<string> = [
  "prompt",
  "system_prompt",
  "max_tokens",
  "min_tokens",
  "temperature",
  "top_p",
  "top_k",
  "presence_penalty",
  "frequency_penalty",
  "stop_sequences",
  "seed",
  "prompt_template",
  "log_performance_metrics"
]
