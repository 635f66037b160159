/**
 * The simulated Replicate predictions API: create (version, model and deployment forms),
 * get, cancel, list, `Prefer: wait`, and an SSE stream URL with `output` and `done` events.
 * LLM output is an array of string tokens, as Replicate's language models return it.
 * Cold starts (`replicate.coldStartMs`), the longest `Prefer: wait` hold
 * (`replicate.maxWaitMs`), and stuck predictions (a `hang` fault: created, never started,
 * running — and holding its place — until cancelled).
 * @since 0.1.0
 */
import type { ServerResponse } from "node:http"
import { defaultReplicateInputs } from "../SimulatorOptions.js"
import type { ResponderMessage } from "../SimulatorOptions.js"
import type { Admission } from "./engine/admission.js"
import { runCall } from "./engine/call.js"
import type { Engine } from "./engine/engine.js"
import type { Generated } from "./engine/generation.js"
import { isObject, parseJson, readBody, sendJson } from "./engine/http.js"
import type { Route, RouteContext } from "./engine/route.js"
import { startSse, writeSse } from "./engine/sse.js"
import type { ErrorKind, Vendor } from "./engine/vendor.js"
import { countTokens } from "./tokens.js"

const errorTitles: Record<ErrorKind, { status: number; title: string }> = {
  invalid_request: { status: 422, title: "Input validation failed" },
  authentication: { status: 401, title: "Unauthenticated" },
  not_found: { status: 404, title: "Not found" },
  requests: { status: 429, title: "Too Many Requests" },
  tokens: { status: 429, title: "Too Many Requests" },
  concurrency: { status: 429, title: "Too Many Requests" },
  quota: { status: 402, title: "Insufficient credit" },
  server: { status: 500, title: "Internal Server Error" },
  overloaded: { status: 503, title: "Service Unavailable" }
}

/** Replicate's problem body: `{ title, detail, status }`. */
export const vendor: Vendor = {
  api: "replicate",
  error: (kind, message, state) => {
    const { status, title } = errorTitles[kind]
    const detail = kind === "quota"
      ? "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit."
      : status === 429 && state?.retryAfterMs !== undefined
      ? `${message} Request was throttled. Expected available in ${Math.ceil(state.retryAfterMs / 1000)} second${
        Math.ceil(state.retryAfterMs / 1000) === 1 ? "" : "s"
      }.`
      : message
    return { status, body: { title, detail, status }, contentType: "application/problem+json" }
  },
  rateHeaders: () => ({})
}

type Status = "starting" | "processing" | "succeeded" | "failed" | "canceled"

interface Prediction {
  readonly id: string
  readonly model: string
  readonly version: string
  readonly input: Record<string, unknown>
  readonly createdAt: number
  readonly inputTokens: number
  readonly generated: Generated
  status: Status
  output: Array<string>
  startedAt?: number
  completedAt?: number
  firstTokenAt?: number
  error?: string
  readonly listeners: Set<(event: "output" | "done" | "error", data: string) => void>
  readonly waiters: Set<() => void>
  readonly admission: Admission
}

const predictionsOf = new WeakMap<Engine, Map<string, Prediction>>()
const store = (engine: Engine): Map<string, Prediction> => {
  let map = predictionsOf.get(engine)
  if (map === undefined) {
    map = new Map()
    predictionsOf.set(engine, map)
  }
  return map
}

/** When each model's boot ends, and when it last had a prediction. */
interface ModelState {
  readyAt: number
  lastUsed: number
}
const modelsOf = new WeakMap<Engine, Map<string, ModelState>>()

/** How long a prediction created now waits for its model to boot (0 when the model is warm). */
const coldStart = (engine: Engine, model: string, now: number): number => {
  const options = engine.options.replicate
  const bootMs = options?.coldStartMs ?? 0
  if (bootMs <= 0) return 0
  let models = modelsOf.get(engine)
  if (models === undefined) {
    models = new Map()
    modelsOf.set(engine, models)
  }
  const state = models.get(model)
  if (state === undefined || (now >= state.readyAt && now - state.lastUsed > (options?.idleShutdownMs ?? 60_000))) {
    models.set(model, { readyAt: now + bootMs, lastUsed: now })
    engine.counters.coldStarts += 1
    return bootMs
  }
  state.lastUsed = Math.max(state.lastUsed, now)
  return Math.max(0, state.readyAt - now)
}

/** Keeps a model warm while its predictions run. */
const touch = (engine: Engine, model: string) => {
  const state = modelsOf.get(engine)?.get(model)
  if (state !== undefined) state.lastUsed = Date.now()
}

const terminal = (status: Status) => status === "succeeded" || status === "failed" || status === "canceled"

const iso = (ms: number | undefined) => ms === undefined ? null : new Date(ms).toISOString()

const render = (origin: string, prediction: Prediction) => {
  const done = terminal(prediction.status)
  const predictTime = prediction.startedAt !== undefined
    ? ((prediction.completedAt ?? Date.now()) - prediction.startedAt) / 1000
    : undefined
  return {
    id: prediction.id,
    model: prediction.model,
    version: prediction.version,
    input: prediction.input,
    logs: "",
    output: prediction.output.length === 0 && prediction.status === "starting" ? null : [...prediction.output],
    data_removed: false,
    error: prediction.error ?? null,
    status: prediction.status,
    source: "api",
    created_at: iso(prediction.createdAt),
    started_at: iso(prediction.startedAt),
    completed_at: iso(prediction.completedAt),
    urls: {
      cancel: `${origin}/v1/predictions/${prediction.id}/cancel`,
      get: `${origin}/v1/predictions/${prediction.id}`,
      stream: `${origin}/replicate/stream/${prediction.id}`,
      web: `${origin}/p/${prediction.id}`
    },
    metrics: done || prediction.status === "processing"
      ? {
        input_token_count: prediction.inputTokens,
        output_token_count: prediction.output.length,
        ...(predictTime !== undefined ? { predict_time: predictTime } : {}),
        ...(prediction.firstTokenAt !== undefined ? { time_to_first_token: (prediction.firstTokenAt - prediction.createdAt) / 1000 } : {}),
        ...(done && predictTime !== undefined && predictTime > 0 ? { tokens_per_second: prediction.output.length / predictTime } : {}),
        ...(done && prediction.completedAt !== undefined ? { total_time: (prediction.completedAt - prediction.createdAt) / 1000 } : {})
      }
      : {}
  }
}

const emit = (prediction: Prediction, event: "output" | "done" | "error", data: string) => {
  for (const listener of prediction.listeners) listener(event, data)
}

const finish = (engine: Engine, prediction: Prediction, status: Status) => {
  if (terminal(prediction.status)) return
  prediction.status = status
  prediction.completedAt = Date.now()
  prediction.admission.release()
  touch(engine, prediction.model)
  if (status === "failed") emit(prediction, "error", JSON.stringify({ detail: prediction.error ?? "Prediction failed" }))
  else emit(prediction, "done", status === "canceled" ? JSON.stringify({ reason: "canceled" }) : "{}")
  for (const waiter of prediction.waiters) waiter()
  prediction.waiters.clear()
  if (status === "canceled") engine.counters.cancellations += 1
}

/** Runs a prediction at the modelled pace (after its model's boot) until it succeeds or is cancelled; a stuck one never starts. */
const run = async (engine: Engine, prediction: Prediction, latency: { ttftMs: number; perTokenMs: number }, bootMs: number) => {
  if (prediction.admission.stuck === true) return
  await engine.sleep(bootMs + latency.ttftMs)
  if (terminal(prediction.status) || engine.closed) return
  prediction.status = "processing"
  prediction.startedAt = Date.now()
  const tokens = prediction.generated.tokens
  const cutAt = prediction.admission.cut === true ? Math.floor(tokens.length / 2) : -1
  for (let i = 0; i < tokens.length; i++) {
    if (i > 0) await engine.sleep(latency.perTokenMs)
    if (terminal(prediction.status) || engine.closed) return
    if (i === cutAt) {
      prediction.error = "CUDA error: an illegal memory access was encountered (simulated midstream fault)"
      return finish(engine, prediction, "failed")
    }
    if (prediction.firstTokenAt === undefined) prediction.firstTokenAt = Date.now()
    prediction.output.push(tokens[i]!)
    engine.counters.outputTokens += 1
    emit(prediction, "output", tokens[i]!)
  }
  finish(engine, prediction, "succeeded")
}

const problem = (context: RouteContext, status: number, title: string, detail: string, extra: Record<string, unknown> = {}) =>
  sendJson(context.engine, context.response, status, { title, detail, status, ...extra }, {}, "application/problem+json")

/** A validated prediction input. */
interface PredictionInput {
  readonly input: Record<string, unknown>
  readonly prompt: string
  readonly messages: ReadonlyArray<ResponderMessage>
  readonly maxTokens: number | undefined
  readonly temperature: number | undefined
  readonly stop: ReadonlyArray<string> | undefined
}

/** Validates `input`: an object; `prompt`, `max_tokens`, `temperature`, `stop_sequences` typed when present. */
export const validateInput = (input: unknown): PredictionInput | { readonly field: string; readonly message: string } => {
  if (input === undefined) return { field: "input", message: "input: Field required" }
  if (!isObject(input)) return { field: "input", message: "input: Input should be a valid dictionary" }
  if (input.prompt !== undefined && typeof input.prompt !== "string") {
    return { field: "prompt", message: "prompt: Invalid type. Expected: string" }
  }
  if (input.system_prompt !== undefined && typeof input.system_prompt !== "string") {
    return { field: "system_prompt", message: "system_prompt: Invalid type. Expected: string" }
  }
  let maxTokens: number | undefined
  for (const name of ["max_tokens", "max_new_tokens", "max_length"]) {
    const value = input[name]
    if (value === undefined) continue
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      return { field: name, message: `${name}: Must be an integer greater than or equal to 1` }
    }
    maxTokens = value
  }
  if (input.temperature !== undefined && typeof input.temperature !== "number") {
    return { field: "temperature", message: "temperature: Invalid type. Expected: number" }
  }
  let stop: ReadonlyArray<string> | undefined
  if (typeof input.stop_sequences === "string") stop = input.stop_sequences.split(",").filter((item) => item.length > 0)
  else if (Array.isArray(input.stop_sequences) && input.stop_sequences.every((item) => typeof item === "string")) {
    stop = input.stop_sequences as Array<string>
  } else if (input.stop_sequences !== undefined) {
    return { field: "stop_sequences", message: "stop_sequences: Invalid type. Expected: string" }
  }
  const prompt = typeof input.prompt === "string" ? input.prompt : JSON.stringify(input)
  const messages: Array<ResponderMessage> = []
  if (typeof input.system_prompt === "string") messages.push({ role: "system", content: input.system_prompt })
  messages.push({ role: "user", content: prompt })
  return { input, prompt, messages, maxTokens, temperature: typeof input.temperature === "number" ? input.temperature : undefined, stop }
}

const preferWaitSeconds = (context: RouteContext): number | undefined => {
  const raw = context.request.headers.prefer
  if (raw === undefined) return undefined
  const header = Array.isArray(raw) ? raw.join(",") : raw
  const match = /(?:^|[,;\s])wait(?:=(\d+))?/i.exec(header)
  if (match === null) return undefined
  return Math.min(60, Math.max(1, match[1] === undefined ? 60 : Number(match[1])))
}

const create = (form: "version" | "model" | "deployment") => async (context: RouteContext): Promise<void> => {
  const parsed = parseJson(await readBody(context.request))
  if (!parsed.ok) return problem(context, 400, "Invalid JSON", parsed.message)
  const body = parsed.value
  if (!isObject(body)) return problem(context, 422, "Input validation failed", "The request body must be a JSON object.")
  let model: string
  let version: string
  if (form === "version") {
    if (typeof body.version !== "string" || body.version.length === 0) {
      return problem(context, 422, "Input validation failed", "version: Field required", {
        invalid_fields: [{ type: "required", field: "version", description: "version is required" }]
      })
    }
    const [name, hashPart] = body.version.includes(":") ? body.version.split(":", 2) as [string, string] : [undefined, body.version]
    model = name ?? (body.version.includes("/") ? body.version : "simulator/unknown")
    version = hashPart
  } else {
    model = `${context.params[0]}/${context.params[1]}`
    version = form === "deployment" ? "deployment" : "official"
  }
  const input = validateInput(body.input)
  if ("field" in input) {
    return problem(context, 422, "Input validation failed", input.message, {
      invalid_fields: [{ type: "invalid", field: input.field, description: input.message }]
    })
  }
  const { engine } = context
  const inputTokens = input.messages.reduce((sum, message) => sum + countTokens(message.content), 0)
  const call = await runCall(context, vendor, {
    inputTokens,
    maxTokens: input.maxTokens,
    manualRelease: true,
    responderRequest: {
      api: "replicate",
      route: context.route,
      model,
      messages: input.messages,
      prompt: input.prompt,
      ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
      ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
      ...(input.stop !== undefined ? { stop: input.stop } : {}),
      body
    }
  })
  if (call === undefined) return
  const prediction: Prediction = {
    id: engine.id(""),
    model,
    version,
    input: input.input,
    createdAt: Date.now(),
    inputTokens,
    generated: call.generated,
    status: "starting",
    output: [],
    listeners: new Set(),
    waiters: new Set(),
    admission: call.admission
  }
  store(engine).set(prediction.id, prediction)
  void run(engine, prediction, call.latency, coldStart(engine, model, prediction.createdAt))
  const wait = preferWaitSeconds(context)
  if (wait !== undefined) await waitFor(engine, prediction, Math.min(wait * 1000, engine.options.replicate?.maxWaitMs ?? 60_000))
  sendJson(engine, context.response, 201, render(context.origin, prediction))
}

const waitFor = (engine: Engine, prediction: Prediction, ms: number): Promise<void> =>
  terminal(prediction.status)
    ? Promise.resolve()
    : new Promise((resolve) => {
      prediction.waiters.add(resolve)
      void engine.sleep(ms).then(() => {
        prediction.waiters.delete(resolve)
        resolve()
      })
    })

const find = (context: RouteContext): Prediction | undefined => {
  const prediction = store(context.engine).get(context.params[0]!)
  if (prediction === undefined) problem(context, 404, "Not found", `No prediction with id '${context.params[0]}'.`)
  return prediction
}

const get = async (context: RouteContext): Promise<void> => {
  const prediction = find(context)
  if (prediction !== undefined) sendJson(context.engine, context.response, 200, render(context.origin, prediction))
}

const cancel = async (context: RouteContext): Promise<void> => {
  const prediction = find(context)
  if (prediction === undefined) return
  finish(context.engine, prediction, "canceled")
  sendJson(context.engine, context.response, 200, render(context.origin, prediction))
}

const list = async (context: RouteContext): Promise<void> => {
  const results = [...store(context.engine).values()].reverse().map((prediction) => render(context.origin, prediction))
  sendJson(context.engine, context.response, 200, { next: null, previous: null, results })
}

const stream = async (context: RouteContext): Promise<void> => {
  const prediction = find(context)
  if (prediction === undefined) return
  const { engine, response } = context
  startSse(engine, response, {})
  let sequence = 0
  const send = (event: "output" | "done" | "error", data: string) => {
    writeSse(response as ServerResponse, data, event, `${prediction.createdAt}:${sequence++}`)
    if (event === "done" || event === "error") {
      prediction.listeners.delete(send)
      response.end()
    }
  }
  for (const token of prediction.output) send("output", token)
  if (terminal(prediction.status)) {
    if (prediction.status === "failed") return send("error", JSON.stringify({ detail: prediction.error ?? "Prediction failed" }))
    return send("done", prediction.status === "canceled" ? JSON.stringify({ reason: "canceled" }) : "{}")
  }
  prediction.listeners.add(send)
  response.once("close", () => prediction.listeners.delete(send))
}

const openapiSchema = (inputs: ReadonlyArray<string>) => ({
  openapi: "3.0.2",
  components: {
    schemas: {
      Input: {
        type: "object",
        title: "Input",
        properties: Object.fromEntries(inputs.map((name, index) => [name, { title: name, "x-order": index }]))
      }
    }
  }
})

const versionOf = (engine: Engine, model: string, id: string) => ({
  id,
  created_at: "2024-04-17T21:44:00.000000Z",
  cog_version: "0.9.4",
  openapi_schema: openapiSchema(engine.options.replicateInputs?.[model] ?? defaultReplicateInputs)
})

/** `GET /v1/models/:owner/:name`: the model with its latest version's OpenAPI schema. */
const getModel = async (context: RouteContext): Promise<void> => {
  const model = `${context.params[0]}/${context.params[1]}`
  sendJson(context.engine, context.response, 200, {
    url: `https://replicate.com/${model}`,
    owner: context.params[0],
    name: context.params[1],
    description: "A simulated language model.",
    visibility: "public",
    latest_version: versionOf(context.engine, model, "official")
  })
}

/** `GET /v1/models/:owner/:name/versions/:id`: one version with its OpenAPI schema. */
const getVersion = async (context: RouteContext): Promise<void> => {
  sendJson(
    context.engine,
    context.response,
    200,
    versionOf(context.engine, `${context.params[0]}/${context.params[1]}`, context.params[2]!)
  )
}

/** Every Replicate route the simulator serves. */
export const routes: ReadonlyArray<Route> = [
  { method: "POST", pattern: /^\/v1\/predictions$/, name: "POST /v1/predictions", vendor, handle: create("version") },
  {
    method: "POST",
    pattern: /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/,
    name: "POST /v1/models/:owner/:name/predictions",
    vendor,
    handle: create("model")
  },
  {
    method: "POST",
    pattern: /^\/v1\/deployments\/([^/]+)\/([^/]+)\/predictions$/,
    name: "POST /v1/deployments/:owner/:name/predictions",
    vendor,
    handle: create("deployment")
  },
  { method: "GET", pattern: /^\/v1\/models\/([^/]+)\/([^/]+)$/, name: "GET /v1/models/:owner/:name", vendor, handle: getModel },
  {
    method: "GET",
    pattern: /^\/v1\/models\/([^/]+)\/([^/]+)\/versions\/([^/]+)$/,
    name: "GET /v1/models/:owner/:name/versions/:id",
    vendor,
    handle: getVersion
  },
  { method: "GET", pattern: /^\/v1\/predictions$/, name: "GET /v1/predictions", vendor, handle: list },
  { method: "GET", pattern: /^\/v1\/predictions\/([^/]+)$/, name: "GET /v1/predictions/:id", vendor, handle: get },
  { method: "POST", pattern: /^\/v1\/predictions\/([^/]+)\/cancel$/, name: "POST /v1/predictions/:id/cancel", vendor, handle: cancel },
  { method: "GET", pattern: /^\/replicate\/stream\/([^/]+)$/, name: "GET /replicate/stream/:id", vendor, public: true, handle: stream }
]
