/**
 * A small RFC 4180 CSV parser: quoted fields with `""` escapes, newlines inside quotes,
 * CRLF or LF line ends, and a leading UTF-8 byte-order mark.
 * @since 0.1.0
 */

/** One parsed record with the 1-based line it starts on. */
export interface CsvRecord {
  readonly line: number
  readonly fields: ReadonlyArray<string>
}

/** A malformed record (an unterminated quote, text after a closing quote). */
export interface CsvProblem {
  readonly line: number
  readonly message: string
}

/** Parses CSV text into records; malformed records are returned as problems, never dropped silently. */
export const parse = (input: string): { readonly records: Array<CsvRecord>; readonly problems: Array<CsvProblem> } => {
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input
  const records: Array<CsvRecord> = []
  const problems: Array<CsvProblem> = []
  let line = 1
  let i = 0
  const length = text.length
  while (i < length) {
    const startLine = line
    const fields: Array<string> = []
    let field = ""
    let problem: string | undefined
    let endOfRecord = false
    while (!endOfRecord) {
      if (i < length && text[i] === "\"") {
        i++
        let closed = false
        while (i < length) {
          const char = text[i]!
          if (char === "\"") {
            if (text[i + 1] === "\"") {
              field += "\""
              i += 2
              continue
            }
            i++
            closed = true
            break
          }
          if (char === "\n") line++
          field += char
          i++
        }
        if (!closed) {
          problem = "unterminated quoted field"
          i = length
        } else if (i < length && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          problem = `unexpected character ${JSON.stringify(text[i])} after a closing quote`
          while (i < length && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") i++
        }
      } else {
        while (i < length && text[i] !== "," && text[i] !== "\n" && text[i] !== "\r") {
          field += text[i]
          i++
        }
      }
      fields.push(field)
      field = ""
      if (i >= length) {
        endOfRecord = true
      } else if (text[i] === ",") {
        i++
      } else {
        if (text[i] === "\r") i++
        if (text[i] === "\n") i++
        line++
        endOfRecord = true
      }
    }
    if (problem !== undefined) problems.push({ line: startLine, message: problem })
    else if (!(fields.length === 1 && fields[0] === "")) records.push({ line: startLine, fields })
  }
  return { records, problems }
}
