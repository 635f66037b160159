/**
 * The cache's counters in one table: `CacheMetrics` exports them without attributes,
 * and the middleware updates copies with its store's name baked in.
 * @since 0.1.0
 */
import { Metric } from "effect"

const definitions = {
  hits: { name: "hasten_cache_hits_total", description: "Cache hits" },
  misses: { name: "hasten_cache_misses_total", description: "Cache misses" },
  skipped: { name: "hasten_cache_skipped_total", description: "Requests outside the cache policy" },
  coalesced: { name: "hasten_cache_coalesced_total", description: "Misses served by an identical in-flight call" },
  bytesRead: { name: "hasten_cache_read_bytes_total", description: "Bytes read on hits" },
  bytesWritten: { name: "hasten_cache_written_bytes_total", description: "Bytes written" },
  evictions: { name: "hasten_cache_evictions_total", description: "Entries evicted by the size bound" },
  corrupt: { name: "hasten_cache_corrupt_total", description: "Undecodable entries" },
  storeErrors: { name: "hasten_cache_store_errors_total", description: "Failed store operations" }
} as const

/** One of the cache's counters, optionally with a `store` attribute. */
export const counter = (metric: keyof typeof definitions, store?: string) => {
  const { description, name } = definitions[metric]
  return store === undefined
    ? Metric.counter(name, { description, incremental: true })
    : Metric.counter(name, { description, incremental: true, attributes: { store } })
}

/** The counters with the `store` attribute baked in (cheaper per update than `withAttributes`). */
export const metricsFor = (store: string) => ({
  hits: counter("hits", store),
  misses: counter("misses", store),
  skipped: counter("skipped", store),
  bytesRead: counter("bytesRead", store),
  bytesWritten: counter("bytesWritten", store),
  evictions: counter("evictions", store),
  corrupt: counter("corrupt", store),
  storeErrors: counter("storeErrors", store)
})
