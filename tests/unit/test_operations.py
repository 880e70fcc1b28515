"""Unit tests of processors.operations: operator actions folded into a ward, SLA clocks at exact
times, the situation's command-center fields, KPIs and role checks (issue 14)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.rejections import Rejection
from processors.operations import (
    MAX_ACTION_IDS,
    MAX_CASES,
    MAX_ENTRIES,
    Case,
    CaseBook,
    Kpi,
    acknowledge_clock,
    annotate,
    check_action,
    clocks,
    completed_clocks,
    elapsed_text,
    fold_action,
    kpi,
    may,
    may_see_audit,
)
from processors.situation import WardAssetCounts, summarize_ward
from processors.state import WardState, apply, from_ms, to_ms
from processors.thresholds import Thresholds
from processors.ward_step import WardEntry, flush, fold, tick
from processors.ward_step import fold_action as step_fold_action

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WARD = {"kelurahan_code": "36.72.01.1001", "kelurahan_name": "Cibeber",
        "kecamatan_code": "36.72.01", "kecamatan_name": "Cibeber"}
SOURCE = "CALL_CENTER_112"
T = Thresholds()


def incident(incident_id: str, at: datetime, status: str = "REPORTED", category: str = "FLOOD",
             severity: str = "MODERATE", rw: str | None = "003") -> dict[str, Any]:
    return {"ward_code": WARD["kelurahan_code"], "ingested_at": at, "event": {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "incident_id": incident_id,
        "source_system": SOURCE, "category": category, "severity": severity, "status": status,
        "ward_code": None, "latitude": None, "longitude": None, "rw": rw, "rt": None,
        "description": "test"}}


def action(kind: str, at: datetime, *, operator: str = "rina", role: str = "OPERATOR",
           incident_id: str | None = None, agency: str | None = None,
           text: str | None = None, action_id: str | None = None) -> dict[str, Any]:
    return {"action_id": action_id or str(uuid.uuid4()), "occurred_at": at,
            "operator_id": operator, "operator_role": role, "action": kind,
            "ward_code": WARD["kelurahan_code"],
            "incident_source": SOURCE if incident_id else None, "incident_id": incident_id,
            "agency": agency, "text": text}


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def situation_at(state: WardState, book: CaseBook, at: datetime) -> dict[str, Any]:
    situation = summarize_ward(state, WARD, WardAssetCounts(0, 0), T, at, "CHANGE", 1, None)
    annotate(situation, state, book, T.sla, to_ms(at))
    return situation


# -- roles --------------------------------------------------------------------------------------


def test_roles_allow_exactly_what_the_issue_says() -> None:
    table = {role: sorted(a for a in ("ACKNOWLEDGE", "ASSIGN", "ESCALATE", "NOTE", "CLOSE")
                          if may(role, a))
             for role in ("VIEWER", "OPERATOR", "SUPERVISOR", "viewer", "nobody")}
    assert table == {
        "VIEWER": [],
        "OPERATOR": ["ACKNOWLEDGE", "ASSIGN", "ESCALATE", "NOTE"],
        "SUPERVISOR": ["ACKNOWLEDGE", "ASSIGN", "CLOSE", "ESCALATE", "NOTE"],
        "viewer": [],
        "nobody": [],
    }
    assert [may_see_audit(r) for r in ("VIEWER", "OPERATOR", "SUPERVISOR")] == [
        False, False, True]


@pytest.mark.parametrize(("record", "reason", "message"), [
    (action("ACKNOWLEDGE", T0, role="VIEWER"), "action_not_allowed",
     "a viewer may not acknowledge"),
    (action("CLOSE", T0, incident_id="I-1"), "action_not_allowed", "a operator may not close"),
    (action("ASSIGN", T0, agency="BPBD"), "missing_target", "ASSIGN needs an incident"),
    (action("ASSIGN", T0, incident_id="I-1"), "missing_target",
     "ASSIGN needs an agency (one of POLRES, DAMKAR, BPBD, DISHUB, DLH, DINKES)"),
    (action("NOTE", T0, text="  "), "missing_target", "NOTE needs a text"),
    (action("NOTE", T0, text="x" * 501), "out_of_range", "text is 501 characters, over 500"),
])
def test_an_action_that_cannot_apply_is_refused_and_changes_nothing(
        record: dict[str, Any], reason: str, message: str) -> None:
    book = CaseBook()
    with pytest.raises(Rejection) as raised:
        fold_action(book, record)
    assert (raised.value.stage, raised.value.reason, raised.value.message) == (
        "VALIDATE", reason, message)
    assert book == CaseBook()


# -- folding ------------------------------------------------------------------------------------


def test_actions_fold_into_the_book_and_a_replay_counts_once() -> None:
    book = CaseBook()
    ack = action("ACKNOWLEDGE", minutes(1))
    assert fold_action(book, ack) is True
    assert fold_action(book, ack) is False
    fold_action(book, action("ASSIGN", minutes(2), incident_id="I-1", agency="BPBD",
                             text="perahu karet"))
    fold_action(book, action("NOTE", minutes(3), operator="budi", incident_id="I-1",
                             text="<script>alert(1)</script>"))
    fold_action(book, action("ESCALATE", minutes(4), incident_id="I-1", text="air naik"))
    fold_action(book, action("CLOSE", minutes(5), operator="sari", role="SUPERVISOR",
                             incident_id="I-1"))
    case = book.cases[(SOURCE, "I-1")]
    assert (book.acknowledged_by, book.acknowledged_at) == ("rina", to_ms(minutes(1)))
    assert (case.assigned_agency, case.assigned_by, case.assigned_at) == (
        "BPBD", "rina", to_ms(minutes(2)))
    assert (case.escalated_by, case.escalated_at) == ("rina", to_ms(minutes(4)))
    assert (case.closed_by, case.closed_at) == ("sari", to_ms(minutes(5)))
    assert [(e.actor, e.kind, e.text) for e in case.history] == [
        ("rina", "ASSIGN", "BPBD: perahu karet"),
        ("budi", "NOTE", "<script>alert(1)</script>"),
        ("rina", "ESCALATE", "air naik"),
        ("sari", "CLOSE", None),
    ]
    assert [(e.actor, e.kind) for e in book.history] == [("rina", "ACKNOWLEDGE")]
    assert CaseBook.from_dict(json.loads(json.dumps(book.to_dict()))) == book


def test_the_latest_assignment_wins_whatever_the_arrival_order() -> None:
    book = CaseBook()
    fold_action(book, action("ASSIGN", minutes(5), incident_id="I-1", agency="DAMKAR"))
    fold_action(book, action("ASSIGN", minutes(2), incident_id="I-1", agency="BPBD"))
    case = book.cases[(SOURCE, "I-1")]
    assert (case.assigned_agency, [e.text for e in case.history]) == ("DAMKAR", ["BPBD", "Damkar"])


def test_histories_action_ids_and_cases_are_capped() -> None:
    book = CaseBook()
    for n in range(MAX_ENTRIES + 5):
        fold_action(book, action("NOTE", minutes(n), incident_id="I-1", text=f"n{n}"))
    history = book.cases[(SOURCE, "I-1")].history
    assert (len(history), history[0].text, history[-1].text) == (MAX_ENTRIES, "n5", "n24")
    for _ in range(MAX_ACTION_IDS):
        fold_action(book, action("NOTE", minutes(1), text="ward note"))
    assert (len(book.seen), len(book.history)) == (MAX_ACTION_IDS, MAX_ENTRIES)
    for n in range(1, MAX_CASES):
        fold_action(book, action("NOTE", minutes(1), incident_id=f"I-{n + 1}", text="x"))
    with pytest.raises(Rejection) as raised:
        fold_action(book, action("NOTE", minutes(1), incident_id="I-new", text="x"))
    assert (raised.value.reason, raised.value.message) == (
        "ward_state_full", "the ward already holds 500 cases; 'I-new' is not added")


# -- SLA clocks at exact times -------------------------------------------------------------------


def test_an_action_on_a_case_that_changed_since_it_was_loaded_is_a_conflict() -> None:
    """Two operators assign the same case from version 0: the first wins, the second is
    refused with what the case is now, and nothing of it is folded; a note never conflicts,
    and a refused action on a new case leaves no empty case behind."""
    book = CaseBook()
    fold_action(book, action("ASSIGN", minutes(1), incident_id="I-1", agency="BPBD") | {
        "expected_version": 0})
    late = action("ASSIGN", minutes(1), operator="sari", incident_id="I-1", agency="DAMKAR")
    with pytest.raises(Rejection) as refused:
        fold_action(book, late | {"expected_version": 0})
    assert (refused.value.stage, refused.value.reason, refused.value.message) == (
        "PROCESS", "conflict", "the case changed since it was loaded (version 1, not 0): "
        "assigned to BPBD by rina, last action ASSIGN by rina")
    case = book.cases[(SOURCE, "I-1")]
    assert (case.assigned_agency, case.version, late["action_id"] in book.seen) == (
        "BPBD", 1, False)
    assert fold_action(book, action("NOTE", minutes(2), incident_id="I-1", text="x") | {
        "expected_version": 0})
    assert fold_action(book, late | {"expected_version": 2})
    assert (case.assigned_agency, case.version) == ("DAMKAR", 3)
    with pytest.raises(Rejection):
        fold_action(book, action("ESCALATE", minutes(3), incident_id="I-2") | {
            "expected_version": 4})
    assert list(book.cases) == [(SOURCE, "I-1")]


def test_a_case_from_a_changelog_written_before_versions_loads() -> None:
    row = ["BPBD", "rina", 1, None, None, None, None, [[1, "rina", "ASSIGN", "BPBD"]]]
    case = Case.from_list(row)
    assert (case.version, Case.from_list(case.to_list()).version) == (1, 1)


def test_elapsed_text_reads_seconds_then_whole_minutes() -> None:
    assert [elapsed_text(ms) for ms in (0, 59_999, 60_000, 719_999, 720_000, 3_900_000,
                                        93_600_000)] == [
        "0 s", "59 s", "1 min", "11 min", "12 min", "1 h 5 min", "1 d 2 h"]


def test_an_unassigned_flood_is_overdue_at_exactly_its_threshold() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0), T)
    # FLOOD: dispatch 600 s (category), on scene 3600 s, resolve 86400 s (default)
    running = clocks(state, book, T.sla, to_ms(T0 + timedelta(seconds=599, milliseconds=999)))
    assert [(c.clock, c.limit_ms, c.overdue) for c in running] == [
        ("dispatch", 600_000, False), ("on_scene", 3_600_000, False),
        ("resolve", 86_400_000, False)]
    assert situation_at(state, book, T0 + timedelta(milliseconds=599_999))["reasons"] == []
    at_limit = situation_at(state, book, minutes(10))
    assert (at_limit["level"], at_limit["reasons"], at_limit["sla_overdue"]) == (
        "ALERT", ["FLOOD at RW 003 unassigned for 10 min"], 1)
    later = situation_at(state, book, minutes(12))
    # the ALERT the clock raised waits for an acknowledgement since minute 10 (900 s allowed)
    assert later["reasons"] == ["FLOOD at RW 003 unassigned for 12 min"]
    assert later["cases"][0]["overdue"] == ["dispatch"]


def test_an_assignment_stops_the_dispatch_clock_and_the_agency_sets_on_scene() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0), T)
    fold_action(book, action("ASSIGN", minutes(4), incident_id="I-1", agency="DAMKAR"))
    # DAMKAR's on-scene limit (900 s) overrides FLOOD's (3600 s)
    assert situation_at(state, book, minutes(14.99))["reasons"] == []
    overdue = situation_at(state, book, minutes(15))
    assert overdue["reasons"] == ["FLOOD at RW 003 with no one on scene for 15 min"]
    apply(state, "incident", incident("I-1", minutes(16), status="ON_SCENE"), T)
    assert situation_at(state, book, minutes(20))["reasons"] == []


def test_a_partner_dispatch_stops_the_dispatch_clock_and_a_closed_case_stops_all() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0, rw=None), T)
    apply(state, "incident", incident("I-1", minutes(3), status="DISPATCHED", rw=None), T)
    assert situation_at(state, book, minutes(59))["reasons"] == []
    assert situation_at(state, book, minutes(60))["reasons"] == [
        "FLOOD I-1 with no one on scene for 1 h 0 min"]
    fold_action(book, action("CLOSE", minutes(61), role="SUPERVISOR", incident_id="I-1"))
    assert situation_at(state, book, minutes(62))["sla_overdue"] == 0


def test_an_unacknowledged_critical_says_so_and_its_clock_expires_at_the_threshold() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0, severity="EXTREME"), T)
    fold_action(book, action("ASSIGN", minutes(1), incident_id="I-1", agency="BPBD"))
    first = situation_at(state, book, minutes(1))
    assert (first["level"], first["reasons"], first["acknowledged_by"]) == (
        "CRITICAL", ["CRITICAL not acknowledged", "1 open EXTREME incident (FLOOD)"], None)
    assert book.raised_at == to_ms(minutes(1))
    assert situation_at(state, book, minutes(5.99))["reasons"][0] == "CRITICAL not acknowledged"
    overdue = situation_at(state, book, minutes(6))  # CRITICAL: 300 s
    assert (overdue["reasons"][0], overdue["sla_overdue"]) == (
        "CRITICAL not acknowledged for 5 min", 1)
    fold_action(book, action("ACKNOWLEDGE", minutes(7)))
    acked = situation_at(state, book, minutes(7))
    assert (acked["reasons"], acked["acknowledged_by"], acked["acknowledged_at"],
            acked["sla_overdue"]) == (["1 open EXTREME incident (FLOOD)"], "rina",
                                      minutes(7), 0)


def test_a_worse_level_needs_a_new_acknowledgement_and_a_calm_ward_ends_the_episode() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0, severity="SEVERE"), T)
    fold_action(book, action("ASSIGN", T0, incident_id="I-1", agency="BPBD"))
    assert situation_at(state, book, minutes(1))["level"] == "ALERT"
    fold_action(book, action("ACKNOWLEDGE", minutes(2)))
    assert situation_at(state, book, minutes(3))["acknowledged_by"] == "rina"
    apply(state, "incident", incident("I-2", minutes(4), severity="EXTREME"), T)
    fold_action(book, action("ASSIGN", minutes(4), incident_id="I-2", agency="BPBD"))
    worse = situation_at(state, book, minutes(4))
    assert (worse["level"], worse["reasons"][0], worse["acknowledged_by"]) == (
        "CRITICAL", "CRITICAL not acknowledged", None)
    for incident_id in ("I-1", "I-2"):
        apply(state, "incident", incident(incident_id, minutes(5), status="RESOLVED"), T)
    assert situation_at(state, book, minutes(6))["level"] == "WATCH"  # 2 flood reports
    assert (book.raised_level, book.raised_at) == (None, None)


def test_the_situation_lists_cases_with_one_timeline_of_partner_and_operator() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0), T)
    apply(state, "incident", incident("I-1", minutes(6), status="DISPATCHED"), T)
    fold_action(book, action("ASSIGN", minutes(2), incident_id="I-1", agency="BPBD"))
    fold_action(book, action("NOTE", minutes(3), incident_id="I-1", text="<b>air</b> naik"))
    case = situation_at(state, book, minutes(7))["cases"][0]
    assert case == {
        "source_system": SOURCE, "incident_id": "I-1", "category": "FLOOD",
        "severity": "MODERATE", "status": "DISPATCHED", "rw": "003", "reported_at": T0,
        "assigned_agency": "BPBD", "assigned_by": "rina", "assigned_at": minutes(2),
        "escalated_by": None, "escalated_at": None, "closed_by": None, "closed_at": None,
        "version": 2, "overdue": [],
        "timeline": [
            {"at": T0, "actor": "partner CALL_CENTER_112", "kind": "REPORTED", "text": None},
            {"at": minutes(2), "actor": "rina", "kind": "ASSIGN", "text": "BPBD"},
            {"at": minutes(3), "actor": "rina", "kind": "NOTE", "text": "<b>air</b> naik"},
            {"at": minutes(6), "actor": "partner CALL_CENTER_112", "kind": "DISPATCHED",
             "text": None},
        ],
    }


# -- the ward step ------------------------------------------------------------------------------


def test_an_action_is_a_change_the_ward_step_publishes_and_the_table_keeps() -> None:
    entry = WardEntry(WardState())
    fold(entry, "incident", incident("I-1", T0, severity="EXTREME"), T)
    first = flush(entry, WARD, WardAssetCounts(0, 0), T, minutes(1))
    assert first is not None and first.situation["reasons"][0] == "CRITICAL not acknowledged"
    ack = action("ACKNOWLEDGE", minutes(2))
    assert step_fold_action(entry, ack, T) is True
    published = flush(entry, WARD, WardAssetCounts(0, 0), T, minutes(2))
    assert published is not None
    assert (published.situation["sequence"], published.situation["caused_by_event_id"],
            published.situation["acknowledged_by"]) == (2, ack["action_id"], "rina")
    restored = WardEntry.from_table(json.loads(json.dumps(entry.to_table())))
    assert restored.book == entry.book
    assert step_fold_action(restored, ack, T) is False
    # the dispatch clock (EXTREME FLOOD: 600 s) expires on the clock's tick
    expired = tick(restored, WARD, WardAssetCounts(0, 0), T, from_ms(to_ms(minutes(10))))
    assert expired is not None and expired.kind == "CHANGE"
    assert expired.situation["reasons"][:1] == ["FLOOD at RW 003 unassigned for 10 min"]


# -- KPIs ---------------------------------------------------------------------------------------


def test_kpi_share_median_and_p90_are_exact() -> None:
    samples = [(float(s), 600.0) for s in (120, 300, 450, 600, 601, 900, 1200, 60, 30, 3000)]
    assert kpi(samples) == Kpi(count=10, within=6, median_s=450.0, p90_s=1200.0)
    assert kpi(samples).share_within == 0.6
    assert kpi([]) == Kpi(0, 0, None, None)


def test_completed_clocks_are_the_kpi_samples_of_an_incident() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0, category="FIRE"), T)
    fold_action(book, action("ASSIGN", minutes(4), incident_id="I-1", agency="DAMKAR"))
    apply(state, "incident", incident("I-1", minutes(20), status="ON_SCENE", category="FIRE"), T)
    rec = state.incidents[(SOURCE, "I-1")]
    assert completed_clocks(rec, book.cases[(SOURCE, "I-1")], T.sla) == [
        ("dispatch", 240.0, 300.0), ("on_scene", 1200.0, 900.0)]


def test_the_acknowledge_clock_is_a_kpi_sample_once_acknowledged() -> None:
    state, book = WardState(), CaseBook()
    apply(state, "incident", incident("I-1", T0, severity="EXTREME"), T)
    situation_at(state, book, minutes(1))  # raised CRITICAL at minute 1 (300 s allowed)
    assert acknowledge_clock(book, T.sla) is None
    fold_action(book, action("ACKNOWLEDGE", minutes(8)))
    assert acknowledge_clock(book, T.sla) == (420.0, 300.0)


# -- the personal-data and character screen of actions (issue 23) ---------------------------


@pytest.mark.parametrize(("changes", "reason", "message"), [
    ({"text": "korban 3672 0101 0101 0001"}, "personal_data",
     "the text holds a 16-digit number shaped like a NIK; personal data must not be written "
     "(text not stored)"),
    ({"text": "ok\x1b[2J\u202e\u200b\x00"}, "forbidden_characters",
     "text holds control, format or line-break characters (not stored)"),
    ({"incident_id": "POL-1\x1b]0;x\x07", "incident_source": "POLICE"}, "forbidden_characters",
     "incident_id holds \\x1b, \\x07: identifiers may hold letters, digits, punctuation, "
     "symbols and spaces only"),
    ({"operator_id": "rina\u202e"}, "forbidden_characters",
     "operator_id holds \\u202e: identifiers may hold letters, digits, punctuation, symbols "
     "and spaces only"),
])
def test_an_action_with_a_nik_or_control_characters_is_refused(
        changes: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(Rejection) as caught:
        check_action(action("NOTE", T0, text="catatan") | changes)
    assert (caught.value.reason, caught.value.message) == (reason, message)
