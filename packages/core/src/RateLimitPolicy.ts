/**
 * How a provider admits and counts calls against its rate limits: what it charges at
 * admission, whether it refunds, whether unsuccessful calls count, the window its limit
 * headers refer to. A provider declares its policy on its `Llm` (`LlmService.rateLimitPolicy`);
 * the rate limiter follows it unless the user overrides it.
 * @since 0.2.0
 */

/**
 * A provider's rate-limit accounting.
 * @category models @since 0.2.0
 */
export interface RateLimitPolicy {
  /** Short name for logs (`openai`, `anthropic`, `replicate`, `none`). */
  readonly name: string
  /**
   * How tokens are charged:
   * - `reserved`: the prompt estimate plus `max_tokens` (or `defaultMaxTokens` when unset)
   *   is charged at admission and never refunded, whatever was generated (OpenAI);
   * - `reconciled`: charged at admission, then corrected to the reported usage (Anthropic's
   *   output budget, "adjusted at the end of the request");
   * - `none`: the provider has no token budget (only what the user configures applies).
   */
  readonly tokenAccounting: "reserved" | "reconciled" | "none"
  /** Whether an unsuccessful call (429, 5xx, a cut connection) still counts against the request window. */
  readonly unsuccessfulRequestsCount: boolean
  /** Whether an unsuccessful call's tokens stay charged (true when they are charged at admission and not refunded). */
  readonly unsuccessfulTokensCount: boolean
  /**
   * Output tokens the provider reserves for a request that sets no `max_tokens` (OpenAI does
   * not document it: 256 is an assumption — set `maxTokens` for exact accounting; Anthropic's
   * is what the adapter sends, as Anthropic requires `max_tokens`).
   */
  readonly defaultMaxTokens: number
  /** Input and output tokens are separate budgets (Anthropic ITPM/OTPM). */
  readonly separateInputOutput: boolean
  /**
   * The window the provider's limit headers count over (OpenAI and Anthropic state limits
   * per minute). `undefined`: the provider states no budgets, so none are learnt.
   */
  readonly headerWindowMillis: number | undefined
  /**
   * Limits the provider documents for every account, applied from a key's first call in
   * place of the seeds' assumed defaults, for a provider whose responses state no budgets
   * (Replicate: 600 prediction creations per minute). A budget its headers state later
   * replaces them; a budget the user sets stays a hard cap. `undefined`: none documented.
   */
  readonly documentedLimits?: DocumentedLimits | undefined
}

/**
 * A provider's documented limits: `requests` and/or `tokens` per `windowMillis`.
 * @category models @since 0.2.0
 */
export interface DocumentedLimits {
  readonly requests?: number | undefined
  readonly tokens?: number | undefined
  readonly windowMillis: number
}

/**
 * OpenAI as it documents its limits: each request is charged at admission `max_tokens`
 * plus an estimate of the prompt, not refunded when fewer tokens are generated;
 * unsuccessful requests count against the per-minute request limit (a call refused
 * before admission is charged no tokens); the headers state requests and tokens per minute.
 * @category constructors @since 0.2.0
 */
export const openAi: RateLimitPolicy = {
  name: "openai",
  tokenAccounting: "reserved",
  unsuccessfulRequestsCount: true,
  unsuccessfulTokensCount: false,
  defaultMaxTokens: 256,
  separateInputOutput: false,
  headerWindowMillis: 60_000
}

/**
 * Anthropic as it documents its limits: input tokens (ITPM) and output tokens (OTPM) are
 * separate budgets; output is estimated from `max_tokens` at the start of a request and
 * adjusted to the real count at its end; the headers state each budget per minute.
 * @category constructors @since 0.2.0
 */
export const anthropic: RateLimitPolicy = {
  name: "anthropic",
  tokenAccounting: "reconciled",
  unsuccessfulRequestsCount: true,
  unsuccessfulTokensCount: false,
  defaultMaxTokens: 1024,
  separateInputOutput: true,
  headerWindowMillis: 60_000
}

/**
 * Replicate: prediction creation is limited to 600 per minute (its documented limit; the
 * responses state none, a 429 says when to retry); there is no token budget.
 * @category constructors @since 0.2.0
 */
export const replicate: RateLimitPolicy = {
  name: "replicate",
  tokenAccounting: "none",
  unsuccessfulRequestsCount: true,
  unsuccessfulTokensCount: false,
  defaultMaxTokens: 0,
  separateInputOutput: false,
  headerWindowMillis: undefined,
  documentedLimits: { requests: 600, windowMillis: 60_000 }
}

/**
 * No provider budget (a local model, an OpenAI-compatible server of unknown kind): only
 * what the user configures is enforced. No budgets are learnt from limit headers such a
 * server may send (their window is unknown); a header saying a budget is spent still holds
 * the key until its reset. Declare `openAi` for a server that limits as OpenAI does.
 * @category constructors @since 0.2.0
 */
export const none: RateLimitPolicy = {
  name: "none",
  tokenAccounting: "none",
  unsuccessfulRequestsCount: false,
  unsuccessfulTokensCount: false,
  defaultMaxTokens: 256,
  separateInputOutput: false,
  headerWindowMillis: undefined
}
