/**
 * Metric instances bound to one attribute set (one series), cached so the hot path does not
 * rebuild them: per call (`instrumentsFor`) and per stage (`stageInstrumentsFor`).
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import {
  acceptanceRate,
  batchSize,
  operationDuration,
  rateLimitWaitSeconds,
  requestsTotal,
  retriesTotal,
  stageDuration,
  stageItems,
  timePerOutputChunk,
  timeToFirstChunk,
  tokenUsage
} from "../Metrics.js"
import { acceptanceBoundaries, batchBoundaries, chunkBoundaries, durationBoundaries, tokenBoundaries } from "./buckets.js"

/** Metric instances bound to one attribute set, cached so the hot path does not rebuild them. */
export interface Instruments {
  readonly duration: Metric.Metric<number, unknown>
  readonly input: Metric.Metric<number, unknown>
  readonly output: Metric.Metric<number, unknown>
  readonly ttft: Metric.Metric<number, unknown>
  readonly chunk: Metric.Metric<number, unknown>
  readonly requests: Metric.Metric<number, unknown>
  readonly retries: Metric.Metric<number, unknown>
  readonly wait: Metric.Metric<number, unknown>
  readonly batch: Metric.Metric<number, unknown>
  readonly acceptance: Metric.Metric<number, unknown>
}

const instrumentCache = new Map<string, Instruments>()

/** The last series used: consecutive calls usually share provider, model and stage. */
let lastInstruments: {
  readonly operation: string
  readonly provider: string
  readonly model: string
  readonly responseModel: string | undefined
  readonly stage: string | undefined
  readonly errorType: string | undefined
  readonly cached: boolean
  readonly instruments: Instruments
} | undefined

/**
 * Metric instances bound to one attribute set. They are built with the attributes as the
 * metric's own (not `Metric.withAttributes`, which merges attributes and re-derives the
 * series key on every update) and cached, so an update is a map lookup.
 */
export const instrumentsFor = (
  operation: string,
  provider: string,
  model: string,
  responseModel: string | undefined,
  stage: string | undefined,
  errorType: string | undefined,
  cached: boolean
): Instruments => {
  const last = lastInstruments
  if (
    last !== undefined && last.provider === provider && last.model === model && last.responseModel === responseModel &&
    last.stage === stage && last.errorType === errorType && last.cached === cached && last.operation === operation
  ) return last.instruments
  const key = `${operation}\u0000${provider}\u0000${model}\u0000${responseModel}\u0000${stage}\u0000${errorType}\u0000${cached}`
  let instruments = instrumentCache.get(key)
  if (instruments === undefined) {
    const attributes: Record<string, string> = {
      "gen_ai.operation.name": operation,
      "gen_ai.provider.name": provider,
      "gen_ai.request.model": model
    }
    if (responseModel !== undefined) attributes["gen_ai.response.model"] = responseModel
    if (stage !== undefined) attributes["hasten.stage"] = stage
    if (errorType !== undefined) attributes["error.type"] = errorType
    const withCache = { ...attributes, "hasten.cache": cached ? "hit" : "miss" }
    const seconds = { ...attributes, unit: "s" }
    const tokens = { ...attributes, unit: "{token}" }
    instruments = {
      duration: Metric.histogram(operationDuration.id, {
        description: operationDuration.description,
        boundaries: durationBoundaries,
        attributes: { ...withCache, unit: "s" }
      }),
      input: Metric.histogram(tokenUsage.id, {
        description: tokenUsage.description,
        boundaries: tokenBoundaries,
        attributes: { ...tokens, "gen_ai.token.type": "input" }
      }),
      output: Metric.histogram(tokenUsage.id, {
        description: tokenUsage.description,
        boundaries: tokenBoundaries,
        attributes: { ...tokens, "gen_ai.token.type": "output" }
      }),
      ttft: Metric.histogram(timeToFirstChunk.id, {
        description: timeToFirstChunk.description,
        boundaries: chunkBoundaries,
        attributes: seconds
      }),
      chunk: Metric.histogram(timePerOutputChunk.id, {
        description: timePerOutputChunk.description,
        boundaries: chunkBoundaries,
        attributes: seconds
      }),
      requests: Metric.counter(requestsTotal.id, { description: requestsTotal.description, incremental: true, attributes: withCache }),
      retries: Metric.counter(retriesTotal.id, { description: retriesTotal.description, incremental: true, attributes }),
      wait: Metric.counter(rateLimitWaitSeconds.id, {
        description: rateLimitWaitSeconds.description,
        incremental: true,
        attributes
      }),
      batch: Metric.histogram(batchSize.id, {
        description: batchSize.description,
        boundaries: batchBoundaries,
        attributes
      }),
      acceptance: Metric.histogram(acceptanceRate.id, {
        description: acceptanceRate.description,
        boundaries: acceptanceBoundaries,
        attributes
      })
    }
    if (instrumentCache.size > 10_000) instrumentCache.clear()
    instrumentCache.set(key, instruments)
  }
  lastInstruments = { operation, provider, model, responseModel, stage, errorType, cached, instruments }
  return instruments
}

const stageInstruments = new Map<
  string,
  { readonly duration: Metric.Metric<number, unknown>; readonly items: Metric.Metric<number, unknown> }
>()

export const stageInstrumentsFor = (stage: string) => {
  let instruments = stageInstruments.get(stage)
  if (instruments === undefined) {
    instruments = {
      duration: Metric.histogram(stageDuration.id, {
        description: stageDuration.description,
        boundaries: durationBoundaries,
        attributes: { "hasten.stage": stage, unit: "s" }
      }),
      items: Metric.counter(stageItems.id, {
        description: stageItems.description,
        incremental: true,
        attributes: { "hasten.stage": stage }
      })
    }
    if (stageInstruments.size > 1_000) stageInstruments.clear()
    stageInstruments.set(stage, instruments)
  }
  return instruments
}
