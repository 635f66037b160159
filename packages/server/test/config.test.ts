import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Gateway, ServerConfig, ServerError } from "../src/index.js"

const failure = (run: () => unknown): ServerError.ServerError => {
  try {
    run()
  } catch (error) {
    assert.instanceOf(error, ServerError.ServerError)
    return error
  }
  throw new Error("expected a ServerError")
}

describe("ServerConfig", () => {
  it("a bad field of the configuration file is named by its path", () => {
    const error = failure(() =>
      ServerConfig.decode({
        models: [
          { upstreams: [{ model: "gpt-4o-mini" }] },
          { id: "qwen", upstreams: [{ url: "10.0.0.5:8000/v1", model: "qwen" }] }
        ]
      }, "serve.json")
    )
    assert.strictEqual(error.reason._tag, "InvalidConfig")
    if (error.reason._tag !== "InvalidConfig") return
    assert.strictEqual(error.reason.path, "models[1].upstreams[0].url")
    assert.match(error.message, /^serve\.json: models\[1\]\.upstreams\[0\]\.url: .*must be an http\(s\) URL/)
  })

  it("a model needs exactly one of local or upstreams; numbers are range-checked", () => {
    const both = failure(() => ServerConfig.decode({ models: [{ local: { path: "a.gguf" }, upstreams: [{ model: "m" }] }] }))
    assert.match(both.message, /models\[0\].*exactly one of local or upstreams/)
    const sequences = failure(() => ServerConfig.decode({ models: [{ local: { path: "a.gguf", sequences: 0 } }] }))
    if (sequences.reason._tag === "InvalidConfig") assert.strictEqual(sequences.reason.path, "models[0].local.sequences")
    const cache = failure(() => ServerConfig.decode({ middleware: { cache: "disk" }, models: [] }))
    if (cache.reason._tag === "InvalidConfig") assert.strictEqual(cache.reason.path, "middleware.cache")
  })

  it("load reads a JSON file and names the file when it is not JSON", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-serve-"))
    const file = Path.join(dir, "serve.json")
    Fs.writeFileSync(file, JSON.stringify({ port: 0, models: [{ id: "stories", local: { path: "stories260K.gguf", sequences: 2 } }] }))
    const plan = ServerConfig.load(file)
    assert.strictEqual(plan.models[0]!.local!.sequences, 2)
    Fs.writeFileSync(file, "{ models: [")
    const error = failure(() => ServerConfig.load(file))
    assert.match(error.message, /serve\.json: invalid JSON/)
    Fs.rmSync(dir, { recursive: true })
  })

  it("flags: local models with settings, upstreams grouped by model, middleware, keys as Redacted", () => {
    const cli = ServerConfig.parseCli([
      "--model",
      "stories260K.gguf,sequences=4,id=stories",
      "--model",
      "TinyStories-656K-Q8_0.gguf",
      "--threads",
      "2",
      "--upstream",
      "openai:gpt-4o-mini",
      "--upstream",
      "vllm@http://10.0.0.5:8000/v1:qwen",
      "--upstream",
      "vllm2@http://10.0.0.6:8000/v1:qwen",
      "--cache",
      "redis://localhost:6379",
      "--rps",
      "5",
      "--tpm",
      "90000",
      "--batch-size",
      "8",
      "--batch-timeout",
      "20",
      "--api-key",
      "sk-one"
    ], { HASTEN_SERVER_API_KEYS: "sk-two, sk-three" })
    const models = cli.plan.models
    assert.deepStrictEqual(models.map(Gateway.idOf), ["stories", "TinyStories-656K-Q8_0", "gpt-4o-mini", "qwen"])
    assert.deepStrictEqual(models[0]!.local, { path: "stories260K.gguf", sequences: 4, threads: 2 })
    assert.deepStrictEqual(models[3]!.upstreams, [
      // a vllm@… upstream declares its kind: which fields beyond OpenAI's it takes
      { provider: "openai", name: "vllm", url: "http://10.0.0.5:8000/v1", model: "qwen", compat: "vllm" },
      { provider: "openai", name: "vllm2", url: "http://10.0.0.6:8000/v1", model: "qwen" }
    ])
    assert.deepStrictEqual(cli.plan.middleware, {
      cache: "redis://localhost:6379",
      rateLimit: { requestsPerSecond: 5, tokensPerMinute: 90000 },
      batch: { size: 8, timeoutMs: 20 }
    })
    assert.deepStrictEqual(cli.apiKeys.map(Redacted.value), ["sk-one", "sk-two", "sk-three"])
    assert.notInclude(String(cli.apiKeys[0]), "sk-one")
  })

  it("a bad flag is named", () => {
    for (
      const [argv, option] of [
        [["--upstream", "gpt-4o-mini"], "upstream"],
        [["--upstream", "vllm@10.0.0.5:qwen"], "upstream"],
        [["--model", "a.gguf,sequences=0"], "model"],
        [["--model", "a.gguf", "--port", "-1"], "port"],
        [["--model", "a.gguf", "--cache", "disk"], "cache"],
        [["--modle", "a.gguf"], "modle"],
        [[], "model"]
      ] as const
    ) {
      const error = failure(() => ServerConfig.parseCli(argv))
      assert.strictEqual(error.reason._tag, "InvalidOptions", argv.join(" "))
      if (error.reason._tag === "InvalidOptions") assert.strictEqual(error.reason.option, option, argv.join(" "))
    }
    const help = failure(() => ServerConfig.parseCli(["--help"]))
    assert.strictEqual(help.reason._tag, "Usage")
    assert.match(help.message, /hasten-serve --upstream openai:gpt-4o-mini/)
  })
})
