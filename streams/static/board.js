/* Situation board: draws the kelurahan GeoJSON as SVG by hand and follows the worker's
 * server-sent events. Plain browser JavaScript, no build step, nothing loaded from the internet.
 * Every URL is relative to /board/ so the board also works behind a path-prefixing proxy. */
"use strict";

(() => {
  const RANK = { CRITICAL: 4, ALERT: 3, WATCH: 2, NORMAL: 1, UNKNOWN: 0 };
  const LEGEND = [
    ["CRITICAL", "Critical"], ["ALERT", "Alert"], ["WATCH", "Watch"], ["NORMAL", "Normal"],
    ["NONE", "No reports yet"],
  ];
  const SVG = "http://www.w3.org/2000/svg";
  const KM_PER_DEG_LAT = 111.32;

  const state = {
    situations: new Map(), // scope_code -> SituationEvent JSON
    wards: new Map(), // kelurahan_code -> boundary feature properties
    kecamatan: [], // outline feature properties, by code
    paths: new Map(), // kelurahan_code -> SVG path
    labels: new Map(), // kelurahan_code -> SVG text
    shown: new Map(), // kelurahan_code -> level drawn last
    selected: null,
    detail: null, // last /api/wards/{code} body of the selected ward
    assets: null,
    ready: false,
    lastChange: null,
    firstPicture: true, // no flash for what the first snapshot paints
    haveSnapshot: false,
  };

  const $ = (id) => document.getElementById(id);
  const url = (path) => new URL(path, document.baseURI).toString();
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const levelOf = (code) => (state.situations.get(code) || {}).level || "NONE";
  const rank = (level) => (level in RANK ? RANK[level] : -1);

  // -- formatting (times in WIB, the command center's clock) -------------------------------
  const timeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const dateTimeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false,
  });
  const at = (iso) => (iso ? `${dateTimeFmt.format(new Date(iso))} WIB` : "–");
  const clock = (iso) => (iso ? timeFmt.format(new Date(iso)) : "–");
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min${s % 60 ? ` ${s % 60} s` : ""}`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }
  const label = (symbol) => symbol.charAt(0) + symbol.slice(1).toLowerCase().replace(/_/g, " ");
  const pill = (level) => `<span class="pill" data-level="${esc(level)}">${esc(level === "NONE" ? "NO DATA" : level)}</span>`;
  const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : `${Math.round(ratio * 1000) / 10}%`);

  // -- map ----------------------------------------------------------------------------------
  function rings(geometry) {
    if (geometry.type === "Polygon") return geometry.coordinates;
    if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
    if (geometry.type === "MultiLineString") return geometry.coordinates;
    return [];
  }

  function projection(features) {
    let minLon = Infinity, maxLon = -Infinity, minLat = Infinity, maxLat = -Infinity;
    for (const feature of features) {
      for (const ring of rings(feature.geometry)) {
        for (const [lon, lat] of ring) {
          minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
          minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
        }
      }
    }
    // equirectangular at the city's latitude: exact enough for 20 km, and no library needed
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const width = 1000;
    const scale = width / ((maxLon - minLon) * k);
    const height = (maxLat - minLat) * scale;
    return {
      width, height, scale,
      x: (lon) => (lon - minLon) * k * scale,
      y: (lat) => (maxLat - lat) * scale,
    };
  }

  function pathData(geometry, proj, close) {
    return rings(geometry).map((ring) => ring.map(([lon, lat], i) =>
      `${i ? "L" : "M"}${proj.x(lon).toFixed(1)},${proj.y(lat).toFixed(1)}`).join("") + (close ? "Z" : "")).join("");
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function drawMap(wards, kecamatan) {
    const svg = $("map");
    const proj = projection(wards.features);
    const pad = 24;
    svg.setAttribute("viewBox", `${-pad} ${-pad} ${proj.width + 2 * pad} ${proj.height + 2 * pad}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const wardLayer = el("g", { class: "wards" }, svg);
    const outlineLayer = el("g", { class: "outlines" }, svg);
    const kecLayer = el("g", { class: "kec-labels" }, svg);
    const labelLayer = el("g", { class: "labels" }, svg);

    for (const feature of wards.features) {
      const p = feature.properties;
      state.wards.set(p.kelurahan_code, p);
      const path = el("path", {
        d: pathData(feature.geometry, proj, true), class: "ward", "fill-rule": "evenodd",
        "data-code": p.kelurahan_code, "data-name": p.kelurahan_name, "data-level": "NONE",
      }, wardLayer);
      path.addEventListener("click", () => select(p.kelurahan_code));
      path.addEventListener("mousemove", (event) => showTooltip(event, p.kelurahan_code));
      path.addEventListener("mouseleave", hideTooltip);
      state.paths.set(p.kelurahan_code, path);
      const text = el("text", {
        class: "ward-label", x: proj.x(p.centroid_lon).toFixed(1),
        y: (proj.y(p.centroid_lat) + 3).toFixed(1), "data-level": "NONE",
      }, labelLayer);
      text.textContent = p.kelurahan_name;
      state.labels.set(p.kelurahan_code, text);
    }
    for (const feature of kecamatan.features) {
      const p = feature.properties;
      state.kecamatan.push(p);
      el("path", { d: pathData(feature.geometry, proj, false), class: "kec-outline",
        "data-code": p.kecamatan_code }, outlineLayer);
    }
    state.kecamatan.sort((a, b) => a.kecamatan_code.localeCompare(b.kecamatan_code));
    placeKecamatanLabels(kecLayer, proj);
    drawScale(svg, proj);
    $("sources").textContent =
      `Boundaries: ${String(wards.source || "").split("; coordinates")[0]}. ` +
      "Drawn without map tiles; kecamatan outlines derived from the kelurahan polygons.";
  }

  function placeKecamatanLabels(layer, proj) {
    // large, faint names under the kelurahan names: they say which district an area is
    // without hiding the kelurahan labels an operator reads first
    for (const kec of state.kecamatan) {
      if (kec.centroid_lat === null || kec.centroid_lon === null) continue;
      const text = el("text", { class: "kec-label", x: proj.x(kec.centroid_lon).toFixed(1),
        y: proj.y(kec.centroid_lat).toFixed(1), "text-anchor": "middle" }, layer);
      text.textContent = kec.kecamatan_name;
    }
  }

  function drawScale(svg, proj) {
    const km = 2;
    const length = km * proj.scale / KM_PER_DEG_LAT;
    const x0 = proj.width - length - 10, y0 = proj.height + 8;
    const g = el("g", { class: "scale" }, svg);
    el("line", { x1: x0, y1: y0, x2: x0 + length, y2: y0 }, g);
    el("line", { x1: x0, y1: y0 - 5, x2: x0, y2: y0 + 1 }, g);
    el("line", { x1: x0 + length, y1: y0 - 5, x2: x0 + length, y2: y0 + 1 }, g);
    const text = el("text", { x: x0 + length / 2, y: y0 - 8, "text-anchor": "middle" }, g);
    text.textContent = `${km} km`;
    const north = el("g", { class: "north", transform: `translate(${proj.width - 14},14)` }, svg);
    el("path", { d: "M0,-12 L7,8 L0,3 L-7,8 Z" }, north);
    const n = el("text", { x: 0, y: 22, "text-anchor": "middle" }, north);
    n.textContent = "N";
  }

  // -- tooltip -------------------------------------------------------------------------------
  function showTooltip(event, code) {
    const ward = state.wards.get(code);
    const situation = state.situations.get(code);
    const tip = $("tooltip");
    const level = levelOf(code);
    const reasons = situation && situation.reasons.length
      ? situation.reasons.map((r) => `<div>• ${esc(r)}</div>`).join("")
      : `<div class="kec">${situation ? "No threshold reached" : "No reports received"}</div>`;
    tip.innerHTML = `<div class="name">${esc(ward.kelurahan_name)} ${pill(level)}</div>` +
      `<div class="kec">Kec. ${esc(ward.kecamatan_name)} · ${esc(code)}</div>${reasons}`;
    const box = $("map").parentElement.getBoundingClientRect();
    tip.hidden = false;
    const left = Math.min(event.clientX - box.left + 14, box.width - tip.offsetWidth - 8);
    tip.style.left = `${Math.max(8, left)}px`;
    tip.style.top = `${event.clientY - box.top + 14}px`;
  }
  const hideTooltip = () => { $("tooltip").hidden = true; };

  // -- rendering -----------------------------------------------------------------------------
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => { renderPending = false; render(); });
  }

  function render() {
    renderMap();
    renderCity();
    renderLegend();
    renderKecamatan();
    renderList();
    renderDetail();
    if (state.haveSnapshot && state.firstPicture) {
      state.firstPicture = false;
      requestAnimationFrame(() => document.body.classList.add("painted"));
    }
  }

  function renderMap() {
    for (const [code, path] of state.paths) {
      const level = levelOf(code);
      if (state.shown.get(code) === level) continue;
      const before = state.shown.get(code);
      state.shown.set(code, level);
      path.setAttribute("data-level", level);
      state.labels.get(code).setAttribute("data-level", level);
      const situation = state.situations.get(code);
      path.setAttribute("data-reasons", situation ? situation.reasons.join(" | ") : "");
      if (!state.firstPicture && before !== undefined && rank(level) > rank(before)) {
        path.classList.remove("changed");
        void path.getBoundingClientRect(); // restart the flash animation
        path.classList.add("changed");
      }
    }
    for (const [code, path] of state.paths) path.classList.toggle("selected", code === state.selected);
  }

  function renderCity() {
    const city = [...state.situations.values()].find((s) => s.scope === "CITY");
    const level = city ? city.level : "NONE";
    $("city").setAttribute("data-level", level);
    $("city-level").outerHTML = `<span class="pill" id="city-level" data-level="${esc(level)}">${esc(level === "NONE" ? "NO DATA" : level)}</span>`;
    let text;
    if (!city) text = state.ready ? "No city situation yet" : "Reading the situation topic…";
    else if (city.reasons.length) text = city.reasons.join(" · ");
    else text = `No threshold reached · ${city.open_incidents} open incidents`;
    $("city-reasons").textContent = text;
    $("city-reasons").title = text;
  }

  function renderLegend() {
    const counts = { NONE: 0 };
    for (const code of state.paths.keys()) {
      const level = levelOf(code);
      counts[level] = (counts[level] || 0) + 1;
    }
    const rows = LEGEND.map(([level, name]) =>
      `<div class="row" data-level="${level}"><span class="swatch" style="background: var(--${level === "NONE" ? "none" : level.toLowerCase()})"></span>` +
      `${name}<span class="n">${counts[level] || 0}</span></div>`);
    if (counts.UNKNOWN) rows.splice(4, 0, `<div class="row"><span class="swatch" style="background: var(--unknown)"></span>Unknown level<span class="n">${counts.UNKNOWN}</span></div>`);
    rows.push(`<div class="row"><span class="outline"></span>Kecamatan boundary</div>`);
    $("legend").innerHTML = rows.join("");
  }

  function renderKecamatan() {
    $("kecamatan").innerHTML = state.kecamatan.map((k) => {
      const s = state.situations.get(k.kecamatan_code);
      const level = s ? s.level : "NONE";
      const figs = s
        ? `${s.open_incidents} open · ${s.lamps_out}/${s.lamps_total} lamps out · ${s.containers_full} full`
        : "no situation yet";
      return `<div class="kec-card" data-code="${esc(k.kecamatan_code)}" data-level="${esc(level)}">` +
        `<div class="kname"><span>${esc(k.kecamatan_name)}</span>${s ? pill(level) : ""}</div>` +
        `<div class="kfig" title="${esc(s && s.reasons.length ? s.reasons.join("; ") : figs)}">${esc(figs)}</div></div>`;
    }).join("");
  }

  function figures(s) {
    const parts = [
      `<span><b>${s.open_incidents}</b> open incidents</span>`,
      `<span><b>${s.lamps_out}</b>/${s.lamps_total} lamps out</span>`,
      `<span><b>${s.containers_full}</b>/${s.containers_total} containers full</span>`,
    ];
    if (s.mean_dispatch_seconds !== null) parts.push(`<span>dispatch <b>${duration(s.mean_dispatch_seconds)}</b></span>`);
    if (s.mean_on_scene_seconds !== null) parts.push(`<span>on scene <b>${duration(s.mean_on_scene_seconds)}</b></span>`);
    return parts.join("");
  }

  function renderList() {
    const wards = [...state.situations.values()]
      .filter((s) => s.scope === "KELURAHAN" && state.wards.has(s.scope_code))
      .sort((a, b) => rank(b.level) - rank(a.level) || a.scope_code.localeCompare(b.scope_code));
    const list = $("ward-list");
    list.innerHTML = wards.map((s) => {
      const reasons = s.reasons.length
        ? `<ul class="reasons">${s.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>`
        : `<div class="figs">No threshold reached</div>`;
      return `<li class="ward-item${s.scope_code === state.selected ? " selected" : ""}" data-code="${esc(s.scope_code)}" data-level="${esc(s.level)}">` +
        `<div class="head"><span class="name">${esc(s.scope_name)} <span class="kec">· ${esc(s.kecamatan_name || "")}</span></span>${pill(s.level)}</div>` +
        `${reasons}<div class="figs">${figures(s)}</div></li>`;
    }).join("");
    for (const item of list.children) item.addEventListener("click", () => select(item.dataset.code));
    const raised = wards.filter((s) => rank(s.level) > RANK.NORMAL).length;
    $("counts").textContent = `${raised} above normal · ${wards.length} reporting`;
    const quiet = [...state.wards.values()].filter((w) => !state.situations.has(w.kelurahan_code))
      .map((w) => w.kelurahan_name).sort();
    $("quiet").textContent = quiet.length
      ? `${quiet.length} kelurahan with no reports yet: ${quiet.join(", ")}.`
      : "";
  }

  function kpi(value, name) {
    return `<div class="kpi"><div class="v">${value}</div><div class="k">${esc(name)}</div></div>`;
  }

  function table(title, mapping) {
    const rows = Object.entries(mapping || {}).filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (!rows.length) return "";
    return `<table><tr><th>${esc(title)}</th><th class="n">Open</th></tr>` +
      rows.map(([key, n]) => `<tr data-key="${esc(key)}"><td>${esc(label(key))}</td><td class="n">${n}</td></tr>`).join("") +
      "</table>";
  }

  function renderDetail() {
    const panel = $("detail");
    const code = state.selected;
    if (!code || !state.wards.has(code)) { panel.hidden = true; return; }
    const ward = state.wards.get(code);
    const s = state.situations.get(code);
    const detail = state.detail && state.detail.ward.kelurahan_code === code ? state.detail : null;
    const level = s ? s.level : "NONE";
    let body;
    if (!s) {
      body = `<p class="note">No event has been reported for this kelurahan yet.</p>`;
    } else {
      const reasons = s.reasons.length
        ? `<ul class="reasons">${s.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>`
        : `<p class="note">No threshold reached.</p>`;
      const cabinets = s.cabinet_alerts.length
        ? `<p>Cabinet alerts: ${s.cabinet_alerts.map(esc).join(", ")}</p>` : "";
      body = reasons +
        `<div class="kpis">` +
        kpi(s.open_incidents, "open incidents") +
        kpi(`${s.lamps_out}<small>/${s.lamps_total}</small>`, `lamps out (${percent(s.lamps_working_ratio)} working)`) +
        kpi(`${s.containers_full}<small>/${s.containers_total}</small>`, "containers full") +
        kpi(duration(s.mean_dispatch_seconds), `mean dispatch (${s.dispatch_count} incidents)`) +
        kpi(duration(s.mean_on_scene_seconds), `mean on scene (${s.on_scene_count} incidents)`) +
        kpi(s.containers_fire_risk, "containers at fire risk") +
        `</div>` +
        table("Open incidents by category", s.open_incidents_by_category) +
        table("By severity", s.open_incidents_by_severity) +
        cabinets +
        `<h3>Window ${clock(s.window_start)}–${clock(s.window_end)} WIB</h3>` +
        `<p class="note">${s.new_incidents_in_window} new incidents · ${s.new_lamp_faults_in_window} lamp faults · ` +
        `${s.overflow_reports_in_window} overflow reports · ${s.containers_overdue} full containers overdue</p>` +
        `<p class="note">Last event ${esc(at(s.last_event_at))} · situation #${s.sequence} emitted ${esc(at(s.emitted_at))}</p>`;
    }
    let changes = "";
    if (detail && detail.recent_changes.length) {
      const list = detail.recent_changes;
      changes = `<h3>Recent changes</h3><ol class="changes">` + list.map((c, i) => {
        const older = list[i + 1];
        const same = older && older.reasons.join("|") === c.reasons.join("|");
        const reasons = c.reasons.length ? c.reasons.join("; ") : "no threshold reached";
        const response = c.mean_dispatch_seconds !== null
          ? ` · dispatch ${duration(c.mean_dispatch_seconds)}` : "";
        return `<li data-sequence="${c.sequence}"><span class="when">${esc(at(c.last_event_at || c.emitted_at))}</span> ${pill(c.level)} ` +
          `<span class="cfig">${c.open_incidents} open · ${c.lamps_out} lamps out · ${c.containers_full} full${response}</span>` +
          `<div class="creasons">${same ? "<i>same reasons</i>" : esc(reasons)}</div>` +
          `${c.caused_by_event_id ? `<div class="mono">event ${esc(c.caused_by_event_id)}</div>` : ""}</li>`;
      }).join("") + "</ol>";
    }
    const synthetic = state.assets && state.assets.synthetic
      ? `<p class="note">Lamp and container totals come from the synthetic asset registry (${state.assets.synthetic} of ${state.assets.assets} assets synthetic).</p>`
      : "";
    panel.innerHTML =
      `<div class="dhead"><div><div class="dname">${esc(ward.kelurahan_name)} ${pill(level)}</div>` +
      `<div class="dsub">Kelurahan · Kec. ${esc(ward.kecamatan_name)} · ${esc(code)}` +
      `${detail && detail.ward.postal_code ? ` · ${esc(detail.ward.postal_code)}` : ""}</div></div>` +
      `<button type="button" id="detail-close" title="Close">✕</button></div>` +
      body + changes + synthetic;
    panel.setAttribute("data-code", code);
    panel.hidden = false;
    $("detail-close").addEventListener("click", () => select(null));
    // operators.js (issue 14) adds the command center's part: cases, actions, history
    document.dispatchEvent(new CustomEvent("cityops:detail", { detail: { code, situation: s || null, panel } }));
  }

  // -- selection and detail ------------------------------------------------------------------
  let detailTimer = null;
  function select(code) {
    state.selected = code;
    state.detail = null;
    scheduleRender();
    if (code) loadDetail(code, 0);
  }

  function loadDetail(code, delay) {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(async () => {
      try {
        const response = await fetch(url(`../api/wards/${encodeURIComponent(code)}`));
        if (!response.ok) return;
        const body = await response.json();
        if (state.selected === code) { state.detail = body; scheduleRender(); }
      } catch (error) {
        console.warn("ward detail failed", error);
      }
    }, delay);
  }

  // -- live feed -----------------------------------------------------------------------------
  function setConnection(mode, text) {
    document.body.setAttribute("data-connection", mode); // the map greys out while not live
    $("connection").setAttribute("data-state", mode);
    $("connection-text").textContent = text;
  }

  function noteChange(situation) {
    if (!state.lastChange || situation.emitted_at > state.lastChange) state.lastChange = situation.emitted_at;
    $("updated").textContent = `Last situation ${at(state.lastChange)}`;
  }

  function applySnapshot(body) {
    state.situations.clear();
    state.ready = body.ready;
    state.haveSnapshot = true;
    state.assets = body.asset_registry;
    for (const s of [body.city, ...body.kecamatan, ...body.kelurahan]) {
      if (!s) continue;
      state.situations.set(s.scope_code, s);
      noteChange(s);
    }
    if (state.selected) loadDetail(state.selected, 0);
    scheduleRender();
  }

  function applySituation(s) {
    state.situations.set(s.scope_code, s);
    noteChange(s);
    if (s.scope_code === state.selected) loadDetail(s.scope_code, 250);
    scheduleRender();
  }

  // -- the board at a past moment (issue 21): history.js drives it through this hook; while
  // a past moment is shown the live feed is kept but not applied, and "live" fetches the
  // present picture again.
  let pastAt = null;
  window.cityopsBoard = {
    async showAt(when) {
      const response = await fetch(url(`../api/history/situations?at=${encodeURIComponent(when)}`));
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `history: HTTP ${response.status}`);
      pastAt = body.at;
      state.lastChange = null;
      applySnapshot(body);
      setConnection("past", `As at ${at(body.at)}`);
      return body;
    },
    async live() {
      const response = await fetch(url("../api/situations"));
      const body = await response.json();
      pastAt = null;
      state.lastChange = null;
      applySnapshot(body);
      setConnection("live", "Live");
    },
    isPast: () => pastAt !== null,
  };

  function connect() {
    const source = new EventSource(url("../api/situations/stream"));
    source.addEventListener("snapshot", (event) => {
      if (pastAt !== null) return;
      applySnapshot(JSON.parse(event.data));
      setConnection("live", "Live");
    });
    source.addEventListener("situation", (event) => {
      if (pastAt === null) applySituation(JSON.parse(event.data));
    });
    source.addEventListener("removed", (event) => {
      if (pastAt !== null) return;
      state.situations.delete(JSON.parse(event.data).scope_code);
      scheduleRender();
    });
    source.addEventListener("error", () => {
      if (pastAt !== null) {
        if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
        return;
      }
      if (source.readyState === EventSource.CLOSED) {
        setConnection("reconnecting", "Offline · retrying");
        setTimeout(connect, 5000);
      } else {
        setConnection("reconnecting", "Reconnecting…");
      }
    });
  }

  async function start() {
    const [wards, kecamatan] = await Promise.all([
      fetch(url("wards.geojson")).then((r) => r.json()),
      fetch(url("kecamatan.geojson")).then((r) => r.json()),
    ]);
    drawMap(wards, kecamatan);
    render();
    connect();
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") select(null); });
  }

  start().catch((error) => {
    setConnection("reconnecting", "Board failed to load");
    console.error(error);
  });
})();
