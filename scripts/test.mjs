// Runs `turbo run typecheck test`, streams its output, and closes with one plain line
// "tests: N passed, N failed" tallied from every package's vitest summary (cached
// replays included), so CI logs end with a count anyone can read.
import { spawn } from "node:child_process"

// Two tasks at a time: CI machines have 2 cores and every vitest run forks its own workers;
// more parallel tasks add no throughput, only contention (and starved timing-sensitive tests).
const extra = process.argv.slice(2)
const args = ["run", "typecheck", "test", ...(extra.some((a) => a.startsWith("--concurrency")) ? [] : ["--concurrency=2"]), ...extra]
const child = spawn("turbo", args, {
  stdio: ["ignore", "pipe", "pipe"],
  env: { ...process.env, FORCE_COLOR: process.env.FORCE_COLOR ?? "1" }
})
// eslint-disable-next-line no-control-regex
const strip = (text) => text.replace(/\x1b\[[0-9;]*m/g, "")
let passed = 0
let failed = 0
let skipped = 0
let buffer = ""
const scan = (line) => {
  const plain = strip(line)
  if (!/\bTests\s{2,}/.test(plain)) return
  const count = (word) => Number(plain.match(new RegExp(`(\\d+) ${word}`))?.[1] ?? 0)
  passed += count("passed")
  failed += count("failed")
  skipped += count("skipped")
}
const pipe = (stream, sink) =>
  stream.on("data", (data) => {
    sink.write(data)
    buffer += data.toString()
    const lines = buffer.split("\n")
    buffer = lines.pop() ?? ""
    lines.forEach(scan)
  })
pipe(child.stdout, process.stdout)
pipe(child.stderr, process.stderr)
child.on("close", (code) => {
  scan(buffer)
  console.log(`\ntests: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`)
  process.exit(code ?? 1)
})
