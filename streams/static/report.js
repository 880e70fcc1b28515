/* The monthly report page (issue 21): SLA per agency, incidents per category per kelurahan,
 * street lights out and bins full per day, unemployment per RW and kelurahan month over month,
 * from /api/reports/monthly, with CSV downloads of each section. Text from the API is placed
 * with textContent only. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const url = (path) => new URL(path, document.baseURI).toString();
  const pct = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)}%`);
  const secs = (s) => {
    if (s === null || s === undefined) return "–";
    const m = Math.floor(s / 60);
    return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : (m ? `${m} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`);
  };

  function node(tag, attrs, text) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, value);
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  function table(id, header, rows, textColumns) {
    const t = node("table", { id });
    const head = node("tr");
    for (const name of header) head.append(node("th", {}, name));
    t.append(head);
    for (const row of rows) {
      const tr = node("tr");
      row.forEach((value, i) => tr.append(node("td", (textColumns || [0]).includes(i) ? { class: "text" } : {}, value)));
      t.append(tr);
    }
    return t;
  }

  function render(body) {
    const root = $("report");
    root.replaceChildren();
    const name = (code) => body.names[code] || code;
    root.append(node("h1", {}, `Monthly report ${body.month} · ${body.kecamatan ? `Kecamatan ${name(body.kecamatan)}` : "Kota Cilegon"}`));
    root.append(node("p", { class: "note" }, "From the command center's history store. Months and days in WIB. Simulated feeds and the RW/RT registry are SYNTHETIC."));

    root.append(node("h2", {}, "SLA compliance per agency"));
    const sla = [];
    for (const row of body.sla) {
      for (const clock of ["acknowledge", "dispatch", "on_scene"]) {
        const f = row[clock];
        if (!f) continue;
        sla.push([row.agency, clock.replace("_", " "), row.cases ?? "–", f.count, pct(f.share_within), secs(f.median_s), secs(f.p90_s)]);
      }
    }
    root.append(table("report-sla", ["agency", "clock", "cases", "timed", "within SLA", "median", "p90"], sla, [0, 1]));

    root.append(node("h2", {}, "Incidents per category per kelurahan"));
    root.append(table("report-incidents", ["kelurahan", "category", "incidents"],
      body.incidents.map((r) => [name(r.kelurahan_code), r.category, r.incidents]), [0, 1]));

    root.append(node("h2", {}, "Street lights out and bins full per day"));
    root.append(table("report-assets", ["day (WIB)", "lamps out (sum of daily highest)", "containers full"],
      body.assets.per_day.map((r) => [r.day, r.lamps_out, r.containers_full])));

    root.append(node("h2", {}, "Unemployment month over month (RT reports)"));
    // A small cell (docs/smart-village.md, "Small cells") has no rate to show: never 0.
    const WITHHELD = "withheld (small cell)";
    root.append(table("report-unemployment", ["area", "level", "rate", "month before", "change (points)", "completeness"],
      body.unemployment.map((r) => [r.scope_level === "RW" ? `${name(r.scope_code.split(".").slice(0, 4).join("."))} RW ${r.scope_code.split(".")[4]}` : name(r.scope_code),
        r.scope_level, r.withheld ? WITHHELD : pct(r.unemployment_rate), r.previous_withheld ? WITHHELD : pct(r.previous_rate),
        r.change_points === null ? "–" : `${r.change_points > 0 ? "+" : ""}${r.change_points.toFixed(2)}`, pct(r.completeness)]), [0, 1]));
  }

  async function show() {
    const query = new URLSearchParams({ month: $("report-month").value });
    if ($("report-kecamatan").value) query.set("kecamatan", $("report-kecamatan").value);
    history.replaceState(null, "", `?${query}`);
    const response = await fetch(url(`../api/reports/monthly?${query}`));
    const body = await response.json();
    if (!response.ok) {
      $("report").replaceChildren(node("p", { class: "error" }, body.error || `HTTP ${response.status}`));
      return;
    }
    render(body);
    const links = $("report-csv");
    links.replaceChildren(node("span", {}, "CSV: "));
    for (const section of ["sla", "incidents", "assets", "unemployment"]) {
      query.set("section", section);
      links.append(node("a", { href: url(`../api/reports/monthly.csv?${query}`), download: "" }, section));
    }
  }

  async function start() {
    const collection = await fetch(url("kecamatan.geojson")).then((r) => r.json());
    const select = $("report-kecamatan");
    for (const f of collection.features.map((x) => x.properties).sort((a, b) => a.kecamatan_code.localeCompare(b.kecamatan_code))) {
      select.append(node("option", { value: f.kecamatan_code }, `Kecamatan ${f.kecamatan_name}`));
    }
    const params = new URLSearchParams(location.search);
    const now = new Date();
    $("report-month").value = params.get("month") || `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
    if (params.get("kecamatan")) select.value = params.get("kecamatan");
    $("report-form").addEventListener("submit", (event) => { event.preventDefault(); show(); });
    $("report-print").addEventListener("click", () => window.print());
    show();
  }

  start().catch((error) => console.error(error));
})();
