/**
 * node-llama-cpp's batch dispatcher in sequence-id order.
 *
 * node-llama-cpp's contexts keep one KV stream per sequence (not unified), and llama.cpp then
 * splits a batch into micro-batches whose sequence ids are consecutive in batch order (each
 * micro-batch a forward pass of its own). The dispatcher adds the queued decodes of a batch in
 * the order they were queued: sequences that queued out of id order (concurrent requests that
 * got their sequences in any order, speculative verification steps) then run as several forward
 * passes where one would do. This prioritization strategy gives each queued decode the share of
 * the batch node-llama-cpp's default ("maximumParallelism") gives it, and orders the batch by
 * sequence id. It reads the context's queued decodes (internal: `_queuedDecodes`, in the order
 * the strategy's items come in); when they do not line up, the queue order is kept.
 * @internal
 */
import type { BatchItem, LlamaContext, PrioritizedBatchItem } from "node-llama-cpp"

/**
 * The share of the batch each item gets: node-llama-cpp's `maximumParallelismStrategy`, as it
 * is (its later passes do not count what they hand out: the dispatcher clips to the batch size).
 */
const maximumParallelism = (items: ReadonlyArray<BatchItem>, size: number): Array<PrioritizedBatchItem> => {
  let left = size
  const each = Math.floor(left / items.length)
  const out: Array<PrioritizedBatchItem> = []
  const clipped: Array<PrioritizedBatchItem> = []
  for (const item of items) {
    const prioritized = { item, processAmount: Math.min(item.tokens.length, left, each) }
    out.push(prioritized)
    left -= prioritized.processAmount
    if (prioritized.processAmount < item.tokens.length) clipped.push(prioritized)
    if (left === 0) break
  }
  // what is left stays what the first pass left (node-llama-cpp's passes do not subtract)
  if (left === 0) return out
  for (let passes = 3; clipped.length > 0 && passes > 0; passes--) {
    const increase = Math.ceil(left / clipped.length)
    for (let i = 0; i < clipped.length; i++) {
      const prioritized = clipped[i]!
      const unprocessed = prioritized.item.tokens.length - prioritized.processAmount
      const amount = Math.min(unprocessed, left, increase)
      prioritized.processAmount += amount
      if (amount === unprocessed) clipped.splice(i--, 1)
    }
  }
  clipped.sort((a, b) => b.item.evaluationPriority - a.item.evaluationPriority)
  for (let i = 0; i < clipped.length; i++) {
    const prioritized = clipped[i]!
    const unprocessed = prioritized.item.tokens.length - prioritized.processAmount
    const amount = Math.min(unprocessed, left)
    prioritized.processAmount += amount
    if (amount === unprocessed) clipped.splice(i--, 1)
  }
  return out
}

/**
 * A prioritization strategy for `createContext({ batching: { itemPrioritizationStrategy } })`
 * that orders each batch by sequence id; `attach` gives it the context once created (before,
 * and if the context's queue does not line up with the items, batches keep the queue order).
 * @internal
 */
export const make = (): {
  readonly strategy: (options: { readonly items: ReadonlyArray<BatchItem>; readonly size: number }) => Array<PrioritizedBatchItem>
  readonly attach: (context: LlamaContext) => void
} => {
  let queue: (() => ReadonlyArray<{ readonly sequenceId?: unknown; readonly tokens?: unknown }> | undefined) | undefined
  return {
    attach: (context) => {
      const internals = context as unknown as { readonly _queuedDecodes?: ReadonlyArray<{ readonly sequenceId?: unknown }> }
      queue = () => internals._queuedDecodes
    },
    strategy: ({ items, size }) => {
      const prioritized = maximumParallelism(items, size)
      const queued = queue?.()
      if (queued === undefined || queued.length !== items.length) return prioritized
      const ids = new Map<BatchItem, number>()
      for (let i = 0; i < items.length; i++) {
        const id = queued[i]!.sequenceId
        // the dispatcher builds its items from the queue, in order, with the queued tokens
        if (typeof id !== "number" || queued[i]!.tokens !== items[i]!.tokens) return prioritized
        ids.set(items[i]!, id)
      }
      return prioritized.sort((a, b) => ids.get(a.item)! - ids.get(b.item)!)
    }
  }
}
