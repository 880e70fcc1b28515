"""Operator actions folded into a ward, SLA clocks and the command center's part of a situation.

Issue 14: operators acknowledge a raised situation, assign incidents to agencies, escalate, note
and close cases; each action is an `OperatorAction` record on `city.operator.actions.v1`, keyed
by kelurahan like the enriched topics, so the ward agent folds it in the same order as the
ward's events. Everything here is pure (no I/O, no clock): the ward step calls `fold_action`
for an action and `annotate` when it evaluates the ward, and the web layer asks `may` whether
a role may take an action before it writes one.

Why a separate `CaseBook` next to `WardState` and not fields of the incident rows: an operator
may act on a case the partner has not reported yet to this worker (a replay after a rebalance
folds actions and events in partition order, not wall-clock order), and the book must outlive
the incident rows the state prunes; it is bounded on its own (`MAX_CASES`, `MAX_ENTRIES`).

Times are epoch milliseconds, like the state's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from core.rejections import Rejection
from core.text import forbidden_id_characters
from core.vocabulary import level_rank
from processors.personal_data import screen_note
from processors.state import STATUS_BY_RANK, IncidentKey, IncidentRecord, WardState, from_ms, to_ms
from processors.thresholds import AGENCIES, SlaRules

ROLES: Final[tuple[str, ...]] = ("VIEWER", "OPERATOR", "SUPERVISOR")
ACTIONS: Final[tuple[str, ...]] = ("ACKNOWLEDGE", "ASSIGN", "ESCALATE", "NOTE", "CLOSE")
#: What each role may do: a viewer sees, an operator acts, a supervisor also closes cases.
ROLE_ACTIONS: Final[Mapping[str, frozenset[str]]] = {
    "VIEWER": frozenset(),
    "OPERATOR": frozenset({"ACKNOWLEDGE", "ASSIGN", "ESCALATE", "NOTE"}),
    "SUPERVISOR": frozenset(ACTIONS),
}
#: How the board and the reasons name an agency.
AGENCY_NAMES: Final[Mapping[str, str]] = {
    "POLRES": "Polres", "DAMKAR": "Damkar", "BPBD": "BPBD", "DISHUB": "Dishub", "DLH": "DLH",
    "DINKES": "Dinkes",
}
#: Actions that need an incident as their target.
INCIDENT_ACTIONS: Final[frozenset[str]] = frozenset({"ASSIGN", "CLOSE"})
#: Actions on a case refused when the case changed since the operator loaded it; a NOTE adds
#: to the history and never overwrites anything, so it is not checked.
VERSIONED_ACTIONS: Final[frozenset[str]] = frozenset({"ASSIGN", "ESCALATE", "CLOSE"})

# Caps on what operators (and a partner's incident ids) can grow in one ward: constants, like
# the state's, so they bound the worst case of a changelog record and of a situation.
#: Cases with operator actions kept per ward; an action on a new case beyond it is refused.
MAX_CASES: Final[int] = 500
#: History entries kept per case and for the ward as a whole (the newest); the actions topic
#: keeps every one of them.
MAX_ENTRIES: Final[int] = 20
#: Action ids remembered to fold a replayed action once (the newest).
MAX_ACTION_IDS: Final[int] = 2_000
#: Free text of an action, in characters.
MAX_TEXT: Final[int] = 500
#: Cases listed in a situation, and timeline entries per case there (64 KiB budget).
MAX_LISTED_CASES: Final[int] = 10
MAX_LISTED_ENTRIES: Final[int] = 12
#: Text of a timeline entry in a situation, in characters.
MAX_LISTED_TEXT: Final[int] = 200
#: SLA reasons named one by one; past this one reason counts the rest.
MAX_SLA_REASONS: Final[int] = 5


def may(role: str, action: str) -> bool:
    """True when an account of `role` may take `action` (roles in upper case)."""
    return action in ROLE_ACTIONS.get(role.upper(), frozenset())


def may_see_audit(role: str) -> bool:
    """Only a supervisor sees the audit trail (every case's full history)."""
    return role.upper() == "SUPERVISOR"


@dataclass(slots=True)
class Entry:
    """One line of a history: when, who, what, and the free text that came with it."""

    at: int
    actor: str
    kind: str
    text: str | None = None

    def to_list(self) -> list[Any]:
        return [self.at, self.actor, self.kind, self.text]

    @classmethod
    def from_list(cls, row: list[Any]) -> Entry:
        return cls(int(row[0]), str(row[1]), str(row[2]), row[3])


@dataclass(slots=True)
class Case:
    """The command center's handling of one incident (keyed like the state's incidents)."""

    assigned_agency: str | None = None
    assigned_by: str | None = None
    assigned_at: int | None = None
    escalated_by: str | None = None
    escalated_at: int | None = None
    closed_by: str | None = None
    closed_at: int | None = None
    history: list[Entry] = field(default_factory=list)
    #: Actions folded on the case so far: what an operator's `expected_version` is checked
    #: against (optimistic concurrency, issue 24).
    version: int = 0

    def to_list(self) -> list[Any]:
        return [self.assigned_agency, self.assigned_by, self.assigned_at, self.escalated_by,
                self.escalated_at, self.closed_by, self.closed_at,
                [entry.to_list() for entry in self.history], self.version]

    @classmethod
    def from_list(cls, row: list[Any]) -> Case:
        """A changelog row; one written before issue 24 has no version (its history length,
        what the board showed as the version then, is the best guess)."""
        agency, by, at, escalated_by, escalated_at, closed_by, closed_at, history = row[:8]
        version = int(row[8]) if len(row) > 8 else len(history)
        return cls(agency, by, at, escalated_by, escalated_at, closed_by, closed_at,
                   [Entry.from_list(entry) for entry in history], version)

    def describe(self) -> str:
        """What an operator is told the case is now (`describe_case`)."""
        last = self.history[-1] if self.history else None
        return describe_case(self.assigned_agency, self.assigned_by, self.escalated_by,
                             self.closed_by, (last.kind, last.actor) if last else None)


def describe_case(agency: str | None, assigned_by: str | None, escalated_by: str | None,
                  closed_by: str | None, last: tuple[str, str] | None) -> str:
    """"assigned to BPBD by rina, escalated by sari, last action ESCALATE by sari": what the
    fold and the board say a case is now when an action on it is refused as a conflict."""
    parts = [f"assigned to {AGENCY_NAMES.get(agency, agency)} by {assigned_by}" if agency
             else "unassigned"]
    if escalated_by:
        parts.append(f"escalated by {escalated_by}")
    if closed_by:
        parts.append(f"closed by {closed_by}")
    if last is not None:
        parts.append(f"last action {last[0]} by {last[1]}")
    return ", ".join(parts)


@dataclass(slots=True)
class CaseBook:
    """Operator actions on one ward: its acknowledgement, its cases and their histories.

    `raised_level`/`raised_at` are the ward's current ALERT-or-worse episode (set by `annotate`
    when the ward is evaluated): an acknowledgement counts for the episode when it came at or
    after the episode began, so a ward that goes from ALERT to CRITICAL needs a new one.
    """

    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    raised_level: str | None = None
    raised_at: int | None = None
    cases: dict[IncidentKey, Case] = field(default_factory=dict)
    history: list[Entry] = field(default_factory=list)
    seen: dict[str, None] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return (not self.cases and not self.history and not self.seen
                and self.acknowledged_at is None and self.raised_at is None)

    def acknowledged(self) -> bool:
        """True when the current raised episode was acknowledged."""
        return (self.raised_at is not None and self.acknowledged_at is not None
                and self.acknowledged_at >= self.raised_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ack": [self.acknowledged_by, self.acknowledged_at],
            "raised": [self.raised_level, self.raised_at],
            "cases": [[source, incident, case.to_list()]
                      for (source, incident), case in self.cases.items()],
            "hist": [entry.to_list() for entry in self.history],
            "seen": list(self.seen),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseBook:
        return cls(
            acknowledged_by=data["ack"][0], acknowledged_at=data["ack"][1],
            raised_level=data["raised"][0], raised_at=data["raised"][1],
            cases={(source, incident): Case.from_list(row)
                   for source, incident, row in data["cases"]},
            history=[Entry.from_list(entry) for entry in data["hist"]],
            seen=dict.fromkeys(data["seen"]),
        )


def _append(history: list[Entry], entry: Entry) -> None:
    """Keep a history in time order and at most MAX_ENTRIES long (the newest)."""
    index = len(history)
    while index and history[index - 1].at > entry.at:
        index -= 1
    history.insert(index, entry)
    if len(history) > MAX_ENTRIES:
        del history[0]


def check_action(action: Mapping[str, Any]) -> None:
    """Refuse an action its role may not take or that lacks its target: a Rejection (VALIDATE)
    with a clear message, dead-lettered by the worker. The web layer checks the same before it
    writes, so this guards against a producer that is not the board."""
    kind, role = action["action"], action["operator_role"]
    if kind not in ACTIONS:
        raise Rejection("VALIDATE", "action_not_allowed", f"unknown action {kind!r}")
    if not may(role, kind):
        raise Rejection("VALIDATE", "action_not_allowed",
                        f"a {str(role).lower()} may not {kind.lower()}")
    has_incident = bool(action.get("incident_source")) and bool(action.get("incident_id"))
    if kind in INCIDENT_ACTIONS and not has_incident:
        raise Rejection("VALIDATE", "missing_target", f"{kind} needs an incident")
    if kind == "ASSIGN" and action.get("agency") not in AGENCIES:
        raise Rejection("VALIDATE", "missing_target",
                        f"ASSIGN needs an agency (one of {', '.join(AGENCIES)})")
    if kind == "NOTE" and not (action.get("text") or "").strip():
        raise Rejection("VALIDATE", "missing_target", "NOTE needs a text")
    text = action.get("text")
    if text is not None and len(text) > MAX_TEXT:
        raise Rejection("VALIDATE", "out_of_range",
                        f"text is {len(text)} characters, over {MAX_TEXT}")
    problem = action_problem(action)
    if problem is not None:
        raise Rejection("VALIDATE", *problem)


ACTION_IDS: Final[tuple[str, ...]] = ("action_id", "operator_id", "ward_code",
                                      "incident_source", "incident_id", "agency")
"""The identifiers of an action: within `core.text`'s identifier character set."""


def action_problem(action: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when an action's identifiers or text break the character and
    personal-data rules (issue 23), else None; the message never quotes the text. The board
    (`streams/operator_web.py`) cleans a note with `screen_note` before writing, so a note
    here that `screen_note` would change (a control, bidi or zero-width character) or refuse
    (a NIK) came from another producer."""
    for name in ACTION_IDS:
        value = action.get(name)
        forbidden = forbidden_id_characters(value) if isinstance(value, str) else []
        if forbidden:
            return ("forbidden_characters",
                    f"{name} holds {', '.join(forbidden[:5])}: identifiers may hold letters, "
                    "digits, punctuation, symbols and spaces only")
    text = action.get("text")
    if text is None:
        return None
    cleaned, refused = screen_note(text)
    if refused is not None:
        return "personal_data", refused
    if cleaned != text:
        return ("forbidden_characters",
                "text holds control, format or line-break characters (not stored)")
    return None


def fold_action(book: CaseBook, action: Mapping[str, Any]) -> bool:
    """Fold one OperatorAction record (decoded) into the ward's book; False for a replayed one.

    Raises a Rejection (nothing changed) for an action its role may not take, without its
    target, or on a new case when the ward already holds MAX_CASES.
    """
    check_action(action)
    action_id: str = action["action_id"]
    if action_id in book.seen:
        return False
    kind: str = action["action"]
    at = to_ms(action["occurred_at"])
    operator: str = action["operator_id"]
    text: str | None = action.get("text")
    case: Case | None = None
    if action.get("incident_source") and action.get("incident_id"):
        key: IncidentKey = (action["incident_source"], action["incident_id"])
        case = book.cases.get(key)
        if case is None:
            if len(book.cases) >= MAX_CASES:
                raise Rejection("PROCESS", "ward_state_full",
                                f"the ward already holds {MAX_CASES} cases; "
                                f"{key[1]!r} is not added")
            case = Case()
        expected = action.get("expected_version")
        if kind in VERSIONED_ACTIONS and expected is not None and expected != case.version:
            raise Rejection("PROCESS", "conflict",
                            f"the case changed since it was loaded (version {case.version}, "
                            f"not {expected}): {case.describe()}")
        book.cases[key] = case
    book.seen[action_id] = None
    if len(book.seen) > MAX_ACTION_IDS:
        del book.seen[next(iter(book.seen))]
    if kind == "ACKNOWLEDGE":
        if book.acknowledged_at is None or at >= book.acknowledged_at:
            book.acknowledged_by, book.acknowledged_at = operator, at
    elif case is not None and kind == "ASSIGN":
        agency = str(action["agency"])
        if case.assigned_at is None or at >= case.assigned_at:
            case.assigned_agency, case.assigned_by, case.assigned_at = agency, operator, at
        text = AGENCY_NAMES[agency] + (f": {text}" if text else "")
    elif case is not None and kind == "ESCALATE":
        if case.escalated_at is None or at >= case.escalated_at:
            case.escalated_by, case.escalated_at = operator, at
    elif (case is not None and kind == "CLOSE"
          and (case.closed_at is None or at < case.closed_at)):
        case.closed_by, case.closed_at = operator, at
    _append(case.history if case is not None else book.history,
            Entry(at, operator, kind, text))
    if case is not None:
        case.version += 1
    return True


def forget_pruned(book: CaseBook, state: WardState, horizon_ms: int) -> int:
    """Drop cases whose incident the state no longer holds and whose last action is older than
    `horizon_ms` behind the watermark, so the book lives within the state's own horizons;
    returns how many were dropped."""
    if state.watermark is None:
        return 0
    cutoff = state.watermark - horizon_ms
    gone = [key for key, case in book.cases.items()
            if key not in state.incidents and (not case.history or case.history[-1].at < cutoff)]
    for key in gone:
        del book.cases[key]
    return len(gone)


# -- SLA clocks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clock:
    """One running SLA clock of an open incident at an evaluation time."""

    key: IncidentKey
    clock: str
    """dispatch, on_scene or resolve."""
    category: str
    rw: str | None
    started_at: int
    elapsed_ms: int
    limit_ms: int

    @property
    def overdue(self) -> bool:
        return self.elapsed_ms >= self.limit_ms


_CLOCK_WORDS: Final[Mapping[str, str]] = {
    "dispatch": "unassigned", "on_scene": "with no one on scene", "resolve": "unresolved",
}


def elapsed_text(elapsed_ms: int) -> str:
    """Whole minutes from a minute on ("12 min", "1 h 5 min"), seconds before: a reason's text
    then changes at most once a minute, not at every evaluation."""
    seconds = max(0, elapsed_ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def place(category: str, rw: str | None, incident_id: str) -> str:
    """How a reason names an incident: "FLOOD at RW 003", or by its id when it has no RW."""
    return f"{category} at RW {rw}" if rw else f"{category} {incident_id}"


def clock_reason(clock: Clock) -> str:
    """"FLOOD at RW 003 unassigned for 12 min"."""
    return (f"{place(clock.category, clock.rw, clock.key[1])} {_CLOCK_WORDS[clock.clock]} "
            f"for {elapsed_text(clock.elapsed_ms)}")


def _stage_done(rec: IncidentRecord, case: Case | None, clock: str) -> int | None:
    if clock == "dispatch":
        times = [t for t in (rec.dispatched_at, rec.on_scene_at,
                             case.assigned_at if case else None) if t is not None]
        return min(times) if times else None
    if clock == "on_scene":
        return rec.on_scene_at
    return rec.closed_at


def clocks(state: WardState, book: CaseBook, rules: SlaRules, as_of: int) -> list[Clock]:
    """Every running clock of the ward's open incidents at `as_of` (epoch ms): one per stage
    not reached yet. Clocks start at the first REPORTED time (else the first time seen) and
    stop when the stage is reached, or when a supervisor closed the case."""
    found: list[Clock] = []
    for key, rec in state.incidents.items():
        if not rec.is_open:
            continue
        case = book.cases.get(key)
        if case is not None and case.closed_at is not None:
            continue
        start = rec.reported_at if rec.reported_at is not None else rec.first_seen
        if start is None:
            continue
        agency = case.assigned_agency if case else None
        for clock in ("dispatch", "on_scene", "resolve"):
            if _stage_done(rec, case, clock) is not None:
                continue
            limit = rules.limit_seconds(clock, rec.category, agency)
            if limit is None:
                continue
            found.append(Clock(key, clock, rec.category, rec.rw, start, as_of - start,
                               limit * 1000))
    return found


def ack_overdue(book: CaseBook, rules: SlaRules, level: str, as_of: int) -> int | None:
    """Milliseconds the raised situation has waited for an acknowledgement past its limit's
    start, when that limit is reached; None otherwise."""
    limit = rules.acknowledge_seconds.get(level)
    if limit is None or book.raised_at is None or book.acknowledged():
        return None
    waited = as_of - book.raised_at
    return waited if waited >= limit * 1000 else None


def observe_level(book: CaseBook, level: str, as_of: int) -> None:
    """Track the ward's raised episode: it starts when the ward reaches ALERT or worse (or a
    worse level than the episode's), and ends when it drops below ALERT."""
    if level_rank(level) < level_rank("ALERT"):
        book.raised_level = book.raised_at = None
    elif book.raised_level is None or level_rank(level) > level_rank(book.raised_level):
        book.raised_level, book.raised_at = level, as_of


def sla_reasons(state: WardState, book: CaseBook, rules: SlaRules,
                as_of: int) -> tuple[list[tuple[str, str]], dict[IncidentKey, list[str]]]:
    """(level, reason) pairs of overdue incident clocks (the earliest overdue stage of each
    incident, longest waiting first, at most MAX_SLA_REASONS and a count of the rest), and the
    overdue clock names of each incident."""
    overdue: dict[IncidentKey, list[Clock]] = {}
    for clock in clocks(state, book, rules, as_of):
        if clock.overdue:
            overdue.setdefault(clock.key, []).append(clock)
    firsts = sorted((found[0] for found in overdue.values()),
                    key=lambda c: (-c.elapsed_ms, c.key))
    reasons = [(rules.overdue_level, clock_reason(c)) for c in firsts[:MAX_SLA_REASONS]]
    hidden = len(firsts) - MAX_SLA_REASONS
    if hidden > 0:
        reasons.append((rules.overdue_level,
                        f"and {hidden} more {'incident' if hidden == 1 else 'incidents'} "
                        "past their SLA"))
    return reasons, {key: [c.clock for c in found] for key, found in overdue.items()}


# -- the situation's command-center fields --------------------------------------------------


def _timeline(rec: IncidentRecord, source: str, case: Case | None) -> list[Entry]:
    """Partner status changes (the first time each stage was reached) and operator actions."""
    actor = f"partner {source}" if source else "partner"
    entries = [Entry(at, actor, STATUS_BY_RANK[rank]) for rank, at in enumerate(
        (rec.reported_at, rec.dispatched_at, rec.on_scene_at)) if at is not None]
    if rec.closed_at is not None and rec.status_name in ("RESOLVED", "CANCELLED"):
        entries.append(Entry(rec.closed_at, actor, str(rec.status_name)))
    if case is not None:
        entries.extend(case.history)
    entries.sort(key=lambda e: (e.at, e.kind))
    return entries[-MAX_LISTED_ENTRIES:]


def _entry_json(entry: Entry) -> dict[str, Any]:
    text = entry.text if entry.text is None else entry.text[:MAX_LISTED_TEXT]
    return {"at": from_ms(entry.at), "actor": entry.actor, "kind": entry.kind, "text": text}


def _severity_rank(severity: str) -> int:
    return {"EXTREME": 4, "SEVERE": 3, "MODERATE": 2, "MINOR": 1}.get(severity, 0)


def case_records(state: WardState, book: CaseBook,
                 overdue: Mapping[IncidentKey, list[str]]) -> list[dict[str, Any]]:
    """The WardCase records of a situation: open incidents, overdue first, then the most
    severe, then the oldest; at most MAX_LISTED_CASES."""
    open_keys = [key for key, rec in state.incidents.items() if rec.is_open]

    def order(key: IncidentKey) -> tuple[int, int, int, IncidentKey]:
        rec = state.incidents[key]
        start = rec.reported_at if rec.reported_at is not None else rec.last_seen
        return (0 if key in overdue else 1, -_severity_rank(rec.severity), start, key)

    records = []
    for key in sorted(open_keys, key=order)[:MAX_LISTED_CASES]:
        rec, case = state.incidents[key], book.cases.get(key)
        start = rec.reported_at if rec.reported_at is not None else rec.first_seen
        records.append({
            "source_system": key[0], "incident_id": key[1], "category": rec.category,
            "severity": rec.severity, "status": rec.status_name, "rw": rec.rw,
            "reported_at": None if start is None else from_ms(start),
            "assigned_agency": case.assigned_agency if case else None,
            "assigned_by": case.assigned_by if case else None,
            "assigned_at": _time(case.assigned_at if case else None),
            "escalated_by": case.escalated_by if case else None,
            "escalated_at": _time(case.escalated_at if case else None),
            "closed_by": case.closed_by if case else None,
            "closed_at": _time(case.closed_at if case else None),
            "version": case.version if case else 0,
            "overdue": list(overdue.get(key, ())),
            "timeline": [_entry_json(e) for e in _timeline(rec, key[0], case)],
        })
    return records


def _time(millis: int | None) -> Any:
    return None if millis is None else from_ms(millis)


def annotate(situation: dict[str, Any], state: WardState, book: CaseBook, rules: SlaRules,
             as_of_ms: int) -> None:
    """Add the command center's part to a kelurahan situation built by `summarize_ward`, in
    place: overdue SLA clocks as reasons (they may raise the level), the raised episode and
    its acknowledgement ("CRITICAL not acknowledged" while it is not), the cases and the
    ward's own timeline.

    The situation's level before this call is the one partners' events set; SLA reasons may
    raise it to `rules.overdue_level`, and the acknowledgement clock then follows the level
    the operator sees.
    """
    extra, overdue = sla_reasons(state, book, rules, as_of_ms)
    level = situation["level"]
    for reason_level, _ in extra:
        if level_rank(reason_level) > level_rank(level):
            level = reason_level
    observe_level(book, level, as_of_ms)
    ack_reasons: list[str] = []
    waited = ack_overdue(book, rules, level, as_of_ms)
    overdue_count = sum(len(names) for names in overdue.values())
    if waited is not None:
        ack_reasons.append(f"{level} not acknowledged for {elapsed_text(waited)}")
        overdue_count += 1
    elif level == "CRITICAL" and not book.acknowledged():
        ack_reasons.append("CRITICAL not acknowledged")
    situation["level"] = level
    situation["reasons"] = _merge(ack_reasons, extra, situation["reasons"])
    acknowledged = book.acknowledged()
    situation["acknowledged_by"] = book.acknowledged_by if acknowledged else None
    situation["acknowledged_at"] = _time(book.acknowledged_at) if acknowledged else None
    situation["sla_overdue"] = overdue_count
    situation["cases"] = case_records(state, book, overdue)
    situation["ward_timeline"] = [_entry_json(e) for e in book.history[-MAX_LISTED_ENTRIES:]]


def _merge(first: list[str], extra: Iterable[tuple[str, str]], rest: list[str]) -> list[str]:
    """Acknowledgement reasons first (they are at the situation's own level), then the SLA
    reasons among the others by level; the rest keep their order."""
    ordered = [text for _, text in sorted(extra, key=lambda pair: -level_rank(pair[0]))]
    return first + [r for r in ordered if r not in first] + [r for r in rest if r not in first]


def empty_fields() -> dict[str, Any]:
    """The command-center fields of a situation with nothing to say (rollups, a new ward)."""
    return {"acknowledged_by": None, "acknowledged_at": None, "sla_overdue": 0, "cases": [],
            "ward_timeline": []}


# -- KPIs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpi:
    """How a set of completed clocks did against their limits."""

    count: int
    within: int
    median_s: float | None
    p90_s: float | None

    @property
    def share_within(self) -> float | None:
        return None if not self.count else self.within / self.count


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile (the smallest value with at least q of the values at or below it):
    exact values that did happen, no interpolation."""
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))
    return ordered[rank - 1]


def kpi(samples: Iterable[tuple[float, float]]) -> Kpi:
    """KPI of (seconds taken, limit seconds) samples: share within the limit, median and 90th
    percentile of the times taken (nearest rank)."""
    values = list(samples)
    taken = sorted(seconds for seconds, _ in values)
    within = sum(1 for seconds, limit in values if seconds <= limit)
    if not taken:
        return Kpi(0, 0, None, None)
    return Kpi(len(taken), within, _quantile(taken, 0.5), _quantile(taken, 0.9))


def acknowledge_clock(book: CaseBook, rules: SlaRules) -> tuple[float, float] | None:
    """(seconds waited, limit seconds) of the raised episode's acknowledgement: the KPI sample
    of the acknowledge clock; None while it is not acknowledged or has no limit."""
    if not book.acknowledged() or book.raised_level is None:
        return None
    limit = rules.acknowledge_seconds.get(book.raised_level)
    assert book.acknowledged_at is not None and book.raised_at is not None
    if limit is None:
        return None
    return (book.acknowledged_at - book.raised_at) / 1000, float(limit)


def completed_clocks(rec: IncidentRecord, case: Case | None, rules: SlaRules
                     ) -> list[tuple[str, float, float]]:
    """(clock, seconds taken, limit seconds) of each stage an incident has reached: the KPI
    samples of one incident."""
    start = rec.reported_at if rec.reported_at is not None else rec.first_seen
    if start is None:
        return []
    agency = case.assigned_agency if case else None
    samples = []
    for clock in ("dispatch", "on_scene", "resolve"):
        done = _stage_done(rec, case, clock)
        limit = rules.limit_seconds(clock, rec.category, agency)
        if done is not None and limit is not None:
            samples.append((clock, max(0, done - start) / 1000, float(limit)))
    return samples
