// Package hygiene for one published package (run in its folder by `turbo run check:package`,
// after its build): packs it the way it is published (`pnpm pack` applies `publishConfig`
// and replaces `catalog:`/`workspace:` specifiers; `attw --pack` would run `npm pack`,
// which does neither), then lints that tarball with `publint --strict` and
// `attw --profile esm-only`. The packages are ESM only (as is effect 4), so the profile
// skips the `node10` and `node16 (from CJS)` resolutions; every other problem fails.
// It also checks that the tarball ships the LICENSE.
import { execFileSync } from "node:child_process"
import { mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const dir = mkdtempSync(join(tmpdir(), "hasten-check-package-"))
const run = (command, args, options = {}) => execFileSync(command, args, { stdio: "inherit", ...options })
try {
  run("pnpm", ["pack", "--pack-destination", dir], { stdio: ["ignore", "ignore", "inherit"] })
  const tarball = join(dir, readdirSync(dir).find((name) => name.endsWith(".tgz")))
  const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n")
  if (!files.includes("package/LICENSE")) throw new Error(`${tarball} has no LICENSE`)
  run("publint", ["--strict", tarball])
  run("attw", [tarball, "--profile", "esm-only", "--format", "table-flipped", "--no-emoji"])
} catch (error) {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
} finally {
  rmSync(dir, { recursive: true, force: true })
}
