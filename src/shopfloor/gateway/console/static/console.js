// The console's only script (served from /console/static; the CSP allows no other).
// It refreshes the parts of a page marked data-live by fetching their server-rendered HTML again:
// at once on each of the run's server-sent events (data-events), and every data-refresh ms as well
// (an event may come before the row it reports is written). A part marked data-poll="fallback" (the
// runs list, whose stream reports what the run store already holds) is fetched on its events only,
// and polled only while its stream is down (the browser reconnects it). It asks before a form marked
// data-confirm is sent. The fetched HTML was escaped by the server; it is parsed as inert HTML
// (a <template>), and the CSP keeps any script in it from running. A figure marked data-chart (a
// metric over time, or bars: JSON the server escaped) is drawn with uPlot, the charting library the
// console serves from its own static files (vendored from npm); its values are in a table beside it too.
"use strict";

const EVENT_KINDS = [
  "run_started", "model_reply", "invalid_reply", "tool_call", "tool_result", "approval_requested",
  "approval_decided", "context_trimmed", "guardrail", "run_finished", "runs",
];

function live(element) {
  const url = element.dataset.live;
  const every = Math.max(500, parseInt(element.dataset.refresh || "2000", 10));
  let rounds = 0;
  let pending = null;
  let source = null;
  let last = null;
  const fallback = element.dataset.poll === "fallback";

  function finished() {
    return element.dataset.done === "true";
  }

  async function load() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.status === 401) {
        window.location.assign("/console/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      const html = response.ok ? await response.text() : null;
      // unchanged, or someone is typing in it (a reason): leave it, opened details and all. "Unchanged"
      // is judged on the parsed markup too: the first fetch of a part the server rendered into the page
      // matches it, and replacing it anyway would take away a button being clicked or text being selected.
      if (html !== null && html !== last && !element.contains(document.activeElement)) {
        last = html;
        const template = document.createElement("template");
        template.innerHTML = html;
        if (template.innerHTML.trim() !== element.innerHTML.trim()) {
          element.replaceChildren(template.content);
        }
        const status = element.querySelector("#run-status");
        if (status && ["completed", "failed", "cancelled"].includes(status.textContent.trim())) {
          element.dataset.done = "true";
          if (source) {
            source.close();
          }
        }
      }
    } catch (error) {
      // the server may be restarting: the next tick tries again
    }
  }

  function soon() {
    if (pending === null) {
      pending = window.setTimeout(() => { pending = null; load(); }, 150);
    }
  }

  async function tick() {
    if (finished() || rounds++ > 10000) {
      return;
    }
    if (!(fallback && source && source.readyState === EventSource.OPEN)) {
      await load();
    }
    window.setTimeout(tick, every);
  }

  if (element.dataset.events && window.EventSource && !finished()) {
    source = new EventSource(element.dataset.events);
    EVENT_KINDS.forEach((kind) => source.addEventListener(kind, soon));
    source.addEventListener("run_finished", () => source.close());
    // data-stream says whether the part follows its stream now (open) or polls (down)
    source.onopen = () => { element.dataset.stream = "open"; };
    source.onerror = () => {
      element.dataset.stream = "down";
      if (!fallback) {
        source.close();  // polling goes on
      }
    };
  }
  window.setTimeout(tick, every);
}

// an axis label that fits its 50 pixels: 0.25, 120, 2.6e+5
function tick(value) {
  return Math.abs(value) >= 1e4 ? value.toExponential(1) : String(+value.toPrecision(3));
}

const BAR_COLOURS = ["#57606a", "#0b57d0", "#8250df", "#1a6b35"];

// bars in groups (a BarChart of the server: a group per label, a bar per series side by side), drawn
// with uPlot's bars path builder on an x scale of group indices labelled with the groups' names
function bars(spec, target) {
  const labels = spec.labels;
  const count = spec.series.length;
  const share = 0.7 / count;
  const values = spec.series.flatMap((s) => s.y).filter((v) => v !== null);
  const low = Math.min(0, ...values);
  const high = Math.max(0, ...values);
  const options = {
    width: Math.max(320, labels.length * (80 + 30 * count)),
    height: 180,
    legend: { show: count > 1 },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: {
      x: { time: false, range: () => [-0.5, labels.length - 0.5] },
      y: { range: () => [low, high > low ? high * 1.1 : low + 1] },
    },
    axes: [
      {
        size: 30,
        splits: () => labels.map((_, i) => i),
        values: (u, splits) => splits.map((i) => (labels[i] ?? "").slice(0, 14)),
        grid: { show: false },
      },
      { size: 50, values: (u, ticks) => ticks.map(tick) },
    ],
    series: [{ label: spec.group, value: (u, i) => (i === null ? "" : labels[i] ?? "") }].concat(spec.series.map((s, i) => ({
      label: s.label,
      fill: BAR_COLOURS[i % BAR_COLOURS.length],
      stroke: BAR_COLOURS[i % BAR_COLOURS.length],
      width: 0,
      points: { show: false },
      // side by side: the first series left of the group's middle, the last right of it
      paths: window.uPlot.paths.bars({
        size: [share, 80],
        align: count === 1 ? 0 : (i < count / 2 ? -1 : 1),
        gap: 2,
      }),
    }))),
  };
  const data = [labels.map((_, i) => i)].concat(spec.series.map((s) => s.y));
  new window.uPlot(options, data, target);
}

function chart(figure) {
  const spec = JSON.parse(figure.dataset.chart);
  const target = figure.querySelector(".plot");
  if (spec.kind === "bars") {
    bars(spec, target);
    return;
  }
  const format = (value) => (value === null || value === undefined ? "none" : value.toPrecision(3) + spec.unit);
  const options = {
    width: Math.max(240, target.clientWidth || 380),
    height: 160,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (u, min, max) => [Math.min(0, min ?? 0), Math.max(1, max ?? 1) * 1.1] } },
    axes: [{ size: 30 }, { size: 50, values: (u, ticks) => ticks.map(tick) }],
    series: [
      {},
      { label: spec.name, value: (u, v) => format(v), stroke: "#0b57d0", width: 2, points: { show: true, size: 6 } },
    ],
  };
  new window.uPlot(options, [spec.x, spec.y], target);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  if (window.uPlot) {  // missing only before scripts/vendor_console.sh ran: the tables show the values
    document.querySelectorAll("[data-chart]").forEach(chart);
  }
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
});
