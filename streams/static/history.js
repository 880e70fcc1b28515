/* History on the situation board (issue 21): the board at a chosen past moment (the map,
 * levels and reasons replayed from the history store), a kelurahan's level changes over the
 * last 24 h or 7 days with their reasons, and a search of closed cases. Kept apart from
 * board.js: it drives the board only through window.cityopsBoard. Everything from the API is
 * placed with textContent, never as markup: reasons can quote what a partner sent. */
"use strict";

(() => {
  const AGENCIES = ["POLRES", "DAMKAR", "BPBD", "DISHUB", "DLH", "DINKES"];
  const CATEGORIES = ["TRAFFIC_ACCIDENT", "FIRE", "FLOOD", "CRIME", "PUBLIC_ORDER", "MEDICAL",
    "INFRASTRUCTURE_DAMAGE", "OTHER"];
  const url = (path) => new URL(path, document.baseURI).toString();
  const fmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
    hour12: false,
  });
  const when = (iso) => (iso ? `${fmt.format(new Date(iso))} WIB` : "–");

  function node(tag, attrs, text) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, value);
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  function options(select, pairs, blank) {
    if (blank !== undefined) select.append(node("option", { value: "" }, blank));
    for (const [value, text] of pairs) select.append(node("option", { value }, text));
  }

  async function getJson(path) {
    const response = await fetch(url(path));
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  function build(wards) {
    const panel = node("section", { id: "history", class: "history" });
    const title = node("h2", {}, "History ");
    title.append(node("a", { id: "history-report", href: "report" }, "· monthly report"));
    panel.append(title);

    // the board at a past moment
    const moment = node("div", { class: "row" });
    const input = node("input", { id: "history-at", type: "datetime-local", step: "60",
      "aria-label": "Moment to show (WIB)" });
    const show = node("button", { id: "history-show", type: "button" }, "Show board at");
    const live = node("button", { id: "history-live", type: "button", disabled: "" }, "Live");
    moment.append(input, show, live);
    const banner = node("div", { id: "history-banner", class: "banner" });
    banner.hidden = true;
    panel.append(moment, banner);
    show.addEventListener("click", async () => {
      if (!input.value) return;
      try {
        const body = await window.cityopsBoard.showAt(input.value);
        banner.textContent = `Board as it was at ${when(body.at)} (from the history store)`;
        banner.classList.remove("error");
        banner.hidden = false;
        live.removeAttribute("disabled");
      } catch (error) {
        banner.textContent = String(error.message || error);
        banner.classList.add("error");
        banner.hidden = false;
      }
    });
    live.addEventListener("click", async () => {
      await window.cityopsBoard.live();
      banner.hidden = true;
      live.setAttribute("disabled", "");
    });

    // a kelurahan's timeline
    panel.append(node("h3", {}, "Level changes of a kelurahan"));
    const timelineRow = node("div", { class: "row" });
    const ward = node("select", { id: "history-ward", "aria-label": "Kelurahan" });
    options(ward, wards);
    const day = node("button", { id: "history-24h", type: "button", "data-hours": "24" }, "24 h");
    const week = node("button", { id: "history-7d", type: "button", "data-hours": "168" }, "7 days");
    timelineRow.append(ward, day, week);
    const timeline = node("ol", { id: "history-timeline" });
    panel.append(timelineRow, timeline);
    for (const button of [day, week]) {
      button.addEventListener("click", async () => {
        timeline.replaceChildren();
        try {
          const body = await getJson(`../api/history/wards/${encodeURIComponent(ward.value)}/timeline?hours=${button.dataset.hours}`);
          if (!body.changes.length) timeline.append(node("li", {}, "No situation in this period"));
          for (const change of body.changes) {
            const item = node("li", { "data-level": change.level, "data-sequence": change.sequence });
            item.append(node("span", { class: "when" }, change.opening ? `before ${when(body.since)}` : when(change.at)),
              node("span", { class: "pill" }, change.level), node("span", {}, ` ${change.reasons.join("; ") || "no reasons"}`));
            timeline.append(item);
          }
        } catch (error) {
          timeline.append(node("li", { class: "error" }, String(error.message || error)));
        }
      });
    }

    // closed cases
    panel.append(node("h3", {}, "Closed cases"));
    const form = node("form", { id: "history-cases-form", class: "row" });
    const kelurahan = node("select", { name: "kelurahan", "aria-label": "Kelurahan" });
    options(kelurahan, wards, "all kelurahan");
    const agency = node("select", { name: "agency", "aria-label": "Agency" });
    options(agency, AGENCIES.map((a) => [a, a]), "all agencies");
    const category = node("select", { name: "category", "aria-label": "Category" });
    options(category, CATEGORIES.map((c) => [c, c.replace(/_/g, " ").toLowerCase()]), "all categories");
    const from = node("input", { name: "from", type: "date", "aria-label": "From (WIB)" });
    const to = node("input", { name: "to", type: "date", "aria-label": "Until, not included (WIB)" });
    const search = node("button", { id: "history-search", type: "submit" }, "Search");
    form.append(kelurahan, agency, category, from, to, search);
    const result = node("div", { id: "history-cases", class: "cases-wrap" });
    panel.append(form, result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const field of [kelurahan, agency, category, from, to]) if (field.value) query.set(field.name, field.value);
      result.replaceChildren();
      try {
        const body = await getJson(`../api/history/cases?${query}`);
        result.append(node("div", { class: "count" }, `${body.count} closed case${body.count === 1 ? "" : "s"}`));
        const table = node("table");
        const head = node("tr");
        for (const name of ["reported", "kelurahan", "category", "agency", "outcome", "closed"]) head.append(node("th", {}, name));
        table.append(head);
        for (const c of body.cases) {
          const row = node("tr", { "data-incident": c.incident_id });
          for (const value of [when(c.reported_at), c.ward_code, c.category, c.agency_name || "–",
            c.outcome, when(c.resolved_at || c.closed_at)]) row.append(node("td", {}, value));
          table.append(row);
        }
        result.append(table);
      } catch (error) {
        result.append(node("div", { class: "error" }, String(error.message || error)));
      }
    });

    document.querySelector(".side").prepend(panel);
  }

  fetch(url("wards.geojson")).then((r) => r.json()).then((collection) => {
    const wards = collection.features.map((f) => [f.properties.kelurahan_code, `${f.properties.kelurahan_name} (${f.properties.kecamatan_name})`])
      .sort((a, b) => String(a[1]).localeCompare(String(b[1])));
    build(wards);
  }).catch((error) => console.error(error));
})();
