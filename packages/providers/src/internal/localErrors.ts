/**
 * Error builders, and the provider name they carry, shared by the local provider, its
 * pool and server.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"

/** The provider name in local errors, completions and `Llm.name`. */
export const provider = "local"

/** A message from any thrown value. */
export const errorMessage = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** A local `LlmError` with an `InvalidRequest` reason. */
export const invalid = (description: string): LlmError.LlmError => LlmError.make(provider, new LlmError.InvalidRequest({ description }))

/** Maps an unexpected failure (a rejected node-llama-cpp promise) to a local `LlmError`. */
export const failure = (what: string) => (cause: unknown): LlmError.LlmError =>
  cause instanceof LlmError.LlmError
    ? cause
    : LlmError.make(provider, new LlmError.BadResponse({ description: `${what}: ${errorMessage(cause)}` }))
