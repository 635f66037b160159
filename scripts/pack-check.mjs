// The published packages as a user gets them: builds them, packs each with `pnpm pack` (the
// `publishConfig` exports, `catalog:`/`workspace:` replaced), installs the tarballs into a
// fresh project outside the workspace, and there, on the lowest Node the packages declare
// (`engines.node`, fetched as the npm package `node@<version>`) and on the repo's Node:
// imports every entry point of every package and runs the README's stack (cache on SQLite,
// rate limit, OpenAI provider) against the testkit simulator, twice, the second call a hit.
//
//   node scripts/pack-check.mjs [--node <version>]...   (default: the engines floor + this Node)
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const pnpm = ["-y", "pnpm@12.21.0"]
const run = (command, args, options = {}) => execFileSync(command, args, { stdio: "inherit", ...options })

const packages = readdirSync(join(root, "packages"))
  .map((name) => join(root, "packages", name))
  .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) }))
  .filter(({ manifest }) => manifest.private !== true)

// The versions the workspace tests against (the default catalog) for the peers the smoke needs.
const catalog = Object.fromEntries(
  (readFileSync(join(root, "pnpm-workspace.yaml"), "utf8").match(/^catalog:\n((?: {2}.+\n)+)/m)?.[1] ?? "")
    .split("\n")
    .map((line) => line.trim().match(/^"?([^":]+)"?:\s*(\S+)$/))
    .filter((match) => match !== null)
    .map((match) => [match[1], match[2]])
)

const floors = [...new Set(packages.map(({ manifest }) => manifest.engines?.node))]
if (floors.length !== 1 || !/^>=\d+(\.\d+){0,2}$/.test(floors[0] ?? "")) {
  throw new Error(`the published packages should share one engines.node ">=X.Y.Z", found ${JSON.stringify(floors)}`)
}
const floor = floors[0].slice(2).split(".").concat("0", "0").slice(0, 3).join(".")
const requested = process.argv.flatMap((arg, index, all) => (all[index - 1] === "--node" ? [arg] : []))
const nodes = requested.length > 0 ? requested : [floor, "self"]

const work = mkdtempSync(join(tmpdir(), "hasten-pack-check-"))
try {
  run("npx", [...pnpm, "exec", "turbo", "run", "build", "--filter=./packages/*", "--output-logs=errors-only"], { cwd: root })
  const tarballs = join(work, "tarballs")
  mkdirSync(tarballs)
  const files = {}
  for (const { dir, manifest } of packages) {
    const before = new Set(readdirSync(tarballs))
    run("npx", [...pnpm, "pack", "--pack-destination", tarballs], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] })
    files[manifest.name] = `file:${join(tarballs, readdirSync(tarballs).find((name) => !before.has(name)))}`
  }

  const app = join(work, "app")
  mkdirSync(app)
  const peers = ["effect", "openai", "@anthropic-ai/sdk", "replicate", "gpt-tokenizer"]
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify(
      {
        name: "hasten-pack-check",
        private: true,
        type: "module",
        dependencies: { ...files, ...Object.fromEntries(peers.map((name) => [name, catalog[name]])) }
      },
      null,
      2
    )
  )
  // The packages' dependencies on each other resolve to the tarballs, not the registry.
  // The build-script decisions of the workspace apply there too (pnpm refuses unreviewed ones).
  const allowBuilds = readFileSync(join(root, "pnpm-workspace.yaml"), "utf8").match(/^allowBuilds:\n(?:(?: {2}.*)?\n)+/m)?.[0] ?? ""
  writeFileSync(
    join(app, "pnpm-workspace.yaml"),
    `${allowBuilds}overrides:\n${Object.entries(files).map(([name, file]) => `  "${name}": "${file}"\n`).join("")}`
  )
  run("npx", [...pnpm, "install", "--prefer-offline", "--reporter=append-only"], { cwd: app, stdio: ["ignore", "ignore", "inherit"] })

  const entries = packages.flatMap(({ manifest }) =>
    Object.keys(manifest.publishConfig?.exports ?? manifest.exports)
      .filter((subpath) => subpath !== "./package.json" && !subpath.includes("*"))
      .map((subpath) => manifest.name + subpath.slice(1))
  )
  writeFileSync(join(app, "smoke.mjs"), smoke(entries))
  for (const node of nodes) {
    const started = Date.now()
    const version = node === "self" ? process.versions.node : node
    try {
      if (node === "self") run(process.execPath, ["smoke.mjs"], { cwd: app })
      else run("npx", ["-y", `node@${node}`, "smoke.mjs"], { cwd: app })
      console.log(`pack-check: Node ${version} passed (${Date.now() - started} ms)`)
    } catch {
      console.log(`pack-check: Node ${version} FAILED`)
      process.exitCode = 1
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}

function smoke(entries) {
  return `
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
const entries = ${JSON.stringify(entries)}
for (const entry of entries) await import(entry)
console.log(\`node \${process.version}: imported \${entries.length} entry points\`)

const { Effect, Layer, Redacted } = await import("effect")
const { CompletionRequest, Llm } = await import("@hasten/core")
const { Cache } = await import("@hasten/cache")
const { RateLimit } = await import("@hasten/rate-limit")
const { OpenAi } = await import("@hasten/providers/openai")
const { Simulator } = await import("@hasten/testkit")
const sim = await Simulator.start({ seed: 1 })
try {
  const stack = Cache.layer({ store: "sqlite", path: join(mkdtempSync(join(tmpdir(), "hasten-smoke-")), "cache.db") }).pipe(
    Layer.provide(RateLimit.layer()),
    Layer.provide(OpenAi.layer({ baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-smoke") })))
  const answer = Llm.complete(CompletionRequest.user("gpt-4o-mini", "2+2?", { temperature: 0 }))
  const [first, second] = await Effect.runPromise(Effect.all([answer, answer]).pipe(Effect.provide(stack)))
  const calls = sim.counters().admitted
  if (first.text.length === 0 || second.text !== first.text || calls !== 1) {
    throw new Error(\`README stack: texts \${JSON.stringify([first.text, second.text])}, \${calls} upstream calls (want 1)\`)
  }
  console.log(\`node \${process.version}: README stack ok (1 upstream call, 1 cache hit)\`)
} finally {
  await sim.close()
}
`
}
