/**
 * CSV records with their line numbers, parsed by `effect/encoding`'s RFC 4180 `Csv`
 * decoder (quoted fields with `""` escapes, line breaks inside quotes, CRLF/LF/CR line ends,
 * a leading byte-order mark). Effect's decoder stops at the first malformed record; this
 * reports it (line and column) and carries on from the line after the one it failed on, so
 * one bad record never hides the rest.
 * @since 0.1.0
 */
import { Effect, Stream } from "effect"
import { Csv } from "effect/encoding"

/** One parsed record with the 1-based line it starts on. */
export interface CsvRecord {
  readonly line: number
  readonly fields: ReadonlyArray<string>
}

/** A malformed record (an unterminated quote, a quote inside an unquoted field, text after a closing quote). */
export interface CsvProblem {
  readonly line: number
  readonly message: string
}

// Physical lines with their terminators, so each chunk fed to the decoder ends at most one record.
const physicalLines = (text: string): Array<string> => text.match(/[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$/g) ?? []

const lineBreaks = (fields: ReadonlyArray<string>): number =>
  fields.reduce((count, field) => count + (field.match(/\r\n|\r|\n/g)?.length ?? 0), 0)

/** Parses CSV text into records; malformed records are returned as problems, never dropped silently. */
export const parse = (input: string): { readonly records: Array<CsvRecord>; readonly problems: Array<CsvProblem> } => {
  const lines = physicalLines(input.charCodeAt(0) === 0xfeff ? input.slice(1) : input)
  const records: Array<CsvRecord> = []
  const problems: Array<CsvProblem> = []
  let from = 0
  while (from < lines.length) {
    const offset = from
    // Index (into `lines`) of the last line handed to the decoder: where it failed, if it does.
    let fed = from - 1
    const run = Stream.fromIterable(lines.slice(from), { chunkSize: 1 }).pipe(
      Stream.tap(() => Effect.sync(() => fed++)),
      Stream.pipeThroughChannel(Csv.decodeString({ maxRecordSize: Infinity })),
      Stream.runForEach((fields) =>
        Effect.sync(() => {
          // A record ends on the last line fed; it starts as many lines earlier as its fields hold line breaks.
          if (!(fields.length === 1 && fields[0] === "")) records.push({ line: fed + 1 - lineBreaks(fields), fields })
        })
      ),
      Effect.flip,
      Effect.option
    )
    const failure = Effect.runSync(run)
    if (failure._tag === "None") break
    const error = failure.value
    problems.push({
      line: offset + error.line,
      message: error.column === undefined ? error.message : `column ${error.column}: ${error.message}`
    })
    from = fed + 1
  }
  return { records, problems }
}
