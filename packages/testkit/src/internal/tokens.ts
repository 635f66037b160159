/**
 * The simulators' tokenizer: deterministic, dependency-free, roughly one token per four
 * characters like BPE tokenizers on English text. A token is optional leading whitespace
 * followed by at most four non-space characters, so `"hello world"` is
 * `["hell", "o", " worl", "d"]`. Joining the tokens gives back the text exactly.
 * @since 0.1.0
 */

const tokenPattern = /\s*\S{1,4}|\s+$/g

/** Splits text into tokens; `tokens.join("") === text` (up to whitespace between tokens). */
export const tokenize = (text: string): Array<string> => text.match(tokenPattern) ?? []

/** How many tokens `text` is. */
export const countTokens = (text: string): number => tokenize(text).length

/** Counts tokens of several texts. */
export const countAll = (texts: ReadonlyArray<string>): number => texts.reduce((sum, text) => sum + countTokens(text), 0)
