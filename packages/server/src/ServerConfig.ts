/**
 * What `hasten-serve` serves, as one plan: the configuration file (JSON decoded by an effect
 * `Schema`, a bad field named by its path, e.g. `models[1].upstreams[0].url`) and the
 * command-line flags (`--model`, `--upstream`, `--cache`, rate limits, batching, perf logs),
 * merged. API keys never enter the plan: they come from `--api-key` or
 * `HASTEN_SERVER_API_KEYS` as `Redacted` values.
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import { Redacted, Schema } from "effect"
import * as Fs from "node:fs"
import { InvalidConfig, InvalidOptions, ServerError, Usage } from "./ServerError.js"

const optional = Schema.optionalKey

const Url = Schema.String.check(
  Schema.makeFilter((text: string) => {
    try {
      const url = new URL(text)
      return url.protocol === "http:" || url.protocol === "https:" ? undefined : `must be an http(s) URL, got ${JSON.stringify(text)}`
    } catch {
      return `must be an http(s) URL, got ${JSON.stringify(text)}`
    }
  })
)

const NonEmpty = Schema.String.check(Schema.makeFilter((text: string) => text.length > 0 ? undefined : "must not be empty"))

const Cache = Schema.String.check(
  Schema.makeFilter((text: string) =>
    text === "off" || text === "memory" || text === "sqlite" || text.startsWith("sqlite:") || /^rediss?:\/\//.test(text)
      ? undefined
      : `must be off, memory, sqlite, sqlite:<path> or redis://…, got ${JSON.stringify(text)}`
  )
)

/**
 * The middleware of a model's stack, outermost first: response cache, batching, perf logs,
 * rate limit; then the provider (or router).
 * @category models @since 0.1.0
 */
export const Middleware = Schema.Struct({
  /** `off`, `memory`, `sqlite` (`.hasten/cache.db`), `sqlite:<path>`, or a `redis://` URL. */
  cache: optional(Cache),
  /** Budgets towards the upstream (`@hasten/rate-limit`). */
  rateLimit: optional(Schema.Struct({
    requestsPerSecond: optional(Boundary.Positive),
    requestsPerMinute: optional(Boundary.Positive),
    tokensPerMinute: optional(Boundary.Positive),
    maxConcurrency: optional(Boundary.PositiveInt)
  })),
  /** Automatic batching (`@hasten/batcher`). */
  batch: optional(Schema.Struct({ size: Boundary.PositiveInt, timeoutMs: optional(Boundary.NonNegative) })),
  /** Per-call measurements and run files (`@hasten/perf-logger`). */
  perfLogs: optional(Schema.Boolean)
})
/** @category models @since 0.1.0 */
export type Middleware = typeof Middleware.Type

/** One remote deployment of a model. @category models @since 0.1.0 */
export const Upstream = Schema.Struct({
  /** `openai` (also any OpenAI-compatible server by `url`) or `anthropic`. Default `openai`. */
  provider: optional(Schema.Literals(["openai", "anthropic"])),
  /** A label for routing stats and logs (default: the URL's host, or the provider). */
  name: optional(NonEmpty),
  /** Base URL of an OpenAI-compatible API (`http://10.0.0.5:8000/v1`). Default: the provider's. */
  url: optional(Url),
  /** The model id the upstream knows. */
  model: NonEmpty,
  /** The environment variable holding the upstream's API key (default `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` for the vendors' own URLs). */
  apiKeyEnv: optional(NonEmpty),
  /** Per-request timeout in milliseconds. */
  timeoutMs: optional(Boundary.PositiveInt),
  /**
   * The kind of OpenAI-compatible server (`vllm`, `llama.cpp`, `ollama`; default `openai`):
   * which request fields beyond OpenAI's it takes (see the providers README's field table).
   * From flags, a `vllm@…`, `llama.cpp@…` or `ollama@…` upstream says so by its name.
   */
  compat: optional(Schema.Literals(["openai", "vllm", "llama.cpp", "ollama"]))
})
/** @category models @since 0.1.0 */
export type Upstream = typeof Upstream.Type

/** A local GGUF model (`@hasten/providers/local`). @category models @since 0.1.0 */
export const LocalModel = Schema.Struct({
  /** A .gguf path, a name in shared/models or `HASTEN_MODELS_DIR`, or an `hf:` URI. */
  path: NonEmpty,
  /** Parallel sequences (requests decoded at once). Default 1. */
  sequences: optional(Boundary.PositiveInt),
  /** CPU threads. Default 1. */
  threads: optional(Boundary.PositiveInt),
  /** Tokens per sequence. */
  contextSize: optional(Boundary.PositiveInt),
  /** Offload to a GPU when one is usable. */
  gpu: optional(Schema.Boolean)
})
/** @category models @since 0.1.0 */
export type LocalModel = typeof LocalModel.Type

/** One served model id: a local model or one or more upstreams (routed). @category models @since 0.1.0 */
export const Model = Schema.Struct({
  /** The id clients send (default: the local file's name, or the upstreams' model). */
  id: optional(NonEmpty),
  local: optional(LocalModel),
  /** Several upstreams are balanced by outstanding requests with failover (`@hasten/providers/router`). */
  upstreams: optional(Schema.Array(Upstream).check(Schema.makeFilter((array) => array.length > 0 ? undefined : "must not be empty"))),
  /** Overrides of the top-level middleware for this model. */
  middleware: optional(Middleware),
  /** How long a failing upstream is skipped, in milliseconds (default 30000). */
  cooldownMs: optional(Boundary.NonNegative)
}).check(
  Schema.makeFilter((model) =>
    (model.local === undefined) === (model.upstreams === undefined) ? "needs exactly one of local or upstreams" : undefined
  )
)
/** @category models @since 0.1.0 */
export type Model = typeof Model.Type

/** The configuration file, and what the flags decode to. @category models @since 0.1.0 */
export const Plan = Schema.Struct({
  port: optional(Boundary.IntBetween(0, 65535)),
  host: optional(NonEmpty),
  /** Requests answered at once (default 256). */
  maxInFlight: optional(Boundary.PositiveInt),
  /** Requests waiting beyond that; more are answered 429 (default 1024). */
  maxQueue: optional(Boundary.NonNegativeInt),
  maxBodyBytes: optional(Boundary.PositiveInt),
  /** How long SIGTERM waits for in-flight requests (default 30000). */
  shutdownTimeoutMs: optional(Boundary.NonNegative),
  /** Where perf logs go (default `performance_logs`). */
  perfLogsDir: optional(NonEmpty),
  /** One JSON line per answered request on stdout. */
  logRequests: optional(Schema.Boolean),
  /** The middleware of every model (each model may override). */
  middleware: optional(Middleware),
  models: Schema.Array(Model)
})
/** @category models @since 0.1.0 */
export type Plan = typeof Plan.Type

const decodePlan = Boundary.decoder(Plan)

const configError = (file: string, path: string, description: string) =>
  new ServerError({ reason: new InvalidConfig({ file, path, description }) })

/**
 * Decodes a configuration object; throws a `ServerError` whose `InvalidConfig` reason names
 * the first bad field's path (the message lists every problem).
 * @category constructors @since 0.1.0
 */
export const decode = (input: unknown, file = "<config>"): Plan => {
  const decoded = decodePlan(input)
  if (decoded._tag === "Failure") {
    throw configError(file, decoded.problems[0]?.field ?? "", Boundary.formatProblems(decoded.problems))
  }
  return decoded.value
}

/**
 * Reads and decodes a JSON configuration file (throws a `ServerError`, reason `InvalidConfig`).
 * @category constructors @since 0.1.0
 */
export const load = (file: string): Plan => {
  let text: string
  try {
    text = Fs.readFileSync(file, "utf8")
  } catch (error) {
    throw configError(file, "", `cannot read: ${error instanceof Error ? error.message : String(error)}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw configError(file, "", `invalid JSON: ${error instanceof Error ? error.message : String(error)}`)
  }
  return decode(json, file)
}

/**
 * Reads `--upstream` text: `openai:gpt-4o-mini` (a vendor), `vllm@http://10.0.0.5:8000/v1:qwen`
 * (a name, an OpenAI-compatible base URL, the model after the last colon), or
 * `anthropic:claude-3-5-haiku-latest`.
 * @category constructors @since 0.1.0
 */
export const parseUpstream = (text: string): Upstream | string => {
  const at = text.indexOf("@")
  if (at >= 0) {
    const name = text.slice(0, at)
    const rest = text.slice(at + 1)
    const colon = rest.lastIndexOf(":")
    const url = colon > 0 ? rest.slice(0, colon) : ""
    const model = colon > 0 ? rest.slice(colon + 1) : ""
    if (name.length === 0 || model.length === 0 || model.includes("/") && model.startsWith("/")) {
      return `must be <name>@<base URL>:<model>, got ${JSON.stringify(text)}`
    }
    try {
      const parsed = new URL(url)
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http")
    } catch {
      return `must be <name>@<base URL>:<model> with an http(s) URL, got ${JSON.stringify(text)}`
    }
    const compat = name === "vllm" || name === "llama.cpp" || name === "ollama" ? { compat: name as "vllm" | "llama.cpp" | "ollama" } : {}
    return name === "anthropic"
      ? { provider: "anthropic", url, model }
      : { provider: "openai", ...(name !== "openai" ? { name } : {}), url, model, ...compat }
  }
  const colon = text.indexOf(":")
  const provider = colon > 0 ? text.slice(0, colon) : ""
  const model = colon > 0 ? text.slice(colon + 1) : ""
  if (model.length === 0) return `must be <provider>:<model> or <name>@<base URL>:<model>, got ${JSON.stringify(text)}`
  if (provider !== "openai" && provider !== "anthropic") {
    return `must name openai or anthropic, or give a base URL (<name>@<base URL>:<model>), got ${JSON.stringify(text)}`
  }
  return { provider, model }
}

/**
 * Reads `--model` text: a path with optional `,key=value` settings —
 * `stories260K.gguf,sequences=4,id=stories,threads=1,context-size=512,gpu=true`.
 * @category constructors @since 0.1.0
 */
export const parseLocal = (text: string): Model | string => {
  const [path, ...settings] = text.split(",")
  if (path === undefined || path.length === 0) return `must be <path>[,sequences=N][,id=NAME], got ${JSON.stringify(text)}`
  const local: { path: string; sequences?: number; threads?: number; contextSize?: number; gpu?: boolean } = { path }
  let id: string | undefined
  for (const setting of settings) {
    const [key, value = ""] = setting.split("=", 2) as [string, string?]
    const integer = Number(value)
    const positive = value.trim() !== "" && Number.isInteger(integer) && integer >= 1
    switch (key) {
      case "id":
        if (value.length === 0) return `id must not be empty, in ${JSON.stringify(text)}`
        id = value
        break
      case "sequences":
      case "threads":
      case "context-size":
        if (!positive) return `${key} must be a positive integer, got ${JSON.stringify(value)}`
        local[key === "context-size" ? "contextSize" : key] = integer
        break
      case "gpu":
        if (value !== "true" && value !== "false") return `gpu must be true or false, got ${JSON.stringify(value)}`
        local.gpu = value === "true"
        break
      default:
        return `unknown setting ${JSON.stringify(key)} (sequences, threads, context-size, gpu, id), in ${JSON.stringify(text)}`
    }
  }
  return id !== undefined ? { id, local } : { local }
}

/** The flags of `hasten-serve`, each with its decoder. */
const flags = {
  config: Boundary.Flag.string({ short: "c" }),
  model: Boundary.Flag.strings({ short: "m" }),
  upstream: Boundary.Flag.strings({ short: "u" }),
  sequences: Boundary.Flag.integer(1, { short: "s" }),
  threads: Boundary.Flag.integer(1, { short: "t" }),
  "context-size": Boundary.Flag.integer(16),
  gpu: Boundary.Flag.boolean(),
  port: Boundary.Flag.integer(0, { short: "p" }),
  host: Boundary.Flag.string(),
  "api-key": Boundary.Flag.strings(),
  cache: Boundary.Flag.string(),
  rps: Boundary.Flag.number(),
  rpm: Boundary.Flag.number(),
  tpm: Boundary.Flag.number(),
  "max-concurrency": Boundary.Flag.integer(1),
  "batch-size": Boundary.Flag.integer(1),
  "batch-timeout": Boundary.Flag.number(),
  "perf-logs": Boundary.Flag.string(),
  "max-in-flight": Boundary.Flag.integer(1),
  "max-queue": Boundary.Flag.integer(0),
  "max-body-bytes": Boundary.Flag.integer(1),
  "shutdown-timeout": Boundary.Flag.number(),
  "log-requests": Boundary.Flag.boolean(),
  help: Boundary.Flag.boolean({ short: "h" })
}

/** Usage text of `hasten-serve`. @category constructors @since 0.1.0 */
export const usage = `hasten-serve: an OpenAI-compatible server and gateway over local models and remote upstreams

  hasten-serve --model stories260K.gguf,sequences=4 [--model other.gguf,id=other]
  hasten-serve --upstream openai:gpt-4o-mini --upstream vllm@http://10.0.0.5:8000/v1:qwen
               [--cache sqlite] [--rps 5] [--tpm 90000] [--batch-size 8] [--perf-logs dir]
  hasten-serve --config hasten-serve.json

models
  -m, --model <spec>       a local GGUF: <path>[,sequences=N][,threads=N][,context-size=N][,gpu=true][,id=NAME]
                           (a path, a name in shared/models or HASTEN_MODELS_DIR, or an hf: URI); repeatable
  -u, --upstream <spec>    <openai|anthropic>:<model> or <name>@<base URL>:<model> (OpenAI-compatible); repeatable;
                           several upstreams for one model are balanced (least outstanding) with failover
  -s, --sequences N        default sequences of local models (1);  -t, --threads N (1);  --context-size N;  --gpu
  -c, --config <file>      a JSON configuration file (models, middleware, limits); flags add to it
middleware (every model)
  --cache <store>          off | memory | sqlite | sqlite:<path> | redis://host:6379
  --rps N  --rpm N  --tpm N  --max-concurrency N     budgets towards the upstream
  --batch-size N  --batch-timeout MS                  automatic batching
  --perf-logs <dir>        per-call measurements and run files under <dir>
server
  -p, --port N             default 8080; 0 picks a free port (the first stdout line is {"url": …})
  --host <address>         default 127.0.0.1
  --api-key <key>          require Authorization: Bearer <key> (repeatable; also HASTEN_SERVER_API_KEYS=k1,k2)
  --max-in-flight N        requests answered at once (256);  --max-queue N  waiting beyond that (1024), then 429
  --max-body-bytes N       (4 MiB);  --shutdown-timeout MS  drain time on SIGTERM (30000);  --log-requests
  -h, --help               this text`

/** A decoded command line: the plan and the API keys. @category models @since 0.1.0 */
export interface Cli {
  readonly plan: Plan
  readonly apiKeys: ReadonlyArray<Redacted.Redacted<string>>
}

const invalidOption = (option: string, description: string): ServerError =>
  new ServerError({ reason: new InvalidOptions({ option, description }) })

/**
 * Parses `hasten-serve` arguments (and `HASTEN_SERVER_API_KEYS` from `env`) into a plan;
 * throws a `ServerError`: `InvalidOptions` naming the bad flag, `InvalidConfig` naming the
 * bad field of the file, or `Usage` for `--help`.
 * @category constructors @since 0.1.0
 */
export const parseCli = (argv: ReadonlyArray<string>, env: Readonly<Record<string, string | undefined>> = {}): Cli => {
  const parsed = Boundary.parseFlags(argv, flags)
  if (parsed._tag === "Failure") throw invalidOption(parsed.problem.flag, parsed.problem.message)
  const values = parsed.flags.values
  if (values.help === true) throw new ServerError({ reason: new Usage({ description: usage }) })
  const base: Plan = values.config !== undefined ? load(values.config) : { models: [] }
  const models: Array<Model> = [...base.models]
  const localDefaults = {
    ...(values.sequences !== undefined ? { sequences: values.sequences } : {}),
    ...(values.threads !== undefined ? { threads: values.threads } : {}),
    ...(values["context-size"] !== undefined ? { contextSize: values["context-size"] } : {}),
    ...(values.gpu === true ? { gpu: true } : {})
  }
  for (const text of values.model ?? []) {
    const model = parseLocal(text)
    if (typeof model === "string") throw invalidOption("model", `--model ${model}`)
    models.push({ ...model, local: { ...localDefaults, ...model.local! } })
  }
  // upstreams with the same model are one served id, routed
  const byModel = new Map<string, Array<Upstream>>()
  for (const text of values.upstream ?? []) {
    const upstream = parseUpstream(text)
    if (typeof upstream === "string") throw invalidOption("upstream", `--upstream ${upstream}`)
    const list = byModel.get(upstream.model) ?? []
    list.push(upstream)
    byModel.set(upstream.model, list)
  }
  for (const [id, upstreams] of byModel) models.push({ id, upstreams })
  if (models.length === 0) {
    throw invalidOption("model", "nothing to serve: give --model <gguf>, --upstream <provider:model> or --config <file>")
  }
  const rateLimit = {
    ...base.middleware?.rateLimit,
    ...(values.rps !== undefined ? { requestsPerSecond: values.rps } : {}),
    ...(values.rpm !== undefined ? { requestsPerMinute: values.rpm } : {}),
    ...(values.tpm !== undefined ? { tokensPerMinute: values.tpm } : {}),
    ...(values["max-concurrency"] !== undefined ? { maxConcurrency: values["max-concurrency"] } : {})
  }
  const middleware: Middleware = {
    ...base.middleware,
    ...(values.cache !== undefined ? { cache: values.cache } : {}),
    ...(Object.keys(rateLimit).length > 0 ? { rateLimit } : {}),
    ...(values["batch-size"] !== undefined
      ? {
        batch: {
          size: values["batch-size"],
          ...(values["batch-timeout"] !== undefined ? { timeoutMs: values["batch-timeout"] } : {})
        }
      }
      : {}),
    ...(values["perf-logs"] !== undefined ? { perfLogs: true } : {})
  }
  const plan = decodeWith("<flags>", {
    ...base,
    ...(values.port !== undefined ? { port: values.port } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values["max-in-flight"] !== undefined ? { maxInFlight: values["max-in-flight"] } : {}),
    ...(values["max-queue"] !== undefined ? { maxQueue: values["max-queue"] } : {}),
    ...(values["max-body-bytes"] !== undefined ? { maxBodyBytes: values["max-body-bytes"] } : {}),
    ...(values["shutdown-timeout"] !== undefined ? { shutdownTimeoutMs: values["shutdown-timeout"] } : {}),
    ...(values["perf-logs"] !== undefined ? { perfLogsDir: values["perf-logs"] } : {}),
    ...(values["log-requests"] === true ? { logRequests: true } : {}),
    middleware,
    models
  })
  const fromEnv = (env.HASTEN_SERVER_API_KEYS ?? "").split(",").map((key) => key.trim()).filter((key) => key.length > 0)
  const apiKeys = [...(values["api-key"] ?? []), ...fromEnv].map((key) => Redacted.make(key))
  return { plan, apiKeys }
}

const decodeWith = (file: string, input: unknown): Plan => {
  const decoded = decodePlan(input)
  if (decoded._tag === "Success") return decoded.value
  const problem = decoded.problems[0]
  // a flag's value reaches the plan under a field name; name the flag when it is one
  const field = problem?.field ?? ""
  if (field.startsWith("middleware.cache")) throw invalidOption("cache", `--cache ${problem!.message}`)
  throw configError(file, field, Boundary.formatProblems(decoded.problems))
}
