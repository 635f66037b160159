/**
 * The duration format of OpenAI's `x-ratelimit-reset-*` headers and 429 messages.
 * @since 0.1.0
 */

/** Formats milliseconds the way OpenAI's `x-ratelimit-reset-*` headers do: `20ms`, `1.5s`, `6m0s`, `1h2m3s`. */
export const formatDuration = (ms: number): string => {
  const millis = Math.max(0, Math.ceil(ms))
  if (millis < 1000) return `${millis}ms`
  const hours = Math.floor(millis / 3_600_000)
  const minutes = Math.floor((millis % 3_600_000) / 60_000)
  const seconds = (millis % 60_000) / 1000
  const secondsText = `${Number(seconds.toFixed(3))}s`
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`
  if (minutes > 0) return `${minutes}m${secondsText}`
  return secondsText
}
