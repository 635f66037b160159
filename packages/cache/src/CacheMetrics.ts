/**
 * The cache's counters (Effect `Metric`). The middleware updates them with a `store`
 * attribute (`memory`, `sqlite`, `redis`, `memory+sqlite`, …); read one store's count
 * with `Metric.withAttributes(CacheMetrics.hits, { store: "sqlite" })`.
 * @since 0.1.0
 */
import { counter } from "./internal/metrics.js"

/** Requests answered from the store. @category metrics @since 0.1.0 */
export const hits = counter("hits")
/** Cacheable requests not found in the store. @category metrics @since 0.1.0 */
export const misses = counter("misses")
/** Requests the policy did not cache. @category metrics @since 0.1.0 */
export const skipped = counter("skipped")
/** Misses that joined an identical in-flight upstream call instead of making their own. @category metrics @since 0.1.0 */
export const coalesced = counter("coalesced")
/** Bytes of encoded entries read on hits. @category metrics @since 0.1.0 */
export const bytesRead = counter("bytesRead")
/** Bytes of encoded entries written. @category metrics @since 0.1.0 */
export const bytesWritten = counter("bytesWritten")
/** Entries the memory store's size bound evicted. @category metrics @since 0.1.0 */
export const evictions = counter("evictions")
/** Entries that failed to decode (treated as misses and overwritten). @category metrics @since 0.1.0 */
export const corrupt = counter("corrupt")
/** Store operations that failed. @category metrics @since 0.1.0 */
export const storeErrors = counter("storeErrors")
