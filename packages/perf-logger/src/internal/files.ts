/**
 * File helpers shared by the recorder and the run-folder tools.
 * @since 0.1.0
 */
import * as Fs from "node:fs"

/** Writes `path` through a temporary file and a rename, so readers never see half a file. */
export const writeFileAtomic = (path: string, data: string): void => {
  const temporary = `${path}.${process.pid}.tmp`
  Fs.writeFileSync(temporary, data)
  Fs.renameSync(temporary, path)
}
