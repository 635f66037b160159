/**
 * Starts a real `redis-server` on 127.0.0.1 on a free port for tests and benchmarks,
 * and stops it when the scope closes (or `stop()` is called). The Debian package
 * `redis-server` must be installed (`.ci/run` installs it).
 * @since 0.1.0
 */
import { Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { RedisServerError, TestkitError } from "./TestkitError.js"

/** `redis-server` is missing or did not start: now a reason of `TestkitError`. @category errors @since 0.1.0 */
export { RedisServerError, TestkitError } from "./TestkitError.js"

/** A running server. @category models @since 0.1.0 */
export interface RedisServer {
  readonly host: string
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  readonly stop: () => Promise<void>
}

/** Whether `redis-server` is on the PATH. @category utils @since 0.1.0 */
export const isAvailable = (): boolean => spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.end()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/**
 * Starts `redis-server` (no persistence, loopback only) and resolves once it accepts
 * connections. Promise form, for vitest `beforeAll` and benchmark scripts.
 * @category constructors @since 0.1.0
 */
export const start = async (): Promise<RedisServer> => {
  if (!isAvailable()) {
    throw new Error("redis-server is not installed: run `apt-get install -y redis-server` (.ci/run does this)")
  }
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "hasten-redis-"))
  const child = spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--protected-mode",
    "yes"
  ], { stdio: "ignore" })
  let exited = false
  child.once("exit", () => {
    exited = true
  })
  for (let attempt = 0; attempt < 100; attempt++) {
    if (exited) throw new Error(`redis-server exited before accepting connections on port ${port}`)
    if (await canConnect(port)) {
      return {
        host: "127.0.0.1",
        port,
        url: `redis://127.0.0.1:${port}`,
        stop: () =>
          new Promise<void>((resolve) => {
            if (exited) {
              rmSync(dir, { recursive: true, force: true })
              return resolve()
            }
            child.once("exit", () => {
              rmSync(dir, { recursive: true, force: true })
              resolve()
            })
            child.kill("SIGTERM")
          })
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  child.kill("SIGKILL")
  throw new Error(`redis-server did not accept connections on port ${port} within 5 s`)
}

/**
 * Effect form of {@link start}: the server lives as long as the scope.
 * @category constructors @since 0.1.0
 */
export const scoped = Effect.acquireRelease(
  Effect.tryPromise({ try: start, catch: (error) => new TestkitError({ reason: new RedisServerError({ description: String(error) }) }) }),
  (server) => Effect.promise(() => server.stop())
)
