// citygate operator dashboard: polls the fleet API and draws tables and small SVG charts.
// No dependencies; everything comes from this origin.
"use strict";

// ?poll=<ms> overrides the refresh period (the browser test uses a short one).
const POLL_MS = Math.max(500, Number(new URLSearchParams(location.search).get("poll")) || 5000);
const state = { token: sessionStorage.getItem("citygate-token"), prev: new Map(), detail: null, timer: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
};

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
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

function drawLine(svg, points) {
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const ys = points.map((p) => p[1]).filter((v) => v !== null && Number.isFinite(v));
  if (points.length < 2 || !ys.length) { const t = document.createElementNS(ns, "text"); t.setAttribute("x", 4); t.setAttribute("y", 40); t.textContent = "no data yet"; svg.append(t); return; }
  const xs = points.map((p) => p[0]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(0, ...ys), Math.max(1, ...ys)];
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.filter((p) => p[1] !== null).map(([x, y]) =>
    `${(((x - x0) / (x1 - x0 || 1)) * 290 + 5).toFixed(1)},${(75 - ((y - y0) / (y1 - y0 || 1)) * 65).toFixed(1)}`).join(" "));
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 9); label.textContent = `max ${fmtNum(Math.round(y1 * 10) / 10)}`;
  svg.append(line, label);
}

async function openDetail(id) {
  state.detail = id;
  $("#detail").hidden = false;
  $("#detail-id").textContent = id;
  await refreshDetail();
}

async function refreshDetail() {
  if (!state.detail) return;
  const d = await api(`/v1/gateways/${encodeURIComponent(state.detail)}?history=120`);
  const g = d.gateway;
  const heldRows = byCount(g.held).map(([k, v]) => el("li", {}, `${k}: ${fmtNum(v)}`));
  $("#detail-held").replaceChildren(...(heldRows.length
    ? [el("div", { class: "warn" }, `held: ${fmtNum(g.held_total)} readings the cloud refused, retried by the gateway · oldest ${fmtAge(g.oldest_held_age_s)}`), el("ul", {}, ...heldRows)]
    : []));
  const hist = [...d.history].reverse().map((h) => ({ t: Date.parse(h.last_heartbeat), ...h }));
  drawLine($("#chart-backlog"), hist.map((h) => [h.t, h.backlog]));
  drawLine($("#chart-age"), hist.map((h) => [h.t, h.oldest_unsent_age_s]));
  const rate = [];
  for (let i = 1; i < hist.length; i++) {
    const dt = (hist[i].t - hist[i - 1].t) / 1000;
    if (dt > 0 && hist[i].readings_out !== null && hist[i - 1].readings_out !== null) rate.push([hist[i].t, Math.max(0, (hist[i].readings_out - hist[i - 1].readings_out) / dt)]);
  }
  drawLine($("#chart-rate"), rate);
}

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

async function renderLatest(devices) {
  const byProfile = new Map();
  for (const d of devices.devices) if (d.last_seen && !byProfile.has(d.profile)) byProfile.set(d.profile, d);
  const cards = [];
  for (const [profile, d] of byProfile) {
    try {
      const r = await minuteSeries(d);
      const s = r.series[0];
      if (!s) continue;
      const field = r.fields.find((f) => f !== "seq") || r.fields[0];
      const col = s.columns.indexOf(field.startsWith("mean") ? field : `mean_${field}`) >= 0 ? s.columns.indexOf(`mean_${field}`) : s.columns.indexOf(field);
      const pts = s.values.map((v) => [Date.parse(v[0]), v[col >= 0 ? col : 1]]);
      const last = pts.filter((p) => p[1] !== null).slice(-1)[0];
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 300 80");
      drawLine(svg, pts);
      cards.push(el("div", { class: "card" }, el("h3", {}, `${profile} · ${field}`),
        el("div", { class: "muted" }, `${d.device_id} (${d.district || "–"}): ${last ? Number(last[1]).toFixed(2) : "–"}`), svg));
    } catch (e) { if (e.message === "auth") throw e; }
  }
  $("#latest").replaceChildren(...cards);
}

async function poll() {
  try {
    const [gateways, devices] = await Promise.all([api("/v1/gateways"), api("/v1/devices")]);
    renderGateways(gateways);
    renderSilent(devices);
    renderDeviceDistricts(devices);
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
