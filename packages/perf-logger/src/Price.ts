/**
 * Model prices for the run's cost estimate: USD per one million tokens, looked up by
 * `provider/model`, then by `model`.
 * @since 0.1.0
 */

/**
 * Prices in USD per one million tokens.
 * @category models @since 0.1.0
 */
export interface Price {
  readonly input: number
  readonly output: number
  /** Price of input tokens served from the provider's prompt cache; defaults to `input`. */
  readonly cachedInput?: number
}

/**
 * Price table keyed by `provider/model` or by `model`.
 * @category models @since 0.1.0
 */
export type PriceTable = Readonly<Record<string, Price>>
