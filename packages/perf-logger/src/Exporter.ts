/**
 * Getting the measurements out: OTLP/HTTP export of every Effect metric and span to an
 * OpenTelemetry collector, and a Prometheus text endpoint.
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { FetchHttpClient } from "effect/http"
import * as Layer from "effect/Layer"
import { Otlp, PrometheusMetrics } from "effect/observability"
import type { OtlpExporter } from "effect/observability"

/**
 * OTLP/HTTP JSON export of the perf-logger metrics and spans (and every other Effect
 * metric and span) to an OpenTelemetry collector, via `effect/observability`.
 * @category layers @since 0.1.0
 */
export const layerOtlp = (options: {
  /** Collector base URL, e.g. `http://localhost:4318`; `/v1/metrics` and `/v1/traces` are appended. */
  readonly baseUrl: string
  readonly serviceName?: string
  readonly metricsExportInterval?: Duration.Input
  readonly tracerExportInterval?: Duration.Input
}): Layer.Layer<OtlpExporter.Flusher> =>
  Otlp.layerJson({
    baseUrl: options.baseUrl,
    resource: { serviceName: options.serviceName ?? "hasten" },
    ...(options.metricsExportInterval !== undefined ? { metricsExportInterval: options.metricsExportInterval } : {}),
    ...(options.tracerExportInterval !== undefined ? { tracerExportInterval: options.tracerExportInterval } : {})
  }).pipe(Layer.provide(FetchHttpClient.layer))

/**
 * The current metrics in the Prometheus text exposition format.
 * @category accessors @since 0.1.0
 */
export const prometheusText: Effect.Effect<string> = PrometheusMetrics.format()

/**
 * Serves {@link prometheusText} on `http://<host>:<port>/metrics` (node:http) for the
 * lifetime of the layer. Port 0 picks a free port; read it from {@link PrometheusEndpoint}.
 * @category layers @since 0.1.0
 */
export class PrometheusEndpoint extends Context.Service<PrometheusEndpoint, { readonly url: string }>()(
  "@hasten/perf-logger/PrometheusEndpoint"
) {}

/**
 * Layer of {@link PrometheusEndpoint}.
 * @category layers @since 0.1.0
 */
export const layerPrometheus = (options: { readonly port?: number; readonly host?: string } = {}): Layer.Layer<PrometheusEndpoint> =>
  Layer.effect(
    PrometheusEndpoint,
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const Http = yield* Effect.promise(() => import("node:http"))
      const server = Http.createServer((request, response) => {
        if (request.method === "GET" && (request.url ?? "").split("?")[0] === "/metrics") {
          response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
          response.end(PrometheusMetrics.formatUnsafe(context))
        } else {
          response.writeHead(404).end()
        }
      })
      const host = options.host ?? "127.0.0.1"
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(options.port ?? 9464, host, () => resume(Effect.void))
        }),
        () =>
          Effect.callback<void>((resume) => {
            server.close(() => resume(Effect.void))
          })
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : options.port ?? 9464
      return { url: `http://${host}:${port}/metrics` }
    })
  )
