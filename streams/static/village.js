/* Smart-village layer of the situation board (issue 13): unemployment per kelurahan for a
 * month from the RT reports, completeness beside it, and a kelurahan's RWs with the reports
 * that need review. Kept apart from board.js: it only adds its own elements, recolours the
 * kelurahan paths through a data attribute while its layer is on, and takes the map's clicks
 * only then. Everything from the API is placed with textContent, never as markup: reasons can
 * quote what a partner sent. */
"use strict";

(() => {
  const REFRESH_MS = 5000;
  // upper bounds of the colour classes of the open unemployment rate
  const CLASSES = [[0.05, "1", "< 5%"], [0.075, "2", "5–7.5%"], [0.10, "3", "7.5–10%"],
    [0.125, "4", "10–12.5%"], [Infinity, "5", "≥ 12.5%"]];
  const state = { layer: "situations", period: null, selected: null, timer: null, paths: null };

  const url = (path) => new URL(path, document.baseURI).toString();
  const rateClass = (rate) => (rate === null || rate === undefined ? "none"
    : CLASSES.find(([limit]) => rate < limit)[1]);
  const pct = (ratio) => (ratio === null || ratio === undefined ? "–"
    : `${(Math.round(ratio * 1000) / 10).toFixed(1)}%`);

  function node(tag, attrs, text) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, value);
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  function build() {
    const wrap = document.querySelector(".map-wrap");
    const bar = node("div", { id: "layers", class: "layers", role: "group", "aria-label": "Map layer" });
    for (const [layer, text] of [["situations", "Situations"], ["unemployment", "Unemployment (RT reports)"]]) {
      const button = node("button", { type: "button", "data-layer": layer,
        "aria-pressed": String(layer === state.layer) }, text);
      button.addEventListener("click", () => setLayer(layer));
      bar.append(button);
    }
    const select = node("select", { id: "village-period", "aria-label": "Month" });
    select.hidden = true;
    select.addEventListener("change", () => { state.period = select.value; refresh(); });
    bar.append(select);
    wrap.append(bar);
    const legend = node("div", { id: "village-legend", class: "village-legend", "aria-label": "Unemployment legend" });
    legend.hidden = true;
    legend.append(node("div", { class: "vtitle" }, "Open unemployment rate"));
    for (const [, cls, text] of [...CLASSES, [null, "none", "no VALID report"]]) {
      const row = node("div", { class: "row", "data-class": cls });
      row.append(node("span", { class: "swatch" }), node("span", {}, text));
      legend.append(row);
    }
    wrap.append(legend);
    const panel = node("section", { id: "village", class: "village" });
    panel.hidden = true;
    document.querySelector(".side").prepend(panel);
    // while the layer is on, a click on a kelurahan opens its RWs, not its situation
    document.getElementById("map").addEventListener("click", (event) => {
      if (state.layer !== "unemployment") return;
      const path = event.target.closest ? event.target.closest("path.ward") : null;
      if (!path) return;
      event.stopPropagation();
      openKelurahan(path.getAttribute("data-code"));
    }, true);
  }

  function setLayer(layer) {
    state.layer = layer;
    document.body.setAttribute("data-layer", layer);
    for (const button of document.querySelectorAll("#layers button")) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-layer") === layer));
    }
    const on = layer === "unemployment";
    document.getElementById("village").hidden = !on;
    document.getElementById("village-legend").hidden = !on;
    document.getElementById("village-period").hidden = !on;
    clearInterval(state.timer);
    state.timer = null;
    if (on) {
      refresh();
      state.timer = setInterval(refresh, REFRESH_MS);
    }
  }

  async function getJson(path) {
    const response = await fetch(url(path), { cache: "no-store" });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  const query = () => (state.period ? `?period=${encodeURIComponent(state.period)}` : "");

  async function refresh() {
    let body;
    try {
      body = await getJson(`../api/neighbourhoods${query()}`);
    } catch (error) {
      document.getElementById("village").setAttribute("data-error", String(error));
      return;
    }
    state.period = body.period;
    renderPeriods(body.periods, body.period);
    renderMap(body.kelurahan);
    renderOverview(body);
    if (state.selected && !editing()) openKelurahan(state.selected);
  }

  // A reviewer typing a note or a correction keeps the form: the refresh rebuilds the detail
  // only when no review input has focus or holds a value (a sent decision clears its form).
  function editing() {
    const detail = document.getElementById("village-detail");
    if (!detail) return false;
    const active = document.activeElement;
    if (active && detail.contains(active) && active.matches("input, textarea")) return true;
    return [...detail.querySelectorAll(".decide input")].some((input) => input.value !== "");
  }

  function renderPeriods(periods, chosen) {
    const select = document.getElementById("village-period");
    const have = [...select.options].map((option) => option.value).join(",");
    if (have !== periods.join(",")) {
      select.replaceChildren(...periods.map((period) => node("option", { value: period }, period)));
    }
    if (chosen) select.value = chosen;
  }

  function renderMap(kelurahan) {
    for (const item of kelurahan) {
      const path = document.querySelector(`path.ward[data-code="${CSS.escape(item.kelurahan_code)}"]`);
      if (!path) continue;
      const indicator = item.indicator;
      path.setAttribute("data-unemployment", rateClass(indicator && indicator.unemployment_rate));
      path.setAttribute("data-rate", indicator ? pct(indicator.unemployment_rate) : "–");
      path.setAttribute("data-completeness", indicator ? pct(indicator.completeness) : "0.0%");
    }
  }

  function figures(indicator) {
    const line = node("div", { class: "figs" });
    const add = (name, value) => {
      const span = node("span", { "data-key": name });
      span.append(node("b", {}, value), document.createTextNode(` ${name}`));
      line.append(span);
    };
    add("unemployed", indicator ? pct(indicator.unemployment_rate) : "–");
    add("reported", indicator ? `${pct(indicator.completeness)} (${indicator.rt_reported}/${indicator.rt_registered} RT)` : "0 RT");
    add("need review", indicator ? String(indicator.rt_needs_review) : "0");
    return line;
  }

  function renderOverview(body) {
    const panel = document.getElementById("village");
    panel.setAttribute("data-period", body.period || "");
    panel.removeAttribute("data-error");
    let detail = document.getElementById("village-detail");
    const head = node("div", { class: "list-head" });
    head.append(node("h2", {}, `Unemployment by kelurahan · ${body.period || "no reports yet"}`));
    if (body.synthetic) head.append(node("span", { class: "synthetic", title: "Generated RT registry and reports" }, "SYNTHETIC"));
    const city = node("div", { id: "village-city", class: "village-city" });
    city.append(node("span", { class: "name" }, "Kota Cilegon"), figures(body.city));
    const list = node("ol", { id: "village-list", class: "village-list" });
    const ranked = [...body.kelurahan].sort((a, b) => {
      const ra = a.indicator ? a.indicator.unemployment_rate : null;
      const rb = b.indicator ? b.indicator.unemployment_rate : null;
      if (ra === rb) return a.kelurahan_code < b.kelurahan_code ? -1 : 1;
      if (ra === null) return 1;
      if (rb === null) return -1;
      return rb - ra;
    });
    for (const item of ranked) {
      const li = node("li", { class: "village-item", "data-code": item.kelurahan_code,
        "data-unemployment": rateClass(item.indicator && item.indicator.unemployment_rate) });
      if (item.kelurahan_code === state.selected) li.classList.add("selected");
      const name = node("div", { class: "name" }, item.kelurahan_name);
      name.append(node("span", { class: "kec" }, ` ${item.kecamatan_name}`));
      li.append(name, figures(item.indicator));
      li.addEventListener("click", () => openKelurahan(item.kelurahan_code));
      list.append(li);
    }
    if (!detail) detail = node("section", { id: "village-detail", class: "village-detail" });
    panel.replaceChildren(head, city, detail, list);
  }

  async function openKelurahan(code) {
    state.selected = code;
    for (const path of document.querySelectorAll("path.ward.village-selected")) path.classList.remove("village-selected");
    const path = document.querySelector(`path.ward[data-code="${CSS.escape(code)}"]`);
    if (path) path.classList.add("village-selected");
    let body;
    try {
      body = await getJson(`../api/neighbourhoods/${encodeURIComponent(code)}${query()}`);
    } catch (error) {
      return;
    }
    if (state.selected !== code) return;
    renderDetail(body);
  }

  function renderDetail(body) {
    const detail = document.getElementById("village-detail");
    if (!detail) return;
    const ward = body.kelurahan;
    detail.setAttribute("data-code", ward.kelurahan_code);
    detail.setAttribute("data-period", body.period || "");
    const head = node("div", { class: "dhead" });
    head.append(node("div", { class: "dname" }, `${ward.kelurahan_name} · ${body.period || "–"}`));
    const close = node("button", { type: "button", class: "close", "aria-label": "Close" }, "×");
    close.addEventListener("click", () => {
      state.selected = null;
      detail.replaceChildren();
      detail.removeAttribute("data-code");
    });
    head.append(close);
    const table = node("table", { class: "rws" });
    const header = node("tr");
    for (const text of ["RW", "Unemployed", "Reported", "RT", "Review"]) header.append(node("th", {}, text));
    table.append(header);
    for (const rw of body.rws) {
      // A small cell (docs/smart-village.md, "Small cells") is withheld, never shown as 0 %.
      const row = node("tr", { "data-rw": rw.rw, "data-unemployment": rw.withheld ? "withheld" : rateClass(rw.unemployment_rate) });
      if (rw.withheld) row.setAttribute("data-withheld", rw.withheld);
      for (const text of [rw.rw, rw.withheld ? "withheld (small cell)" : pct(rw.unemployment_rate), pct(rw.completeness),
        `${rw.rt_reported}/${rw.rt_registered}`, String(rw.rt_needs_review)]) row.append(node("td", {}, text));
      table.append(row);
    }
    const reviews = node("ul", { class: "reviews" });
    const reviewer = mayReview(ward.kelurahan_code);
    for (const review of body.review) {
      const li = node("li", { "data-rt": review.rt_code });
      li.append(node("div", { class: "rt" }, `RT ${review.rt_code} · revision ${review.revision}`));
      const reasons = node("ul", { class: "reasons" });
      for (const reason of review.reasons) reasons.append(node("li", {}, reason));
      li.append(reasons);
      if (reviewer) li.append(decisionForm(ward.kelurahan_code, review));
      reviews.append(li);
    }
    const title = node("h3", {}, `Reports needing review (${body.review.length})`);
    detail.replaceChildren(head, figures(body.indicator), table, title, reviews);
  }

  // -- reviews (issue 23): a kelurahan's staff, or a supervisor, decides on each report ----
  const COUNTS = ["households", "residents", "working_age", "labour_force", "unemployed",
    "births", "deaths", "moved_in", "moved_out", "social_aid_households"];
  let me = null;

  async function loadMe() {
    try {
      me = await getJson("../api/me");
    } catch (error) {
      me = null;
    }
  }

  const mayReview = (code) => Boolean(me && me.reviews
    && (me.reviews.includes("*") || me.reviews.includes(code)));

  function decisionForm(code, review) {
    const form = node("div", { class: "decide" });
    const note = node("input", { type: "text", class: "note", maxlength: "500",
      placeholder: "why (no personal data)" });
    const counts = node("div", { class: "counts", hidden: "" });
    for (const name of COUNTS) {
      const label = node("label", {}, `${name.replace(/_/g, " ")} `);
      label.append(node("input", { type: "number", min: "0", name }));
      counts.append(label);
    }
    const line = node("div", { class: "decision-status" });
    async function decide(decision) {
      const body = { rt_code: review.rt_code, period: review.period, report_id: review.report_id,
        revision: review.revision, decision, note: note.value || null };
      if (decision === "correct") {
        body.counts = {};
        for (const input of counts.querySelectorAll("input")) body.counts[input.name] = Number(input.value);
      }
      const response = await fetch(url(`../api/neighbourhoods/${encodeURIComponent(code)}/reviews`), {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf_token },
        body: JSON.stringify(body),
      });
      const result = await response.json().catch(() => ({}));
      line.textContent = response.ok ? `${decision} sent`
        : `${decision} refused (${response.status}): ${result.error || "error"}`;
      line.setAttribute("data-failed", response.ok ? "false" : "true");
      if (response.ok) {
        note.value = "";
        for (const input of counts.querySelectorAll("input")) input.value = "";
        if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
      }
    }
    for (const decision of ["accept", "correct", "reject"]) {
      const button = node("button", { type: "button", "data-decision": decision }, decision);
      button.addEventListener("click", () => {
        if (decision === "correct" && counts.hasAttribute("hidden")) {
          counts.removeAttribute("hidden");
          return;
        }
        decide(decision);
      });
      form.append(button);
    }
    form.append(note, counts, line);
    return form;
  }

  build();
  loadMe();
  document.body.setAttribute("data-layer", state.layer);
})();
