import { afterEach, assert, describe, it } from "@effect/vitest"
import { Simulator, TestkitError } from "@hasten/testkit"
import { CliError, parseFlags } from "@hasten/testkit/cli"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import OpenAI from "openai"

/** Runs `src/cli.ts` from source in its own Node process (relative `.js` imports resolve to `.ts`). */
const hooks = `import { registerHooks } from "node:module";
registerHooks({ resolve(specifier, context, next) {
  try { return next(specifier, context) } catch (error) {
    if (specifier.startsWith(".") && specifier.endsWith(".js")) return next(specifier.slice(0, -3) + ".ts", context)
    throw error
  }
} })`
const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url))

const children: Array<ChildProcess> = []
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null) {
      child.kill("SIGTERM")
      await once(child, "exit")
    }
  }
})

const launch = (args: Array<string>) => {
  const child = spawn(process.execPath, [
    "--conditions=@hasten/source",
    "--import",
    `data:text/javascript,${encodeURIComponent(hooks)}`,
    cli,
    ...args
  ], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  return child
}

const firstLine = (child: ChildProcess): Promise<string> =>
  new Promise((resolve, reject) => {
    let buffer = ""
    let errors = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      buffer += chunk.toString()
      const end = buffer.indexOf("\n")
      if (end >= 0) resolve(buffer.slice(0, end))
    })
    child.stderr!.on("data", (chunk: Buffer) => (errors += chunk.toString()))
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${errors}`)))
  })

describe("hasten-simulator CLI", () => {
  it("maps flags to options", () => {
    assert.deepStrictEqual(
      parseFlags([
        "--port",
        "0",
        "--rpm",
        "10",
        "--tpm",
        "500",
        "--window-ms",
        "1000",
        "--max-concurrency",
        "3",
        "--ttft-ms",
        "5",
        "--per-token-ms",
        "1",
        "--fault-rate",
        "0.1",
        "--fault-kinds",
        "500,reset",
        "--seed",
        "9"
      ]),
      {
        port: 0,
        seed: 9,
        limits: { rpm: 10, tpm: 500, windowMs: 1000, maxConcurrency: 3 },
        latency: { ttftMs: 5, perTokenMs: 1 },
        faults: { rate: 0.1, kinds: ["500", "reset"] }
      }
    )
    assert.deepStrictEqual(parseFlags([]), {})
    assert.isUndefined(parseFlags(["--help"]))
  })

  it("names the bad flag", () => {
    assert.throws(() => parseFlags(["--rpm", "many"]), CliError, /--rpm must be a non-negative number/)
    assert.throws(() => parseFlags(["--fault-rate", "2"]), CliError, /--fault-rate must be between 0 and 1/)
    assert.throws(() => parseFlags(["--fault-kinds", "500,boom"]), CliError, /unknown kind "boom"/)
    assert.throws(() => parseFlags(["--bogus"]), CliError, /bogus/)
  })

  it("throws TestkitError whose InvalidFlag reason names the flag", () => {
    const flagOf = (argv: Array<string>) => {
      try {
        parseFlags(argv)
      } catch (error) {
        assert.instanceOf(error, TestkitError.TestkitError)
        const reason = (error as TestkitError.TestkitError).reason
        assert.strictEqual(reason._tag, "InvalidFlag")
        return reason._tag === "InvalidFlag" ? reason.flag : undefined
      }
      return assert.fail("did not throw")
    }
    assert.strictEqual(flagOf(["--rpm", "many"]), "rpm")
    assert.strictEqual(flagOf(["--jitter", "3"]), "jitter")
    assert.strictEqual(flagOf(["--prompt-charge", "words"]), "prompt-charge")
    assert.strictEqual(flagOf(["--bogus"]), "bogus")
  })

  it("runs in its own process: prints {url}, serves the SDKs, exposes and resets counters", async () => {
    const child = launch(["--port", "0", "--rpm", "2", "--seed", "1"])
    const { url, openaiBaseUrl } = JSON.parse(await firstLine(child)) as { url: string; openaiBaseUrl: string }
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const openai = new OpenAI({ baseURL: openaiBaseUrl, apiKey: "sk-cli", maxRetries: 0 })
    const answer = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
    assert.strictEqual(
      answer.choices[0]!.message.content,
      Simulator.defaultResponder({ api: "openai", route: "", model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], body: {} })
    )
    await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
    const limited = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }).catch((
      error: unknown
    ) => error)
    assert.instanceOf(limited, OpenAI.RateLimitError)
    const counters = await (await fetch(`${url}/_hasten/counters`)).json() as Simulator.Counters
    assert.strictEqual(counters.requests, 3)
    assert.strictEqual(counters.http429.requests, 1)
    const events = await (await fetch(`${url}/_hasten/events`)).json() as Array<Simulator.SimulatorEvent>
    assert.strictEqual(events.length, 3)
    assert.strictEqual((await fetch(`${url}/_hasten/reset`, { method: "POST" })).status, 200)
    const after = await (await fetch(`${url}/_hasten/counters`)).json() as Simulator.Counters
    assert.strictEqual(after.requests, 0)
    child.kill("SIGTERM")
    const [code] = await once(child, "exit")
    assert.strictEqual(code, 0)
  })

  it("exits with status 2 and a message on bad flags", async () => {
    const child = launch(["--rpm", "lots"])
    let errors = ""
    child.stderr!.on("data", (chunk: Buffer) => (errors += chunk.toString()))
    const [code] = await once(child, "exit")
    assert.strictEqual(code, 2)
    assert.match(errors, /--rpm must be a non-negative number/)
  })
})
