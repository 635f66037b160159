/**
 * The testkit simulator in its own process, for the benchmark scenarios: started from its
 * CLI, controlled through its `/_hasten/*` endpoints.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

/** Starts `hasten-simulator` with `args` on a free port; resolves once it listens. */
export const startSimulator = (args: ReadonlyArray<string>): Promise<{ readonly url: string; readonly child: ChildProcess }> =>
  new Promise((resolvePromise, reject) => {
    // testkit's CLI: its source under the `@hasten/source` condition (`pnpm bench`), else its build.
    const cli = fileURLToPath(import.meta.resolve("@hasten/testkit/cli"))
    if (!existsSync(cli)) reject(new Error(`${cli} is missing: run tsup in packages/testkit first`))
    const child = spawn(process.execPath, [cli, "--port", "0", ...args], { stdio: ["ignore", "pipe", "inherit"] })
    const lines = createInterface({ input: child.stdout! })
    lines.once("line", (line) => resolvePromise({ url: (JSON.parse(line) as { url: string }).url, child }))
    child.once("exit", (code) => reject(new Error(`simulator exited with ${code}`)))
  })

/** A JSON request to the simulator's control endpoints (`/_hasten/counters`, `/_hasten/events`, `/_hasten/reset`). */
export const control = async <A>(url: string, path: string, method = "GET"): Promise<A> =>
  (await (await fetch(`${url}${path}`, { method })).json()) as A
