/**
 * Records the sequence ids of every native batch a context builds: a stand-in over the
 * native context (`_ctx`) that logs `initBatch` / `addToBatch`. The batch-order tests use it.
 */

/** Starts recording on `context` (a node-llama-cpp `LlamaContext`); `restore` puts the native context back. */
export const recordBatches = (context: unknown): { readonly batches: Array<Array<number>>; readonly restore: () => void } => {
  const internals = context as { _ctx: Record<string, unknown> }
  const native = internals._ctx
  const batches: Array<Array<number>> = []
  internals._ctx = new Proxy(native, {
    get: (target, key) => {
      const member = Reflect.get(target, key) as unknown
      if (typeof member !== "function") return member
      if (key === "initBatch") batches.push([])
      return (...args: Array<unknown>) => {
        if (key === "addToBatch") batches.at(-1)!.push(args[0] as number)
        return (member as (...args: Array<unknown>) => unknown).apply(target, args)
      }
    }
  })
  return {
    batches,
    restore: () => {
      internals._ctx = native
    }
  }
}
