/* The command center acts (issue 14): who is signed in, the cases of the selected kelurahan with
 * their SLA clocks and history, and the actions the operator's role allows. Kept apart from
 * board.js, which announces each render of the detail panel with a "cityops:detail" event.
 * Every text that came from a partner or an operator is set with textContent, never as markup. */
"use strict";

(() => {
  const url = (path) => new URL(path, document.baseURI).toString();
  const AGENCY_NAMES = {
    POLRES: "Polres", DAMKAR: "Damkar", BPBD: "BPBD", DISHUB: "Dishub", DLH: "DLH", DINKES: "Dinkes",
  };
  const CLOCKS = { dispatch: "dispatch", on_scene: "on scene", resolve: "resolution" };
  const timeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Jakarta", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false,
  });
  const at = (iso) => (iso ? `${timeFmt.format(new Date(iso))} WIB` : "–");

  let me = null; // body of /api/me
  const drafts = new Map(); // note drafts by case key, kept across re-renders
  let lastDetail = null;

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("data-") || name === "type" || name === "placeholder" ||
               name === "maxlength" || name === "aria-label") node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const may = (action) => Boolean(me && me.actions.includes(action));

  // The last action's outcome, kept per kelurahan so a rebuilt panel still shows it.
  const outcomes = new Map();

  function showStatus(line, shown) {
    line.textContent = shown.text;
    line.setAttribute("data-failed", shown.failed ? "true" : "false");
    if (shown.outcome) line.setAttribute("data-outcome", shown.outcome);
    else line.removeAttribute("data-outcome");
  }

  function status(code, text, failed, outcome) {
    outcomes.set(code, { text, failed, outcome });
    const line = document.getElementById("ops-status");
    if (line && line.closest("#detail") && line.closest("#detail").getAttribute("data-code") === code) {
      showStatus(line, outcomes.get(code));
    }
  }

  // What the ward agent did with an action: the request waits for its receipt (200 applied,
  // 409 conflict, 422 refused); a 202 is still pending and its receipt is asked for here.
  async function act(code, action, body) {
    status(code, `${action} sent…`, false, null);
    const response = await fetch(
      url(`../api/wards/${encodeURIComponent(code)}/actions/${action}`), {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf_token },
        body: JSON.stringify(body || {}),
      });
    let result = await response.json().catch(() => ({}));
    let code_ = response.status;
    for (let tries = 0; code_ === 202 && tries < 30; tries += 1) {
      status(code, `${action} sent; waiting for the ward to apply it`, false, null);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const again = await fetch(url(`../api/actions/${encodeURIComponent(result.action_id)}`));
      if (again.status !== 404) {
        code_ = again.status;
        result = await again.json().catch(() => ({}));
      }
    }
    if (code_ === 200) status(code, `${action} applied`, false, "applied");
    else if (code_ === 202) status(code, `${action} not confirmed yet; check the case before acting again`, true, "pending");
    else status(code, `${action} refused (${code_}): ${result.error || "error"}`, true, "refused");
    return code_ === 200;
  }

  // -- header: who is signed in -------------------------------------------------------------
  function renderUser() {
    const box = h("div", { class: "operator", id: "operator" },
      h("span", { class: "who", "data-role": me.role }, `${me.name} · ${me.role.toLowerCase()}`));
    if (me.kind === "operator") {
      const out = h("button", { type: "button", id: "sign-out" }, "Sign out");
      out.addEventListener("click", async () => {
        await fetch(url("logout"), { method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
        window.location.assign(url("login"));
      });
      // issue 24: every session of this account, on every worker and device, ends
      const everywhere = h("button", { type: "button", id: "sign-out-everywhere" }, "Sign out everywhere");
      everywhere.addEventListener("click", async () => {
        await fetch(url("logout-everywhere"), { method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
        window.location.assign(url("login"));
      });
      box.append(out, everywhere);
    }
    if (me.audit) {
      const sessions = h("button", { type: "button", id: "sessions-open" }, "Sessions");
      sessions.addEventListener("click", () => showSessions(""));
      box.append(sessions);
    }
    if (me.audit) {
      const audit = h("button", { type: "button", id: "audit-open" }, "Audit trail");
      audit.addEventListener("click", showAudit);
      box.append(audit);
    }
    document.querySelector(".status").prepend(box);
  }

  // -- the cases of the selected kelurahan ----------------------------------------------------
  function timeline(entries) {
    return h("ol", { class: "timeline" }, ...entries.map((entry) => h("li", {
      "data-kind": entry.kind,
      "data-actor": entry.actor,
    }, h("span", { class: "when" }, at(entry.at)), " ",
    h("span", { class: "actor" }, entry.actor), " ",
    h("span", { class: "kind" }, entry.kind.toLowerCase().replace("_", " ")),
    entry.text ? h("span", { class: "text" }, entry.text) : null)));
  }

  function caseCard(code, c) {
    const key = `${c.source_system}|${c.incident_id}`;
    const target = { incident_source: c.source_system, incident_id: c.incident_id };
    // the version the operator saw: an action on a case that changed since is refused
    const versioned = { ...target, case_version: c.version || 0 };
    const assigned = c.assigned_agency
      ? `Assigned to ${AGENCY_NAMES[c.assigned_agency] || c.assigned_agency} by ${c.assigned_by} at ${at(c.assigned_at)}`
      : "Unassigned";
    const card = h("div", { class: "case", "data-incident": c.incident_id,
                            "data-overdue": c.overdue.length ? "true" : "false" },
      h("div", { class: "case-head" },
        h("span", { class: "case-title" },
          `${c.category} · ${c.severity} · ${c.status || "status unknown"}${c.rw ? ` · RW ${c.rw}` : ""}`),
        h("span", { class: "mono" }, c.incident_id)),
      h("div", { class: "assigned" }, assigned),
      c.overdue.length
        ? h("div", { class: "overdue" }, `SLA overdue: ${c.overdue.map((k) => CLOCKS[k] || k).join(", ")}`)
        : null,
      c.escalated_by ? h("div", { class: "escalated" }, `Escalated by ${c.escalated_by} at ${at(c.escalated_at)}`) : null,
      c.closed_by ? h("div", { class: "closed" }, `Closed by ${c.closed_by} at ${at(c.closed_at)}`) : null);
    const tools = h("div", { class: "case-actions" });
    if (may("ASSIGN")) {
      const agency = h("select", { class: "agency", "aria-label": "Agency" },
        ...Object.entries(AGENCY_NAMES).map(([value, name]) => h("option", { value }, name)));
      agency.value = drafts.get(`agency|${key}`) || c.assigned_agency || "POLRES";
      agency.addEventListener("change", () => drafts.set(`agency|${key}`, agency.value));
      const assign = h("button", { type: "button", class: "assign" }, "Assign");
      assign.addEventListener("click", () => act(code, "assign", { ...versioned, agency: agency.value }));
      tools.append(agency, assign);
    }
    if (may("ESCALATE")) {
      const escalate = h("button", { type: "button", class: "escalate" }, "Escalate");
      escalate.addEventListener("click", () => act(code, "escalate", versioned));
      tools.append(escalate);
    }
    if (may("CLOSE") && !c.closed_by) {
      const close = h("button", { type: "button", class: "close-case" }, "Close case");
      close.addEventListener("click", () => act(code, "close", versioned));
      tools.append(close);
    }
    if (may("NOTE")) {
      const note = h("input", { class: "note-text", type: "text", maxlength: "500",
                                placeholder: "Note", "data-key": key });
      note.value = drafts.get(key) || "";
      note.addEventListener("input", () => drafts.set(key, note.value));
      const add = h("button", { type: "button", class: "add-note" }, "Add note");
      add.addEventListener("click", async () => {
        if (!note.value.trim()) return;
        if (await act(code, "note", { ...target, text: note.value })) {
          drafts.delete(key);
          note.value = "";
        }
      });
      tools.append(note, add);
    }
    if (tools.childNodes.length) card.append(tools);
    card.append(timeline(c.timeline));
    return card;
  }

  // The detail panel is rebuilt whenever any situation changes; the section is rebuilt only
  // when what it shows changed, and otherwise the same node is put back, so a button being
  // clicked or a note being typed survives the rebuild.
  let shown = { signature: null, section: null };

  function render(detail) {
    lastDetail = detail;
    const { code, situation, panel } = detail;
    if (!me || !situation) return;
    const signature = JSON.stringify([code, situation.level, situation.acknowledged_by,
      situation.acknowledged_at, situation.sla_overdue, situation.cases, situation.ward_timeline]);
    let section = shown.section;
    if (signature !== shown.signature || !section) {
      section = build(code, situation);
      shown = { signature, section };
    }
    const focused = document.activeElement && document.activeElement.classList.contains("note-text")
      ? document.activeElement.getAttribute("data-key") : null;
    const old = panel.querySelector("#ops");
    if (old && old !== section) old.remove();
    // right under the reasons, where an operator looks first
    const kpis = panel.querySelector(".kpis");
    if (kpis) panel.insertBefore(section, kpis); else panel.append(section);
    if (focused && document.activeElement !== section.querySelector(`input.note-text[data-key="${CSS.escape(focused)}"]`)) {
      const input = section.querySelector(`input.note-text[data-key="${CSS.escape(focused)}"]`);
      if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
    }
  }

  function build(code, situation) {
    const raised = situation.level === "ALERT" || situation.level === "CRITICAL";
    const ack = situation.acknowledged_by
      ? h("p", { class: "ack", "data-acknowledged": "true" },
        `Acknowledged by ${situation.acknowledged_by} at ${at(situation.acknowledged_at)}`)
      : h("p", { class: "ack", "data-acknowledged": "false" },
        raised ? `${situation.level} not acknowledged` : "Nothing to acknowledge");
    const section = h("section", { class: "ops", id: "ops" }, h("h3", {}, "Command center"), ack);
    if (raised && !situation.acknowledged_by && may("ACKNOWLEDGE")) {
      const button = h("button", { type: "button", id: "acknowledge" }, "Acknowledge");
      button.addEventListener("click", () => act(code, "acknowledge", {}));
      section.append(button);
    }
    const line = h("p", { class: "note", id: "ops-status", "data-failed": "false" }, "");
    if (outcomes.has(code)) showStatus(line, outcomes.get(code));
    section.append(line);
    if (situation.sla_overdue) {
      section.append(h("p", { class: "overdue sla-count" }, `${situation.sla_overdue} SLA clock(s) overdue`));
    }
    section.append(h("h3", {}, `Open cases (${situation.cases.length})`),
      ...situation.cases.map((c) => caseCard(code, c)));
    if (situation.ward_timeline.length) {
      section.append(h("h3", {}, "Kelurahan history"), timeline(situation.ward_timeline));
    }
    return section;
  }

  // -- audit trail (supervisors) ----------------------------------------------------------
  async function showAudit() {
    const response = await fetch(url("../api/audit"));
    const body = await response.json().catch(() => ({ entries: [] }));
    let panel = document.getElementById("audit");
    if (panel) panel.remove();
    panel = h("section", { class: "audit", id: "audit" },
      h("div", { class: "dhead" }, h("div", { class: "dname" }, "Audit trail"),
        h("button", { type: "button", id: "audit-close" }, "✕")),
      h("ol", { class: "timeline" }, ...(body.entries || []).map((e) => h("li", { "data-kind": e.kind },
        h("span", { class: "when" }, at(e.at)), " ",
        h("span", { class: "actor" }, e.actor), " ",
        h("span", { class: "kind" }, e.kind.toLowerCase()), " ",
        h("span", { class: "where" }, `${e.kelurahan}${e.incident_id ? ` · ${e.incident_id}` : ""}`),
        e.text ? h("span", { class: "text" }, e.text) : null))));
    document.querySelector(".side").prepend(panel);
    document.getElementById("audit-close").addEventListener("click", () => panel.remove());
  }

  // -- sessions (supervisors, issue 24): every open session on every worker, each endable ----
  async function showSessions(message) {
    const response = await fetch(url("../api/sessions"));
    const body = await response.json().catch(() => ({ sessions: [] }));
    let panel = document.getElementById("sessions");
    if (panel) panel.remove();
    const minutes = (s) => `${Math.round(s / 60)} min`;
    panel = h("section", { class: "audit", id: "sessions" },
      h("div", { class: "dhead" }, h("div", { class: "dname" }, "Sessions"),
        h("button", { type: "button", id: "sessions-close" }, "✕")),
      h("p", { class: "note" },
        `Idle timeout ${minutes(body.idle_timeout_s || 0)}, at most ${minutes(body.absolute_timeout_s || 0)} after sign-in.`),
      h("p", { class: "note", id: "sessions-status" }, typeof message === "string" ? message : ""),
      h("ol", { class: "timeline" }, ...(body.sessions || []).map((s) => {
        const end = h("button", { type: "button", class: "end-session" }, "End");
        end.addEventListener("click", async () => {
          const ended = await fetch(url(`../api/sessions/${encodeURIComponent(s.id)}/end`), {
            method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
          const said = ended.ok ? `Ended ${s.account}'s session` : `Not ended (${ended.status})`;
          if (ended.ok) showSessions(said);
          else document.getElementById("sessions-status").textContent = said;
        });
        return h("li", { "data-id": s.id, "data-account": s.account, "data-current": s.current ? "true" : "false" },
          h("span", { class: "actor" }, s.account), " ",
          h("span", { class: "kind" }, s.role.toLowerCase()), " ",
          h("span", { class: "where" }, `${s.address} · since ${at(s.created_at)} · seen ${at(s.last_seen_at)}`),
          s.current ? h("span", { class: "text" }, "this session") : end);
      })));
    document.querySelector(".side").prepend(panel);
    document.getElementById("sessions-close").addEventListener("click", () => panel.remove());
  }

  document.addEventListener("cityops:detail", (event) => render(event.detail));

  fetch(url("../api/me")).then((r) => (r.ok ? r.json() : null)).then((body) => {
    if (!body) return;
    me = body;
    renderUser();
    shown = { signature: null, section: null };
    if (lastDetail && lastDetail.panel.isConnected) render(lastDetail);
  }).catch((error) => console.warn("who am I failed", error));
})();
