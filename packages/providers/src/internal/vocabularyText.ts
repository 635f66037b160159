/**
 * Keeps text that a vocabulary cannot encode away from llama.cpp's tokenizer. A
 * SentencePiece vocabulary without byte-fallback tokens (GGUF token type 6) aborts the
 * whole process with an uncatchable `std::out_of_range` on any character none of its
 * pieces contains (TinyStories-656K on "’", "é" or an emoji). For such vocabularies every
 * unknown character is mapped to a close ASCII equivalent or a space before tokenizing;
 * vocabularies with byte fallback get the text unchanged.
 */

const BYTE = 6
const NORMAL = 1
const USER_DEFINED = 4

const replacements: Record<string, string> = {
  "\u2018": "'",
  "\u2019": "'",
  "\u201a": "'",
  "\u201b": "'",
  "\u2032": "'",
  "\u201c": "\"",
  "\u201d": "\"",
  "\u201e": "\"",
  "\u2033": "\"",
  "\u00ab": "\"",
  "\u00bb": "\"",
  "\u2010": "-",
  "\u2011": "-",
  "\u2012": "-",
  "\u2013": "-",
  "\u2014": "-",
  "\u2212": "-",
  "\u2026": "...",
  "\u00a0": " ",
  "\u2009": " ",
  "\u202f": " ",
  "\u00d7": "x",
  "\u00f7": "/",
  "\t": " "
}

/** A function that makes text safe to tokenize with one vocabulary. */
export type Sanitize = (text: string) => string

/**
 * Builds the sanitizer for a vocabulary from its GGUF `tokenizer.ggml.tokens` and
 * `token_type` arrays. Identity when the vocabulary has byte-fallback tokens, or when
 * its token types are unknown.
 */
export const make = (tokens: ReadonlyArray<string>, types: ReadonlyArray<number> | undefined): Sanitize => {
  if (types === undefined || types.length !== tokens.length || types.includes(BYTE)) return (text) => text
  const known = new Set<string>(["\n"])
  for (let i = 0; i < tokens.length; i++) {
    if (types[i] !== NORMAL && types[i] !== USER_DEFINED) continue
    for (const char of tokens[i]!.replaceAll("\u2581", " ")) known.add(char)
  }
  const map = (char: string): string => {
    if (known.has(char)) return char
    const replaced = replacements[char]
    if (replaced !== undefined && [...replaced].every((c) => known.has(c))) return replaced
    // é → e: drop combining marks after canonical decomposition
    const stripped = char.normalize("NFKD").replace(/\p{M}/gu, "")
    if (stripped.length > 0 && [...stripped].every((c) => known.has(c))) return stripped
    return known.has(" ") ? " " : ""
  }
  return (text) => {
    let safe = true
    for (const char of text) {
      if (!known.has(char)) {
        safe = false
        break
      }
    }
    if (safe) return text
    let out = ""
    for (const char of text) out += map(char)
    return out
  }
}
