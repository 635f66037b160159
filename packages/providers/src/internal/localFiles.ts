/**
 * File-system checks for finding model and LoRA adapter files: whether a path is a file,
 * the folders above a path, a file's sha256.
 * @since 0.1.0
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** `start` and every folder above it, nearest first. */
export const ancestors = (start: string): Array<string> => {
  const result: Array<string> = []
  let current = Path.resolve(start)
  for (;;) {
    result.push(current)
    const parent = Path.dirname(current)
    if (parent === current) return result
    current = parent
  }
}

/** Whether `path` names an existing file (false on any error). */
export const isFile = (path: string): boolean => {
  try {
    return Fs.statSync(path).isFile()
  } catch {
    return false
  }
}

/** The sha256 of a file, in hex. */
export const sha256File = (path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const hash = Crypto.createHash("sha256")
    Fs.createReadStream(path).on("data", (chunk) => hash.update(chunk)).on("error", reject).on("end", () => resolve(hash.digest("hex")))
  })
