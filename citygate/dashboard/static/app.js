// citygate operator dashboard: polls the fleet API and draws tables, charts (uPlot) and a map
// (Leaflet). Both libraries are vendored (static/vendor/); everything comes from this origin,
// except map tiles when the cloud's dashboard_tile_url names a tile server.
"use strict";

// ?poll=<ms> overrides the refresh period (the browser test uses a short one).
const POLL_MS = Math.max(500, Number(new URLSearchParams(location.search).get("poll")) || 5000);
const state = {
  token: sessionStorage.getItem("citygate-token"),
  prev: new Map(),
  detail: null,
  timer: null,
  ctx: null, // /dashboard/context: profiles with units, positions, map tiles
  charts: new Map(), // chart key -> { u, root, spec, ... }
  cards: new Map(), // profile -> the card's elements
  cardField: new Map(), // profile -> the field the operator chose
  map: null,
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
};

async function api(path, init = {}) {
  const resp = await fetch(path, { ...init, headers: { Authorization: `Bearer ${state.token}` } });
  if (resp.status === 401 || resp.status === 403) { signOut("That token is not an operator token."); throw new Error("auth"); }
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function fmtAge(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
const reasons = (o) => Object.entries(o || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
const byCount = (o) => Object.entries(o || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));

// -- profiles and units (from /dashboard/context) -----------------------------------------

// The profiles' SenML/UCUM unit names as people read them.
const UNIT_TEXT = { Cel: "°C", "ug/m3": "µg/m³", "W/m2": "W/m²", deg: "°" };
const unitText = (u) => (u ? UNIT_TEXT[u] ?? u : "");
const withUnit = (text, u) => (unitText(u) ? `${text} ${unitText(u)}` : text);

function profileOf(name, version) {
  return state.ctx?.profiles.find((p) => p.name === name && (version === undefined || p.version === version)) ?? null;
}
function fieldOf(profile, name) {
  return profile?.fields.find((f) => f.name === name) ?? null;
}

async function loadContext() {
  try {
    // The answer carries an ETag (the inventory's contract version): a poll costs a 304.
    state.ctx = await api("/dashboard/context", { cache: "no-cache" });
  } catch (e) {
    if (e.message === "auth") throw e;
    // An older cloud without it: charts without units, no map.
  }
}

// -- charts (uPlot) -----------------------------------------------------------------------

const pad2 = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const fmtDay = (d) => `${d.getDate()} ${MONTHS[d.getMonth()]}`;
const fmtClock = (d, seconds) => `${pad2(d.getHours())}:${pad2(d.getMinutes())}${seconds ? `:${pad2(d.getSeconds())}` : ""}`;
const fmtWhen = (sec) => { const d = new Date(sec * 1000); return `${fmtDay(d)} ${fmtClock(d, true)}`; };

// The time axis in the browser's local time: 14:05 (14:05:30 below a minute a tick), the date
// under the first tick and wherever the day changes, days alone past a day a tick. The labels
// drawn are also kept in the chart's data-x-ticks (the canvas has no text to read).
function timeTicks(u, splits, axisIdx, space, incr) {
  let prevDay = null;
  const labels = splits.map((s) => {
    const d = new Date(s * 1000);
    if (incr >= 86400) return fmtDay(d);
    const day = fmtDay(d);
    const label = day !== prevDay ? `${fmtClock(d, incr < 60)}\n${day}` : fmtClock(d, incr < 60);
    prevDay = day;
    return label;
  });
  u.root.dataset.xTicks = labels.map((l) => l.replace("\n", " ")).join("|");
  return labels;
}

// Time axis steps in seconds: never below a second (labels are hh:mm:ss at the finest).
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];

// A y tick with as many decimals as the step between ticks has (5.48, 5.49, 5.5 → 5.48, 5.49, 5.50).
function fmtTick(v, incr) {
  let dec = 0;
  while (dec < 6 && Math.abs(Math.round(incr * 10 ** dec) - incr * 10 ** dec) > 1e-6 * 10 ** dec) dec += 1;
  return Number(v).toLocaleString("en", { minimumFractionDigits: dec, maximumFractionDigits: dec });
}

// The legend shows the hovered point; with the cursor away, the newest point.
function showNewest(u) {
  if (u.cursor.left >= 0) return;
  const ys = u.data[1] || [];
  for (let i = ys.length - 1; i >= 0; i--) if (ys[i] !== null) { u.setLegend({ idx: i }, false); return; }
}

function fmtValue(v, kind) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (kind === "bool") return v >= 0.5 ? "true" : "false";
  const a = Math.abs(v);
  return Number(v).toLocaleString("en", { maximumFractionDigits: a >= 100 ? 0 : a >= 10 ? 1 : 2 });
}

// spec: { label, unit (profile unit or plain text), kind: "number" | "bool", width, height, zero }
function chartOptions(spec) {
  const unit = unitText(spec.unit);
  const bool = spec.kind === "bool";
  return {
    width: spec.width,
    height: spec.height,
    padding: [10, 12, 0, 0],
    cursor: { drag: { x: false, y: false }, points: { size: 7 } },
    legend: { live: true },
    hooks: { setCursor: [showNewest] },
    scales: {
      x: { time: true, range: (u, lo, hi) => spec.xRange ?? [lo, hi] },
      y: {
        range: (u, lo, hi) => {
          if (bool) return [-0.1, 1.1];
          if (lo === null || hi === null) return [0, 1];
          return uPlot.rangeNum(spec.zero ? Math.min(0, lo) : lo, spec.zero ? Math.max(1, hi) : hi, 0.1, true);
        },
      },
    },
    series: [
      { label: "time", value: (u, v) => (v === null || v === undefined ? "–" : fmtWhen(v)) },
      {
        label: spec.label,
        stroke: "#2a62c9",
        width: 1.5,
        fill: "rgba(42, 98, 201, 0.08)",
        spanGaps: false,
        paths: bool ? uPlot.paths.stepped({ align: 1 }) : undefined,
        value: (u, v) => withUnit(fmtValue(v, spec.kind), bool ? "" : spec.unit),
      },
    ],
    axes: [
      { values: timeTicks, incrs: TIME_INCRS, space: 55, stroke: "#555", grid: { stroke: "#eee", width: 1 }, ticks: { stroke: "#ccc", width: 1 } },
      {
        label: bool ? "" : unit,
        labelSize: unit && !bool ? 18 : 0,
        size: (u, values) => Math.max(34, 14 + 7 * Math.max(0, ...(values || []).map((v) => String(v).length))),
        stroke: "#555",
        grid: { stroke: "#eee", width: 1 },
        ticks: { stroke: "#ccc", width: 1 },
        splits: bool ? () => [0, 1] : undefined,
        values: (u, splits, axisIdx, space, incr) => splits.map((v) => (bool ? (v >= 0.5 ? "true" : "false") : fmtTick(v, incr))),
      },
    ],
  };
}

// A chart in `container`, made once per key and spec and updated in place after that (so a
// poll does not lose the hover).
function ensureChart(key, container, spec) {
  const specKey = JSON.stringify([spec.label, spec.unit, spec.kind, spec.width, spec.height]);
  let c = state.charts.get(key);
  if (c && c.specKey === specKey && container.contains(c.u.root)) { c.spec.xRange = spec.xRange; return c; }
  if (c) { c.u.destroy(); c.wrap.remove(); }
  const wrap = el("div", { class: "chart-wrap", "data-chart": key });
  const empty = el("div", { class: "nodata" }, "no data yet");
  container.append(wrap);
  const s = { ...spec };
  const u = new uPlot(chartOptions(s), [[], []], wrap);
  wrap.append(empty);
  u.root.dataset.yLabel = spec.kind === "bool" ? "" : unitText(spec.unit);
  c = { u, wrap, empty, spec: s, specKey };
  state.charts.set(key, c);
  return c;
}

// points: [[ms, value | null], ...] in time order; a gap over maxGapMs breaks the line.
function setPoints(c, points, maxGapMs) {
  const xs = [], ys = [];
  let prev = null;
  for (const [t, v] of points) {
    if (!Number.isFinite(t)) continue;
    if (prev !== null && maxGapMs && t - prev > maxGapMs) { xs.push((prev + 1) / 1000); ys.push(null); }
    xs.push(t / 1000);
    ys.push(v === null || v === undefined ? null : Number(v)); // a bool as 0 / 1
    prev = t;
  }
  const n = ys.filter((v) => v !== null && Number.isFinite(v)).length;
  if (!xs.length) {
    // Nothing yet: the axes of the window alone.
    const [lo, hi] = c.spec.xRange ?? [Date.now() / 1000 - 600, Date.now() / 1000];
    xs.push(lo, hi); ys.push(null, null);
  }
  c.u.setData([xs, ys]);
  showNewest(c.u);
  c.empty.hidden = n > 0;
  c.u.root.dataset.points = String(n);
  const last = [...ys].reverse().find((v) => v !== null);
  c.u.root.setAttribute("role", "figure"); // the canvas summarised; the legend stays readable
  c.u.root.setAttribute("aria-label", n
    ? `${c.spec.label}: ${n} points from ${fmtWhen(xs[0])} to ${fmtWhen(xs[xs.length - 1])}, last ${withUnit(fmtValue(last, c.spec.kind), c.spec.kind === "bool" ? "" : c.spec.unit)}`
    : `${c.spec.label}: no data yet`);
}

// -- gateways -----------------------------------------------------------------------------

// Readings the cloud refused that the gateway holds and retries: "1,234 · cloud_unknown_device · oldest 3.0 h".
// The top reason only; every reason is in the title (and in the detail view).
function heldText(g) {
  const top = byCount(g.held);
  if (!g.held_total || !top.length) return "";
  const more = top.length > 1 ? ` (+${top.length - 1} more)` : "";
  return `${fmtNum(g.held_total)} · ${top[0][0]}${more} · oldest ${fmtAge(g.oldest_held_age_s)}`;
}
const heldTitle = (g) => byCount(g.held).map(([k, v]) => `${k}: ${fmtNum(v)}`).join("\n");

function rateOf(g) {
  const now = Date.now();
  const prev = state.prev.get(g.gateway_id);
  state.prev.set(g.gateway_id, { t: now, out: g.readings_out });
  if (!prev || g.readings_out === null || prev.out === null || now <= prev.t) return null;
  return Math.max(0, (g.readings_out - prev.out) / ((now - prev.t) / 1000));
}

function renderGateways(list) {
  const tbody = $("#gateways tbody");
  tbody.replaceChildren();
  const byDistrict = new Map();
  const counts = { online: 0, stale: 0, offline: 0 };
  let backlog = 0, rate = 0, held = 0;
  for (const g of list.gateways) {
    counts[g.status] += 1;
    backlog += g.backlog || 0;
    held += g.held_total || 0;
    const heldLine = heldText(g);
    const r = rateOf(g);
    rate += r || 0;
    const cert = g.cert_days_left;
    const certClass = cert === null ? "" : cert < 7 ? "bad" : cert < 30 ? "warn" : "";
    const row = el("tr", { class: "clickable", "data-gateway": g.gateway_id, "data-status": g.status, onclick: () => openDetail(g.gateway_id) },
      el("td", {}, g.gateway_id),
      el("td", {}, el("span", { class: `pill ${g.status}` }, g.status)),
      el("td", {}, fmtNum(g.backlog)),
      el("td", {}, fmtAge(g.oldest_unsent_age_s)),
      el("td", {}, r === null ? "…" : r.toFixed(1)),
      el("td", { title: reasons(g.drops), class: sum(g.drops) ? "warn" : "" }, fmtNum(sum(g.drops))),
      el("td", { title: reasons(g.rejected) }, fmtNum(sum(g.rejected))),
      heldLine ? el("td", { class: "warn held", title: heldTitle(g) }, heldLine) : el("td", { class: "muted" }, fmtNum(g.held_total ?? null)),
      el("td", {}, g.last_forward_at ? new Date(g.last_forward_at).toLocaleTimeString() : "–"),
      el("td", { class: certClass }, cert === null ? "–" : cert.toFixed(0)),
      el("td", {}, g.broker_connected === null ? "–" : g.broker_connected ? "connected" : "DISCONNECTED"));
    tbody.append(row);
    const district = g.gateway_id.split("-").slice(0, -1).join("-") || "(all)";
    if (!byDistrict.has(district)) byDistrict.set(district, []);
    byDistrict.get(district).push(g);
  }
  const districts = $("#districts");
  districts.replaceChildren(...[...byDistrict.entries()].map(([d, gs]) =>
    el("div", { class: "district" }, el("h3", {}, d),
      ...gs.map((g) => el("div", {}, el("span", { class: `pill ${g.status}` }, g.status), ` ${g.gateway_id} · backlog ${fmtNum(g.backlog)}`,
        ...(heldText(g) ? [el("div", { class: "warn held", "data-held": g.gateway_id, title: heldTitle(g) }, `held: ${heldText(g)}`)] : []))))));
  $("#summary").replaceChildren(
    el("span", {}, `${list.gateways.length} gateways`),
    el("span", {}, el("span", { class: "pill online" }, `${counts.online} online`)),
    el("span", {}, el("span", { class: "pill stale" }, `${counts.stale} stale`)),
    el("span", {}, el("span", { class: "pill offline" }, `${counts.offline} offline`)),
    el("span", {}, `backlog ${fmtNum(backlog)}`),
    ...(held ? [el("span", { class: "warn", id: "fleet-held", title: "readings the cloud refused, held at the gateways and retried" }, `held ${fmtNum(held)}`)] : []),
    el("span", { id: "fleet-rate" }, `${rate.toFixed(0)} readings/s`));
}

async function openDetail(id) {
  state.detail = id;
  $("#detail").hidden = false;
  $("#detail-id").textContent = id;
  await refreshDetail();
}

const DETAIL_CHART = { width: 400, height: 170, zero: true };

async function refreshDetail() {
  if (!state.detail) return;
  const d = await api(`/v1/gateways/${encodeURIComponent(state.detail)}?history=120`);
  const g = d.gateway;
  const heldRows = byCount(g.held).map(([k, v]) => el("li", {}, `${k}: ${fmtNum(v)}`));
  $("#detail-held").replaceChildren(...(heldRows.length
    ? [el("div", { class: "warn" }, `held: ${fmtNum(g.held_total)} readings the cloud refused, retried by the gateway · oldest ${fmtAge(g.oldest_held_age_s)}`), el("ul", {}, ...heldRows)]
    : []));
  const hist = [...d.history].reverse().map((h) => ({ ...h, t: Date.parse(h.last_heartbeat) }));
  // A heartbeat missing for over three of its usual intervals breaks the line (an outage).
  const steps = hist.slice(1).map((h, i) => h.t - hist[i].t).filter((x) => x > 0).sort((a, b) => a - b);
  const gap = steps.length ? 3 * steps[Math.floor(steps.length / 2)] : 0;
  const span = hist.length ? [hist[0].t / 1000, hist[hist.length - 1].t / 1000] : null;
  const chart = (key, label, unit) => ensureChart(key, $(`#chart-${key}`), { ...DETAIL_CHART, label, unit, kind: "number", xRange: span && span[1] > span[0] ? span : null });
  setPoints(chart("backlog", "backlog", "readings"), hist.map((h) => [h.t, h.backlog]), gap);
  // No oldest unsent reading when the backlog is empty: an age of 0, not a hole in the line.
  setPoints(chart("age", "oldest unsent", "s"), hist.map((h) => [h.t, h.backlog === 0 ? 0 : h.oldest_unsent_age_s]), gap);
  const rate = [];
  for (let i = 1; i < hist.length; i++) {
    const dt = (hist[i].t - hist[i - 1].t) / 1000;
    if (dt > 0 && hist[i].readings_out !== null && hist[i - 1].readings_out !== null) rate.push([hist[i].t, Math.max(0, (hist[i].readings_out - hist[i - 1].readings_out) / dt)]);
  }
  setPoints(chart("rate", "forwarded", "readings/s"), rate, gap);
}

// -- devices ------------------------------------------------------------------------------

function renderDeviceDistricts(list) {
  const by = new Map();
  for (const d of list.devices) {
    const k = d.district || "(no district)";
    const v = by.get(k) || { total: 0, silent: 0, types: new Set() };
    v.total += 1; if (d.silent) v.silent += 1; v.types.add(d.profile);
    by.set(k, v);
  }
  $("#device-districts").replaceChildren(...[...by.entries()].sort().map(([k, v]) =>
    el("div", { class: "district", "data-district": k }, el("h3", {}, k),
      el("div", {}, `${v.total} devices, ${v.types.size} sensor types`),
      el("div", { class: v.silent ? "warn" : "muted" }, `${v.silent} silent`))));
}

function renderSilent(list) {
  $("#silent-count").textContent = `(${list.silent})`;
  $("#silent tbody").replaceChildren(...list.devices.filter((d) => d.silent).slice(0, 200).map((d) =>
    el("tr", {}, el("td", {}, d.device_id), el("td", {}, d.profile), el("td", {}, d.district || "–"),
      el("td", {}, d.site || "–"), el("td", { class: "warn" }, d.last_seen ? fmtAge(d.silent_s) : "never seen"),
      el("td", {}, fmtAge(d.expected_interval_s)))));
}

// The last hour at one point a minute, averaged by the cloud (the read API's parameters are
// agg and interval_s). A profile with a bool or string field cannot be averaged (422): its
// last value of each minute instead, asked for directly from then on.
const lastOnly = new Set();
async function minuteSeries(d) {
  const path = `/v1/devices/${encodeURIComponent(d.device_id)}/series?interval_s=60&agg=`;
  if (!lastOnly.has(d.profile)) {
    try {
      return await api(`${path}mean`);
    } catch (e) {
      if (!/: HTTP 422$/.test(e.message)) throw e;
      lastOnly.add(d.profile);
    }
  }
  return api(`${path}last`);
}

// The fields a card can chart: numbers, and bools as a step line; in the profile's order.
function chartable(profile, fields) {
  const info = (f) => fieldOf(profile, f) ?? { name: f, type: "float", unit: null };
  const list = fields.filter((f) => f !== "seq").map(info).filter((f) => f.type !== "string");
  return [...list.filter((f) => f.type !== "bool"), ...list.filter((f) => f.type === "bool")];
}

function card(profileName, profile, fields) {
  let c = state.cards.get(profileName);
  const names = fields.map((f) => f.name).join(",");
  if (c && c.names === names) return c;
  if (c) { c.root.remove(); state.charts.get(`card-${profileName}`)?.u.destroy(); state.charts.delete(`card-${profileName}`); }
  const select = el("select", { "aria-label": `${profileName}: field to chart`, onchange: () => { state.cardField.set(profileName, select.value); drawCard(profileName); } },
    ...fields.map((f) => el("option", { value: f.name }, f.type === "bool" ? `${f.name} (true/false)` : unitText(f.unit) ? `${f.name} (${unitText(f.unit)})` : f.name)));
  const chosen = state.cardField.get(profileName);
  if (chosen && fields.some((f) => f.name === chosen)) select.value = chosen;
  c = {
    names, select,
    title: el("h3", {}), value: el("div", { class: "muted" }), plot: el("div", { class: "chart" }),
    root: el("div", { class: "card", "data-profile": profileName, title: profile ? `${profile.title} (${profileName} v${profile.version})` : profileName }),
  };
  c.root.append(c.title, c.value, el("div", { class: "card-controls" }, select), c.plot);
  state.cards.set(profileName, c);
  return c;
}

function drawCard(profileName) {
  const c = state.cards.get(profileName);
  if (!c || !c.answer) return;
  const { answer, device, profile } = c;
  const s = answer.series[0];
  const column = (f) => { const i = s.columns.indexOf(f); return i >= 0 ? i : s.columns.indexOf(`${answer.aggregate}_${f}`); };
  const hasData = (f) => { const i = column(f); return i >= 0 && s.values.some((v) => v[i] !== null); };
  // Until the operator picks one: the first field (in the profile's order) that has data.
  if (!state.cardField.has(profileName) && !hasData(c.select.value)) {
    const first = [...c.select.options].map((o) => o.value).find(hasData);
    if (first) c.select.value = first;
  }
  const field = c.select.value;
  const info = fieldOf(profile, field) ?? { type: "float", unit: null };
  const bool = info.type === "bool";
  const col = column(field);
  const pts = s.values.map((v) => [Date.parse(v[0]), col >= 0 ? v[col] : null]);
  const last = pts.filter((p) => p[1] !== null).slice(-1)[0];
  const unit = bool ? "" : info.unit;
  c.title.replaceChildren(`${profileName} · ${field}`, ...(unitText(unit) ? [" ", el("span", { class: "muted unit" }, `(${unitText(unit)})`)] : []));
  const how = answer.aggregate === "mean" ? "mean per minute" : "last value per minute";
  const lastText = last ? (bool ? String(Boolean(last[1])) : Number(last[1]).toFixed(2)) : "–";
  c.value.textContent = `${device.device_id} (${device.district || "–"}): ${withUnit(lastText, last ? unit : "")} · ${how}`;
  // From the first minute with data (at least the last 10 minutes) to the end of the hour asked
  // for: a device that fell silent shows as a line that stops short of the right edge.
  const end = Date.parse(answer.end) / 1000;
  const first = pts.find((p) => p[1] !== null);
  const range = [Math.max(Date.parse(answer.start) / 1000, Math.min(first ? first[0] / 1000 : end, end - 600)), end];
  const chart = ensureChart(`card-${profileName}`, c.plot, {
    label: field, unit, kind: bool ? "bool" : "number", width: 380, height: 160, zero: false,
    xRange: range.every(Number.isFinite) ? range : null,
  });
  // One point a minute: a missing minute or more breaks the line.
  setPoints(chart, pts, 2.5 * 60_000);
}

async function renderLatest(devices) {
  const byProfile = new Map();
  for (const d of devices.devices) if (d.last_seen && !byProfile.has(d.profile)) byProfile.set(d.profile, d);
  const shown = new Set();
  for (const [profileName, d] of byProfile) {
    try {
      const r = await minuteSeries(d);
      if (!r.series[0]) continue;
      const profile = profileOf(profileName, d.profile_version);
      const fields = chartable(profile, r.fields);
      if (!fields.length) continue;
      const c = card(profileName, profile, fields);
      Object.assign(c, { answer: r, device: d, profile });
      if (!c.root.isConnected) $("#latest").append(c.root);
      drawCard(profileName);
      shown.add(profileName);
    } catch (e) { if (e.message === "auth") throw e; }
  }
  for (const [profileName, c] of state.cards) {
    if (shown.has(profileName)) continue;
    state.charts.get(`card-${profileName}`)?.u.destroy();
    state.charts.delete(`card-${profileName}`);
    c.root.remove();
    state.cards.delete(profileName);
  }
}

// -- map (Leaflet) ------------------------------------------------------------------------

const DEVICE_STYLE = {
  reporting: { color: "#0f5a27", fillColor: "#1b7f3b" },
  silent: { color: "#7a4900", fillColor: "#e08a00" },
  never: { color: "#555", fillColor: "#aaa" },
};

function ensureMap() {
  if (state.map || !state.ctx || typeof L === "undefined") return state.map;
  const box = $("#map");
  // A view at once: Leaflet adds layers (and makes their elements) only to a map that has one.
  const map = L.map(box, { zoomSnap: 0.5, minZoom: 2, maxZoom: 19, worldCopyJump: true }).setView([20, 0], 2);
  const tiles = state.ctx.tiles;
  if (tiles) {
    const credit = tiles.attribution_url
      ? el("a", { href: tiles.attribution_url, target: "_blank", rel: "noopener noreferrer" }, tiles.attribution)
      : el("span", {}, tiles.attribution);
    // strict-origin: tile servers that ask for a Referer get this origin (the cloud sends
    // no-referrer everywhere else), never a path.
    L.tileLayer(tiles.url, { maxZoom: 19, attribution: credit.outerHTML, referrerPolicy: "strict-origin" }).addTo(map);
  } else {
    box.classList.add("no-tiles");
    map.attributionControl.addAttribution("no map tiles (dashboard_tile_url is not set)");
  }
  L.control.scale({ imperial: false }).addTo(map);
  box.after(el("div", { class: "map-legend" },
    el("span", {}, "gateways:"), el("span", { class: "swatch gw online" }), "online", el("span", { class: "swatch gw stale" }), "stale",
    el("span", { class: "swatch gw offline" }), "offline", el("span", { class: "swatch gw unknown" }), "no heartbeat",
    el("span", { class: "sep" }, "devices:"), el("span", { class: "swatch dev reporting" }), "reporting",
    el("span", { class: "swatch dev silent" }), "silent", el("span", { class: "swatch dev never" }), "never seen"));
  state.map = {
    map, fitted: "", devices: new Map(), gateways: new Map(), info: new Map(),
    deviceLayer: L.layerGroup().addTo(map), gatewayLayer: L.layerGroup().addTo(map),
  };
  return state.map;
}

function tipOf(key) {
  const i = state.map?.info.get(key);
  if (!i) return "";
  if (i.kind === "gateway") {
    const g = i.status;
    return el("div", { class: "map-tip" }, el("strong", {}, i.place.gateway_id), ` · ${g ? g.status : "no heartbeat"}`,
      el("div", {}, `${i.place.devices} devices${i.place.district ? ` · ${i.place.district}` : ""}`),
      ...(g ? [el("div", {}, `backlog ${fmtNum(g.backlog)} · last heartbeat ${fmtAge(g.heartbeat_age_s)} ago`)] : []),
      el("div", { class: "muted" }, "placed at the centre of its devices"));
  }
  const d = i.status;
  const p = profileOf(d.profile, d.profile_version);
  return el("div", { class: "map-tip" }, el("strong", {}, d.device_id), ` · ${p ? p.title : d.profile}`,
    el("div", {}, [d.district, d.site].filter(Boolean).join(" · ") || "–"),
    el("div", { class: d.silent ? "warn" : "" }, d.last_seen ? `last seen ${fmtAge(d.silent_s)} ago${d.silent ? " (silent)" : ""}` : "never seen"));
}

function renderMap(gatewayList, deviceList) {
  const m = ensureMap();
  if (!m) return;
  const places = new Map(state.ctx.devices.map((p) => [p.device_id, p]));
  const seen = new Set();
  const bounds = [];
  let unplaced = 0;
  for (const d of deviceList.devices) {
    const p = places.get(d.device_id);
    if (!p || p.lat === null || p.lon === null) { unplaced += 1; continue; }
    const status = d.silent ? (d.last_seen ? "silent" : "never") : "reporting";
    const key = `device:${d.device_id}`;
    let mk = m.devices.get(d.device_id);
    if (!mk) {
      mk = L.circleMarker([p.lat, p.lon], { radius: 5, weight: 1, fillOpacity: 0.85 }).addTo(m.deviceLayer);
      mk.bindTooltip(() => tipOf(key));
      m.devices.set(d.device_id, mk);
    } else mk.setLatLng([p.lat, p.lon]);
    mk.setStyle(DEVICE_STYLE[status]);
    const e = mk.getElement();
    e.setAttribute("data-device", d.device_id);
    e.setAttribute("data-status", status);
    m.info.set(key, { kind: "device", status: d });
    seen.add(d.device_id);
    bounds.push([p.lat, p.lon]);
  }
  for (const [id, mk] of m.devices) if (!seen.has(id)) { mk.remove(); m.devices.delete(id); m.info.delete(`device:${id}`); }

  // Gateways sharing a spot are stacked so that each stays visible and clickable.
  const statuses = new Map(gatewayList.gateways.map((g) => [g.gateway_id, g]));
  const placed = state.ctx.gateways.filter((g) => g.lat !== null && g.lon !== null);
  const spots = new Map();
  for (const g of placed) {
    const spot = `${g.lat.toFixed(4)},${g.lon.toFixed(4)}`;
    spots.set(spot, [...(spots.get(spot) || []), g.gateway_id]);
  }
  const seenGw = new Set();
  for (const g of placed) {
    const status = statuses.get(g.gateway_id)?.status ?? "unknown";
    const spot = spots.get(`${g.lat.toFixed(4)},${g.lon.toFixed(4)}`);
    const shift = (spot.indexOf(g.gateway_id) - (spot.length - 1) / 2) * 22;
    const key = `gateway:${g.gateway_id}`;
    // A box and the gateway's id (never Leaflet's default marker, whose images are not shipped).
    const icon = () => L.divIcon({ className: `cg-gateway ${status}`, html: el("span", { class: "cg-gateway-label" }, g.gateway_id), iconSize: [18, 18], iconAnchor: [9, 9 - shift] });
    let mk = m.gateways.get(g.gateway_id);
    if (!mk) {
      mk = L.marker([g.lat, g.lon], { icon: icon(), keyboard: true, riseOnHover: true, zIndexOffset: 1000 }).addTo(m.gatewayLayer);
      mk.bindTooltip(() => tipOf(key), { direction: "top", offset: [0, -8] });
      mk.on("click", () => openDetail(g.gateway_id));
      m.gateways.set(g.gateway_id, mk);
    } else {
      mk.setLatLng([g.lat, g.lon]);
      const was = mk.options.icon.options;
      if (was.className !== `cg-gateway ${status}` || was.iconAnchor[1] !== 9 - shift) mk.setIcon(icon());
    }
    const e = mk.getElement();
    e.setAttribute("data-gateway", g.gateway_id);
    e.setAttribute("data-status", status);
    e.setAttribute("aria-label", `gateway ${g.gateway_id}: ${status}`);
    m.info.set(key, { kind: "gateway", place: g, status: statuses.get(g.gateway_id) ?? null });
    seenGw.add(g.gateway_id);
    bounds.push([g.lat, g.lon]);
  }
  for (const [id, mk] of m.gateways) if (!seenGw.has(id)) { mk.remove(); m.gateways.delete(id); m.info.delete(`gateway:${id}`); }

  // Fit the view when what is on the map changes (not on every poll: the operator may have panned).
  const fit = `${seen.size}/${seenGw.size}`;
  if (fit !== m.fitted) {
    m.fitted = fit;
    if (bounds.length) m.map.fitBounds(bounds, { paddingTopLeft: [40, 30], paddingBottomRight: [130, 30], maxZoom: 16 });
    else m.map.setView([20, 0], 2);
  }
  const nGw = state.ctx.gateways.length;
  $("#map-note").textContent = bounds.length
    ? `(${seen.size} devices, ${seenGw.size} of ${nGw} gateways${unplaced ? `; ${unplaced} device${unplaced === 1 ? "" : "s"} without lat/lon` : ""}; click a gateway for its history)`
    : "(no device in the inventory has a position: citygate pki issue device --lat --lon)";
}

// -- polling ------------------------------------------------------------------------------

async function poll() {
  const context = loadContext();
  // The cases panel (cases.js) once the context says whether the service layer runs; its own
  // errors, so that neither view holds up the other.
  context.then(() => { if (typeof pollCases === "function") pollCases(); }, () => {});
  try {
    const [gateways, devices] = await Promise.all([api("/v1/gateways"), api("/v1/devices"), context]);
    renderGateways(gateways);
    renderSilent(devices);
    renderDeviceDistricts(devices);
    renderMap(gateways, devices);
    await refreshDetail();
    await renderLatest(devices);
    $("#error").textContent = "";
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e.message !== "auth") $("#error").textContent = `Update failed: ${e.message}`;
  }
}

function start() {
  $("#login").hidden = true; $("#main").hidden = false; $("#logout").hidden = false;
  state.map?.map.invalidateSize();
  poll();
  state.timer = setInterval(poll, POLL_MS);
}

function signOut(message = "") {
  sessionStorage.removeItem("citygate-token");
  state.token = null;
  clearInterval(state.timer);
  $("#main").hidden = true; $("#logout").hidden = true; $("#login").hidden = false;
  $("#login-error").textContent = message;
}

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("citygate-token", state.token);
  start();
});
$("#logout").addEventListener("click", () => signOut());
$("#detail-close").addEventListener("click", () => { state.detail = null; $("#detail").hidden = true; });

if (state.token) start(); else signOut();
