import { assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import { Effect, Layer } from "effect"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import OpenAI from "openai"
import { Gateway, Server, ServerConfig } from "../src/index.js"

const Live = Layer.unwrap(Effect.gen(function*() {
  const simulator = yield* Simulator.Simulator
  const cli = ServerConfig.parseCli(["--port", "0", "--upstream", `sim@${simulator.openaiBaseUrl}:gpt-4o-mini`], {})
  return Layer.effect(Server.Server, Effect.tap(Effect.service(Server.Server), (server) => server.ready)).pipe(
    Layer.provide(Gateway.layer(cli.plan))
  )
})).pipe(Layer.provideMerge(Simulator.layer({ seed: 3 })))

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void
const heap = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/** Open TCP sockets of this process (client and server side). */
const sockets = () => process.getActiveResourcesInfo().filter((name) => name === "TCPSocketWrap").length

describe("load: 64 concurrent openai SDK clients through the gateway to a zero-latency simulator", () => {
  it.effect("no errors, sockets reused rather than leaked, heap flat between rounds", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const simulator = yield* Simulator.Simulator
      const clients = Array.from({ length: 64 }, () => new OpenAI({ baseURL: server.baseUrl, apiKey: "x", maxRetries: 0 }))
      const round = (requestsPerClient: number) =>
        Effect.promise(async () => {
          let errors = 0
          let answered = 0
          await Promise.all(clients.map(async (client, index) => {
            for (let request = 0; request < requestsPerClient; request++) {
              try {
                const reply = await client.chat.completions.create({
                  model: "gpt-4o-mini",
                  messages: [{ role: "user", content: `client ${index} request ${request}` }],
                  max_tokens: 4
                })
                if (reply.choices[0]!.message.content!.length > 0) answered++
              } catch {
                errors++
              }
            }
          }))
          return { errors, answered }
        })
      const baseline = sockets()
      const warm = yield* round(2)
      assert.deepStrictEqual(warm, { errors: 0, answered: 128 })
      const first = yield* round(8)
      const heapBefore = heap()
      const second = yield* round(8)
      const heapAfter = heap()
      assert.deepStrictEqual(first, { errors: 0, answered: 512 })
      assert.deepStrictEqual(second, { errors: 0, answered: 512 })
      assert.strictEqual(server.metrics.inFlight, 0)
      assert.strictEqual(server.metrics.queued, 0)
      // keep-alive sockets are reused, not leaked: 1152 requests hold at most one socket per
      // concurrent client on each of the four ends (client → server → upstream client → simulator)
      assert.isAtMost(sockets() - baseline, 4 * 64)
      // after a full GC, 512 more requests leave no per-request state behind (a leak of 8 KiB per request would show)
      assert.isBelow(heapAfter - heapBefore, 4 * 1024 * 1024, `heap grew ${heapAfter - heapBefore} bytes`)
      assert.strictEqual(simulator.counters().requests, 128 + 1024)
    }).pipe(Effect.provide(Live)), { timeout: 60_000 })
})
