/**
 * One loopback HTTP server that speaks the OpenAI, Anthropic and Replicate APIs well
 * enough for their official SDKs: per-key rate limits with the vendors' headers and
 * 429 bodies, a latency model, seeded faults, deterministic content, and counters.
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as anthropic from "./internal/anthropic.js"
import { apiKeyOf } from "./internal/engine/auth.js"
import { formatDuration as formatDurationInternal } from "./internal/engine/duration.js"
import { Engine } from "./internal/engine/engine.js"
import { sendJson } from "./internal/engine/http.js"
import { defaultResponder as defaultResponderInternal } from "./internal/engine/responder.js"
import type { Route, RouteContext } from "./internal/engine/route.js"
import type { Vendor } from "./internal/engine/vendor.js"
import { routes as openaiRoutes } from "./internal/openai/routes.js"
import { vendor as openaiVendor } from "./internal/openai/vendor.js"
import * as replicate from "./internal/replicate.js"
import { countTokens as countTokensInternal, tokenize as tokenizeInternal } from "./internal/tokens.js"
import type { Counters, SimulatorEvent } from "./SimulatorCounters.js"
import type { SimulatorOptions } from "./SimulatorOptions.js"
import { SimulatorError, TestkitError } from "./TestkitError.js"

export type { Counters, SimulatorEvent } from "./SimulatorCounters.js"
export type {
  Api,
  BatchOptions,
  FaultKind,
  FaultOptions,
  LatencyOptions,
  LimitOptions,
  ReplicateOptions,
  Responder,
  ResponderMessage,
  ResponderRequest,
  SimulatorOptions as Options
} from "./SimulatorOptions.js"
/** The inputs a simulated Replicate model declares unless `replicateInputs` names it. @category models @since 0.3.0 */
export { defaultReplicateInputs } from "./SimulatorOptions.js"

/** A running simulator. @category models @since 0.1.0 */
export interface Instance {
  /** `http://127.0.0.1:<port>`: one server for all three APIs. */
  readonly url: string
  readonly port: number
  /** `${url}/v1`, for `new OpenAI({ baseURL })`. */
  readonly openaiBaseUrl: string
  /** `url`, for `new Anthropic({ baseURL })`. */
  readonly anthropicBaseUrl: string
  /** `${url}/v1`, for `new Replicate({ baseUrl })`. */
  readonly replicateBaseUrl: string
  /** A snapshot of the counters. */
  readonly counters: () => Counters
  /** Every model call's admission decision, oldest first. */
  readonly events: () => ReadonlyArray<SimulatorEvent>
  /** Clears counters, events, rate-limit buckets and the fault sequence. */
  readonly reset: () => void
  /** Stops listening and drops open connections (hung calls included). */
  readonly close: () => Promise<void>
}

/** The simulator failed to start: now a reason of `TestkitError`. @category errors @since 0.1.0 */
export { SimulatorError, TestkitError } from "./TestkitError.js"

/** A running simulator as an Effect service (see {@link layer}). @category services @since 0.1.0 */
export class Simulator extends Context.Service<Simulator, Instance>()("@hasten/testkit/Simulator") {}

const allRoutes: ReadonlyArray<Route> = [...openaiRoutes, ...anthropic.routes, ...replicate.routes]

const guessVendor = (request: IncomingMessage, path: string): Vendor => {
  if (request.headers["x-api-key"] !== undefined || request.headers["anthropic-version"] !== undefined) return anthropic.vendor
  const agent = request.headers["user-agent"] ?? ""
  if (
    path.startsWith("/v1/predictions") || path.startsWith("/v1/deployments") || /^\/v1\/models\/[^/]+\/[^/]+/.test(path) ||
    /^Token\s/i.test(request.headers.authorization ?? "") || /replicate/i.test(agent)
  ) return replicate.vendor
  return openaiVendor
}

const snapshot = (counters: Counters): Counters => structuredClone(counters)

const control = (engine: Engine, method: string, path: string, response: ServerResponse): boolean => {
  if (method === "GET" && path === "/_hasten/counters") {
    sendJson(engine, response, 200, snapshot(engine.counters))
    return true
  }
  if (method === "GET" && path === "/_hasten/events") {
    sendJson(engine, response, 200, engine.events)
    return true
  }
  if (method === "POST" && path === "/_hasten/reset") {
    engine.reset()
    sendJson(engine, response, 200, { ok: true })
    return true
  }
  return false
}

const dispatch = async (engine: Engine, origin: string, request: IncomingMessage, response: ServerResponse): Promise<void> => {
  const url = new URL(request.url ?? "/", origin)
  const method = (request.method ?? "GET").toUpperCase()
  const path = url.pathname.replace(/\/+$/, "") || "/"
  if (path.startsWith("/_hasten/") && control(engine, method, path, response)) return
  let matched: Route | undefined
  let params: ReadonlyArray<string> = []
  for (const route of allRoutes) {
    if (route.method !== method) continue
    const match = route.pattern.exec(path)
    if (match !== null) {
      matched = route
      params = match.slice(1).map((part) => {
        try {
          return decodeURIComponent(part)
        } catch {
          return part
        }
      })
      break
    }
  }
  const counters = engine.counters
  counters.requests += 1
  const name = matched?.name ?? `${method} (unknown route)`
  counters.requestsByRoute[name] = (counters.requestsByRoute[name] ?? 0) + 1
  const key = apiKeyOf(request) ?? ""
  if (matched === undefined) {
    const vendor = guessVendor(request, path)
    request.resume()
    const error = vendor.error(
      "not_found",
      vendor.api === "openai" ? `Invalid URL (${method} ${url.pathname})` : `Not found: ${method} ${url.pathname}`
    )
    return sendJson(engine, response, error.status, error.body, {}, error.contentType)
  }
  if (matched.public !== true) {
    const problem = engine.checkKey(key)
    if (problem !== undefined) {
      request.resume()
      engine.recordRefusal(key, name, 401)
      const message = matched.vendor.api === "openai"
        ? problem === "missing API key"
          ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
          : `Incorrect API key provided: ${key.slice(0, 3)}***. You can find your API key at https://platform.openai.com/account/api-keys.`
        : matched.vendor.api === "anthropic"
        ? problem === "missing API key" ? "x-api-key header is required" : "invalid x-api-key"
        : "You did not pass a valid authentication token"
      const error = matched.vendor.error("authentication", message)
      return sendJson(engine, response, error.status, error.body, {}, error.contentType)
    }
  }
  const context: RouteContext = { engine, request, response, url, route: name, key, params, origin }
  try {
    await matched.handle(context)
  } catch (cause) {
    const error = matched.vendor.error(
      "server",
      `The simulator failed while handling ${name}: ${cause instanceof Error ? cause.message : String(cause)}`
    )
    if (!response.headersSent) sendJson(engine, response, error.status, error.body, {}, error.contentType)
    else response.destroy()
  }
}

/**
 * Starts a simulator and resolves once it listens. Promise form, for vitest hooks and
 * benchmark scripts; {@link layer} is the Effect form.
 * @category constructors @since 0.1.0
 */
export const start = (options: SimulatorOptions = {}): Promise<Instance> =>
  new Promise((resolve, reject) => {
    const engine = new Engine(options)
    let origin = ""
    const server: Server = createServer((request, response) => {
      dispatch(engine, origin, request, response).catch((cause: unknown) => {
        if (response.destroyed) return
        if (response.headersSent) return void response.destroy()
        const error = openaiVendor.error(
          "invalid_request",
          `The simulator could not handle this request: ${cause instanceof Error ? cause.message : String(cause)}`
        )
        sendJson(engine, response, error.status, error.body)
      })
    })
    // Longer than any client's idle keep-alive (undici: 4 s), so the client always closes an
    // idle socket first: a server-side close racing a reused socket is an ECONNRESET under load.
    server.keepAliveTimeout = 65_000
    server.headersTimeout = 66_000
    server.on("clientError", (_error, socket) => {
      if (!socket.destroyed) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
    })
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject)
      const address = server.address() as AddressInfo
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address
      origin = `http://${host}:${address.port}`
      let closing: Promise<void> | undefined
      resolve({
        url: origin,
        port: address.port,
        openaiBaseUrl: `${origin}/v1`,
        anthropicBaseUrl: origin,
        replicateBaseUrl: `${origin}/v1`,
        counters: () => snapshot(engine.counters),
        events: () => [...engine.events],
        reset: () => engine.reset(),
        close: () => {
          closing ??= new Promise<void>((done) => {
            engine.close()
            server.close(() => done())
            server.closeAllConnections()
          })
          return closing
        }
      })
    })
  })

/**
 * A scoped layer providing a running {@link Simulator}; it closes with the scope.
 * @category layers @since 0.1.0
 */
export const layer = (options: SimulatorOptions = {}): Layer.Layer<Simulator, TestkitError> =>
  Layer.effect(
    Simulator,
    Effect.acquireRelease(
      Effect.tryPromise({
        try: () => start(options),
        catch: (cause) => new TestkitError({ reason: new SimulatorError({ description: String(cause) }) })
      }),
      (instance) => Effect.promise(() => instance.close())
    )
  )

/**
 * The simulators' token count: optional leading whitespace plus at most four
 * non-space characters is one token (about `ceil(chars / 4)` on English text).
 * Prompt tokens of a chat are the sum over message contents.
 * @category utils @since 0.1.0
 */
export const countTokens: (text: string) => number = countTokensInternal

/** The simulators' tokens of a text; joining them gives the text back. @category utils @since 0.1.0 */
export const tokenize: (text: string) => Array<string> = tokenizeInternal

/** The default responder: a 12-word sentence hashed from the model and last user message. @category utils @since 0.1.0 */
export const defaultResponder = defaultResponderInternal

/** Formats milliseconds as OpenAI's reset headers do (`20ms`, `1.5s`, `6m0s`). @category utils @since 0.1.0 */
export const formatDuration: (ms: number) => string = formatDurationInternal

/**
 * The most admitted requests and reserved tokens found in any window of `windowMs`
 * (each window ends at an admission and reaches back `windowMs`, exclusive), optionally
 * for one API key: what a test asserts to prove the limits held.
 * @category utils @since 0.1.0
 */
export const maxInWindow = (
  events: ReadonlyArray<SimulatorEvent>,
  windowMs: number,
  key?: string
): { readonly requests: number; readonly tokens: number } => {
  const admitted = events.filter((event) => event.status === 200 && (key === undefined || event.key === key))
  let requests = 0
  let tokens = 0
  let start = 0
  let windowTokens = 0
  for (let end = 0; end < admitted.length; end++) {
    windowTokens += admitted[end]!.reservedTokens
    while (admitted[start]!.t <= admitted[end]!.t - windowMs) {
      windowTokens -= admitted[start]!.reservedTokens
      start++
    }
    requests = Math.max(requests, end - start + 1)
    tokens = Math.max(tokens, windowTokens)
  }
  return { requests, tokens }
}
