// The public progress page: draws /public/v1/progress. No library, no inline code (the page's
// Content-Security-Policy allows scripts and styles from this origin only); every text goes in
// with textContent, never as HTML.
"use strict";

(() => {
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const NUMBER = new Intl.NumberFormat("en");

  // -- formatting (tests/progress/test_page_browser.py formats the JSON the same way) --------

  function count(v) {
    return typeof v === "number" ? NUMBER.format(v) : String(v);
  }

  function duration(s) {
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  function share(v) {
    return typeof v === "number" ? `${Math.round(v * 100)} %` : String(v);
  }

  function weekLabel(iso) {
    const [, m, d] = iso.split("-").map(Number);
    return `${d} ${MONTHS[m - 1]}`;
  }

  function time(rfc3339) {
    return new Date(rfc3339).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // -- DOM helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function fig(name, text, extra) {
    return el("span", Object.assign({ class: "value", "data-fig": name }, extra), text);
  }

  function kpi(label, value, note) {
    return el("div", { class: "kpi" }, el("span", { class: "label" }, label), value,
      note ? el("span", { class: "note" }, note) : null);
  }

  function hiddenLike(v) {
    return typeof v !== "number";
  }

  // -- the weekly chart: two bars a week, heights by CSSOM (allowed by the CSP) ----------------

  function bars(weeks, opened, closed, big) {
    const numbers = [...opened, ...closed].filter((v) => typeof v === "number");
    const top = Math.max(1, ...numbers);
    const chart = el("div", { class: big ? "bars big" : "bars", role: "img" });
    const said = [];
    weeks.forEach((w, i) => {
      const col = el("div", { class: w.partial ? "week partial" : "week" });
      const pair = el("div", { class: "pair" });
      for (const [kind, v] of [["opened", opened[i]], ["closed", closed[i]]]) {
        const bar = el("span", { class: `bar ${kind}${hiddenLike(v) ? " suppressed" : ""}` });
        bar.style.height = hiddenLike(v) ? "" : `${Math.round((v / top) * 100)}%`;
        bar.title = `${weekLabel(w.start)}: ${kind} ${count(v)}`;
        pair.append(bar);
      }
      col.append(pair);
      if (big) col.append(el("span", { class: "tick" }, weekLabel(w.start)));
      chart.append(col);
      said.push(`${weekLabel(w.start)}: opened ${count(opened[i])}, closed ${count(closed[i])}`);
    });
    chart.setAttribute("aria-label", said.join("; "));
    return chart;
  }

  function weekTable(weeks, area) {
    const body = el("tbody");
    weeks.forEach((w, i) => {
      body.append(el("tr", { "data-week": String(i) },
        el("th", { scope: "row" }, weekLabel(w.start) + (w.partial ? " (so far)" : "")),
        el("td", { "data-fig": "opened" }, count(area.opened_per_week[i])),
        el("td", { "data-fig": "closed" }, count(area.closed_per_week[i]))));
    });
    return el("details", { class: "numbers" },
      el("summary", {}, "The numbers, week by week"),
      el("table", { class: "weeks" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Week from"),
          el("th", { scope: "col" }, "Opened"), el("th", { scope: "col" }, "Closed"))),
        body));
  }

  // -- a service ----------------------------------------------------------------------------

  function ages(area) {
    return typeof area.open_age === "string"
      ? [area.open_age, area.open_age]
      : [duration(area.open_age.median_s), duration(area.open_age.oldest_s)];
  }

  function times(d) {
    return typeof d === "string" ? [d, d] : [duration(d.p50_s), duration(d.p90_s)];
  }

  function targetText(t) {
    if (!t) return "No target set for this service.";
    return `Target: acknowledged within ${duration(Math.round(t.acknowledge_s))}, `
      + `closed within ${duration(Math.round(t.resolve_s))}.`;
  }

  function districtRow(area, hasTarget, weeks) {
    const [median, oldest] = ages(area);
    const [ack] = times(area.acknowledge);
    const [close] = times(area.close);
    const name = area.district === null ? "no district" : area.district;
    const cell = (label, figName, text) => el("td", { "data-label": label, "data-fig": figName }, text);
    return el("tr", { "data-district": area.district === null ? "" : area.district },
      el("th", { scope: "row" }, name),
      cell("Open", "open", count(area.open)),
      cell("Median age", "open-median", median),
      cell("Oldest", "open-oldest", oldest),
      hasTarget ? cell("Past target", "past-target", count(area.open_past_target)) : null,
      cell("Acknowledge p50", "ack-p50", ack),
      cell("Close p50", "close-p50", close),
      hasTarget ? cell("Closed in target", "close-share", share(area.closed_within_target)) : null,
      el("td", { "data-label": "Weekly", class: "spark" },
        bars(weeks, area.opened_per_week, area.closed_per_week, false)));
  }

  function service(s, weeks, k) {
    const t = s.total;
    const hasTarget = s.target !== null;
    const [median, oldest] = ages(t);
    const [ack50, ack90] = times(t.acknowledge);
    const [close50, close90] = times(t.close);
    const id = `svc-${s.service.replace(/[^A-Za-z0-9_-]/g, "-")}`;
    const kpis = el("div", { class: "kpis" },
      kpi("Open now", fig("open", count(t.open))),
      kpi("Median age", fig("open-median", median), el("span", {}, "oldest ", fig("open-oldest", oldest))),
      hasTarget ? kpi("Past target", fig("past-target", count(t.open_past_target)), "open, older than the target") : null,
      kpi("Time to acknowledge", fig("ack-p50", ack50), el("span", {}, "p50 · p90 ", fig("ack-p90", ack90))),
      kpi("Time to close", fig("close-p50", close50), el("span", {}, "p50 · p90 ", fig("close-p90", close90))),
      hasTarget ? kpi("Closed within target", fig("close-share", share(t.closed_within_target)),
        el("span", {}, "acknowledged in time ", fig("ack-share", share(t.acknowledged_within_target)))) : null);
    const sources = el("p", { class: "sources" },
      "Open now: ", fig("open-sensor", count(s.open_by_source.sensor)), " from sensors, ",
      fig("open-citizen", count(s.open_by_source.citizen)), " from residents. In the weeks shown: ",
      fig("opened", count(s.opened)), " opened (", fig("opened-sensor", count(s.opened_by_source.sensor)),
      " sensors, ", fig("opened-citizen", count(s.opened_by_source.citizen)), " residents), ",
      fig("closed", count(s.closed)), " closed.");
    const head = el("tr", {},
      el("th", { scope: "col" }, "District"), el("th", { scope: "col" }, "Open"),
      el("th", { scope: "col" }, "Median age"), el("th", { scope: "col" }, "Oldest"),
      hasTarget ? el("th", { scope: "col" }, "Past target") : null,
      el("th", { scope: "col" }, "Acknowledge p50"), el("th", { scope: "col" }, "Close p50"),
      hasTarget ? el("th", { scope: "col" }, "Closed in target") : null,
      el("th", { scope: "col" }, "Opened · closed per week"));
    const rows = el("tbody", {}, ...s.districts.map((d) => districtRow(d, hasTarget, weeks)));
    return el("section", { class: "service", id, "data-service": s.service, "aria-labelledby": `${id}-h` },
      el("h2", { id: `${id}-h` }, s.service),
      el("p", { class: "target muted" }, targetText(s.target)),
      kpis,
      sources,
      el("figure", { class: "chart" },
        bars(weeks, t.opened_per_week, t.closed_per_week, true),
        el("figcaption", { class: "legend" },
          el("span", { class: "key opened" }), "opened ", el("span", { class: "key closed" }), "closed ",
          el("span", { class: "key suppressed" }), `not shown (${k})`)),
      weekTable(weeks, t),
      el("div", { class: "table-wrap" }, el("table", { class: "districts" }, el("thead", {}, head), rows)));
  }

  // -- the page -----------------------------------------------------------------------------

  function draw(p) {
    document.getElementById("title").textContent = p.title;
    document.title = p.title;
    document.getElementById("k-label").textContent = p.suppressed;
    document.getElementById("k").textContent = String(p.min_cases);
    const updated = document.getElementById("updated");
    const every = duration(Math.round(p.refresh_s));
    updated.textContent = p.stale
      ? `These figures are from ${time(p.refreshed_at)}: the latest refresh failed.`
      : `Updated ${time(p.refreshed_at)}, every ${every}. Weeks start on Monday (${p.timezone}).`;
    updated.dataset.refreshedAt = p.refreshed_at;

    const city = document.getElementById("city");
    city.replaceChildren(
      kpi("Open cases now", fig("open", count(p.city.open))),
      kpi(`Opened in ${p.weeks.length} weeks`, fig("opened", count(p.city.opened))),
      kpi(`Closed in ${p.weeks.length} weeks`, fig("closed", count(p.city.closed))));
    city.hidden = false;

    const nav = document.getElementById("nav");
    nav.replaceChildren(...p.services.map((s) =>
      el("a", { href: `#svc-${s.service.replace(/[^A-Za-z0-9_-]/g, "-")}` }, s.service)));
    nav.hidden = p.services.length < 2;

    const services = document.getElementById("services");
    services.replaceChildren(...p.services.map((s) => service(s, p.weeks, p.suppressed)));
    if (!p.services.length) services.append(el("p", { class: "muted" }, "No cases yet."));
    document.body.dataset.loaded = p.refreshed_at;
  }

  async function load() {
    const error = document.getElementById("error");
    let next = 60;
    try {
      const resp = await fetch("/public/v1/progress", { headers: { Accept: "application/json" } });
      if (resp.status === 429 || resp.status === 503) {
        next = Number(resp.headers.get("Retry-After")) || 60;
        throw new Error(resp.status === 429 ? "Too many requests from here; trying again shortly."
          : "The figures are not available yet; trying again shortly.");
      }
      if (!resp.ok) throw new Error(`The figures could not be loaded (HTTP ${resp.status}).`);
      const p = await resp.json();
      draw(p);
      error.hidden = true;
      next = Math.max(60, p.refresh_s);
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
    setTimeout(load, next * 1000);
  }

  document.addEventListener("DOMContentLoaded", load);
})();
