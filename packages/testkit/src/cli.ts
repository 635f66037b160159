#!/usr/bin/env node
/**
 * `hasten-simulator`: runs a {@link Simulator} in its own process, for benchmarks that
 * must not share an event loop with the code they measure. Prints one JSON line
 * `{"url": …}` on stdout once listening; counters at `GET /_hasten/counters`, the event
 * log at `GET /_hasten/events`, `POST /_hasten/reset` clears both. Stops on SIGINT/SIGTERM.
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import { realpathSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as Simulator from "./Simulator.js"
import { InvalidFlag, TestkitError } from "./TestkitError.js"

const usage = `Usage: hasten-simulator [options]
  --port <n>                 port to listen on (default 0: a free port)
  --host <addr>              address to bind (default 127.0.0.1)
  --seed <n>                 seed for jitter, faults and default content (default 0)
  --rpm <n>                  requests per window per API key
  --tpm <n>                  tokens per window per API key (prompt + max_tokens)
  --window-ms <n>            rate-limit window in ms (default 60000)
  --max-concurrency <n>      calls in flight per API key
  --quota-exhausted          every key's quota is exhausted (429 insufficient_quota)
  --quota-tokens <n>         lifetime tokens per key before its quota is exhausted
  --default-max-tokens <n>   output tokens reserved when a request sets none (default 64)
  --count-unsuccessful       faults and 429s also take a place in the request window (as OpenAI counts them)
  --prompt-charge <kind>     tokens (default) or characters: charge ceil(characters / 4) of the prompt at admission, as OpenAI documents
  --no-limit-headers         send no x-ratelimit-* / anthropic-ratelimit-* headers (retry-after on 429s still)
  --ttft-ms <n>              time to first token in ms
  --per-token-ms <n>         time per output token in ms
  --jitter <x>               relative latency jitter in [0, 1]
  --fault-rate <x>           probability in [0, 1] that a model call fails
  --fault-kinds <list>       comma-separated of 500,503,reset,hang,midstream (default the first four)
  --api-keys <list>          comma-separated keys to accept (default: any non-empty key)
  --embedding-dimensions <n> embedding length when a request sets none (default 16)
  --batch-validating-ms <n>, --batch-per-request-ms <n>, --batch-finalizing-ms <n>, --batch-expires-after-ms <n>
  --replicate-cold-start-ms <n>     a Replicate model's boot: its first prediction (and the first after idling) waits this long
  --replicate-idle-shutdown-ms <n>  how long a Replicate model stays warm after its last prediction (default 60000)
  --replicate-max-wait-ms <n>       the longest a Prefer: wait create request is held (default 60000, as Replicate)
  --help                     print this help`

const numberFlags = [
  "port",
  "seed",
  "rpm",
  "tpm",
  "window-ms",
  "max-concurrency",
  "quota-tokens",
  "default-max-tokens",
  "ttft-ms",
  "per-token-ms",
  "jitter",
  "fault-rate",
  "embedding-dimensions",
  "batch-validating-ms",
  "batch-per-request-ms",
  "batch-finalizing-ms",
  "batch-expires-after-ms",
  "replicate-cold-start-ms",
  "replicate-idle-shutdown-ms",
  "replicate-max-wait-ms"
] as const

/** The flags of `hasten-simulator`, each with its decoder. */
const flags = {
  ...Object.fromEntries(numberFlags.map((name) => [name, Boundary.Flag.number()])) as Record<
    (typeof numberFlags)[number],
    Boundary.Flag<number>
  >,
  jitter: Boundary.Flag.number({ maximum: 1 }),
  "fault-rate": Boundary.Flag.number({ maximum: 1 }),
  host: Boundary.Flag.string(),
  "fault-kinds": Boundary.Flag.string(),
  "api-keys": Boundary.Flag.string(),
  "quota-exhausted": Boundary.Flag.boolean(),
  "count-unsuccessful": Boundary.Flag.boolean(),
  "prompt-charge": Boundary.Flag.choice(["tokens", "characters"]),
  "no-limit-headers": Boundary.Flag.boolean(),
  help: Boundary.Flag.boolean()
}

/**
 * What {@link parseFlags} threw before 0.2.0, now `TestkitError` (reason `InvalidFlag`), so
 * `instanceof CliError` keeps matching.
 * @deprecated Use `TestkitError` and its `reason`.
 * @category errors @since 0.1.0
 */
export const CliError = TestkitError
/** @deprecated Use `TestkitError`. @category errors @since 0.1.0 */
export type CliError = TestkitError

const invalid = (flag: string, description: string): TestkitError => new TestkitError({ reason: new InvalidFlag({ flag, description }) })

/**
 * Parses command-line flags into simulator options, throwing a `TestkitError` (reason
 * `InvalidFlag`) that names the bad flag. Returns `undefined` for `--help`.
 * @category constructors @since 0.1.0
 */
export const parseFlags = (argv: ReadonlyArray<string>): Simulator.Options | undefined => {
  const parsed = Boundary.parseFlags(argv, flags)
  if (parsed._tag === "Failure") {
    const { flag, message } = parsed.problem
    // A bad value names its flag; an unknown flag or a missing value also shows the usage.
    throw invalid(flag, message.startsWith("--") ? message : `${message}\n${usage}`)
  }
  const values = parsed.flags.values
  if (values.help === true) return undefined
  const kinds = typeof values["fault-kinds"] === "string"
    ? values["fault-kinds"].split(",").map((kind) => kind.trim()).filter((kind) => kind.length > 0)
    : undefined
  for (const kind of kinds ?? []) {
    if (!["500", "503", "reset", "hang", "midstream"].includes(kind)) {
      throw invalid("fault-kinds", `--fault-kinds: unknown kind ${JSON.stringify(kind)} (expected 500, 503, reset, hang, midstream)`)
    }
  }
  const promptCharge = values["prompt-charge"]
  const defined = <T extends Record<string, unknown>>(record: T): T =>
    Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as T
  const limits = defined({
    rpm: values.rpm,
    tpm: values.tpm,
    windowMs: values["window-ms"],
    maxConcurrency: values["max-concurrency"],
    quotaExhausted: values["quota-exhausted"] === true ? true : undefined,
    quotaTokens: values["quota-tokens"],
    defaultMaxTokens: values["default-max-tokens"],
    countUnsuccessful: values["count-unsuccessful"] === true ? true : undefined,
    promptCharge,
    headers: values["no-limit-headers"] === true ? false : undefined
  })
  const latency = defined({ ttftMs: values["ttft-ms"], perTokenMs: values["per-token-ms"], jitter: values.jitter })
  const batch = defined({
    validatingMs: values["batch-validating-ms"],
    perRequestMs: values["batch-per-request-ms"],
    finalizingMs: values["batch-finalizing-ms"],
    expiresAfterMs: values["batch-expires-after-ms"]
  })
  const replicate = defined({
    coldStartMs: values["replicate-cold-start-ms"],
    idleShutdownMs: values["replicate-idle-shutdown-ms"],
    maxWaitMs: values["replicate-max-wait-ms"]
  })
  return defined({
    port: values.port,
    host: typeof values.host === "string" ? values.host : undefined,
    seed: values.seed,
    limits: Object.keys(limits).length > 0 ? limits : undefined,
    latency: Object.keys(latency).length > 0 ? latency : undefined,
    faults: values["fault-rate"] !== undefined
      ? { rate: values["fault-rate"], ...(kinds !== undefined ? { kinds: kinds as Array<Simulator.FaultKind> } : {}) }
      : undefined,
    apiKeys: typeof values["api-keys"] === "string"
      ? values["api-keys"].split(",").map((key) => key.trim()).filter((key) => key.length > 0)
      : undefined,
    embeddingDimensions: values["embedding-dimensions"],
    batch: Object.keys(batch).length > 0 ? batch : undefined,
    replicate: Object.keys(replicate).length > 0 ? replicate : undefined
  }) as Simulator.Options
}

/**
 * Starts a simulator from flags and prints `{"url", "port", "openaiBaseUrl", "anthropicBaseUrl", "replicateBaseUrl"}`
 * as one JSON line. Resolves with the running instance.
 * @category constructors @since 0.1.0
 */
export const main = async (
  argv: ReadonlyArray<string>,
  write: (line: string) => void = (line) => process.stdout.write(line)
): Promise<Simulator.Instance | undefined> => {
  const options = parseFlags(argv)
  if (options === undefined) {
    write(`${usage}\n`)
    return undefined
  }
  const sim = await Simulator.start(options)
  write(`${
    JSON.stringify({
      url: sim.url,
      port: sim.port,
      openaiBaseUrl: sim.openaiBaseUrl,
      anthropicBaseUrl: sim.anthropicBaseUrl,
      replicateBaseUrl: sim.replicateBaseUrl
    })
  }\n`)
  return sim
}

const isEntryPoint = (): boolean => {
  const entry = process.argv[1]
  if (entry === undefined) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then((sim) => {
    if (sim === undefined) return
    const stop = () => {
      void sim.close().then(() => process.exit(0))
    }
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
  }, (error: unknown) => {
    process.stderr.write(`hasten-simulator: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(2)
  })
}
