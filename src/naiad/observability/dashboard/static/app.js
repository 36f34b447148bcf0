// Naiad dashboard: polls /dashboard/data every second and draws on canvases.
// No dependencies, no eval, no inline handlers: it runs under a strict CSP.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120; // points kept per model (two minutes)
const history = new Map(); // "name/version" -> [{t, p50, p99, rate}]
const previous = new Map(); // "name/version" -> {t, success}
let selected = null;
let userSelected = false;

function byId(id) {
  return document.getElementById(id);
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  return Number(value).toFixed(digits);
}

function bytes(value) {
  if (!value) return "-";
  const gib = value / 1024 ** 3;
  return gib >= 1 ? gib.toFixed(1) + " GiB" : (value / 1024 ** 2).toFixed(0) + " MiB";
}

function keyOf(model) {
  return model.name + "/" + model.version;
}

function failures(model) {
  if (!model.failure) return 0;
  return Object.values(model.failure).reduce((a, b) => a + b, 0);
}

function record(model, now) {
  if (model.success === undefined) return null;
  const key = keyOf(model);
  const last = previous.get(key);
  let rate = 0;
  if (last && now > last.t) rate = (model.success - last.success) / (now - last.t);
  previous.set(key, { t: now, success: model.success });
  const points = history.get(key) || [];
  points.push({ t: now, p50: model.latency_ms.p50, p99: model.latency_ms.p99, rate: rate });
  while (points.length > HISTORY) points.shift();
  history.set(key, points);
  return rate;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function renderServer(server) {
  byId("server-name").textContent = server.name;
  byId("server-version").textContent = server.version;
  byId("server-uptime").textContent = Math.round(server.uptime_s) + " s";
  byId("server-cpu").textContent =
    server.cpu_utilization === undefined ? "-" : (server.cpu_utilization * 100).toFixed(0) + " %";
  byId("server-memory").textContent =
    bytes(server.memory_used_bytes) + " / " + bytes(server.memory_total_bytes);
  const status = byId("server-status");
  status.textContent = server.ready ? "ready" : server.live ? "live, not ready" : "down";
  status.className = "badge " + (server.ready ? "ready" : "down");
}

function renderTable(models, rates) {
  const body = byId("models").tBodies[0];
  body.replaceChildren();
  for (const model of models) {
    const key = keyOf(model);
    const row = document.createElement("tr");
    row.dataset.model = key;
    if (key === selected) row.className = "selected";
    cell(row, model.name);
    cell(row, model.version || "-");
    cell(row, model.state, "state-" + model.state);
    const ready = model.success !== undefined;
    cell(row, ready ? fmt(rates.get(key), 1) : "-");
    cell(row, ready ? fmt(model.latency_ms.p50, 2) : "-");
    cell(row, ready ? fmt(model.latency_ms.p99, 2) : "-");
    cell(row, ready ? fmt(model.queue_ms.p50, 2) : "-");
    cell(row, ready ? String(model.success) : "-");
    cell(row, ready ? String(failures(model)) : "-");
    cell(row, ready ? String(model.pending) : "-");
    if (model.reason) row.title = model.reason;
    row.addEventListener("click", () => {
      selected = key;
      userSelected = true;
      refresh();
    });
    body.appendChild(row);
  }
}

function prepare(canvas) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

function axes(ctx, canvas, maxValue, pad) {
  ctx.strokeStyle = "#dde1e8";
  ctx.fillStyle = "#6b7385";
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + ((canvas.height - pad.top - pad.bottom) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(canvas.width - pad.right, y);
    ctx.stroke();
    ctx.fillText(fmt(maxValue * (1 - i / 4), maxValue < 10 ? 2 : 0), 4, y + 4);
  }
}

function lineChart(canvas, points, series) {
  const ctx = prepare(canvas);
  const pad = { left: 48, right: 8, top: 10, bottom: 18 };
  const values = points.flatMap((p) => series.map((s) => p[s.field])).filter((v) => v !== null);
  const maxValue = Math.max(1e-3, ...values) * 1.1;
  axes(ctx, canvas, maxValue, pad);
  const width = canvas.width - pad.left - pad.right;
  const height = canvas.height - pad.top - pad.bottom;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    points.forEach((p, i) => {
      const v = p[s.field];
      if (v === null || v === undefined) return;
      // The newest point at the right edge; a short history still spans the chart.
      const x = pad.left + (width * i) / Math.max(1, points.length - 1);
      const y = pad.top + height * (1 - v / maxValue);
      if (started) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      started = true;
    });
    ctx.stroke();
  }
  // For tests and tools: what the chart shows, readable from the DOM.
  const shown = points.map((p) => p[series[0].field]).filter((v) => v !== null);
  canvas.dataset.points = String(shown.length);
  canvas.dataset.values = shown.slice(-20).map((v) => v.toFixed(3)).join(",");
}

function barChart(canvas, labels, counts) {
  const ctx = prepare(canvas);
  const pad = { left: 48, right: 8, top: 10, bottom: 30 };
  const maxValue = Math.max(1, ...counts) * 1.1;
  axes(ctx, canvas, maxValue, pad);
  const width = canvas.width - pad.left - pad.right;
  const height = canvas.height - pad.top - pad.bottom;
  const slot = Math.min(80, width / Math.max(1, labels.length));
  counts.forEach((count, i) => {
    const h = (height * count) / maxValue;
    ctx.fillStyle = "#2f6fd6";
    ctx.fillRect(pad.left + i * slot + 4, pad.top + height - h, slot - 8, h);
    ctx.fillStyle = "#6b7385";
    ctx.fillText(labels[i], pad.left + i * slot + 4, canvas.height - 12);
  });
  canvas.dataset.values = counts.join(",");
}

function renderDetail(models) {
  const model = models.find((m) => keyOf(m) === selected);
  const title = byId("detail-title");
  if (!model || model.success === undefined) {
    title.textContent = model ? model.name + " is " + model.state : "No model selected";
    return;
  }
  title.textContent = model.name + " (version " + model.version + ")";
  const points = history.get(selected) || [];
  lineChart(byId("latency-chart"), points, [
    { field: "p50", color: "#2f6fd6" },
    { field: "p99", color: "#d6552f" },
  ]);
  lineChart(byId("rate-chart"), points, [{ field: "rate", color: "#1f8a4c" }]);
  barChart(
    byId("queue-chart"),
    model.queue_histogram.map((b) => b.label),
    model.queue_histogram.map((b) => b.count),
  );
  barChart(
    byId("batch-chart"),
    model.batch_sizes.map((b) => String(b.size)),
    model.batch_sizes.map((b) => b.count),
  );
}

function choose(models) {
  if (userSelected && models.some((m) => keyOf(m) === selected)) return;
  // Follow the busiest ready model until the user picks one.
  const ready = models.filter((m) => m.success !== undefined);
  ready.sort((a, b) => b.success + failures(b) - (a.success + failures(a)));
  selected = ready.length ? keyOf(ready[0]) : null;
}

let last = null;

function refresh() {
  if (!last) return;
  const rates = new Map();
  for (const model of last.models) rates.set(keyOf(model), (history.get(keyOf(model)) || []).at(-1)?.rate);
  renderServer(last.server);
  choose(last.models);
  renderTable(last.models, rates);
  renderDetail(last.models);
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    last = await response.json();
    const now = performance.now() / 1000;
    for (const model of last.models) record(model, now);
    refresh();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (error) {
    const status = byId("server-status");
    status.textContent = "unreachable";
    status.className = "badge down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
