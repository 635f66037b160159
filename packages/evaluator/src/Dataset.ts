/**
 * Datasets: JSONL and CSV files validated row by row with a `Schema`, and built-in
 * loaders for GSM8K, TruthfulQA (multiple choice) and generic question/answer pairs.
 * A bad row is reported with its line number and either skipped (and listed in the
 * load report) or fatal, never dropped silently.
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import { Effect, Schema } from "effect"
import { existsSync, readFileSync, statSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { DatasetError, EvaluatorError } from "./EvaluatorError.js"
import * as Csv from "./internal/csv.js"
import * as Sampling from "./Sampling.js"

/**
 * One evaluation item. `answer` is the reference the scorers compare against (GSM8K: the
 * final number; multiple choice: the correct option's text).
 * @category models @since 0.1.0
 */
export interface Item {
  /** Stable id: `<dataset>:<row index>`. */
  readonly id: string
  /** 0-based position of the row in its source. */
  readonly index: number
  readonly question: string
  readonly answer: string
  /** Multiple-choice options, in presentation order. */
  readonly choices?: ReadonlyArray<string>
  /** Index of the correct option in `choices`. */
  readonly correct?: number
  /**
   * Per option, 1 when it is a true answer and 0 when not (several may be true, as in
   * TruthfulQA's MC2 targets); what log-likelihood scoring (`MultipleChoice`) reads.
   * @since 0.3.0
   */
  readonly labels?: ReadonlyArray<number>
  /** A longer reference (worked solution, best answer) a judge may use as its rubric. */
  readonly reference?: string
}

/** A row that failed validation: its line, the first field at fault (when a field is), and every problem. @category models @since 0.1.0 */
export interface InvalidRow {
  readonly line: number
  /** The first bad field (`answer`, `mc1_targets`); absent when the row itself is unreadable. @since 0.2.0 */
  readonly field?: string
  readonly message: string
}

/** What loading saw: rows read, items kept, rows skipped with their reasons. @category models @since 0.1.0 */
export interface LoadReport {
  readonly source: string
  readonly rows: number
  readonly loaded: number
  readonly skipped: ReadonlyArray<InvalidRow>
}

/** A loaded dataset. @category models @since 0.1.0 */
export interface Dataset {
  readonly name: string
  readonly items: ReadonlyArray<Item>
  readonly report: LoadReport
}

/** A dataset that could not be read, or a bad row: a reason of `EvaluatorError`. @category errors @since 0.1.0 */
export { DatasetError, EvaluatorError } from "./EvaluatorError.js"

const datasetError = (fields: ConstructorParameters<typeof DatasetError>[0]): EvaluatorError =>
  new EvaluatorError({ reason: new DatasetError(fields) })

/** How to treat a row that fails validation: skip it (listed in the report) or fail the load. @category models @since 0.1.0 */
export type OnInvalid = "skip" | "fail"

/** Options shared by every loader. @category models @since 0.1.0 */
export interface LoadOptions {
  /** Default `"skip"`: bad rows are listed in `report.skipped`. */
  readonly onInvalid?: OnInvalid
  /** The dataset name used in item ids; defaults to the file name without extension. */
  readonly name?: string
  /** Multiple-choice loaders: show options in a fixed per-item shuffled order (default true). */
  readonly shuffleChoices?: boolean
}

const readText = (path: string): Effect.Effect<string, EvaluatorError> =>
  Effect.try({
    try: () => {
      if (!existsSync(path)) throw new Error("file not found")
      if (statSync(path).isDirectory()) throw new Error("is a directory, expected a file")
      return readFileSync(path, "utf8")
    },
    catch: (error) => datasetError({ source: path, description: error instanceof Error ? error.message : String(error) })
  })

const invalidRow = (line: number, problems: ReadonlyArray<Boundary.Problem>): InvalidRow => {
  const field = problems.find((problem) => problem.field.length > 0)?.field
  return field === undefined
    ? { line, message: Boundary.formatProblems(problems) }
    : { line, field, message: Boundary.formatProblems(problems) }
}

const rowError = (source: string, row: InvalidRow): EvaluatorError =>
  datasetError(
    row.field === undefined
      ? { source, line: row.line, description: row.message }
      : { source, line: row.line, field: row.field, description: row.message }
  )

/** A parsed, not yet validated row with its 1-based line. @category models @since 0.1.0 */
export interface RawRow {
  readonly line: number
  readonly value: unknown
}

const collect = <S extends Schema.Codec<any, any, never, never>>(
  source: string,
  rows: ReadonlyArray<RawRow>,
  problems: ReadonlyArray<InvalidRow>,
  schema: S,
  toItem: (row: S["Type"], index: number) => Omit<Item, "id" | "index">,
  options: LoadOptions | undefined,
  name: string
): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.gen(function*() {
    const decode = Boundary.decoder(schema)
    const skipped: Array<InvalidRow> = [...problems]
    const items: Array<Item> = []
    const fail = options?.onInvalid === "fail"
    if (fail && problems.length > 0) return yield* rowError(source, problems[0]!)
    // An item's index is its record's position in the source, counting bad records too,
    // so ids stay stable when a bad record is fixed.
    const ordinal = new Map<RawRow, number>()
    const problemLines = problems.map((problem) => problem.line).sort((a, b) => a - b)
    let problemIndex = 0
    rows.forEach((row, position) => {
      while (problemIndex < problemLines.length && problemLines[problemIndex]! < row.line) problemIndex++
      ordinal.set(row, position + problemIndex)
    })
    rows.forEach((row) => {
      const index = ordinal.get(row)!
      const decoded = decode(row.value)
      if (decoded._tag === "Success") items.push({ id: `${name}:${index}`, index, ...toItem(decoded.value, index) })
      else skipped.push(invalidRow(row.line, decoded.problems))
    })
    skipped.sort((a, b) => a.line - b.line)
    if (fail && skipped.length > 0) return yield* rowError(source, skipped[0]!)
    return {
      name,
      items,
      report: { source, rows: rows.length + problems.length, loaded: items.length, skipped }
    }
  })

const baseName = (path: string): string => Path.basename(path).replace(/\.[^.]+$/, "")

const jsonLines = Boundary.decodeJsonLines(Schema.Unknown)

/**
 * Parses JSON Lines text: one JSON value per line, blank lines ignored, through
 * `Boundary.JsonText`. Unparseable lines become `InvalidRow`s with their line numbers and
 * `JSON.parse`'s detail.
 * @category parsing @since 0.1.0
 */
export const parseJsonl = (text: string): { readonly rows: Array<RawRow>; readonly problems: Array<InvalidRow> } => {
  const rows: Array<RawRow> = []
  const problems: Array<InvalidRow> = []
  for (const { line, result } of jsonLines(text)) {
    if (result._tag === "Success") rows.push({ line, value: result.value })
    else problems.push(invalidRow(line, result.problems))
  }
  return { rows, problems }
}

/**
 * Parses CSV text (RFC 4180, header row first; `effect/encoding`'s `Csv`) into objects keyed
 * by the header. Malformed records (with their column) and rows whose field count differs
 * from the header's are problems; parsing carries on after them.
 * @category parsing @since 0.1.0
 */
export const parseCsv = (text: string): { readonly rows: Array<RawRow>; readonly problems: Array<InvalidRow> } => {
  const parsed = Csv.parse(text)
  const [header, ...records] = parsed.records
  const problems: Array<InvalidRow> = [...parsed.problems]
  const rows: Array<RawRow> = []
  if (header === undefined) return { rows, problems }
  for (const record of records) {
    if (record.fields.length !== header.fields.length) {
      problems.push({ line: record.line, message: `expected ${header.fields.length} fields, found ${record.fields.length}` })
      continue
    }
    const value: Record<string, string> = {}
    header.fields.forEach((key, column) => {
      value[key] = record.fields[column]!
    })
    rows.push({ line: record.line, value })
  }
  return { rows, problems }
}

/**
 * Loads a JSONL file, validating each line with `schema` and mapping it to an `Item`.
 * @category loaders @since 0.1.0
 */
export const jsonl = <S extends Schema.Codec<any, any, never, never>>(
  path: string,
  schema: S,
  toItem: (row: S["Type"], index: number) => Omit<Item, "id" | "index">,
  options?: LoadOptions
): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.flatMap(readText(path), (text) => {
    const { problems, rows } = parseJsonl(text)
    return collect(path, rows, problems, schema, toItem, options, options?.name ?? baseName(path))
  })

/**
 * Loads a CSV file with a header row, validating each record with `schema`.
 * @category loaders @since 0.1.0
 */
export const csv = <S extends Schema.Codec<any, any, never, never>>(
  path: string,
  schema: S,
  toItem: (row: S["Type"], index: number) => Omit<Item, "id" | "index">,
  options?: LoadOptions
): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.flatMap(readText(path), (text) => {
    const { problems, rows } = parseCsv(text)
    return collect(path, rows, problems, schema, toItem, options, options?.name ?? baseName(path))
  })

const NonEmpty = Schema.String.check(Schema.isNonEmpty())

/** A GSM8K row: `question` and a worked `answer` ending in `#### n`. @category schemas @since 0.1.0 */
export const Gsm8kRow = Schema.Struct({
  question: NonEmpty,
  answer: NonEmpty.check(
    Schema.makeFilter((answer: string) => /####\s*-?[\d,.$]+\s*$/.test(answer) ? undefined : "answer must end with `#### <number>`")
  )
})

/** The number after `####` in a GSM8K reference solution, commas removed. @category parsing @since 0.1.0 */
export const gsm8kTarget = (answer: string): string => {
  const match = /####\s*(-?[\d,.$]+)\s*$/.exec(answer)
  return (match?.[1] ?? "").replace(/[,$]/g, "").replace(/\.$/, "")
}

/**
 * GSM8K (`{"question", "answer"}` JSONL). `answer` becomes the final number, `reference`
 * the worked solution with calculator annotations (`<<…>>`) removed.
 * @category loaders @since 0.1.0
 */
export const gsm8k = (path: string, options?: LoadOptions): Effect.Effect<Dataset, EvaluatorError> =>
  jsonl(path, Gsm8kRow, (row) => ({
    question: row.question,
    answer: gsm8kTarget(row.answer),
    reference: row.answer.replace(/<<[^>]*>>/g, "")
  }), { ...options, name: options?.name ?? "gsm8k" })

/** A TruthfulQA `mc_task.json` entry. @category schemas @since 0.1.0 */
export const TruthfulQaMcRow = Schema.Struct({
  question: NonEmpty,
  mc1_targets: Schema.Record(Schema.String, Schema.Number)
})

/**
 * Puts the options of a multiple-choice item in a fixed pseudo-random order that depends
 * only on the item's index, so the correct option is not always first (TruthfulQA lists
 * it first) and every machine shows the same order.
 * @category loaders @since 0.1.0
 */
export const shuffleChoices = (
  choices: ReadonlyArray<string>,
  correct: number,
  index: number
): { readonly choices: Array<string>; readonly correct: number } => {
  const order = Sampling.permutation(choices.length, 0x9e3779b9 ^ index)
  return { choices: order.map((position) => choices[position]!), correct: order.indexOf(correct) }
}

const mcItem = (question: string, targets: Record<string, number>, index: number, shuffle: boolean): Omit<Item, "id" | "index"> => {
  const listed = Object.keys(targets)
  const listedCorrect = listed.findIndex((choice) => targets[choice] === 1)
  const { choices, correct } = shuffle ? shuffleChoices(listed, listedCorrect, index) : { choices: listed, correct: listedCorrect }
  return { question, answer: listed[listedCorrect] ?? "", choices, correct }
}

/**
 * TruthfulQA multiple choice from `mc_task.json` (a JSON array): `mc1_targets` gives the
 * options, exactly one marked 1 (shuffled per item, see {@link shuffleChoices}). Entries
 * without exactly one correct option are invalid.
 * @category loaders @since 0.1.0
 */
export const truthfulQaMc = (path: string, options?: LoadOptions): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.gen(function*() {
    const text = yield* readText(path)
    const decoded = Boundary.decoder(Boundary.JsonText)(text)
    if (decoded._tag === "Failure") return yield* datasetError({ source: path, description: Boundary.formatProblems(decoded.problems) })
    const parsed = decoded.value
    if (!Array.isArray(parsed)) return yield* datasetError({ source: path, description: "expected a JSON array of questions" })
    // Line numbers: the line on which each top-level element starts.
    const starts = topLevelElementLines(text)
    const rows = parsed.map((value, index) => ({ line: starts[index] ?? 1, value }))
    const schema = TruthfulQaMcRow.check(Schema.makeFilter((row: typeof TruthfulQaMcRow.Type) =>
      Object.values(row.mc1_targets).filter((value) => value === 1).length === 1 ? undefined : "mc1_targets must mark exactly one option 1"
    ))
    return yield* collect(
      path,
      rows,
      [],
      schema,
      (row, index) =>
        mcItem(row.question, row.mc1_targets, index, options?.shuffleChoices !== false),
      options,
      options?.name ?? "truthfulqa-mc"
    )
  })

/** A TruthfulQA `mc_task.json` entry with both target sets. @category schemas @since 0.3.0 */
export const TruthfulQaTargetsRow = Schema.Struct({
  question: NonEmpty,
  mc1_targets: Schema.Record(Schema.String, Schema.Number),
  mc2_targets: Schema.Record(Schema.String, Schema.Number)
})

/**
 * TruthfulQA from `mc_task.json` for log-likelihood scoring, as lm-evaluation-harness's
 * `truthfulqa_mc1` / `truthfulqa_mc2` tasks read it: the options of `mc1_targets` or
 * `mc2_targets` in their listed order (not shuffled: the harness breaks ties towards the
 * first option), with `labels` (1 true, 0 false). An entry whose targets are not all 0 or 1,
 * that has no true or no false option, or (MC1) more than one true option, is invalid.
 * @category loaders @since 0.3.0
 */
export const truthfulQaTargets = (
  path: string,
  options: LoadOptions & { readonly targets: "mc1" | "mc2" }
): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.gen(function*() {
    const text = yield* readText(path)
    const decoded = Boundary.decoder(Boundary.JsonText)(text)
    if (decoded._tag === "Failure") return yield* datasetError({ source: path, description: Boundary.formatProblems(decoded.problems) })
    const parsed = decoded.value
    if (!Array.isArray(parsed)) return yield* datasetError({ source: path, description: "expected a JSON array of questions" })
    const starts = topLevelElementLines(text)
    const rows = parsed.map((value, index) => ({ line: starts[index] ?? 1, value }))
    const key = options.targets === "mc1" ? "mc1_targets" : "mc2_targets"
    const schema = TruthfulQaTargetsRow.check(Schema.makeFilter((row: typeof TruthfulQaTargetsRow.Type) => {
      const labels = Object.values(row[key])
      if (labels.some((label) => label !== 0 && label !== 1)) return `${key} labels must be 0 or 1`
      const trues = labels.filter((label) => label === 1).length
      if (trues === 0 || trues === labels.length) return `${key} needs at least one true and one false option`
      return options.targets === "mc1" && trues !== 1 ? "mc1_targets must mark exactly one option 1" : undefined
    }))
    return yield* collect(
      path,
      rows,
      [],
      schema,
      (row) => {
        const choices = Object.keys(row[key])
        const labels = choices.map((choice) => row[key][choice]!)
        return { question: row.question, answer: choices[labels.indexOf(1)]!, choices, correct: labels.indexOf(1), labels }
      },
      options,
      options.name ?? `truthfulqa-${options.targets}`
    )
  })

const topLevelElementLines = (text: string): Array<number> => {
  const lines: Array<number> = []
  let depth = 0
  let line = 1
  let inString = false
  let expectElement = false
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!
    if (char === "\n") line++
    if (inString) {
      if (char === "\\") i++
      else if (char === "\"") inString = false
      continue
    }
    if (/\s/.test(char)) continue
    if (depth === 1 && expectElement && char !== "]") {
      lines.push(line)
      expectElement = false
    }
    if (char === "\"") inString = true
    else if (char === "{" || char === "[") {
      depth++
      if (depth === 1) expectElement = true
    } else if (char === "}" || char === "]") depth--
    else if (char === "," && depth === 1) expectElement = true
  }
  return lines
}

/** A TruthfulQA CSV row. @category schemas @since 0.1.0 */
export const TruthfulQaCsvRow = Schema.Struct({
  Question: NonEmpty,
  "Best Answer": NonEmpty,
  "Correct Answers": Schema.String,
  "Incorrect Answers": NonEmpty
})

/**
 * TruthfulQA from `TruthfulQA.csv`: the options are the best answer and the incorrect
 * answers (`;`-separated), shuffled per item; the best answer is correct.
 * @category loaders @since 0.1.0
 */
export const truthfulQaCsv = (path: string, options?: LoadOptions): Effect.Effect<Dataset, EvaluatorError> =>
  csv(path, TruthfulQaCsvRow, (row, index) => {
    const incorrect = row["Incorrect Answers"].split(";").map((answer) => answer.trim()).filter((answer) => answer.length > 0)
    const listed = [row["Best Answer"], ...incorrect]
    const { choices, correct } = options?.shuffleChoices === false ? { choices: listed, correct: 0 } : shuffleChoices(listed, 0, index)
    return {
      question: row.Question,
      answer: row["Best Answer"],
      choices,
      correct,
      reference: `Best answer: ${row["Best Answer"]}\nCorrect answers: ${row["Correct Answers"]}\nIncorrect answers: ${
        row["Incorrect Answers"]
      }`
    }
  }, { ...options, name: options?.name ?? "truthfulqa" })

/** A generic question/answer row. @category schemas @since 0.1.0 */
export const QaRow = Schema.Struct({ question: NonEmpty, answer: Schema.String })

/**
 * Generic question/answer pairs from `.jsonl` or `.csv` (chosen by extension), with
 * `question` and `answer` fields.
 * @category loaders @since 0.1.0
 */
export const qa = (path: string, options?: LoadOptions): Effect.Effect<Dataset, EvaluatorError> =>
  (path.endsWith(".csv") ? csv : jsonl)(
    path,
    QaRow,
    (row) => ({ question: row.question, answer: row.answer, reference: row.answer }),
    options
  )

const walkUp = (from: string, relative: ReadonlyArray<string>): string | undefined => {
  let dir = Path.resolve(from)
  while (true) {
    const candidate = Path.join(dir, ...relative)
    if (existsSync(candidate)) return candidate
    const parent = Path.dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
}

/**
 * Finds the shared data folder: `HASTEN_DATA_DIR` when set, else the first `shared/data`
 * found walking up from `from` (default: the working directory), then from this module's
 * own folder (a CLI run from elsewhere inside a checkout).
 * @category loaders @since 0.1.0
 */
export const locateDataDir = (from: string = process.cwd()): Effect.Effect<string, EvaluatorError> =>
  Effect.suspend(() => {
    const fromEnv = process.env.HASTEN_DATA_DIR
    if (fromEnv !== undefined && fromEnv.length > 0) {
      return existsSync(fromEnv)
        ? Effect.succeed(Path.resolve(fromEnv))
        : Effect.fail(datasetError({ source: fromEnv, description: "HASTEN_DATA_DIR does not exist" }))
    }
    const found = walkUp(from, ["shared", "data"]) ?? walkUp(Path.dirname(fileURLToPath(import.meta.url)), ["shared", "data"])
    return found !== undefined
      ? Effect.succeed(found)
      : Effect.fail(datasetError({ source: from, description: "no shared/data folder found walking up from here; set HASTEN_DATA_DIR" }))
  })

/** The built-in dataset names `load` understands. @category models @since 0.1.0 */
export const builtins = ["gsm8k", "gsm8k-train", "truthfulqa-mc", "truthfulqa-mc1", "truthfulqa-mc2", "truthfulqa"] as const

/**
 * Loads a dataset by built-in name (`gsm8k`, `gsm8k-train`, `truthfulqa-mc`, `truthfulqa`, and
 * `truthfulqa-mc1` / `truthfulqa-mc2` for log-likelihood scoring)
 * from the shared data folder, or by file path (`.jsonl`/`.csv` question/answer pairs,
 * or a GSM8K-shaped file when its name contains `gsm8k`).
 * @category loaders @since 0.1.0
 */
export const load = (spec: string, options?: LoadOptions): Effect.Effect<Dataset, EvaluatorError> =>
  Effect.gen(function*() {
    switch (spec) {
      case "gsm8k":
        return yield* gsm8k(Path.join(yield* locateDataDir(), "gsm8k", "test.jsonl"), options)
      case "gsm8k-train":
        return yield* gsm8k(Path.join(yield* locateDataDir(), "gsm8k", "train.jsonl"), { ...options, name: options?.name ?? "gsm8k-train" })
      case "truthfulqa-mc":
        return yield* truthfulQaMc(Path.join(yield* locateDataDir(), "truthfulqa", "mc_task.json"), options)
      case "truthfulqa-mc1":
      case "truthfulqa-mc2":
        return yield* truthfulQaTargets(Path.join(yield* locateDataDir(), "truthfulqa", "mc_task.json"), {
          ...options,
          targets: spec === "truthfulqa-mc1" ? "mc1" : "mc2"
        })
      case "truthfulqa":
        return yield* truthfulQaCsv(Path.join(yield* locateDataDir(), "truthfulqa", "TruthfulQA.csv"), options)
    }
    if (!/\.(jsonl|csv|json)$/.test(spec)) {
      return yield* datasetError({
        source: spec,
        description: `unknown dataset; use one of ${builtins.join(", ")} or a .jsonl/.csv file path`
      })
    }
    if (spec.endsWith(".json")) return yield* truthfulQaMc(spec, options)
    if (/gsm8k/i.test(Path.basename(spec))) return yield* gsm8k(spec, options)
    return yield* qa(spec, options)
  })
