/**
 * Per-attempt deadlines learnt from what a key has shown: each successful call adds a
 * sample of its latency per (output token + TTFT allowance); an attempt's deadline is
 * `multiple` × the 99th percentile of those samples × the attempt's size (`maxTokens` +
 * the allowance), clamped to `[floor, cap]`. Until `MIN_SAMPLES` calls have succeeded it
 * is `initial`. One tracker per key; the percentile is recomputed every few samples, so
 * reading a deadline costs a multiplication.
 */

/** The first-token allowance, in output tokens: a call's fixed cost is about as much as this many tokens. */
const ALLOWANCE_TOKENS = 16
const CAPACITY = 256
/** Samples before the learnt deadline replaces `initial`. */
export const MIN_SAMPLES = 5
const RECOMPUTE_EVERY = 8

/** How deadlines are derived (already validated). */
export interface DeadlinePolicy {
  readonly multiple: number
  readonly floorMillis: number
  readonly capMillis: number
  readonly initialMillis: number
}

/** One key's latency samples and its current per-token deadline factor. */
export class LatencyTracker {
  private readonly samples = new Float64Array(CAPACITY)
  private count = 0
  private next = 0
  private sinceRecompute = 0
  /** `multiple` × p99 of the samples, in milliseconds per sized token; 0 until `MIN_SAMPLES`. */
  private factor = 0

  private readonly policy: DeadlinePolicy

  constructor(policy: DeadlinePolicy) {
    this.policy = policy
  }

  /** Records a successful call: its latency and the output tokens it produced. */
  record(latencyMillis: number, outputTokens: number): void {
    if (!(latencyMillis >= 0)) return
    this.samples[this.next] = latencyMillis / (Math.max(0, outputTokens) + ALLOWANCE_TOKENS)
    this.next = (this.next + 1) % CAPACITY
    if (this.count < CAPACITY) this.count++
    this.sinceRecompute++
    if (this.count >= MIN_SAMPLES && (this.factor === 0 || this.sinceRecompute >= RECOMPUTE_EVERY)) this.recompute()
  }

  /** The deadline for an attempt that may produce up to `maxTokens` output tokens. */
  deadlineMillis(maxTokens: number): number {
    if (this.factor === 0) return this.policy.initialMillis
    const millis = this.factor * (Math.max(0, maxTokens) + ALLOWANCE_TOKENS)
    return Math.min(this.policy.capMillis, Math.max(this.policy.floorMillis, millis))
  }

  /** Samples recorded so far (at most the buffer's capacity). */
  get size(): number {
    return this.count
  }

  private recompute(): void {
    this.sinceRecompute = 0
    // a typed array sorts numerically, natively, without a comparator call per comparison
    const sorted = this.samples.slice(0, this.count).sort()
    const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!
    this.factor = this.policy.multiple * p99
  }
}
