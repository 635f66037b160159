/**
 * `report.html`: one self-contained page (no network) with SVG charts drawn by an inline
 * script from the run data embedded in the page.
 * @since 0.1.0
 */
import type { CallStats, Summary } from "../Summary.js"

/** What the report draws. `points` is `[start, latencyMs, outputTokens, flags]` per call. */
export interface ReportData {
  readonly summary: Summary
  readonly points: ReadonlyArray<number>
  /** Epoch ms the run started (x axis origin). */
  readonly startT: number
  /** Calls each embedded point stands for (more than 1 when a large run is sampled). */
  readonly pointWeight?: number
}

const escapeHtml = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** JSON safe to embed in a `<script>` element. */
const embedJson = (value: unknown): string =>
  JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")

const fmtMs = (value: number | null | undefined): string =>
  value === null || value === undefined ? "–" : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(2)} ms`

const fmt = (value: number | null | undefined, digits = 1): string => value === null || value === undefined ? "–" : value.toFixed(digits)

const modelRow = (name: string, stats: CallStats): string =>
  `<tr><td>${escapeHtml(name)}</td><td>${stats.calls}</td><td>${stats.errors}</td><td>${fmtMs(stats.latencyMs?.p50)}</td>` +
  `<td>${fmtMs(stats.latencyMs?.p90)}</td><td>${fmtMs(stats.latencyMs?.p99)}</td><td>${fmtMs(stats.ttftMs?.p50)}</td>` +
  `<td>${fmtMs(stats.itlMs?.p50)}</td><td>${fmtMs(stats.tpotMs?.p50)}</td><td>${fmt(stats.outputTokensPerSecond)}</td>` +
  `<td>${fmt(stats.requestsPerSecond)}</td><td>${stats.tokens.input} / ${stats.tokens.output} / ${stats.tokens.cachedInput}</td>` +
  `<td>${stats.cache.hitRate === null ? "–" : (stats.cache.hitRate * 100).toFixed(1) + "%"}</td>` +
  `<td>${stats.costUsd === null ? "–" : "$" + stats.costUsd.toFixed(4)}</td></tr>`

const script = String.raw`
(function () {
  var data = JSON.parse(document.getElementById("perf-data").textContent);
  var summary = data.summary, points = data.points, t0 = data.startT, weight = data.pointWeight || 1;
  var NS = "http://www.w3.org/2000/svg";
  var W = 640, H = 240, L = 56, R = 16, T = 16, B = 40;
  function el(name, attrs, parent, text) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function svgIn(id) {
    var figure = document.getElementById(id);
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" }, null);
    figure.appendChild(svg);
    return { figure: figure, svg: svg };
  }
  function nice(v) { if (!(v > 0)) return 1; var p = Math.pow(10, Math.floor(Math.log10(v))); var m = v / p; return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p; }
  function label(v) { return Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2).replace(/\.?0+$/, ""); }
  function axes(svg, maxY, xLabel, yLabel, ticksX) {
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#888" }, svg);
    for (var i = 0; i <= 5; i++) {
      var y = H - B - (H - B - T) * i / 5;
      el("line", { x1: L - 4, y1: y, x2: W - R, y2: y, stroke: "#eee" }, svg);
      el("text", { x: L - 6, y: y + 4, "text-anchor": "end", "font-size": 10 }, svg, label(maxY * i / 5));
    }
    (ticksX || []).forEach(function (tick) { el("text", { x: tick[0], y: H - B + 14, "text-anchor": "middle", "font-size": 10 }, svg, tick[1]); });
    el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 11 }, svg, xLabel);
    el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 11, transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" }, svg, yLabel);
  }
  function empty(c, why) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#999" }, c.svg, why); c.figure.setAttribute("data-drawn", "0"); return 0; }
  function bars(c, values, colors, xLabel, yLabel, names) {
    var maxY = nice(Math.max.apply(null, values.map(function (v) { return Array.isArray(v) ? v.reduce(function (a, b) { return a + b; }, 0) : v; }).concat([0])));
    var n = values.length, slot = (W - L - R) / n, drawn = 0, ticks = [];
    axes(c.svg, maxY, xLabel, yLabel, []);
    values.forEach(function (value, i) {
      var stack = Array.isArray(value) ? value : [value], base = H - B;
      stack.forEach(function (v, k) {
        var h = maxY > 0 ? (H - B - T) * v / maxY : 0;
        if (v > 0) { el("rect", { x: L + i * slot + slot * 0.1, y: base - h, width: Math.max(1, slot * 0.8), height: h, fill: colors[k % colors.length], "class": "mark" }, c.svg); drawn++; }
        base -= h;
      });
      if (names && (n <= 12 || i % Math.ceil(n / 12) === 0)) ticks.push([L + (i + 0.5) * slot, names[i]]);
    });
    ticks.forEach(function (tick) { el("text", { x: tick[0], y: H - B + 14, "text-anchor": "middle", "font-size": 10 }, c.svg, tick[1]); });
    c.figure.setAttribute("data-drawn", String(drawn));
    return drawn;
  }
  var calls = [];
  for (var i = 0; i + 3 < points.length; i += 4) calls.push({ start: points[i], latency: points[i + 1], tokens: points[i + 2], ok: (points[i + 3] & 1) === 1, hit: (points[i + 3] & 2) === 2 });

  function latencyHistogram() {
    var c = svgIn("latency-histogram");
    var up = calls.filter(function (x) { return x.ok && !x.hit; }).map(function (x) { return x.latency; });
    var hits = calls.filter(function (x) { return x.ok && x.hit; }).map(function (x) { return x.latency; });
    var all = up.concat(hits);
    if (all.length === 0) return empty(c, "no successful calls");
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), bins = 30;
    if (hi === lo) hi = lo + 1;
    var width = (hi - lo) / bins, counts = [], names = [];
    for (var b = 0; b < bins; b++) { counts.push([0, 0]); names.push(label(lo + width * b)); }
    function put(v, k) { var b = Math.min(bins - 1, Math.floor((v - lo) / width)); counts[b][k] += weight; }
    up.forEach(function (v) { put(v, 0); }); hits.forEach(function (v) { put(v, 1); });
    return bars(c, counts, ["#3b6fd4", "#2ca25f"], "latency (ms), blue upstream, green cache hits", "calls", names);
  }
  function throughput() {
    var c = svgIn("throughput");
    if (calls.length === 0) return empty(c, "no calls");
    var ends = calls.map(function (x) { return x.start + x.latency - t0; });
    var span = Math.max(1, Math.max.apply(null, ends)), buckets = Math.min(60, Math.max(5, calls.length));
    var width = span / buckets, req = [], tok = [];
    for (var b = 0; b < buckets; b++) { req.push(0); tok.push(0); }
    calls.forEach(function (x, i) { var b = Math.min(buckets - 1, Math.floor(ends[i] / width)); req[b] += weight; if (x.ok && !x.hit) tok[b] += x.tokens * weight; });
    var perS = 1000 / width;
    req = req.map(function (v) { return v * perS; }); tok = tok.map(function (v) { return v * perS; });
    var maxY = nice(Math.max.apply(null, req.concat(tok)));
    var ticks = [];
    for (var k = 0; k <= 4; k++) ticks.push([L + (W - L - R) * k / 4, label(span * k / 4 / 1000) + "s"]);
    axes(c.svg, maxY, "time since run start; blue requests/s, orange output tokens/s", "per second", ticks);
    var drawn = 0;
    [[req, "#3b6fd4"], [tok, "#e6550d"]].forEach(function (series) {
      var d = series[0].map(function (v, b) { return (b === 0 ? "M" : "L") + (L + (W - L - R) * (b + 0.5) / buckets).toFixed(1) + " " + (H - B - (H - B - T) * v / maxY).toFixed(1); }).join(" ");
      el("path", { d: d, fill: "none", stroke: series[1], "stroke-width": 2, "class": "mark" }, c.svg);
      series[0].forEach(function (v, b) { if (v > 0) drawn++; });
    });
    c.figure.setAttribute("data-drawn", String(drawn));
    return drawn;
  }
  function stages() {
    var c = svgIn("stages");
    var names = Object.keys(summary.byStage);
    if (names.length === 0) return empty(c, "no stages recorded");
    var values = names.map(function (n) { return summary.byStage[n].itemsPerSecond || 0; });
    return bars(c, values, ["#756bb1"], "items/s per stage", "items/s", names);
  }
  function acceptance() {
    var c = svgIn("acceptance");
    var spec = summary.overall.speculative;
    if (!spec || spec.perPosition.length === 0) return empty(c, "no speculative decoding statistics");
    return bars(c, spec.perPosition, ["#31a354"], "draft position", "acceptance rate", spec.perPosition.map(function (_, i) { return String(i + 1); }));
  }
  function cache() {
    var c = svgIn("cache");
    var names = Object.keys(summary.byModel);
    var values = names.map(function (n) { var s = summary.byModel[n].cache; return [s.hits, s.misses]; });
    if (values.every(function (v) { return v[0] + v[1] === 0; })) return empty(c, "no successful calls");
    return bars(c, values, ["#2ca25f", "#bbbbbb"], "per model: green hits, grey misses (rate " + (summary.overall.cache.hitRate === null ? "-" : (summary.overall.cache.hitRate * 100).toFixed(1) + "%") + ")", "calls", names);
  }
  var drawnCharts = 0, marks = 0;
  [latencyHistogram, throughput, stages, acceptance, cache].forEach(function (draw) {
    var n = 0;
    try { n = draw(); } catch (error) { document.body.setAttribute("data-error", String(error)); }
    marks += n; if (n > 0) drawnCharts++;
  });
  document.body.setAttribute("data-charts-drawn", String(drawnCharts));
  document.body.setAttribute("data-marks", String(marks));
  document.body.setAttribute("data-ready", "1");
})();
`

/** At most this many calls are embedded for the charts; larger runs are sampled evenly. */
const maxPoints = 20_000

const samplePoints = (
  points: ReadonlyArray<number>,
  baseWeight: number
): { readonly points: ReadonlyArray<number>; readonly sampled: boolean; readonly weight: number } => {
  const calls = Math.floor(points.length / 4)
  if (calls <= maxPoints) return { points, sampled: baseWeight > 1, weight: baseWeight }
  const stride = calls / maxPoints
  const out: Array<number> = []
  for (let index = 0; index < maxPoints; index++) {
    const at = Math.floor(index * stride) * 4
    out.push(points[at]!, points[at + 1]!, points[at + 2]!, points[at + 3]!)
  }
  return { points: out, sampled: true, weight: stride * baseWeight }
}

/** Renders the self-contained HTML report. */
export const renderReport = (input: ReportData): string => {
  const { points, sampled, weight } = samplePoints(input.points, input.pointWeight ?? 1)
  const data: ReportData = { ...input, points, pointWeight: weight }
  const { summary } = data
  const models = Object.entries(summary.byModel).map(([name, stats]) => modelRow(name, stats)).join("")
  const stages = Object.entries(summary.byStage)
    .map(([name, stage]) =>
      `<tr><td>${escapeHtml(name)}</td><td>${stage.items}</td><td>${fmt(stage.itemsPerSecond)}</td><td>${fmtMs(stage.wallMs)}</td>` +
      `<td>${fmtMs(stage.durationMs?.p50)}</td><td>${stage.calls}</td><td>${fmtMs(stage.latencyMs?.p50)}</td></tr>`
    )
    .join("")
  const memory = summary.memory === null
    ? ""
    : `<p>Memory: RSS peak ${(summary.memory.rssPeakBytes / 2 ** 20).toFixed(1)} MiB, heap peak ${
      (summary.memory.heapUsedPeakBytes / 2 ** 20).toFixed(1)
    } MiB (${summary.memory.samples} samples).</p>`
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
  const modelMemory = summary.modelMemory === undefined || summary.modelMemory.length === 0
    ? ""
    : `<table id="model-memory"><thead><tr><th>local model</th><th>weights</th><th>KV cache</th><th>compute</th><th>total</th><th>sequences × context</th></tr></thead><tbody>${
      summary.modelMemory.map((model) =>
        `<tr><td>${escapeHtml(model.model)}</td><td>${mib(model.weightsBytes)}</td><td>${mib(model.kvCacheBytes)}</td><td>${
          mib(model.computeBytes)
        }</td><td>${mib(model.totalBytes)}</td><td>${model.sequences} × ${model.contextSize}</td></tr>`
      ).join("")
    }</tbody></table>`
  const cost = summary.cost === null ? "" : `<p>Estimated cost: $${summary.cost.totalUsd.toFixed(4)}</p>`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>perf-logger run ${escapeHtml(summary.runId)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #ddd; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
</style>
</head>
<body>
<h1>perf-logger run ${escapeHtml(summary.runId)}</h1>
<p>${summary.overall.calls} calls, ${summary.overall.errors} errors, wall ${fmtMs(summary.wallMs)}, started ${
    escapeHtml(summary.startedAt)
  }${summary.complete ? "" : " (run did not finish cleanly)"}.</p>
${cost}${memory}${modelMemory}${
    sampled
      ? `<p>Charts use an even sample of ${points.length / 4} of the ${summary.overall.calls} calls; the tables use all of them.</p>`
      : ""
  }
<table><thead><tr><th>model</th><th>calls</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th><th>TTFT p50</th><th>ITL p50</th><th>TPOT p50</th><th>out tok/s</th><th>req/s</th><th>tokens in/out/cached</th><th>cache hit</th><th>cost</th></tr></thead>
<tbody>${models}</tbody></table>
${
    stages.length > 0
      ? `<table><thead><tr><th>stage</th><th>items</th><th>items/s</th><th>wall</th><th>duration p50</th><th>calls</th><th>call p50</th></tr></thead><tbody>${stages}</tbody></table>`
      : ""
  }
<div class="charts">
<figure id="latency-histogram" class="chart"><figcaption>Latency histogram</figcaption></figure>
<figure id="throughput" class="chart"><figcaption>Throughput over time</figcaption></figure>
<figure id="stages" class="chart"><figcaption>Per-stage throughput</figcaption></figure>
<figure id="acceptance" class="chart"><figcaption>Speculative acceptance by draft position</figcaption></figure>
<figure id="cache" class="chart"><figcaption>Cache hit rate</figcaption></figure>
</div>
<script type="application/json" id="perf-data">${embedJson(data)}</script>
<script>${script}</script>
</body>
</html>
`
}
