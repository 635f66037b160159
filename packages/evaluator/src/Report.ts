/**
 * Reports: a complete JSON report that is byte-identical for the same inputs and seed
 * (everything run-dependent lives in a separate `timing` section), a Markdown summary,
 * and a side-by-side comparison of candidates or runs.
 * @since 0.1.0
 */
import { randomUUID } from "node:crypto"
import { closeSync, openSync, writeSync } from "node:fs"
import type { Dataset, InvalidRow } from "./Dataset.js"
import type { ItemRecord, ItemTiming } from "./ItemRecord.js"
import * as Paired from "./Paired.js"
import * as Stats from "./Stats.js"

/** A dataset as a report records it: its name, rows read, items loaded and rows skipped. @category constructors @since 0.3.0 */
export const datasetOf = (dataset: Dataset): RunConfig["dataset"] => ({
  name: dataset.name,
  rows: dataset.report.rows,
  loaded: dataset.report.loaded,
  skipped: dataset.report.skipped
})

/** The run's inputs, recorded in the report (and fingerprinted for checkpoints). @category models @since 0.1.0 */
export interface RunConfig {
  readonly dataset: { readonly name: string; readonly rows: number; readonly loaded: number; readonly skipped: ReadonlyArray<InvalidRow> }
  readonly scorer: string
  readonly seed: number
  readonly questions: number
  readonly trials: number
  /** The candidates' sampling temperature, when not 0. @since 0.3.0 */
  readonly temperature?: number
  /** With several trials: trial i's sampling seed at index i. @since 0.3.0 */
  readonly trialSeeds?: ReadonlyArray<number>
  readonly selfCorrect: number
  readonly maxTokens: number
  /** Selected item ids, in selection order. */
  readonly selection: ReadonlyArray<string>
  readonly candidates: ReadonlyArray<{ readonly name: string; readonly model: string; readonly adapter?: string }>
  readonly judge: { readonly name: string; readonly model: string } | null
}

/** Accuracy and fixes/breaks of one self-correction turn. @category models @since 0.1.0 */
export interface TurnSummary {
  readonly turn: number
  /** Items (trials) with an answer at this turn. */
  readonly answered: number
  readonly accuracy: number
  /** Wrong at the previous turn, right at this one. */
  readonly fixed: number
  /** Right at the previous turn, wrong at this one. */
  readonly broken: number
}

/** One candidate's numbers. @category models @since 0.1.0 */
export interface Summary {
  /** Planned (item, trial) pairs. */
  readonly total: number
  readonly scored: number
  readonly errors: number
  readonly errorsByTag: Record<string, number>
  /** Fraction of scored trials judged correct. */
  readonly accuracy: number
  /** Mean of per-item mean scores. */
  readonly mean: number
  readonly standardError: number
  /** 95% percentile bootstrap interval of the mean (seeded). */
  readonly ci95: readonly [number, number]
  /** GSM8K: accuracy under the strict and flexible filters. */
  readonly filters?: { readonly strict: number; readonly flexible: number }
  /**
   * Log-likelihood multiple choice (`MultipleChoice.run`): the means of the harness's `acc`,
   * `acc_norm` and TruthfulQA `mc2` over the scored items.
   * @since 0.3.0
   */
  readonly multipleChoice?: { readonly acc: number; readonly accNorm: number; readonly mc2: number }
  /** With trials ≥ 2: how often trials of an item agree on correctness (pairwise). */
  readonly trialAgreement?: number
  /** With a judge and trials ≥ 2: how often the judge's scores of an item agree across trials. */
  readonly judgeAgreement?: number
  readonly usage: { readonly inputTokens: number; readonly outputTokens: number; readonly calls: number }
  readonly selfCorrection?: ReadonlyArray<TurnSummary>
}

/** One candidate's section of the report. @category models @since 0.1.0 */
export interface CandidateResult {
  readonly candidate: string
  readonly summary: Summary
  readonly items: ReadonlyArray<ItemRecord>
}

/** The reproducible report. @category models @since 0.1.0 */
export interface Report {
  readonly format: "hasten-evaluator/1"
  readonly config: RunConfig
  readonly results: ReadonlyArray<CandidateResult>
  /**
   * With two or more candidates: each later candidate paired with the first on the same
   * items (McNemar's exact test, paired bootstrap interval of the score difference).
   * @since 0.3.0
   */
  readonly comparisons?: ReadonlyArray<Paired.PairedComparison>
}

/** An errored item from the checkpoint that a resumed run tried again. @category models @since 0.3.0 */
export interface RetriedItem {
  readonly candidate: string
  readonly itemId: string
  readonly trial: number
  /** The tag of the error it had in the checkpoint. */
  readonly previous: string
  readonly status: "ok" | "error"
  /** The tag of the error it failed with again. */
  readonly error?: string
}

/** Run-dependent facts: wall time, per-item latency, cache hits, resumed items. @category models @since 0.1.0 */
export interface Timing {
  readonly startedAt: string
  readonly wallMillis: number
  readonly calls: number
  readonly cachedCalls: number
  /** Candidate calls not answered by a cache (`calls - cachedCalls`). */
  readonly upstreamCalls: number
  /** Judge calls made in this run, and how many a cache answered. */
  readonly judge: { readonly calls: number; readonly cachedCalls: number; readonly upstreamCalls: number }
  readonly resumedItems: number
  /**
   * Errored items from the checkpoint that this run tried again: the error they had, and
   * how they ended this time (`status`, and the new error's tag when it failed again).
   * @since 0.3.0
   */
  readonly retried: ReadonlyArray<RetriedItem>
  readonly items: ReadonlyArray<{ readonly candidate: string; readonly itemId: string; readonly trial: number } & ItemTiming>
}

const r = Stats.round

const summarize = (config: RunConfig, records: ReadonlyArray<ItemRecord>): Summary => {
  const scored = records.filter((record) => record.status === "ok")
  const errors = records.filter((record) => record.status === "error")
  const errorsByTag: Record<string, number> = {}
  for (const record of errors) errorsByTag[record.error!.tag] = (errorsByTag[record.error!.tag] ?? 0) + 1
  const byItem = new Map<string, Array<ItemRecord>>()
  for (const record of scored) {
    const group = byItem.get(record.itemId) ?? []
    group.push(record)
    byItem.set(record.itemId, group)
  }
  const itemIds = config.selection.filter((id) => byItem.has(id))
  const itemMeans = itemIds.map((id) => Stats.mean(byItem.get(id)!.map((record) => record.score!)))
  const interval = Stats.bootstrapInterval(itemMeans, { seed: config.seed })
  const filters = scored.length > 0 && scored.every((record) => typeof record.details?.strict === "boolean")
    ? {
      strict: r(scored.filter((record) => record.details!.strict === true).length / scored.length),
      flexible: r(scored.filter((record) => record.details!.flexible === true).length / scored.length)
    }
    : undefined
  const multipleChoice = scored.length > 0 && scored.every((record) => typeof record.details?.accNorm === "number")
    ? {
      acc: r(Stats.mean(scored.map((record) => record.details!.acc as number))),
      accNorm: r(Stats.mean(scored.map((record) => record.details!.accNorm as number))),
      mc2: r(Stats.mean(scored.map((record) => record.details!.mc2 as number)))
    }
    : undefined
  const groups = itemIds.map((id) => byItem.get(id)!)
  const trialAgreement = config.trials >= 2
    ? Stats.pairwiseAgreement(groups.map((group) => group.map((record) => (record.correct ? 1 : 0))))
    : undefined
  const judgeAgreement = config.trials >= 2 && config.judge !== null && config.scorer === "judge"
    ? Stats.pairwiseAgreement(groups.map((group) => group.map((record) => record.score!)))
    : undefined
  const usage = records.reduce(
    (total, record) => ({
      inputTokens: total.inputTokens + record.usage.inputTokens,
      outputTokens: total.outputTokens + record.usage.outputTokens,
      calls: total.calls + record.usage.calls
    }),
    { inputTokens: 0, outputTokens: 0, calls: 0 }
  )
  return {
    total: records.length,
    scored: scored.length,
    errors: errors.length,
    errorsByTag: Object.fromEntries(Object.entries(errorsByTag).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    accuracy: r(scored.length === 0 ? 0 : scored.filter((record) => record.correct).length / scored.length),
    mean: r(Stats.mean(itemMeans)),
    standardError: r(Stats.standardError(itemMeans)),
    ci95: [r(interval[0]), r(interval[1])],
    ...(filters !== undefined ? { filters } : {}),
    ...(multipleChoice !== undefined ? { multipleChoice } : {}),
    ...(trialAgreement !== undefined ? { trialAgreement: r(trialAgreement) } : {}),
    ...(judgeAgreement !== undefined ? { judgeAgreement: r(judgeAgreement) } : {}),
    usage,
    ...(config.selfCorrect > 0 ? { selfCorrection: selfCorrection(config.selfCorrect, scored) } : {})
  }
}

/**
 * Per-turn accounting of a self-correction run over the scored items: accuracy at each
 * turn, and how many answers each turn fixed (wrong → right) or broke (right → wrong).
 * @category summaries @since 0.1.0
 */
export const selfCorrection = (turns: number, records: ReadonlyArray<ItemRecord>): Array<TurnSummary> => {
  const summaries: Array<TurnSummary> = []
  for (let turn = 0; turn <= turns; turn++) {
    let answered = 0
    let correct = 0
    let fixed = 0
    let broken = 0
    for (const record of records) {
      const current = record.turns?.[turn]
      if (current === undefined) continue
      answered++
      if (current.correct) correct++
      const before = turn > 0 ? record.turns![turn - 1] : undefined
      if (before !== undefined && !before.correct && current.correct) fixed++
      if (before !== undefined && before.correct && !current.correct) broken++
    }
    summaries.push({ turn, answered, accuracy: r(answered === 0 ? 0 : correct / answered), fixed, broken })
  }
  return summaries
}

/**
 * Builds the report from the config and the records in task order; with two or more
 * candidates it adds the paired comparisons against the first.
 * @category constructors @since 0.1.0
 */
export const build = (config: RunConfig, records: ReadonlyArray<ItemRecord>): Report => {
  const results = config.candidates.map((candidate) => {
    const own = records.filter((record) => record.candidate === candidate.name)
    return { candidate: candidate.name, summary: summarize(config, own), items: own }
  })
  const [first, ...rest] = results
  return {
    format: "hasten-evaluator/1",
    config,
    results,
    ...(first !== undefined && rest.length > 0
      ? {
        comparisons: rest.map((result) =>
          Paired.compare({
            base: { name: first.candidate, items: first.items },
            other: { name: result.candidate, items: result.items },
            selection: config.selection,
            seed: config.seed
          })
        )
      }
      : {})
  }
}

const signed = (value: number, digits: number): string => `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`

/** Formats a p-value for tables: 4 significant digits, `< 0.0001` below that. */
const pValue = (p: number): string => (p < 1e-4 ? "< 0.0001" : p.toPrecision(4).replace(/\.?0+$/, ""))

/**
 * The Markdown table of paired comparisons: discordant counts, McNemar's exact p, the
 * accuracy difference and the paired 95% interval of the mean score difference.
 * @category rendering @since 0.3.0
 */
export const pairedTable = (
  rows: ReadonlyArray<{ readonly label?: string; readonly comparison: Paired.PairedComparison }>
): Array<string> => {
  const labelled = rows.some((row) => row.label !== undefined)
  const lines = [
    `| ${
      labelled ? "run | " : ""
    }candidate | vs | pairs | both right | only base | only this | neither | Δ accuracy | McNemar p | Δ mean (95% paired CI) |`,
    `| ${labelled ? "--- | " : ""}--- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`
  ]
  for (const { comparison: c, label } of rows) {
    lines.push(
      `| ${
        labelled ? `${label ?? ""} | ` : ""
      }${c.other} | ${c.base} | ${c.pairs} | ${c.bothRight} | ${c.onlyBase} | ${c.onlyOther} | ${c.neither} | ${
        signed(c.accuracyDifference * 100, 1)
      } pt | ${pValue(c.mcnemarP)} | ${signed(c.meanDifference, 3)} [${signed(c.ci95[0], 3)}, ${signed(c.ci95[1], 3)}] |`
    )
  }
  return lines
}

/** Builds the timing section. @category constructors @since 0.1.0 */
export const timing = (options: {
  readonly startedAt: number
  readonly finishedAt: number
  readonly judge?: { readonly calls: number; readonly cachedCalls: number }
  readonly entries: ReadonlyArray<{ readonly record: ItemRecord; readonly timing: ItemTiming }>
  readonly retried?: ReadonlyArray<RetriedItem>
}): Timing => {
  const judge = options.judge ?? { calls: 0, cachedCalls: 0 }
  const fresh = options.entries.filter((entry) => !entry.timing.resumed)
  const calls = fresh.reduce((sum, entry) => sum + entry.timing.calls, 0)
  const cachedCalls = fresh.reduce((sum, entry) => sum + entry.timing.cachedCalls, 0)
  return {
    startedAt: new Date(options.startedAt).toISOString(),
    wallMillis: options.finishedAt - options.startedAt,
    calls,
    cachedCalls,
    upstreamCalls: calls - cachedCalls,
    judge: { calls: judge.calls, cachedCalls: judge.cachedCalls, upstreamCalls: judge.calls - judge.cachedCalls },
    resumedItems: options.entries.length - fresh.length,
    retried: options.retried ?? [],
    items: options.entries.map((entry) => ({
      candidate: entry.record.candidate,
      itemId: entry.record.itemId,
      trial: entry.record.trial,
      ...entry.timing
    }))
  }
}

/** The `details` keys summaries read (GSM8K filters, log-likelihood multiple choice). */
const summaryDetails = ["strict", "flexible", "acc", "accNorm", "mc2"] as const

/**
 * What a summary, the self-correction accounting and the paired comparisons read of a
 * record: ids, status, score, correctness, usage, the error's tag, the summary `details`
 * and each turn's correctness. `build` over slim records gives the same summaries and
 * comparisons as over the records themselves; a long run keeps only these in memory and
 * streams the records into `report.json` (`writeJson`).
 * @category constructors @since 0.3.0
 */
export const slim = (record: ItemRecord): ItemRecord => {
  let details: Record<string, unknown> | undefined
  if (record.details !== undefined) {
    for (const key of summaryDetails) {
      if (key in record.details) (details ??= {})[key] = record.details[key]
    }
  }
  return {
    candidate: record.candidate,
    itemId: record.itemId,
    index: record.index,
    trial: record.trial,
    status: record.status,
    ...(record.score !== undefined ? { score: record.score } : {}),
    ...(record.correct !== undefined ? { correct: record.correct } : {}),
    ...(details !== undefined ? { details } : {}),
    ...(record.turns !== undefined
      ? { turns: record.turns.map((turn) => ({ turn: turn.turn, output: "", score: turn.score, correct: turn.correct, extracted: null })) }
      : {}),
    ...(record.error !== undefined ? { error: { ...record.error, message: "" } } : {}),
    usage: record.usage
  }
}

/** A placeholder string for array `index` (`nonce` keeps it from matching anything in the data). */
const marker = (nonce: string, index: number): string => `\u0000hasten-array-${nonce}-${index}\u0000`

/**
 * Writes `value` as `JSON.stringify(value, null, 2)` would, except that each placeholder
 * `marker(nonce, i)` in it becomes the array of `arrays[i]`'s elements, written one at a
 * time: a report of 100k items is never one string in memory.
 */
const writeStreamed = (
  write: (text: string) => void,
  value: unknown,
  nonce: string,
  arrays: ReadonlyArray<() => Iterable<unknown>>
): void => {
  const text = JSON.stringify(value, null, 2)
  const pattern = new RegExp(`"\\\\u0000hasten-array-${nonce}-(\\d+)\\\\u0000"`, "g")
  let from = 0
  for (const match of text.matchAll(pattern)) {
    write(text.slice(from, match.index))
    const lineStart = text.lastIndexOf("\n", match.index) + 1
    let indentEnd = lineStart
    while (text.charCodeAt(indentEnd) === 32) indentEnd++
    const at = text.slice(lineStart, indentEnd)
    const inner = at + "  "
    let first = true
    for (const element of arrays[Number(match[1])]!()) {
      write((first ? "[\n" : ",\n") + inner + JSON.stringify(element, null, 2).replaceAll("\n", "\n" + inner))
      first = false
    }
    write(first ? "[]" : "\n" + at + "]")
    from = match.index + match[0].length
  }
  write(text.slice(from))
}

/**
 * Writes the JSON report to `path` byte for byte as `toJson` renders it, taking each
 * candidate's items from `items(candidateIndex)` (called once each, in order) instead of
 * `report.results[i].items`, and the timing section's items one at a time. Writes go through
 * a 64 KB buffer.
 * @category rendering @since 0.3.0
 */
export const writeJson = (
  path: string,
  result: { readonly report: Report; readonly timing: Timing },
  items: (candidateIndex: number) => Iterable<ItemRecord>
): void => {
  const fd = openSync(path, "w")
  try {
    let buffered: Array<string> = []
    let size = 0
    const flush = () => {
      if (buffered.length > 0) writeSync(fd, buffered.join(""))
      buffered = []
      size = 0
    }
    const write = (text: string) => {
      buffered.push(text)
      size += text.length
      if (size >= 65_536) flush()
    }
    const nonce = randomUUID().replaceAll("-", "")
    const results = result.report.results
    const report = { ...result.report, results: results.map((entry, index) => ({ ...entry, items: marker(nonce, index) })) }
    write(`{\n"report": `)
    writeStreamed(write, report, nonce, results.map((_, index) => () => items(index)))
    write(`,\n"timing": `)
    writeStreamed(write, { ...result.timing, items: marker(nonce, 0) }, nonce, [() => result.timing.items])
    write("\n}\n")
    flush()
  } finally {
    closeSync(fd)
  }
}

/**
 * The JSON report: `{ "report": …, "timing": … }`. `report` is byte-identical for the
 * same inputs and seed; compare `JSON.stringify(JSON.parse(text).report)` across runs.
 * @category rendering @since 0.1.0
 */
export const toJson = (result: { readonly report: Report; readonly timing: Timing }): string =>
  `{\n"report": ${JSON.stringify(result.report, null, 2)},\n"timing": ${JSON.stringify(result.timing, null, 2)}\n}\n`

/** Just the reproducible part, as written to `report.json`'s `report` key. @category rendering @since 0.1.0 */
export const reportJson = (report: Report): string => JSON.stringify(report, null, 2)

const percent = (value: number): string => `${(value * 100).toFixed(1)}%`

/** A Markdown summary: a table per candidate, self-correction turns, error counts. @category rendering @since 0.1.0 */
export const toMarkdown = (report: Report, timingSection?: Timing): string => {
  const config = report.config
  const lines: Array<string> = []
  lines.push(`# Evaluation: ${config.dataset.name}`, "")
  lines.push(
    `Scorer \`${config.scorer}\`, ${config.questions} questions (seed ${config.seed}), ${config.trials} trial(s)` +
      (config.temperature !== undefined ? ` at temperature ${config.temperature}` : "") +
      (config.trialSeeds !== undefined ? ` (trial seeds ${config.trialSeeds.join(", ")})` : "") +
      (config.selfCorrect > 0 ? `, ${config.selfCorrect} self-correction turn(s)` : "") +
      (config.judge !== null ? `, judge \`${config.judge.name}\`` : "") + "."
  )
  if (config.dataset.skipped.length > 0) {
    lines.push(
      "",
      `Dataset: ${config.dataset.skipped.length} invalid row(s) skipped (first at line ${config.dataset.skipped[0]!.line}: ${
        config.dataset.skipped[0]!.message
      }).`
    )
  }
  lines.push("", "| candidate | accuracy | mean ± s.e. | 95% CI | scored | errors |", "| --- | ---: | ---: | ---: | ---: | ---: |")
  for (const result of report.results) {
    const s = result.summary
    lines.push(
      `| ${result.candidate} | ${percent(s.accuracy)} | ${s.mean.toFixed(3)} ± ${s.standardError.toFixed(3)} | [${s.ci95[0].toFixed(3)}, ${
        s.ci95[1].toFixed(3)
      }] | ${s.scored}/${s.total} | ${s.errors} |`
    )
  }
  for (const result of report.results) {
    const s = result.summary
    const extras: Array<string> = []
    if (s.filters !== undefined) extras.push(`GSM8K strict ${percent(s.filters.strict)}, flexible ${percent(s.filters.flexible)}`)
    if (s.multipleChoice !== undefined) {
      extras.push(
        `log-likelihood acc ${s.multipleChoice.acc.toFixed(4)}, acc_norm ${s.multipleChoice.accNorm.toFixed(4)}, mc2 ${
          s.multipleChoice.mc2.toFixed(4)
        }`
      )
    }
    if (s.trialAgreement !== undefined) extras.push(`trial agreement ${percent(s.trialAgreement)}`)
    if (s.judgeAgreement !== undefined) extras.push(`judge agreement ${percent(s.judgeAgreement)}`)
    if (s.errors > 0) extras.push(`errors: ${Object.entries(s.errorsByTag).map(([tag, count]) => `${tag} ×${count}`).join(", ")}`)
    if (extras.length > 0) lines.push("", `**${result.candidate}**: ${extras.join("; ")}.`)
    if (s.selfCorrection !== undefined) {
      lines.push(
        "",
        `Self-correction (${result.candidate}):`,
        "",
        "| turn | accuracy | fixed | broken | answered |",
        "| ---: | ---: | ---: | ---: | ---: |"
      )
      for (const turn of s.selfCorrection) {
        lines.push(`| ${turn.turn} | ${percent(turn.accuracy)} | ${turn.fixed} | ${turn.broken} | ${turn.answered} |`)
      }
    }
  }
  if (report.comparisons !== undefined && report.comparisons.length > 0) {
    const excluded = report.comparisons.reduce((sum, c) => sum + c.excluded, 0)
    lines.push(
      "",
      `Paired against ${
        report.comparisons[0]!.base
      } (McNemar's exact test on the items only one got right; bootstrap over items, seed ${config.seed}${
        excluded > 0 ? `; items with an error in either candidate left out` : ""
      }):`,
      "",
      ...pairedTable(report.comparisons.map((comparison) => ({ comparison })))
    )
  }
  if (timingSection !== undefined) {
    lines.push(
      "",
      `Wall time ${
        (timingSection.wallMillis / 1000).toFixed(2)
      } s; ${timingSection.calls} candidate calls, ${timingSection.cachedCalls} from cache; ${timingSection.judge.calls} judge calls, ${timingSection.judge.cachedCalls} from cache; ${timingSection.resumedItems} item(s) resumed from the checkpoint.`
    )
    const retried = timingSection.retried ?? []
    if (retried.length > 0) {
      const fixed = retried.filter((item) => item.status === "ok").length
      const byTag = (items: ReadonlyArray<RetriedItem>, tag: (item: RetriedItem) => string) => {
        const counts = new Map<string, number>()
        for (const item of items) counts.set(tag(item), (counts.get(tag(item)) ?? 0) + 1)
        return [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, count]) => `${name} ×${count}`).join(", ")
      }
      const again = retried.filter((item) => item.status === "error")
      lines.push(
        "",
        `Retried ${retried.length} item(s) that had failed in the checkpoint (${
          byTag(retried, (item) => item.previous)
        }): ${fixed} now scored, ${again.length} failed again${again.length > 0 ? ` (${byTag(again, (item) => item.error ?? "?")})` : ""}.`
      )
    }
  }
  return lines.join("\n") + "\n"
}

/**
 * A side-by-side Markdown comparison of candidates across one or more labelled reports,
 * with a paired test of each against the first entry (see `Paired.compare`): outcomes
 * (both right, only one right, neither), McNemar's exact p and a paired bootstrap
 * interval of the score difference.
 * @category rendering @since 0.1.0
 */
export const compare = (runs: ReadonlyArray<{ readonly label: string; readonly report: Report }>): string => {
  const rows = runs.flatMap((run) => run.report.results.map((result) => ({ label: run.label, result })))
  const lines: Array<string> = [
    "# Comparison",
    "",
    "| run | candidate | accuracy | mean ± s.e. | 95% CI | errors | Δ accuracy |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  ]
  const base = rows[0]
  for (const row of rows) {
    const s = row.result.summary
    const delta = base === undefined ? 0 : s.accuracy - base.result.summary.accuracy
    lines.push(
      `| ${row.label} | ${row.result.candidate} | ${percent(s.accuracy)} | ${s.mean.toFixed(3)} ± ${s.standardError.toFixed(3)} | [${
        s.ci95[0].toFixed(3)
      }, ${s.ci95[1].toFixed(3)}] | ${s.errors} | ${row === base ? "—" : `${delta >= 0 ? "+" : ""}${(delta * 100).toFixed(1)} pt`} |`
    )
  }
  if (base !== undefined && rows.length > 1) {
    // the base run's selection and seed: items are paired by id, in the base run's order
    const baseReport = runs.find((run) => run.report.results.includes(base.result))!.report
    const selection = baseReport.config.selection
    const seed = baseReport.config.seed
    lines.push(
      "",
      `Paired against ${base.label} / ${base.result.candidate} on the items scored in both (McNemar's exact test; bootstrap over items, seed ${seed}):`,
      "",
      ...pairedTable(
        rows.slice(1).map((row) => ({
          label: row.label,
          comparison: Paired.compare({
            base: { name: base.result.candidate, items: base.result.items },
            other: { name: row.result.candidate, items: row.result.items },
            selection,
            seed
          })
        }))
      )
    )
  }
  return lines.join("\n") + "\n"
}
