/**
 * The machinery every simulated API shares: options, per-key rate-limit buckets
 * (sliding-window logs), the latency model, seeded faults, counters and the event log,
 * and small HTTP helpers.
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Counters, SimulatorEvent } from "../SimulatorCounters.js"
import type { Api, FaultKind, Responder, ResponderRequest, SimulatorOptions } from "../SimulatorOptions.js"
import { hash, mulberry32, unit } from "./random.js"
import { countTokens, tokenize } from "./tokens.js"

/** Why a call is refused. */
export type ErrorKind =
  | "invalid_request"
  | "authentication"
  | "not_found"
  | "requests"
  | "tokens"
  | "concurrency"
  | "quota"
  | "server"
  | "overloaded"

/** Rate-limit state of one key after an admission decision. */
export interface LimitState {
  readonly limitRequests?: number
  readonly remainingRequests?: number
  readonly resetRequestsMs?: number
  readonly limitTokens?: number
  readonly remainingTokens?: number
  readonly resetTokensMs?: number
  readonly retryAfterMs?: number
}

/** What each vendor module supplies to the shared pipeline. */
export interface Vendor {
  readonly api: Api
  /** Status, body and extra headers of an error response. */
  readonly error: (kind: ErrorKind, message: string, state?: LimitState) => {
    readonly status: number
    readonly body: unknown
    readonly contentType?: string
  }
  /** Rate-limit headers for a response. */
  readonly rateHeaders: (state: LimitState, now: number) => Record<string, string>
}

interface BucketEntry {
  readonly t: number
  readonly tokens: number
}

interface Bucket {
  entries: Array<BucketEntry>
  /** Sum of `entries[].tokens`. */
  tokens: number
  inFlight: number
  reservedTotal: number
}

const now = (): number => Date.now()

const vocabulary = [
  "the", "model", "answers", "quickly", "with", "a", "simulated", "reply", "about", "your", "question", "and",
  "then", "stops", "here", "is", "some", "deterministic", "text", "from", "loopback", "server", "every", "token",
  "arrives", "in", "order", "so", "tests", "can", "check", "it", "carefully", "today", "while", "limits", "hold"
]

/**
 * The default responder: a 12-word sentence chosen by hashing the model and the last
 * user message (or the prompt), so the same prompt always gets the same answer.
 */
export const defaultResponder: Responder = (request) => {
  const last = request.prompt ?? [...request.messages].reverse().find((message) => message.role === "user")?.content ??
    request.messages.at(-1)?.content ?? ""
  const random = mulberry32(hash("responder", request.model, last))
  const words: Array<string> = []
  for (let i = 0; i < 12; i++) words.push(vocabulary[Math.floor(random() * vocabulary.length)]!)
  const sentence = words.join(" ")
  return `Simulated ${hash(last).toString(16).padStart(8, "0")}: ${sentence.charAt(0).toUpperCase()}${sentence.slice(1)}.`
}

/** A generated answer, cut at `max_tokens` and stop sequences. */
export interface Generated {
  readonly tokens: ReadonlyArray<string>
  readonly text: string
  readonly finishReason: "stop" | "length"
  readonly stopSequence?: string
}

/** Cuts a responder's text at the first stop sequence and at `maxTokens`. */
export const shape = (raw: string, maxTokens: number | undefined, stop: ReadonlyArray<string> | undefined): Generated => {
  let text = raw
  let stopSequence: string | undefined
  for (const sequence of stop ?? []) {
    if (sequence.length === 0) continue
    const at = text.indexOf(sequence)
    if (at >= 0) {
      text = text.slice(0, at)
      stopSequence = sequence
    }
  }
  let tokens = tokenize(text)
  let finishReason: "stop" | "length" = "stop"
  if (maxTokens !== undefined && tokens.length > maxTokens) {
    tokens = tokens.slice(0, maxTokens)
    finishReason = "length"
    stopSequence = undefined
  }
  return { tokens, text: tokens.join(""), finishReason, ...(stopSequence !== undefined ? { stopSequence } : {}) }
}

/** An admitted model call: release it when the response is over. */
export interface Admission {
  readonly state: LimitState
  readonly release: () => void
  /** A `midstream` fault: cut the response after half of the tokens. */
  readonly cut?: boolean
}

/** The shared state of one simulator. */
export class Engine {
  readonly options: SimulatorOptions
  readonly seed: number
  readonly windowMs: number
  readonly responder: Responder
  counters: Counters = Engine.emptyCounters()
  events: Array<SimulatorEvent> = []
  private buckets = new Map<string, Bucket>()
  private callIndex = 0
  private idCounter = 0
  private timers = new Set<ReturnType<typeof setTimeout>>()
  closed = false

  constructor(options: SimulatorOptions) {
    this.options = options
    this.seed = options.seed ?? 0
    this.windowMs = options.limits?.windowMs ?? 60_000
    this.responder = options.responder ?? defaultResponder
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
      aborted: 0
    }
  }

  /** Clears counters, events and buckets (in-flight calls keep running). */
  reset(): void {
    const inFlight = this.counters.inFlight
    this.counters = Engine.emptyCounters()
    this.counters.inFlight = inFlight
    this.events = []
    this.buckets = new Map()
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

  /** The fault drawn for a call, if any. */
  fault(index: number): FaultKind | undefined {
    const faults = this.options.faults
    if (faults === undefined || faults.rate <= 0) return undefined
    if (unit(this.seed, "fault", index) >= faults.rate) return undefined
    const kinds: ReadonlyArray<FaultKind> = faults.kinds !== undefined && faults.kinds.length > 0
      ? faults.kinds
      : ["500", "503", "reset", "hang"]
    const kind = kinds[Math.floor(unit(this.seed, "fault-kind", index) * kinds.length)]!
    this.counters.faults += 1
    this.counters.faultsByKind[kind] += 1
    return kind
  }

  /** Time to first token and per-token time for a call, jittered by the seed. */
  latency(index: number): { readonly ttftMs: number; readonly perTokenMs: number } {
    const latency = this.options.latency
    const jitter = Math.min(1, Math.max(0, latency?.jitter ?? 0))
    const factor = 1 + jitter * (2 * unit(this.seed, "latency", index) - 1)
    return { ttftMs: (latency?.ttftMs ?? 0) * factor, perTokenMs: (latency?.perTokenMs ?? 0) * factor }
  }

  /** Output tokens reserved for a call that did (not) set `max_tokens`. */
  reservedOutput(maxTokens: number | undefined): number {
    return maxTokens ?? this.options.limits?.defaultMaxTokens ?? 64
  }

  /** Whether the key is acceptable; `undefined` when it is, an error message otherwise. */
  checkKey(key: string | undefined): string | undefined {
    if (key === undefined || key.length === 0) return "missing API key"
    const keys = this.options.apiKeys
    if (keys !== undefined && !keys.includes(key)) return "invalid API key"
    return undefined
  }

  private bucket(key: string): Bucket {
    let bucket = this.buckets.get(key)
    if (bucket === undefined) {
      bucket = { entries: [], tokens: 0, inFlight: 0, reservedTotal: 0 }
      this.buckets.set(key, bucket)
    }
    return bucket
  }

  private prune(bucket: Bucket, at: number): void {
    const cutoff = at - this.windowMs
    let drop = 0
    while (drop < bucket.entries.length && bucket.entries[drop]!.t <= cutoff) {
      bucket.tokens -= bucket.entries[drop]!.tokens
      drop++
    }
    if (drop > 0) bucket.entries.splice(0, drop)
  }

  /** The key's rate-limit state now (for headers on responses that are not model calls). */
  state(key: string | undefined, at: number = now()): LimitState {
    const limits = this.options.limits
    if (key === undefined || (limits?.rpm === undefined && limits?.tpm === undefined)) return {}
    const bucket = this.bucket(key)
    this.prune(bucket, at)
    const last = bucket.entries.at(-1)
    const reset = last === undefined ? 0 : Math.max(0, last.t + this.windowMs - at)
    const used = bucket.tokens
    return {
      ...(limits.rpm !== undefined
        ? { limitRequests: limits.rpm, remainingRequests: Math.max(0, limits.rpm - bucket.entries.length), resetRequestsMs: reset }
        : {}),
      ...(limits.tpm !== undefined
        ? { limitTokens: limits.tpm, remainingTokens: Math.max(0, limits.tpm - used), resetTokensMs: reset }
        : {})
    }
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
  }): Admission | { readonly kind: "quota" | "concurrency" | "requests" | "tokens"; readonly message: string; readonly state: LimitState } {
    const at = now()
    const limits = this.options.limits
    const bucket = this.bucket(options.key)
    this.prune(bucket, at)
    const reject = (kind: "quota" | "concurrency" | "requests" | "tokens", message: string, retryAfterMs?: number) => {
      this.counters.http429[kind] += 1
      this.countUnsuccessful(bucket, at)
      this.record({ t: at, key: options.key, route: options.route, status: 429, scope: kind, inputTokens: options.inputTokens, reservedTokens: 0 })
      const state = this.state(options.key, at)
      return { kind, message, state: retryAfterMs === undefined ? state : { ...state, retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) } }
    }
    const exhausted = limits?.quotaExhausted
    if (
      exhausted === true || (Array.isArray(exhausted) && exhausted.includes(options.key)) ||
      (limits?.quotaTokens !== undefined && bucket.reservedTotal + options.reservedTokens > limits.quotaTokens)
    ) {
      return reject("quota", "You exceeded your current quota, please check your plan and billing details.")
    }
    if (limits?.maxConcurrency !== undefined && bucket.inFlight >= limits.maxConcurrency) {
      return reject("concurrency", `Concurrency limit reached: at most ${limits.maxConcurrency} calls in flight per key.`, 50)
    }
    if (limits?.rpm !== undefined && bucket.entries.length + 1 > limits.rpm) {
      // With `countUnsuccessful` this rejection takes a place too: wait for the one after it to free.
      const counted = limits.countUnsuccessful === true ? 1 : 0
      // (with a limit of 1, the place that frees is this rejection's own)
      const freeingAt = bucket.entries[bucket.entries.length + counted - limits.rpm]?.t ?? at
      const wait = freeingAt + this.windowMs - at
      return reject(
        "requests",
        `Rate limit reached for requests per min (RPM): Limit ${limits.rpm}, Used ${bucket.entries.length}, Requested 1. Please try again in ${formatDuration(wait)}.`,
        wait
      )
    }
    if (limits?.tpm !== undefined) {
      const used = bucket.tokens
      if (used + options.reservedTokens > limits.tpm) {
        let wait = this.windowMs
        if (options.reservedTokens <= limits.tpm) {
          let remaining = used
          for (const entry of bucket.entries) {
            remaining -= entry.tokens
            if (remaining + options.reservedTokens <= limits.tpm) {
              wait = entry.t + this.windowMs - at
              break
            }
          }
        }
        return reject(
          "tokens",
          options.reservedTokens > limits.tpm
            ? `Request too large for tokens per min (TPM): Limit ${limits.tpm}, Requested ${options.reservedTokens}.`
            : `Rate limit reached for tokens per min (TPM): Limit ${limits.tpm}, Used ${used}, Requested ${options.reservedTokens}. Please try again in ${formatDuration(wait)}.`,
          wait
        )
      }
    }
    bucket.entries.push({ t: at, tokens: options.reservedTokens })
    bucket.tokens += options.reservedTokens
    bucket.reservedTotal += options.reservedTokens
    bucket.inFlight += 1
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
      state: this.state(options.key, at),
      release: () => {
        if (released) return
        released = true
        bucket.inFlight -= 1
        this.counters.inFlight -= 1
      }
    }
  }

  /** Records a refusal that happened before admission (auth, validation, faults). */
  recordRefusal(key: string, route: string, status: number): void {
    const at = now()
    this.record({ t: at, key, route, status, inputTokens: 0, reservedTokens: 0 })
    const bucket = this.bucket(key)
    this.prune(bucket, at)
    this.countUnsuccessful(bucket, at)
  }

  /** With `limits.countUnsuccessful`, an unsuccessful call takes a place (no tokens) in the request window. */
  private countUnsuccessful(bucket: Bucket, at: number): void {
    if (this.options.limits?.countUnsuccessful === true) bucket.entries.push({ t: at, tokens: 0 })
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

/** Formats milliseconds the way OpenAI's `x-ratelimit-reset-*` headers do: `20ms`, `1.5s`, `6m0s`, `1h2m3s`. */
export const formatDuration = (ms: number): string => {
  const millis = Math.max(0, Math.ceil(ms))
  if (millis < 1000) return `${millis}ms`
  const hours = Math.floor(millis / 3_600_000)
  const minutes = Math.floor((millis % 3_600_000) / 60_000)
  const seconds = (millis % 60_000) / 1000
  const secondsText = `${Number(seconds.toFixed(3))}s`
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`
  if (minutes > 0) return `${minutes}m${secondsText}`
  return secondsText
}

/** The API key a request carries: `Authorization: Bearer|Token <key>` or `x-api-key`. */
export const apiKeyOf = (request: IncomingMessage): string | undefined => {
  const header = request.headers["x-api-key"]
  if (typeof header === "string" && header.length > 0) return header
  const authorization = request.headers.authorization
  if (authorization === undefined) return undefined
  const match = /^(?:Bearer|Token)\s+(.+)$/i.exec(authorization.trim())
  return match?.[1]?.trim()
}

/** Reads a request body (at most `limit` bytes). */
export const readBody = (request: IncomingMessage, limit = 64 * 1024 * 1024): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new Error(`request body larger than ${limit} bytes`))
        request.destroy()
        return
      }
      chunks.push(chunk)
    })
    request.on("end", () => resolve(Buffer.concat(chunks)))
    request.on("error", reject)
  })

/** The result of parsing a JSON body. */
export type ParsedJson = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string }

/** Parses a JSON body, naming the problem when it is not JSON. */
export const parseJson = (body: Buffer): ParsedJson => {
  if (body.length === 0) return { ok: false, message: "the request body is empty; expected a JSON object" }
  try {
    return { ok: true, value: JSON.parse(body.toString("utf8")) }
  } catch (error) {
    return { ok: false, message: `the request body is not valid JSON: ${(error as Error).message}` }
  }
}

/** Whether a value is a plain JSON object. */
export const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Counts a response status. */
export const countStatus = (engine: Engine, status: number): void => {
  const key = String(status)
  engine.counters.responsesByStatus[key] = (engine.counters.responsesByStatus[key] ?? 0) + 1
}

/** Sends a JSON response (no-op when the client is gone). */
export const sendJson = (
  engine: Engine,
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = "application/json"
): void => {
  countStatus(engine, status)
  if (response.destroyed || response.headersSent) return
  const payload = JSON.stringify(body)
  response.writeHead(status, { ...headers, "content-type": contentType, "content-length": Buffer.byteLength(payload) })
  response.end(payload)
}

/** Starts a server-sent-event response. */
export const startSse = (engine: Engine, response: ServerResponse, headers: Record<string, string>): void => {
  countStatus(engine, 200)
  response.writeHead(200, { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" })
  response.flushHeaders()
}

/** Writes one SSE event; multi-line data is split over several `data:` lines. */
export const writeSse = (response: ServerResponse, data: string, event?: string, id?: string): void => {
  if (response.destroyed || response.writableEnded) return
  let frame = ""
  if (event !== undefined) frame += `event: ${event}\n`
  if (id !== undefined) frame += `id: ${id}\n`
  for (const line of data.split("\n")) frame += `data: ${line}\n`
  response.write(`${frame}\n`)
}

/** Counts tokens of several texts. */
export const countAll = (texts: ReadonlyArray<string>): number => texts.reduce((sum, text) => sum + countTokens(text), 0)

/** The outcome of a fault: the handler stops when it returns true. */
export const injectFault = (
  engine: Engine,
  vendor: Vendor,
  kind: FaultKind | undefined,
  response: ServerResponse,
  headers: Record<string, string> = {}
): boolean => {
  if (kind === undefined) return false
  switch (kind) {
    case "reset":
      countStatus(engine, 0)
      response.socket?.destroy()
      return true
    case "hang":
      // Never answer: the client must time out. `close()` destroys the socket.
      return true
    case "midstream":
      return false
    case "500": {
      const error = vendor.error("server", "The server had an error while processing your request. Sorry about that!")
      sendJson(engine, response, error.status, error.body, headers, error.contentType)
      return true
    }
    case "503": {
      const error = vendor.error("overloaded", "The server is overloaded or not ready yet.")
      sendJson(engine, response, error.status, error.body, headers, error.contentType)
      return true
    }
  }
}

/**
 * The common front half of a model call: fault injection, then admission. Returns the
 * admission, or `undefined` after answering with a fault or an error.
 */
export const admitCall = (
  engine: Engine,
  vendor: Vendor,
  response: ServerResponse,
  options: {
    readonly key: string
    readonly route: string
    readonly inputTokens: number
    readonly reservedTokens: number
    readonly index: number
    /** Keep the call in flight after the HTTP response ends (Replicate predictions); the caller releases it. */
    readonly manualRelease?: boolean
  }
): Admission | undefined => {
  const kind = engine.fault(options.index)
  if (kind !== undefined && kind !== "midstream") {
    engine.recordRefusal(options.key, options.route, kind === "500" ? 500 : kind === "503" ? 503 : 0)
    injectFault(engine, vendor, kind, response, vendor.rateHeaders(engine.state(options.key), Date.now()))
    return undefined
  }
  const admitted = engine.admit(options)
  const admission = "release" in admitted && kind === "midstream" ? { ...admitted, cut: true } : admitted
  if ("release" in admission) {
    if (options.manualRelease === true) return admission
    response.once("close", () => {
      if (!response.writableFinished && !cutResponses.has(response)) engine.counters.aborted += 1
      admission.release()
    })
    return admission
  }
  const error = vendor.error(admission.kind, admission.message, admission.state)
  const headers = vendor.rateHeaders(admission.state, Date.now())
  if (admission.state.retryAfterMs !== undefined) {
    headers["retry-after"] = String(Math.ceil(admission.state.retryAfterMs / 1000))
    headers["retry-after-ms"] = String(admission.state.retryAfterMs)
  }
  sendJson(engine, response, error.status, error.body, headers, error.contentType)
  return undefined
}

/** Everything a route handler needs. */
export interface RouteContext {
  readonly engine: Engine
  readonly request: IncomingMessage
  readonly response: ServerResponse
  readonly url: URL
  /** The route name, e.g. `POST /v1/batches/:id`. */
  readonly route: string
  /** The caller's API key ("" on public routes). */
  readonly key: string
  /** Path parameters captured by the route pattern. */
  readonly params: ReadonlyArray<string>
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
}

/** One route of a vendor API. */
export interface Route {
  readonly method: string
  readonly pattern: RegExp
  readonly name: string
  readonly vendor: Vendor
  /** No API key needed (Replicate's stream URLs). */
  readonly public?: boolean
  readonly handle: (context: RouteContext) => Promise<void>
}

/** An admitted, generated model call. */
export interface Call {
  readonly admission: Admission
  readonly generated: Generated
  readonly latency: { readonly ttftMs: number; readonly perTokenMs: number }
}

/**
 * The common middle of every model call: faults, admission, then the responder.
 * Returns `undefined` when it has already answered (fault, 429, responder failure).
 */
export const runCall = async (
  context: RouteContext,
  vendor: Vendor,
  options: {
    readonly inputTokens: number
    readonly maxTokens: number | undefined
    readonly responderRequest: ResponderRequest
    readonly manualRelease?: boolean
  }
): Promise<Call | undefined> => {
  const { engine, response } = context
  const index = engine.nextCall()
  const admission = admitCall(engine, vendor, response, {
    key: context.key,
    route: context.route,
    inputTokens: options.inputTokens,
    reservedTokens: options.inputTokens + engine.reservedOutput(options.maxTokens),
    index,
    ...(options.manualRelease === true ? { manualRelease: true } : {})
  })
  if (admission === undefined) return undefined
  let raw: string
  try {
    raw = await engine.responder(options.responderRequest)
  } catch (error) {
    const failure = vendor.error("server", `The simulator's responder failed: ${error instanceof Error ? error.message : String(error)}`)
    sendJson(engine, response, failure.status, failure.body, vendor.rateHeaders(admission.state, Date.now()), failure.contentType)
    admission.release()
    return undefined
  }
  if (typeof raw !== "string") raw = String(raw)
  return {
    admission,
    generated: shape(raw, options.maxTokens, options.responderRequest.stop),
    latency: engine.latency(index)
  }
}

/** Waits out the whole generation time of a non-streamed answer; false when the client left meanwhile. */
export const waitWhole = async (engine: Engine, response: ServerResponse, call: Call): Promise<boolean> => {
  const count = call.admission.cut === true ? Math.floor(call.generated.tokens.length / 2) : call.generated.tokens.length
  await engine.sleep(call.latency.ttftMs + call.latency.perTokenMs * Math.max(0, count - 1))
  if (response.destroyed || engine.closed) return false
  if (call.admission.cut === true) {
    engine.counters.outputTokens += count
    cutConnection(engine, response)
    return false
  }
  engine.counters.outputTokens += call.generated.tokens.length
  return true
}

const cutResponses = new WeakSet<ServerResponse>()

/** Destroys the connection under a response in progress (a `midstream` fault). */
const cutConnection = (_engine: Engine, response: ServerResponse): void => {
  // Not the client's doing: `aborted` counts clients that leave.
  cutResponses.add(response)
  const socket = response.socket
  // Before the headers: a reset. Mid-body: flush what was written, then close without finishing.
  if (socket === null) response.destroy()
  else if (!response.headersSent) socket.destroy()
  else socket.end()
}

/** Emits tokens at the modelled pace; false when the client left before the end. */
export const paceTokens = async (
  engine: Engine,
  response: ServerResponse,
  call: Call,
  write: (token: string, index: number) => void
): Promise<boolean> => {
  await engine.sleep(call.latency.ttftMs)
  const tokens = call.generated.tokens
  const cutAt = call.admission.cut === true ? Math.floor(tokens.length / 2) : -1
  for (let i = 0; i < tokens.length; i++) {
    if (i > 0) await engine.sleep(call.latency.perTokenMs)
    if (response.destroyed || engine.closed) return false
    if (i === cutAt) {
      cutConnection(engine, response)
      return false
    }
    write(tokens[i]!, i)
    engine.counters.outputTokens += 1
  }
  return !response.destroyed
}
