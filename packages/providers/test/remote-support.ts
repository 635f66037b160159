/**
 * Helpers for the remote-provider tests: a scripted loopback HTTP server (for error
 * shapes the simulator does not produce) and a bounded wait for server-side effects.
 */
import { Effect } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/** One scripted reply. */
export interface Reply {
  readonly status: number
  readonly body?: unknown
  /** A raw body (e.g. server-sent events), sent as is. */
  readonly raw?: string
  readonly headers?: Readonly<Record<string, string>>
}

/** A loopback server answering every request with `reply(request)`. */
export interface Scripted {
  readonly url: string
  readonly requests: Array<
    { readonly method: string; readonly path: string; readonly headers: IncomingMessage["headers"]; readonly body: string }
  >
  readonly close: () => Promise<void>
}

/** Starts a scripted server on 127.0.0.1, port 0. */
export const startScripted = (
  reply: (request: { method: string; path: string; headers: IncomingMessage["headers"]; body: string }) => Reply | "reset"
): Promise<Scripted> =>
  new Promise((resolve) => {
    const requests: Scripted["requests"] = []
    const server = createServer((request: IncomingMessage, response: ServerResponse) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const entry = {
          method: request.method ?? "GET",
          path: request.url ?? "/",
          headers: request.headers,
          body: Buffer.concat(chunks).toString("utf8")
        }
        requests.push(entry)
        const answer = reply(entry)
        if (answer === "reset") {
          response.socket?.destroy()
          return
        }
        const payload = answer.raw ?? (answer.body === undefined ? "" : JSON.stringify(answer.body))
        response.writeHead(answer.status, { "content-type": "application/json", ...answer.headers })
        response.end(payload)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          })
      })
    })
  })

/**
 * Waits (real time, bounded) until a server-side condition holds: the server observes
 * an abort or a cancellation asynchronously. Fails after `limitMs`.
 */
export const eventually = (condition: () => boolean, limitMs = 5_000): Effect.Effect<void, Error> =>
  Effect.promise(async () => {
    const deadline = Date.now() + limitMs
    while (!condition()) {
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return true
  }).pipe(Effect.flatMap((ok) => ok ? Effect.void : Effect.fail(new Error(`condition not met within ${limitMs} ms`))))

/** A promise with its resolver, for a simulator responder to signal "the request arrived". */
export const deferred = <A = void>() => {
  let resolve!: (value: A) => void
  const promise = new Promise<A>((done) => {
    resolve = done
  })
  return { promise, resolve }
}
