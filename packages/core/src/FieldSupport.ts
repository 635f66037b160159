/**
 * How a provider treats each `CompletionRequest` field: sent (and under which wire name),
 * mapped by the provider's own code, used only for cache identity, or refused. A provider
 * declares one rule per field — the type makes a forgotten field a compile error — and
 * checks a request with {@link check}, so a field is honoured or refused, never dropped.
 * @since 0.3.0
 */
import { Effect } from "effect"
import type { CompletionRequest, Field } from "./CompletionRequest.js"
import * as LlmError from "./LlmError.js"

/**
 * One field's treatment:
 * - `param`: sent as the body (or input, or option) member `name`, value unchanged;
 * - `mapped`: translated by the provider's code as `to` describes;
 * - `identity`: not sent; it only tells requests apart (cache keys, trials);
 * - `refused`: a request that sets it fails with `InvalidRequest` naming the field and the
 *   provider, unless `accepts` says the value is one the provider honours anyway.
 * @category models @since 0.3.0
 */
export type Rule =
  | { readonly _tag: "param"; readonly name: string; readonly note?: string | undefined }
  | { readonly _tag: "mapped"; readonly to: string }
  | { readonly _tag: "identity"; readonly note: string }
  | {
    readonly _tag: "refused"
    readonly reason: string
    readonly accepts?: ((value: unknown, request: CompletionRequest) => boolean) | undefined
    /** When `accepts` holds for some values: what is still honoured (for documentation). */
    readonly except?: string | undefined
  }

/** A rule for every request field. @category models @since 0.3.0 */
export type FieldSupport = { readonly [F in Field]: Rule }

/** Sent as `name`. @category constructors @since 0.3.0 */
export const param = (name: string, note?: string): Rule => ({ _tag: "param", name, ...(note !== undefined ? { note } : {}) })

/** Translated by the provider's code, as `to` describes. @category constructors @since 0.3.0 */
export const mapped = (to: string): Rule => ({ _tag: "mapped", to })

/** Not sent: only tells requests apart. @category constructors @since 0.3.0 */
export const identity = (note: string): Rule => ({ _tag: "identity", note })

/**
 * Refused with `reason`; with `accepts`, the values (in their request) it returns true for
 * pass because the provider honours them anyway (the neutral `contextOverflow: "error"`; a
 * `seed` at temperature 0, where it changes nothing), described by `except`.
 * @category constructors @since 0.3.0
 */
export const refused = (
  reason: string,
  accepts?: (value: unknown, request: CompletionRequest) => boolean,
  except?: string
): Rule => ({
  _tag: "refused",
  reason,
  ...(accepts !== undefined ? { accepts } : {}),
  ...(except !== undefined ? { except } : {})
})

/**
 * The first field the request sets that `support` refuses, as an `InvalidRequest`
 * `LlmError` naming the field and `provider`; `undefined` when every set field is honoured.
 * @category utils @since 0.3.0
 */
export const firstRefusal = (provider: string, support: FieldSupport, request: CompletionRequest): LlmError.LlmError | undefined => {
  for (const field in support) {
    const rule = support[field as Field]
    if (rule._tag !== "refused") continue
    const value = (request as unknown as Record<string, unknown>)[field]
    if (value === undefined || (field === "logprobs" && value === false)) continue
    if (rule.accepts !== undefined && rule.accepts(value, request)) continue
    return LlmError.unsupportedField(provider, field, rule.reason)
  }
  return undefined
}

/**
 * Fails with `InvalidRequest` (naming the field and `provider`) when the request sets a
 * field `support` refuses. `logprobs: false` counts as unset.
 * @category utils @since 0.3.0
 */
export const check = (provider: string, support: FieldSupport, request: CompletionRequest): Effect.Effect<void, LlmError.LlmError> => {
  const refusal = firstRefusal(provider, support, request)
  return refusal === undefined ? Effect.void : Effect.fail(refusal)
}

/**
 * The members a request's `param` fields put on a wire body: `{ [rule.name]: value }` for
 * every set field whose rule is `param`; an empty array (`stop: []`) counts as unset.
 * @category utils @since 0.3.0
 */
export const params = (support: FieldSupport, request: CompletionRequest): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const field in support) {
    const rule = support[field as Field]
    if (rule._tag !== "param") continue
    const value = (request as unknown as Record<string, unknown>)[field]
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue
    out[rule.name] = Array.isArray(value) ? [...value] : value
  }
  return out
}

/** Accepts only `contextOverflow: "error"` (what a remote API does anyway). @category utils @since 0.3.0 */
export const onlyErrorOverflow = (value: unknown): boolean => value === "error"

/** A one-cell description of a rule, for tables. @category utils @since 0.3.0 */
export const describe = (rule: Rule): string => {
  switch (rule._tag) {
    case "param":
      return `\`${rule.name}\`${rule.note !== undefined ? ` (${rule.note})` : ""}`
    case "mapped":
      return rule.to
    case "identity":
      return `— (${rule.note})`
    case "refused":
      return `refused${rule.except !== undefined ? ` except ${rule.except}` : ""}`
  }
}
