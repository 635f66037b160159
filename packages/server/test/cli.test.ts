import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Child from "node:child_process"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import OpenAI from "openai"
import { until } from "./support.js"

const bin = Path.join(import.meta.dirname, "..", "src", "serve.ts")

/** Runs hasten-serve from source (tsx), collecting stdout lines and stderr. */
const start = (argv: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = Child.spawn(process.execPath, ["--conditions=@hasten/source", "--import", "tsx", bin, ...argv], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  let stderr = ""
  let buffer = ""
  const watchers: Array<() => void> = []
  child.stdout.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("utf8")
    const parts = buffer.split("\n")
    buffer = parts.pop()!
    lines.push(...parts)
    for (const watcher of watchers) watcher()
  })
  child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString("utf8")))
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  /** Resolves once a stdout line contains `text` (or the process exits). */
  const line = (text: string) =>
    Effect.promise(() =>
      Promise.race([
        exit.then(() => undefined),
        new Promise<string>((resolve) => {
          const check = () => {
            const found = lines.find((candidate) => candidate.includes(text))
            if (found !== undefined) resolve(found)
          }
          watchers.push(check)
          check()
        })
      ])
    )
  return { child, lines, stderr: () => stderr, exit, line }
}

/** An upstream that answers chat completions only when released. */
const heldUpstream = () =>
  new Promise<{ url: string; received: () => number; release: () => void; close: () => void }>((resolve) => {
    const waiting: Array<() => void> = []
    let received = 0
    let released = false
    const server = Http.createServer((request, response) => {
      request.resume()
      request.on("end", () => {
        received++
        const answer = () => {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(JSON.stringify({
            id: "x",
            object: "chat.completion",
            created: 0,
            model: "m",
            choices: [{ index: 0, message: { role: "assistant", content: "held answer" }, finish_reason: "stop" }],
            usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }
          }))
        }
        if (released) answer()
        else waiting.push(answer)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}/v1`,
        received: () => received,
        release: () => {
          released = true
          for (const answer of waiting.splice(0)) answer()
        },
        close: () => {
          server.close()
          server.closeAllConnections()
        }
      })
    })
  })

describe("hasten-serve (the CLI, run from source)", () => {
  it.live("SIGTERM drains the request in flight, then exits 0", () =>
    Effect.gen(function*() {
      const upstream = yield* Effect.promise(heldUpstream)
      // a local model too: node-llama-cpp brings signal-exit, which re-raises a signal nobody else listens to
      const serve = start(["--upstream", `held@${upstream.url}:m`, "--model", "stories260K.gguf", "--port", "0", "--log-requests"])
      const ready = yield* serve.line("\"ready\":true")
      assert.isDefined(ready, serve.stderr())
      const info = JSON.parse(serve.lines[0]!) as { baseUrl: string; models: Array<string> }
      assert.deepStrictEqual(info.models, ["stories260K", "m"])
      const openai = new OpenAI({ baseURL: info.baseUrl, apiKey: "x", maxRetries: 0 })
      const reply = openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] })
      yield* until(() => upstream.received() === 1, "the upstream got the request")
      serve.child.kill("SIGTERM")
      // shutdown has begun once new connections are refused
      const refused = yield* Effect.promise(async () => {
        for (let attempt = 0; attempt < 500; attempt++) {
          const answered = await fetch(`${info.baseUrl.replace(/\/v1$/, "")}/health`, { headers: { connection: "close" } }).then(
            () => true,
            () => false
          )
          if (!answered) return true
          await new Promise((resolve) => setImmediate(resolve))
        }
        return false
      })
      assert.isTrue(refused, "the server kept accepting connections after SIGTERM")
      // the request is still held: the server must wait for it
      assert.isNull(serve.child.exitCode)
      upstream.release()
      const answer = yield* Effect.promise(() => reply)
      assert.strictEqual(answer.choices[0]!.message.content, "held answer")
      assert.strictEqual(yield* Effect.promise(() => serve.exit), 0)
      // the access log line: request id, status, no secrets
      const log = serve.lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) =>
        line.path === "/v1/chat/completions"
      )
      assert.strictEqual(log?.status, 200)
      assert.match(String(log?.requestId), /^req_/)
      upstream.close()
    }), { timeout: 30_000 })

  it.live("a bad flag exits 2 naming it; a missing upstream key exits 1 naming the variable", () =>
    Effect.gen(function*() {
      const bad = start(["--upstream", "gpt-4o-mini"])
      assert.strictEqual(yield* Effect.promise(() => bad.exit), 2)
      assert.match(bad.stderr(), /--upstream must be <provider>:<model>/)
      const env = { ...process.env } as Record<string, string>
      delete env.OPENAI_API_KEY
      const noKey = start(["--upstream", "openai:gpt-4o-mini", "--port", "0"], { OPENAI_API_KEY: "" })
      assert.strictEqual(yield* Effect.promise(() => noKey.exit), 1)
      assert.match(noKey.stderr(), /OPENAI_API_KEY/)
    }), { timeout: 30_000 })
})
