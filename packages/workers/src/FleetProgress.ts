/**
 * One progress line across the fleet: the coordinator counts each result under the
 * worker that produced it, and renders the counts as one suffix of its progress line
 * (`workers: host-a:101 12, host-b:88 10`).
 * @since 0.1.0
 */

/** Per-worker result counts. @category models @since 0.1.0 */
export interface Tally {
  /** Counts one result of `worker`. */
  readonly add: (worker: string) => void
  /** `workers: a 12, b 10` in first-seen order, or `""` before any result. */
  readonly line: () => string
  readonly counts: () => ReadonlyMap<string, number>
}

/** A new tally. @category constructors @since 0.1.0 */
export const make = (): Tally => {
  const counts = new Map<string, number>()
  return {
    add: (worker) => {
      counts.set(worker, (counts.get(worker) ?? 0) + 1)
    },
    line: () => (counts.size === 0 ? "" : `workers: ${[...counts].map(([name, count]) => `${name} ${count}`).join(", ")}`),
    counts: () => counts
  }
}
