import { assert, describe, it } from "@effect/vitest"
import { Llm } from "@hasten/core"
import { Effect, Layer, Metric, Stream, Tracer } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { PerfLogger } from "../src/index.js"
import * as Scripted from "./fixtures/ScriptedLlm.js"

interface Collector {
  readonly url: string
  readonly posts: Array<{ readonly path: string; readonly body: any }>
  readonly close: () => Promise<void>
}

/** A loopback OTLP/HTTP collector that keeps every JSON body it receives. */
const startCollector = (): Promise<Collector> =>
  new Promise((resolve) => {
    const posts: Array<{ path: string; body: any }> = []
    const server = Http.createServer((request, response) => {
      const parts: Array<Buffer> = []
      request.on("data", (part: Buffer) => parts.push(part))
      request.on("end", () => {
        if (request.method === "POST") posts.push({ path: request.url ?? "", body: JSON.parse(Buffer.concat(parts).toString("utf8")) })
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        posts,
        close: () => new Promise((done) => server.close(() => done()))
      })
    })
  })

type KeyValue = { key: string; value: Record<string, unknown> }
const attributes = (list: ReadonlyArray<KeyValue> | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map(({ key, value }) => [key, Object.values(value)[0]]))

const Measured = PerfLogger.layer.pipe(Layer.provideMerge(Scripted.layer), Layer.provideMerge(PerfLogger.layerMemory()))

const workload = Effect.gen(function*() {
  yield* Llm.complete(Scripted.request({ inputTokens: 7, outputTokens: 3 }))
  yield* Llm.complete(Scripted.request({ inputTokens: 5, outputTokens: 2 }))
  yield* Effect.ignore(Llm.complete(Scripted.request({ fail: "Timeout" })))
  yield* Llm.stream(Scripted.request({ inputTokens: 4, chunks: [{ afterMs: 0, text: "a" }, { afterMs: 0, text: "b" }] })).pipe(
    Stream.runDrain
  )
})

describe("OTLP export (GenAI semantic conventions)", () => {
  it.live("posts gen_ai metrics and spans to a loopback collector", () =>
    Effect.gen(function*() {
      const collector = yield* Effect.promise(startCollector)
      yield* workload.pipe(
        Effect.provide(Measured),
        Effect.provide(PerfLogger.layerOtlp({
          baseUrl: collector.url,
          serviceName: "perf-logger-test",
          metricsExportInterval: "1 hour",
          tracerExportInterval: "1 hour"
        })),
        Effect.provideService(Metric.MetricRegistry, new Map())
      )
      yield* Effect.promise(collector.close)

      const metricsPosts = collector.posts.filter((post) => post.path === "/v1/metrics")
      const tracePosts = collector.posts.filter((post) => post.path === "/v1/traces")
      assert.isAbove(metricsPosts.length, 0)
      assert.isAbove(tracePosts.length, 0)

      const resourceMetrics = metricsPosts.at(-1)!.body.resourceMetrics[0]
      assert.strictEqual(attributes(resourceMetrics.resource.attributes)["service.name"], "perf-logger-test")
      const metrics: Array<any> = resourceMetrics.scopeMetrics.flatMap((scope: any) => scope.metrics)
      const byName = (name: string) => metrics.find((metric) => metric.name === name)

      const duration = byName("gen_ai.client.operation.duration")
      assert.strictEqual(duration.unit, "s")
      const durationPoints: Array<any> = duration.histogram.dataPoints
      const okPoints = durationPoints.filter((point) => attributes(point.attributes)["error.type"] === undefined)
      const errorPoints = durationPoints.filter((point) => attributes(point.attributes)["error.type"] === "Timeout")
      assert.strictEqual(okPoints.reduce((sum, point) => sum + Number(point.count), 0), 3)
      assert.strictEqual(errorPoints.reduce((sum, point) => sum + Number(point.count), 0), 1)
      const first = attributes(okPoints[0].attributes)
      assert.strictEqual(first["gen_ai.operation.name"], "chat")
      assert.strictEqual(first["gen_ai.provider.name"], "scripted")
      assert.strictEqual(first["gen_ai.request.model"], "fake-model")
      assert.isArray(okPoints[0].explicitBounds)

      const usage = byName("gen_ai.client.token.usage")
      const usagePoints: Array<any> = usage.histogram.dataPoints
      const sumOf = (type: string) =>
        usagePoints
          .filter((point) => attributes(point.attributes)["gen_ai.token.type"] === type)
          .reduce((sum, point) => sum + Number(point.sum), 0)
      assert.strictEqual(sumOf("input"), 7 + 5 + 4)
      assert.strictEqual(sumOf("output"), 3 + 2 + 2)

      const ttft = byName("gen_ai.client.operation.time_to_first_chunk")
      assert.strictEqual(ttft.histogram.dataPoints.reduce((sum: number, point: any) => sum + Number(point.count), 0), 1)

      const spans: Array<any> = tracePosts.flatMap((post) =>
        post.body.resourceSpans.flatMap((resource: any) => resource.scopeSpans.flatMap((scope: any) => scope.spans))
      )
      const completes = spans.filter((span) => span.name === "PerfLogger.complete")
      assert.strictEqual(completes.length, 3)
      const okSpan = completes.map((span) => attributes(span.attributes)).find((span) => span["gen_ai.usage.input_tokens"] === 7)!
      assert.strictEqual(okSpan["gen_ai.operation.name"], "chat")
      assert.strictEqual(okSpan["gen_ai.provider.name"], "scripted")
      assert.strictEqual(okSpan["gen_ai.system"], "scripted")
      assert.strictEqual(okSpan["gen_ai.request.model"], "fake-model")
      assert.strictEqual(okSpan["gen_ai.response.model"], "fake-model")
      assert.strictEqual(okSpan["gen_ai.usage.output_tokens"], 3)
      assert.strictEqual(okSpan["gen_ai.request.max_tokens"], 64)
      assert.strictEqual(okSpan["gen_ai.request.temperature"], 0)
      assert.strictEqual(completes[0].kind, 3) // SPAN_KIND_CLIENT
      const failed = completes.map((span) => attributes(span.attributes)).find((span) => span["error.type"] !== undefined)
      assert.strictEqual(failed?.["error.type"], "Timeout")
      const stream = spans.find((span) => span.name === "PerfLogger.stream")
      assert.strictEqual(attributes(stream.attributes)["gen_ai.usage.output_tokens"], 2)
    }))

  it.effect("metrics: false leaves the Effect metrics alone (run files and summary only)", () =>
    Effect.gen(function*() {
      const text = yield* Effect.gen(function*() {
        yield* workload
        return yield* PerfLogger.prometheusText
      }).pipe(
        Effect.provide(PerfLogger.layer.pipe(
          Layer.provideMerge(Scripted.layer),
          Layer.provideMerge(PerfLogger.layerMemory({ metrics: false }))
        )),
        Effect.provideService(Metric.MetricRegistry, new Map())
      )
      assert.notInclude(text, "gen_ai_client_operation_duration")
      assert.notInclude(text, "hasten_perf_logger_requests_total")
    }))

  it.live("serves the metrics as Prometheus text", () =>
    Effect.gen(function*() {
      const text = yield* Effect.gen(function*() {
        yield* workload
        const endpoint = yield* PerfLogger.PrometheusEndpoint
        return yield* Effect.promise(() => fetch(endpoint.url).then((response) => response.text()))
      }).pipe(
        Effect.provide(Layer.merge(Measured, PerfLogger.layerPrometheus({ port: 0 }))),
        Effect.provideService(Metric.MetricRegistry, new Map())
      )
      assert.match(text, /gen_ai_client_operation_duration_bucket\{[^}]*gen_ai_request_model="fake-model"/)
      assert.match(text, /hasten_perf_logger_requests_total\{[^}]*\} 1/)
    }))

  describe("span modes", () => {
    /** A tracer that records the names of the spans it creates. */
    const recordingTracer = (names: Array<string>): Tracer.Tracer =>
      Tracer.make({
        span(options) {
          names.push(options.name)
          return Tracer.nativeTracer.span(options)
        }
      })

    const calls = Effect.gen(function*() {
      yield* Llm.complete(Scripted.request({}))
      yield* Llm.stream(Scripted.request({ chunks: [{ afterMs: 0, text: "a" }] })).pipe(Stream.runDrain)
    })

    it.effect("auto: spans when an exporting tracer is installed, none on the native tracer", () =>
      Effect.gen(function*() {
        const names: Array<string> = []
        const layer = PerfLogger.layer.pipe(Layer.provideMerge(Scripted.layer), Layer.provideMerge(PerfLogger.layerMemory()))
        yield* calls.pipe(Effect.provide(layer), Effect.withTracer(recordingTracer(names)))
        assert.deepStrictEqual(names.filter((name) => name.startsWith("PerfLogger.")), ["PerfLogger.complete", "PerfLogger.stream"])
      }))

    it.effect("spans: false opens none even with an exporting tracer; true opens them on the native tracer too", () =>
      Effect.gen(function*() {
        const off: Array<string> = []
        yield* calls.pipe(
          Effect.provide(
            PerfLogger.layer.pipe(Layer.provideMerge(Scripted.layer), Layer.provideMerge(PerfLogger.layerMemory({ spans: false })))
          ),
          Effect.withTracer(recordingTracer(off))
        )
        assert.deepStrictEqual(off.filter((name) => name.startsWith("PerfLogger.")), [])
        // on the native tracer, "auto" gives the provider no PerfLogger parent span, `true` does
        const parentOf = (spans: boolean | "auto") =>
          Effect.gen(function*() {
            const seen: Array<string> = []
            const probe = Layer.succeed(
              Llm.Llm,
              Llm.fromComplete("probe", (request) =>
                Effect.gen(function*() {
                  const parent = yield* Effect.option(Effect.currentSpan)
                  seen.push(parent._tag === "Some" ? parent.value.name : "none")
                  return yield* Effect.orDie(
                    Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(request)).pipe(Effect.provide(Scripted.layer))
                  )
                }))
            )
            yield* Llm.complete(Scripted.request({})).pipe(
              Effect.provide(PerfLogger.layer.pipe(Layer.provideMerge(probe), Layer.provideMerge(PerfLogger.layerMemory({ spans }))))
            )
            return seen[0]
          })
        assert.strictEqual(yield* parentOf(true), "PerfLogger.complete")
        assert.strictEqual(yield* parentOf("auto"), "none")
      }))
  })
})
