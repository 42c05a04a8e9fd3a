// citygate operator dashboard: the cases panel. Lists the service layer's open cases
// (/v1/cases), shows one with its history, and acknowledges, assigns, resolves or closes it
// with the operator token the page keeps (app.js: state, $, el, signOut). The cloud records
// every change under that token's name. Without [cloud.service] (the dashboard context's
// service_layer is false, or the API answers 404 service_layer_off) the panel says so.
"use strict";

// Which statuses each button applies from (citygate.service.cases.OPERATOR_ACTIONS).
const WORKING = ["new", "acknowledged", "assigned", "in_progress"];
const CASE_BUTTONS = {
  acknowledge: ["new"],
  assign: WORKING,
  resolve: WORKING,
  close: [...WORKING, "resolved"],
};

const cases = {
  detail: null, // the id of the case shown, or null
  shown: null, // that case as last fetched
  services: new Set(), // filter choices: every service and district seen so far
  districts: new Set(),
  busy: false, // an action is in flight
};

// FastAPI's validation errors are a list: "body.note: String should have at most 2000 characters".
function detailText(status, body) {
  const d = body?.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((x) => `${(x.loc || []).join(".")}: ${x.msg}`).join("; ");
  return `HTTP ${status}`;
}

class ApiError extends Error {
  constructor(status, body) {
    super(detailText(status, body));
    this.status = status;
    this.error = body?.error ?? null;
  }
}

// The API's JSON answer; ApiError (with the API's "error" and "detail") otherwise.
async function casesApi(path, body) {
  const init = { headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401 || resp.status === 403) { signOut("That token is not an operator token."); throw new Error("auth"); }
  let doc = null;
  try { doc = await resp.json(); } catch { /* no JSON body */ }
  if (!resp.ok) throw new ApiError(resp.status, doc);
  return doc;
}

// "2026-12-02T13:57:18.526171359Z" -> the browser's local time (JS dates stop at milliseconds).
function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
const statusPill = (status) => el("span", { class: `pill case-${status}` }, status.replace("_", " "));

function showServiceOff(message) {
  $("#cases-body").hidden = true;
  const off = $("#cases-off");
  off.hidden = false;
  off.textContent = `service layer off: ${message}`;
  $("#cases-counts").textContent = "";
}

// -- the list -----------------------------------------------------------------------------

function caseQuery() {
  const q = new URLSearchParams({ limit: "200" });
  for (const [key, sel] of [["status", "#case-status"], ["service", "#case-service"], ["district", "#case-district"]]) {
    if ($(sel).value) q.set(key, $(sel).value);
  }
  return q;
}

// Keep a filter's options the values seen so far (the chosen one stays chosen).
function fillChoices(sel, values) {
  const box = $(sel);
  const have = new Set([...box.options].map((o) => o.value));
  for (const v of [...values].sort()) if (!have.has(v)) box.append(el("option", { value: v }, v));
}

function renderCases(list) {
  for (const c of list.cases) {
    cases.services.add(c.service);
    if (c.district) cases.districts.add(c.district);
  }
  fillChoices("#case-service", cases.services);
  fillChoices("#case-district", cases.districts);
  const counts = Object.entries(list.counts).map(([s, n]) => `${n} ${s.replace("_", " ")}`);
  $("#cases-counts").textContent = counts.length ? `(open: ${counts.join(", ")})` : "(none open)";
  $("#case-list tbody").replaceChildren(...list.cases.map((c) =>
    el("tr", { class: "clickable", "data-case": String(c.id), "data-status": c.status, onclick: () => openCase(c.id) },
      el("td", {}, String(c.id)),
      el("td", {}, statusPill(c.status)),
      el("td", { class: c.severity === "critical" ? "bad" : c.severity === "warning" ? "warn" : "" }, c.severity),
      el("td", {}, c.service),
      el("td", {}, c.district || "–"),
      el("td", {}, c.subject),
      el("td", { class: "case-title", title: c.detail || "" }, c.title),
      el("td", {}, c.assignee || "–"),
      el("td", { title: c.opened_at }, fmtTime(c.opened_at)))));
  $("#cases-empty").hidden = list.cases.length > 0;
}

// Called by app.js on every poll; never holds up the fleet view (nor the other way round).
async function pollCases() {
  if (state.ctx && state.ctx.service_layer === false) {
    showServiceOff("this cloud runs without [cloud.service], so there are no cases");
    return;
  }
  try {
    renderCases(await casesApi(`/v1/cases?${caseQuery()}`));
    $("#cases-body").hidden = false;
    $("#cases-off").hidden = true;
    $("#cases-error").textContent = "";
    if (cases.detail !== null && !cases.busy) await refreshCase();
  } catch (e) {
    if (e.message === "auth") return;
    if (e.error === "service_layer_off") showServiceOff(e.message);
    else $("#cases-error").textContent = `Cases: ${e.message}`;
  }
}

// -- one case -----------------------------------------------------------------------------

async function openCase(id) {
  cases.detail = id;
  $("#case-detail").hidden = false;
  $("#case-detail-id").textContent = String(id);
  $("#case-action-error").textContent = "";
  await refreshCase();
}

function closeCase() {
  cases.detail = null;
  cases.shown = null;
  $("#case-detail").hidden = true;
}

async function refreshCase() {
  const id = cases.detail;
  let doc;
  try {
    doc = await casesApi(`/v1/cases/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.message !== "auth" && id === cases.detail) $("#case-action-error").textContent = e.message;
    return;
  }
  if (id !== cases.detail) return; // another case was opened meanwhile
  renderCase(doc.case, doc.history);
}

function renderCase(c, history) {
  cases.shown = c;
  const detail = $("#case-detail");
  detail.dataset.case = String(c.id);
  detail.dataset.status = c.status;
  $("#case-detail-status").replaceChildren(statusPill(c.status));
  const facts = [
    ["title", c.title], ["rule", c.rule], ["subject", c.subject], ["service", c.service],
    ["severity", c.severity], ["district", c.district], ["site", c.site], ["assignee", c.assignee],
    ["opened", fmtTime(c.opened_at)], ["condition since", c.condition_at ? fmtTime(c.condition_at) : null],
    ["condition cleared", c.cleared_at ? fmtTime(c.cleared_at) : null], ["occurrences", String(c.occurrences)],
    ["merged into", c.merged_into === null ? null : `case ${c.merged_into}`], ["detail", c.detail],
  ].filter(([, v]) => v !== null && v !== "");
  $("#case-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)]));
  setButtons();
  $("#case-history tbody").replaceChildren(...history.map((h) =>
    el("tr", { "data-action": h.action, "data-actor": h.actor },
      el("td", { title: h.at }, fmtTime(h.at)),
      el("td", {}, h.actor),
      el("td", {}, h.data?.assignee ? `${h.action} (${h.data.assignee})` : h.action),
      el("td", {}, h.from_status && h.from_status !== h.to_status ? `${h.from_status} → ${h.to_status}` : h.to_status),
      el("td", { class: "case-note" }, h.note || ""))));
}

// A button is enabled when the case's status allows its action and no action is in flight.
function setButtons() {
  const c = cases.shown;
  for (const button of document.querySelectorAll("#case-actions button[data-action]")) {
    const allowed = c !== null && CASE_BUTTONS[button.dataset.action].includes(c.status);
    button.disabled = cases.busy || !allowed;
    button.title = allowed || c === null ? "" : `not possible while the case is ${c.status.replace("_", " ")}`;
  }
}

async function caseAction(action) {
  const c = cases.shown;
  if (!c || cases.busy) return;
  const body = { action, note: $("#case-note").value.trim() };
  if (action === "assign") {
    body.assignee = $("#case-assignee").value.trim();
    if (!body.assignee) { $("#case-action-error").textContent = "Who takes the case? Fill in the assignee."; return; }
  }
  cases.busy = true;
  setButtons();
  $("#case-action-error").textContent = "";
  try {
    await casesApi(`/v1/cases/${encodeURIComponent(c.id)}/actions`, body);
    $("#case-note").value = "";
    if (action === "assign") $("#case-assignee").value = "";
  } catch (e) {
    if (e.message === "auth") return;
    // 409: not possible in the case's status, or another operator acted first.
    $("#case-action-error").textContent = e.status === 409 ? `Not done: ${e.message}` : `Not done (HTTP ${e.status}): ${e.message}`;
  } finally {
    cases.busy = false;
    setButtons();
  }
  await pollCases(); // the list and the open case as they are now
}

// -- wiring -------------------------------------------------------------------------------

for (const sel of ["#case-status", "#case-service", "#case-district"]) $(sel).addEventListener("change", () => pollCases());
$("#case-filters").addEventListener("submit", (ev) => ev.preventDefault());
$("#case-actions").addEventListener("submit", (ev) => ev.preventDefault());
$("#case-detail-close").addEventListener("click", closeCase);
for (const button of document.querySelectorAll("#case-actions button[data-action]")) {
  button.addEventListener("click", () => caseAction(button.dataset.action));
}

// app.js started polling before this file loaded (a token kept from earlier in this tab) and
// already has the context: the first look now rather than at the next poll.
if (state.token && state.ctx) pollCases();
