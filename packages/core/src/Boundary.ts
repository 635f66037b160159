/**
 * Decoding at the edges, one way for every package: JSON text and JSON Lines through a
 * `Schema`, keeping `JSON.parse`'s own detail; a failed decode as problems that name the
 * field (`judge.concurrency`, `messages[0].content`) or the line; and options checked by a
 * `Schema` struct.
 * @since 0.2.0
 */
import { Duration, Effect, Exit, Option, Schema, SchemaIssue, SchemaTransformation } from "effect"
import { parseArgs } from "node:util"

/** One thing wrong with a decoded value: the field it is at (`""` for the value itself) and what is wrong. @category models @since 0.2.0 */
export interface Problem {
  /** `a.b`, `items[2].name`; `""` when the value itself is wrong. */
  readonly field: string
  readonly message: string
}

const fieldPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((text, key) =>
    typeof key === "number"
      ? `${text}[${key}]`
      : text.length === 0
      ? String(key)
      : `${text}.${String(key)}`, "")

const standard = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * The problems of a schema issue, each naming its field.
 * @category utils @since 0.2.0
 */
export const problemsOf = (issue: SchemaIssue.Issue): Array<Problem> =>
  standard(issue).issues.map((entry) => ({
    field: fieldPath((entry.path ?? []).map((segment) => typeof segment === "object" ? segment.key : segment)),
    message: entry.message
  }))

/**
 * One line for people, the problems joined with `; `: `field: message`, or `field must be …`
 * for the messages of {@link mustBe} checks.
 * @category utils @since 0.2.0
 */
export const formatProblems = (problems: ReadonlyArray<Problem>): string =>
  problems.map((problem) =>
    problem.field.length === 0
      ? problem.message
      : problem.message.startsWith("must ")
      ? `${problem.field} ${problem.message}`
      : `${problem.field}: ${problem.message}`
  ).join("; ")

/**
 * The problems of a failed decode (a `SchemaError`, or anything else as one problem at `""`).
 * @category utils @since 0.2.0
 */
export const problemsOfError = (error: unknown): Array<Problem> =>
  Schema.isSchemaError(error)
    ? problemsOf(error.issue)
    : [{ field: "", message: error instanceof Error ? error.message : String(error) }]

/**
 * A string decoded as JSON. Unlike `Schema.UnknownFromJsonString`, a failure keeps
 * `JSON.parse`'s detail: `invalid JSON: Unexpected token … in JSON at position 3`.
 * @category schemas @since 0.2.0
 */
export const JsonText: Schema.decodeTo<Schema.Unknown, Schema.String> = Schema.String.pipe(
  Schema.decodeTo(
    Schema.Unknown,
    SchemaTransformation.transformEffect({
      decode: (text: string) =>
        Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: (error) =>
            new SchemaIssue.InvalidValue({
              message: `invalid JSON: ${error instanceof Error ? error.message : String(error)}`
            }, text)
        }),
      encode: (value: unknown) =>
        Effect.try({
          try: () => JSON.stringify(value),
          catch: (error) => new SchemaIssue.InvalidValue({ message: `not JSON-serializable: ${String(error)}` })
        })
    })
  )
)

/**
 * JSON text decoded with `schema`: one decode from the text to the value, a bad JSON text and
 * a bad field reported alike.
 * @category schemas @since 0.2.0
 */
export const fromJsonText = <S extends Schema.Constraint>(schema: S): Schema.decodeTo<S, Schema.decodeTo<Schema.Unknown, Schema.String>> =>
  JsonText.pipe(Schema.decodeTo(schema))

/** The result of decoding one value: the value, or its problems. @category models @since 0.2.0 */
export type Decoded<A> =
  | { readonly _tag: "Success"; readonly value: A }
  | { readonly _tag: "Failure"; readonly problems: ReadonlyArray<Problem> }

/**
 * A synchronous decoder that reports every problem (not only the first), each naming its field.
 * @category constructors @since 0.2.0
 */
export const decoder = <S extends Schema.Codec<any, any, never, never>>(schema: S): (input: unknown) => Decoded<S["Type"]> => {
  const decode = Schema.decodeUnknownExit(schema)
  return (input) => {
    const exit = decode(input, { errors: "all", reportInput: true })
    if (Exit.isSuccess(exit)) return { _tag: "Success", value: exit.value }
    const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    return {
      _tag: "Failure",
      problems: failure?._tag === "Fail"
        ? problemsOfError(failure.error)
        : [{ field: "", message: String(exit.cause) }]
    }
  }
}

const parseJson = (text: string): Decoded<unknown> => {
  try {
    return { _tag: "Success", value: JSON.parse(text) as unknown }
  } catch (error) {
    return {
      _tag: "Failure",
      problems: [{ field: "", message: `invalid JSON: ${error instanceof Error ? error.message : String(error)}` }]
    }
  }
}

/**
 * A synchronous decoder from JSON text: the same results as `decoder(fromJsonText(schema))`,
 * about twice as fast (the text is parsed outside the schema), for hot readers of JSON Lines.
 * @category constructors @since 0.2.0
 */
export const jsonDecoder = <S extends Schema.Codec<any, any, never, never>>(schema: S): (text: string) => Decoded<S["Type"]> => {
  const decode = decoder(schema)
  return (text) => {
    const json = parseJson(text)
    return json._tag === "Success" ? decode(json.value) : json
  }
}

/** One line of JSON Lines text: its 1-based number and the decoded value or its problems. @category models @since 0.2.0 */
export interface JsonLine<A> {
  readonly line: number
  readonly result: Decoded<A>
}

/**
 * Decodes JSON Lines text with `schema`, line by line: blank lines are skipped, a leading
 * byte-order mark and CRLF line ends are accepted, and each line's result carries its
 * 1-based line number.
 * @category constructors @since 0.2.0
 */
export const decodeJsonLines = <S extends Schema.Codec<any, any, never, never>>(schema: S) => {
  const decode = jsonDecoder(schema)
  return (text: string): Array<JsonLine<S["Type"]>> => {
    const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split(/\r?\n/)
    const out: Array<JsonLine<S["Type"]>> = []
    lines.forEach((content, index) => {
      if (content.trim().length > 0) out.push({ line: index + 1, result: decode(content) })
    })
    return out
  }
}

/**
 * A number check whose message reads after the field's name: `must be <description>, got <value>`
 * (`concurrency must be a positive integer, got 0`).
 * @category schemas @since 0.2.0
 */
export const mustBe = (description: string, ok: (value: number) => boolean): Schema.Number =>
  Schema.Number.check(Schema.makeFilter((value: number) => ok(value) ? undefined : `must be ${description}, got ${value}`))

/** An integer ≥ 1. @category schemas @since 0.2.0 */
export const PositiveInt: Schema.Number = mustBe("a positive integer", (value) => Number.isInteger(value) && value >= 1)
/** An integer ≥ 0. @category schemas @since 0.2.0 */
export const NonNegativeInt: Schema.Number = mustBe("a non-negative integer", (value) => Number.isInteger(value) && value >= 0)
/** A number > 0 (`Infinity` allowed). @category schemas @since 0.2.0 */
export const Positive: Schema.Number = mustBe("> 0", (value) => value > 0)
/** A number ≥ 0 (`Infinity` allowed). @category schemas @since 0.2.0 */
export const NonNegative: Schema.Number = mustBe(">= 0", (value) => value >= 0)
/** An integer in `minimum..maximum`. @category schemas @since 0.2.0 */
export const IntBetween = (minimum: number, maximum: number): Schema.Number =>
  mustBe(`an integer in ${minimum}..${maximum}`, (value) => Number.isInteger(value) && value >= minimum && value <= maximum)

/** A `Duration.Input` (`"50 millis"`, a number of milliseconds, a `Duration`). @category schemas @since 0.2.0 */
export const DurationInput = Schema.Unknown.check(
  Schema.makeFilter((input: unknown) =>
    Option.isSome(Duration.fromInput(input as Duration.Input))
      ? undefined
      : `must be a duration ("50 millis", milliseconds), got ${String(input)}`
  )
)

/** Options that failed their schema: the first bad field, and every problem in one line. @category models @since 0.2.0 */
export interface InvalidOptions {
  readonly field: string
  readonly message: string
  readonly problems: ReadonlyArray<Problem>
}

/**
 * A check of an options object against a `Schema` struct (its fields optional, with checks):
 * `undefined` when the options pass, else the first bad field and every problem.
 * @category constructors @since 0.2.0
 */
export const optionsChecker = <S extends Schema.Codec<any, any, never, never>>(schema: S) => {
  const decode = decoder(schema)
  return (options: unknown): InvalidOptions | undefined => {
    const decoded = decode(options)
    if (decoded._tag === "Success") return undefined
    return { field: decoded.problems[0]?.field ?? "", message: formatProblems(decoded.problems), problems: decoded.problems }
  }
}

// ---------------------------------------------------------------------------
// Command-line flags

/**
 * One command-line flag: how it is read (`string`, `boolean`, or `strings` for a repeatable
 * flag), an optional one-letter alias, and the schema that decodes what was read.
 * @category models @since 0.2.0
 */
export interface Flag<A> {
  readonly kind: "string" | "boolean" | "strings"
  readonly short?: string | undefined
  readonly schema: Schema.Codec<A, any, never, never>
}

/** What a flag decodes to. @category models @since 0.2.0 */
export type FlagType<F> = F extends Flag<infer A> ? A : never

type Read<A> = { readonly value: A } | { readonly problem: string }

const fromText = <A>(decode: (text: string) => Read<A>): Schema.Codec<A, string, never, never> =>
  Schema.String.pipe(Schema.decodeTo(
    Schema.Any as unknown as Schema.Codec<A, A, never, never>,
    SchemaTransformation.transformEffect({
      decode: (text: string) => {
        const result = decode(text)
        return "problem" in result
          ? Effect.fail(new SchemaIssue.InvalidValue({ message: result.problem }, text))
          : Effect.succeed(result.value)
      },
      encode: (value: A) => Effect.succeed(String(value))
    })
  )) as unknown as Schema.Codec<A, string, never, never>

/**
 * Flag constructors: every CLI reads its flags through these, so a bad value always reads
 * `--name must be …, got "value"`.
 * @category constructors @since 0.2.0
 */
export const Flag = {
  /** A string flag (`--out report.json`). */
  string: (options?: { readonly short?: string }): Flag<string> => ({ kind: "string", short: options?.short, schema: Schema.String }),
  /** A switch (`--fresh`). */
  boolean: (options?: { readonly short?: string }): Flag<boolean> => ({ kind: "boolean", short: options?.short, schema: Schema.Boolean }),
  /** A repeatable string flag (`--candidate a --candidate b`). */
  strings: (options?: { readonly short?: string }): Flag<ReadonlyArray<string>> => ({
    kind: "strings",
    short: options?.short,
    schema: Schema.Array(Schema.String)
  }),
  /** An integer ≥ `minimum`: `--threads must be an integer >= 1, got "x"`. */
  integer: (minimum: number, options?: { readonly short?: string }): Flag<number> => ({
    kind: "string",
    short: options?.short,
    schema: fromText((text) => {
      const value = Number(text)
      return text.trim() !== "" && Number.isInteger(value) && value >= minimum
        ? { value }
        : { problem: `must be an integer >= ${minimum}, got ${JSON.stringify(text)}` }
    })
  }),
  /** A finite number ≥ 0, or within `0..maximum`: `--rpm must be a non-negative number, got "many"`. */
  number: (options?: { readonly maximum?: number; readonly short?: string }): Flag<number> => ({
    kind: "string",
    short: options?.short,
    schema: fromText((text) => {
      const value = Number(text)
      if (text.trim() === "" || !Number.isFinite(value) || value < 0) {
        return { problem: `must be a non-negative number, got ${JSON.stringify(text)}` }
      }
      return options?.maximum !== undefined && value > options.maximum
        ? { problem: `must be between 0 and ${options.maximum}, got ${value}` }
        : { value }
    })
  }),
  /** One of a fixed set of words: `--scorer must be one of gsm8k, judge, got "bleu"`. */
  choice: <const A extends string>(choices: ReadonlyArray<A>, options?: { readonly short?: string }): Flag<A> => ({
    kind: "string",
    short: options?.short,
    schema: fromText<A>((text) =>
      (choices as ReadonlyArray<string>).includes(text)
        ? { value: text as A }
        : { problem: `must be one of ${choices.join(", ")}, got ${JSON.stringify(text)}` }
    )
  })
}

/** A command line that could not be read: the flag at fault (`""` when none) and the message. @category models @since 0.2.0 */
export interface FlagsProblem {
  readonly flag: string
  readonly message: string
}

/** Decoded flags and the positional arguments. @category models @since 0.2.0 */
export interface ParsedFlags<F extends Record<string, Flag<any>>> {
  readonly values: { readonly [K in keyof F]?: FlagType<F[K]> }
  readonly positionals: ReadonlyArray<string>
}

/**
 * Reads `argv` (without the node and script paths) with `node:util`'s `parseArgs` (strict:
 * an unknown flag or a missing value is a problem naming the flag) and decodes each flag's
 * text with its schema; every bad flag is listed, the first is the problem's `flag`.
 * @category constructors @since 0.2.0
 */
export const parseFlags = <F extends Record<string, Flag<any>>>(
  argv: ReadonlyArray<string>,
  flags: F,
  options?: { readonly positionals?: boolean }
): { readonly _tag: "Success"; readonly flags: ParsedFlags<F> } | { readonly _tag: "Failure"; readonly problem: FlagsProblem } => {
  let tokens: { values: Record<string, unknown>; positionals: Array<string> }
  try {
    tokens = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: options?.positionals === true,
      options: Object.fromEntries(
        Object.entries(flags).map(([name, flag]) => [name, {
          type: flag.kind === "boolean" ? "boolean" as const : "string" as const,
          ...(flag.kind === "strings" ? { multiple: true } : {}),
          ...(flag.short !== undefined ? { short: flag.short } : {})
        }])
      )
    }) as typeof tokens
  } catch (error) {
    // node:util names the flag: "Unknown option '--modle'", "Option '-p, --port <value>' argument missing"
    const message = error instanceof Error ? error.message : String(error)
    return { _tag: "Failure", problem: { flag: /--([\w-]+)/.exec(message)?.[1] ?? "", message } }
  }
  const decoded = decoder(
    Schema.Struct(Object.fromEntries(Object.entries(flags).map(([name, flag]) => [name, Schema.optionalKey(flag.schema)])))
  )(tokens.values)
  if (decoded._tag === "Failure") {
    const problems = decoded.problems.map((problem) => ({
      ...problem,
      field: problem.field.length === 0 ? "" : `--${problem.field.replace(/\[\d+\]$/, "")}`
    }))
    return { _tag: "Failure", problem: { flag: problems[0]?.field.replace(/^--/, "") ?? "", message: formatProblems(problems) } }
  }
  return { _tag: "Success", flags: { values: decoded.value as ParsedFlags<F>["values"], positionals: tokens.positionals } }
}
