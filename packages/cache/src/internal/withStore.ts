/**
 * Opening the store for a cache layer: options that fail their schema die with a
 * `CacheError`; when the store cannot be opened, `bypass` warns and
 * passes through, `fail` dies.
 * @since 0.1.0
 */
import { type Context, Effect, Layer } from "effect"
import { layerStore, type Options, type Settings } from "../CacheConfig.js"
import { validate } from "../CacheError.js"
import type { CacheStore, CacheStoreError } from "../CacheStore.js"

/** Opens the store; when it cannot be opened, `bypass` warns and passes through, `fail` dies. */
export const withStore = <I, S>(
  tag: Context.Key<I, S>,
  options: Options,
  wrap: (settings: Settings) => Layer.Layer<I, never, I | CacheStore>
): Layer.Layer<I, never, I> => {
  const invalid = validate(options)
  if (invalid !== undefined) return Layer.effect(tag, Effect.die(invalid))
  const passThrough = Layer.effect(tag, Effect.service(tag))
  if (options.enabled === false) return passThrough
  return wrap(options).pipe(
    Layer.provide(layerStore(options)),
    Layer.catch((error: CacheStoreError) =>
      options.onStoreError === "fail"
        ? Layer.effect(tag, Effect.die(error))
        : Layer.effect(
          tag,
          Effect.andThen(
            Effect.logWarning(`${error.message}; running without a cache`),
            Effect.service(tag)
          )
        )
    )
  )
}
