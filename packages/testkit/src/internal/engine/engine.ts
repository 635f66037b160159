/**
 * The shared state of one simulator: its options, counters and event log, ids, the
 * model-call sequence that drives seeded faults and jitter, the per-key rate limiter,
 * and timers that stop when the simulator closes.
 * @since 0.1.0
 */
import type { Counters, SimulatorEvent } from "../../SimulatorCounters.js"
import type { FaultKind, Responder, SimulatorOptions } from "../../SimulatorOptions.js"
import { hash } from "../random.js"
import type { Admission } from "./admission.js"
import { checkKey } from "./auth.js"
import { drawFault } from "./faults.js"
import { type Latency, latencyOf } from "./latency.js"
import { type LimitScope, type LimitState, RateLimiter } from "./rateLimiter.js"
import { defaultResponder } from "./responder.js"

const now = (): number => Date.now()

/** A model call the rate limiter refused: the limit, the message, and the key's state (with `retryAfterMs`). */
export interface Rejection {
  readonly kind: LimitScope
  readonly message: string
  readonly state: LimitState
}

/** The shared state of one simulator. */
export class Engine {
  readonly options: SimulatorOptions
  readonly seed: number
  readonly windowMs: number
  readonly responder: Responder
  readonly limiter: RateLimiter
  counters: Counters = Engine.emptyCounters()
  events: Array<SimulatorEvent> = []
  private callIndex = 0
  private idCounter = 0
  private timers = new Set<ReturnType<typeof setTimeout>>()
  closed = false

  constructor(options: SimulatorOptions) {
    this.options = options
    this.seed = options.seed ?? 0
    this.windowMs = options.limits?.windowMs ?? 60_000
    this.responder = options.responder ?? defaultResponder
    this.limiter = new RateLimiter(options.limits, this.windowMs)
  }

  static emptyCounters(): Counters {
    return {
      requests: 0,
      requestsByRoute: {},
      admitted: 0,
      http429: { requests: 0, tokens: 0, quota: 0, concurrency: 0 },
      responsesByStatus: {},
      peakConcurrency: 0,
      inFlight: 0,
      inputTokens: 0,
      outputTokens: 0,
      faults: 0,
      faultsByKind: { "500": 0, "503": 0, reset: 0, hang: 0, midstream: 0 },
      cancellations: 0,
      aborted: 0,
      coldStarts: 0
    }
  }

  /** Clears counters, events and rate-limit windows (in-flight calls keep running). */
  reset(): void {
    const inFlight = this.counters.inFlight
    this.counters = Engine.emptyCounters()
    this.counters.inFlight = inFlight
    this.events = []
    this.limiter.reset()
    this.callIndex = 0
  }

  /** A fresh id with a vendor prefix, deterministic per simulator. */
  id(prefix: string): string {
    this.idCounter += 1
    return `${prefix}${hash(this.seed, prefix, this.idCounter).toString(36)}${this.idCounter.toString(36)}`
  }

  /** The next model call's index (drives seeded faults and jitter). */
  nextCall(): number {
    return this.callIndex++
  }

  /** The fault drawn for a call, if any (counted). */
  fault(index: number): FaultKind | undefined {
    const kind = drawFault(this.options.faults, this.seed, index)
    if (kind === undefined) return undefined
    this.counters.faults += 1
    this.counters.faultsByKind[kind] += 1
    return kind
  }

  /** Time to first token and per-token time for a call, jittered by the seed. */
  latency(index: number): Latency {
    return latencyOf(this.options.latency, this.seed, index)
  }

  /** Output tokens reserved for a call that did (not) set `max_tokens`. */
  reservedOutput(maxTokens: number | undefined): number {
    return this.limiter.reservedOutput(maxTokens)
  }

  /** Prompt tokens charged at admission (see `LimitOptions.promptCharge`). */
  promptCharge(inputTokens: number, promptCharacters: number | undefined): number {
    return this.limiter.promptCharge(inputTokens, promptCharacters)
  }

  /** Whether the key is acceptable; `undefined` when it is, an error message otherwise. */
  checkKey(key: string | undefined): string | undefined {
    return checkKey(this.options.apiKeys, key)
  }

  /** The key's rate-limit state now (for headers on responses that are not model calls). */
  state(key: string | undefined, at: number = now()): LimitState {
    return this.limiter.state(key, at)
  }

  private record(event: SimulatorEvent): void {
    this.events.push(event)
  }

  /**
   * Decides whether a model call may run: quota, then concurrency, then requests, then
   * tokens. On success the call is charged and counted in flight until `release`.
   */
  admit(options: {
    readonly key: string
    readonly route: string
    readonly inputTokens: number
    readonly reservedTokens: number
    readonly index?: number
  }): Admission | Rejection {
    const at = now()
    const limiter = this.limiter
    const window = limiter.windowOf(options.key)
    limiter.prune(window, at)
    const refusal = limiter.check(window, options.key, options.reservedTokens, at)
    if (refusal !== undefined) {
      this.counters.http429[refusal.scope] += 1
      limiter.chargeUnsuccessful(window, at)
      this.record({
        t: at,
        key: options.key,
        route: options.route,
        status: 429,
        scope: refusal.scope,
        inputTokens: options.inputTokens,
        reservedTokens: 0
      })
      const state = limiter.state(options.key, at)
      return {
        kind: refusal.scope,
        message: refusal.message,
        state: refusal.retryAfterMs === undefined ? state : { ...state, retryAfterMs: Math.max(1, Math.ceil(refusal.retryAfterMs)) }
      }
    }
    limiter.charge(window, at, options.reservedTokens)
    this.counters.admitted += 1
    this.counters.inFlight += 1
    this.counters.inputTokens += options.inputTokens
    if (this.counters.inFlight > this.counters.peakConcurrency) this.counters.peakConcurrency = this.counters.inFlight
    const latency = this.latency(options.index ?? 0)
    this.record({
      t: at,
      key: options.key,
      route: options.route,
      status: 200,
      inputTokens: options.inputTokens,
      reservedTokens: options.reservedTokens,
      ttftMs: latency.ttftMs,
      perTokenMs: latency.perTokenMs
    })
    let released = false
    return {
      state: limiter.state(options.key, at),
      release: () => {
        if (released) return
        released = true
        limiter.release(window)
        this.counters.inFlight -= 1
      }
    }
  }

  /** Records a refusal that happened before admission (auth, validation, faults). */
  recordRefusal(key: string, route: string, status: number): void {
    const at = now()
    this.record({ t: at, key, route, status, inputTokens: 0, reservedTokens: 0 })
    const window = this.limiter.windowOf(key)
    this.limiter.prune(window, at)
    this.limiter.chargeUnsuccessful(window, at)
  }

  /** A timer that is cleared when the simulator closes. */
  sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.closed) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        resolve()
      }, ms)
      this.timers.add(timer)
    })
  }

  /** Clears pending timers. */
  close(): void {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }
}
