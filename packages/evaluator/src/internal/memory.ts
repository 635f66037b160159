/**
 * V8's memory-saver mode for the `hasten-eval` process. By default V8 lets the heap grow
 * three to four times past what is live before a full collection: a 100k-item coordinator
 * with ~90 MB live peaked at 538 MB RSS, workers that hold nothing per item at 410–440 MB.
 * Started with `--memory-saver-mode`, V8 collects before growing that far: 226–255 MB and
 * 156–175 MB for the same runs. The flag must be there when the process starts (set later
 * with `v8.setFlagsFromString` it did only part of that: 305–353 MB and 265–291 MB), so the
 * CLI re-executes itself with it (`process.execve`: the same process id, stdio and
 * signals). Node 22's V8 has no memory-saver mode, so there it changes nothing. It costs
 * up to ~40% more CPU in hasten-eval's own JavaScript when that is all the process does (an
 * instant simulated model), little next to a real model's time.
 * @internal
 */
import { setFlagsFromString } from "node:v8"

/** The `--memory` flag's values: `saver` (the default: V8's memory-saver mode) or `default` (V8's own heap growth). */
export const modes = ["saver", "default"] as const
export type Mode = (typeof modes)[number]

const FLAG = "--memory-saver-mode"
const MARK = "HASTEN_EVAL_MEMORY_SAVER"

/** The mode asked for in raw arguments (`--memory saver`, `--memory=default`); `saver` when absent or unreadable. */
export const modeOf = (argv: ReadonlyArray<string>): Mode => {
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!
    const value = arg === "--memory" ? argv[index + 1] : arg.startsWith("--memory=") ? arg.slice("--memory=".length) : undefined
    if (value === "default") return "default"
  }
  return "saver"
}

/**
 * Makes the process run in memory-saver mode when `argv` asks for it: returns when it
 * already does (or cannot re-execute: then the flag is set on the running heap, which does
 * part of it); otherwise re-executes this process with the flag and never returns.
 */
export const ensure = (argv: ReadonlyArray<string>): void => {
  if (modeOf(argv) !== "saver" || process.execArgv.includes(FLAG) || process.env[MARK] === "1") return
  // Node 22's V8 has no such flag ("bad option" at start-up): there the heap grows as V8 decides.
  if (Number(process.versions.node.split(".")[0]) < 24) return
  const execve = (process as { execve?: (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) => never }).execve
  if (typeof execve !== "function") {
    setFlagsFromString(FLAG)
    return
  }
  // A smaller young generation too (4 MB semi-spaces, unless the user sets their own): at 100k
  // items one process peaked at 260–275 MB with it, 270–326 MB without (no CPU cost measured).
  const own = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((arg) => arg.includes("semi-space-size"))
  const flags = own ? [FLAG] : [FLAG, "--max-semi-space-size=4"]
  execve.call(process, process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], {
    ...process.env,
    [MARK]: "1"
  })
}
