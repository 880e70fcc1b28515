"""Bounded by construction (issue 12, hole 1): every collection partner data can grow in a ward
has a cap (processors/state.py), reasons past a cap are summarised, a situation stays under its
byte budget at every cap, and a situation that cannot be evaluated or encoded is one ward's dead
letter, not a stopped worker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.rejections import Rejection
from core.vocabulary import ASSET_REGISTRY_SEED
from processors import ward_step
from processors.operations import (
    MAX_ENTRIES,
    MAX_LISTED_CASES,
    MAX_LISTED_ENTRIES,
    MAX_SLA_REASONS,
    MAX_TEXT,
    CaseBook,
    annotate,
    fold_action,
)
from processors.situation import (
    MAX_CABINET_REASONS,
    MAX_LISTED_CABINETS,
    SITUATION_BUDGET_BYTES,
    SituationTooLargeError,
    WardAssetCounts,
    encode_situation,
    summarize_ward,
)
from processors.state import (
    MAX_CABINETS,
    MAX_CONTAINERS,
    MAX_INCIDENTS,
    MAX_LAMPS,
    WardState,
    apply,
    to_ms,
)
from processors.thresholds import Thresholds
from schemas.codec import encode
from streams.test_driver import TopologyTestDriver
from tests.unit.test_state_property import T0, WARDS, _enriched

pytestmark = pytest.mark.unit

GROGOL = "36.72.06.1002"
T = Thresholds()


def _id(prefix: str, n: int) -> str:
    """A 64-character id, the longest the enrichment accepts."""
    return f"{prefix}-{n:06d}".ljust(64, "x")


def _incident(n: int, at: datetime) -> tuple[str, dict[str, Any]]:
    return "incident", _enriched(GROGOL, {
        "event_id": str(uuid.UUID(int=(1 << 100) + n)), "occurred_at": at,
        "incident_id": _id("INC", n), "source_system": "POLICE", "category": "FIRE",
        "severity": "EXTREME", "status": "REPORTED", "ward_code": None, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "",
    })


def _lamp_fault(n: int, cabinet: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "lighting", _enriched(GROGOL, {
        "event_id": str(uuid.UUID(int=(2 << 100) + n)), "occurred_at": at,
        "lamp_id": _id("PJU", n), "cabinet_id": cabinet, "report_kind": "FAULT",
        "lamp_status": "NO_POWER", "power_state": "UNKNOWN", "dimming_level": None,
        "energy_kwh": None, "ward_code": None, "latitude": None, "longitude": None,
    }, cabinet_id=cabinet, location_name=None)


def _hot_full(n: int, at: datetime) -> tuple[str, dict[str, Any]]:
    return "waste", _enriched(GROGOL, {
        "event_id": str(uuid.UUID(int=(3 << 100) + n)), "occurred_at": at,
        "container_id": _id("C", n), "site_kind": "CONTAINER", "report_kind": "FILL_LEVEL",
        "filling_level": 1.0, "temperature_celsius": 80.0, "collected_weight_kg": None,
        "ward_code": None, "latitude": None, "longitude": None,
    }, location_name=None, container_capacity_l=None)


def _at_every_cap() -> WardState:
    state = WardState()
    events = [_incident(n, T0 + timedelta(milliseconds=n)) for n in range(MAX_INCIDENTS)]
    # MAX_CABINETS cabinets, each with cabinet_fault_count distinct faulty lamps
    events += [_lamp_fault(n, _id("CAB", n // T.cabinet_fault_count), T0)
               for n in range(MAX_CABINETS * T.cabinet_fault_count)]
    events += [_hot_full(n, T0) for n in range(MAX_CONTAINERS)]
    for kind, enriched in events:
        apply(state, kind, enriched, T)
    return state


def test_a_ward_at_every_cap_stays_under_its_situation_budget() -> None:
    state = _at_every_cap()
    lamps = MAX_CABINETS * T.cabinet_fault_count
    registry = WardAssetCounts(lamps, MAX_CONTAINERS)
    situation = summarize_ward(state, WARDS[GROGOL], registry, T, T0, "CHANGE", 1, None)
    size = len(encode_situation(situation))
    assert (len(state.incidents), len(state.cabinets), len(state.containers)) == (
        MAX_INCIDENTS, MAX_CABINETS, MAX_CONTAINERS)
    assert size < SITUATION_BUDGET_BYTES // 4  # far under 64 KiB, and the codec's 1 MiB
    cabinets = [_id("CAB", n) for n in range(MAX_CABINET_REASONS)]
    containers = ", ".join(_id("C", n) for n in range(3))
    assert situation["reasons"] == [  # worst level first, then alphabetical
        "100% of lamps out (1500 of 1500)",
        "5000 fire reports in 30 min",
        "5000 open EXTREME incidents (FIRE)",
        "5000 open incidents",
        f"2000 containers at fire risk ({containers}, +1997 more)",
        "2000 containers full (100% of 2000)",
        f"and {MAX_CABINETS - MAX_CABINET_REASONS} more cabinets with 3 or more lamp faults "
        "(possible power loss or cable theft)",
        *[f"cabinet {c}: 3 lamp faults in 10 min (possible power loss or cable theft)"
          for c in cabinets],
    ]
    assert situation["cabinet_alerts"] == [_id("CAB", n) for n in range(MAX_LISTED_CABINETS)]


def test_past_a_cap_a_new_incident_lamp_or_container_is_refused_and_nothing_changes() -> None:
    state = _at_every_cap()
    before = state.to_dict()
    for kind, enriched in [_incident(MAX_INCIDENTS, T0), _hot_full(MAX_CONTAINERS, T0)]:
        with pytest.raises(Rejection) as refused:
            apply(state, kind, enriched, T)
        assert (refused.value.stage, refused.value.reason) == ("PROCESS", "ward_state_full")
    # a known incident still advances; a fault under a cabinet past the cap is a lamp fault only
    kind, known = _incident(7, T0 + timedelta(seconds=1))
    known["event"]["event_id"] = str(uuid.UUID(int=(5 << 100)))
    assert apply(state, kind, known, T).status == "applied"
    kind, extra = _lamp_fault(10**5, _id("CAB", MAX_CABINETS), T0)
    assert apply(state, kind, extra, T).status == "applied"
    assert (len(state.incidents), len(state.cabinets), len(state.containers)) == (
        MAX_INCIDENTS, MAX_CABINETS, MAX_CONTAINERS)
    assert before["inc"].keys() == state.to_dict()["inc"].keys()


def test_the_lamp_cap() -> None:
    state = WardState()
    for n in range(MAX_LAMPS):
        kind, enriched = _lamp_fault(n, _id("CAB", 0), T0)
        enriched["event"]["lamp_status"] = "OK"
        enriched["event"]["report_kind"] = "STATUS"
        apply(state, kind, enriched, T)
    with pytest.raises(Rejection, match="already holds 20000 lamps"):
        apply(state, *_lamp_fault(MAX_LAMPS, _id("CAB", 0), T0), T)
    assert len(state.lamps) == MAX_LAMPS


# ------------------------------------------------------------------ through the topology

WARD_RECORDS = load_ward_records()
REGISTRY = generate_asset_registry(WARD_RECORDS, seed=ASSET_REGISTRY_SEED)
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CIBEBER = "36.72.01.1001"
KEDALEMAN = "36.72.01.1002"


def _partner_incident(n: int, ward: str = CIBEBER) -> bytes:
    return encode("org.cityops.IncidentEvent", {
        "event_id": str(uuid.UUID(int=(4 << 100) + n)),
        "occurred_at": NOW - timedelta(minutes=30) + timedelta(milliseconds=n),
        "incident_id": f"FLOOD-{n}", "source_system": "CITIZEN_APP", "category": "PUBLIC_ORDER",
        "severity": "MINOR", "status": "REPORTED", "ward_code": ward, "latitude": None,
        "longitude": None, "rw": None, "rt": None, "description": "flood test",
    })


def test_a_flood_of_10000_invented_ids_stays_bounded() -> None:
    driver = TopologyTestDriver(WARD_RECORDS, REGISTRY, batch=1_000)
    lamp = next(a for a in REGISTRY if a["asset_kind"] == "LAMP" and a["ward_code"] == CIBEBER)
    for n in range(10_000):  # registered lamp, invented cabinet: nothing reaches the ward
        driver.pipe("lighting", encode("org.cityops.LightingEvent", {
            "event_id": str(uuid.UUID(int=(6 << 100) + n)), "occurred_at": NOW,
            "lamp_id": lamp["asset_id"], "cabinet_id": f"CAB-INVENTED-{n}",
            "report_kind": "FAULT", "lamp_status": "NO_POWER", "power_state": "OFF",
            "dimming_level": None, "energy_kwh": None, "ward_code": None, "latitude": None,
            "longitude": None}), now=NOW)
    for n in range(10_000):  # invented incident ids: held up to the cap, then refused
        driver.pipe("incident", _partner_incident(n), now=NOW)
    driver.end_batch(NOW)
    reasons = [(d["stage"], d["reason"]) for d in driver.outputs.dead_letters]
    assert (reasons.count(("ENRICH", "unknown_asset")),
            reasons.count(("PROCESS", "ward_state_full")), len(reasons)) == (
        10_000, 10_000 - MAX_INCIDENTS, 20_000 - MAX_INCIDENTS)
    situations = driver.situations_of(CIBEBER)
    # one CHANGE per batch of 1,000 that still added incidents
    assert [s["open_incidents"] for s in situations] == [1000, 2000, 3000, 4000, 5000]
    assert max(len(encode_situation(s)) for s in situations) < SITUATION_BUDGET_BYTES // 16
    assert len(driver.entries[CIBEBER].state.incidents) == MAX_INCIDENTS


def test_a_situation_that_fails_is_one_wards_dead_letter_and_it_keeps_its_last_good_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver = TopologyTestDriver(WARD_RECORDS, REGISTRY, batch=2)
    driver.pipe("incident", _partner_incident(0), now=NOW)
    driver.pipe("incident", _partner_incident(1, KEDALEMAN), now=NOW)
    good = driver.situations_of(CIBEBER)[-1]
    real = encode_situation

    def over_budget(situation: dict[str, Any]) -> bytes:
        if situation["scope_code"] == CIBEBER:
            raise SituationTooLargeError(f"situation of {CIBEBER} is 70000 bytes encoded")
        return real(situation)

    monkeypatch.setattr(ward_step, "encode_situation", over_budget)
    driver.pipe("incident", _partner_incident(2), now=NOW)
    driver.pipe("incident", _partner_incident(3, KEDALEMAN), now=NOW)
    driver.tick(NOW + timedelta(minutes=1))
    letters = [(d["stage"], d["reason"], d["original_key"], d["original_offset"],
                d["error_class"]) for d in driver.outputs.dead_letters]
    assert letters == [("PROCESS", "situation_failed", CIBEBER.encode(), -1,
                        "SituationTooLargeError")] * 2  # the batch, then the tick
    assert [(s["sequence"], s["kind"], s["open_incidents"])
            for s in driver.situations_of(KEDALEMAN)] == [(1, "CHANGE", 1), (2, "CHANGE", 2),
                                                          (2, "CHANGE", 2)]
    entry = driver.entries[CIBEBER]
    assert (entry.sequence, entry.situation, driver.situations_of(CIBEBER)) == (
        1, ward_step.jsonable(good), [good])


def test_a_ward_at_every_cap_with_every_operator_cap_stays_under_its_budget() -> None:
    """Issue 14: the command center's part of a situation (cases, timelines, notes) is capped
    too; a ward at every cap whose listed cases and ward history are full of the longest notes
    and names still encodes under the 64 KiB budget. The SLA clocks of 5,000 incidents (all
    FIRE, reported up to 5 s after T0, evaluated 1 h later) make five reasons and a count of
    the rest."""
    state = _at_every_cap()
    book = CaseBook()
    operator = "o" * 32  # the longest account name
    for n in range(MAX_LISTED_CASES):
        for k in range(MAX_ENTRIES):
            fold_action(book, {
                "action_id": str(uuid.UUID(int=(4 << 100) + n * 100 + k)),
                "occurred_at": T0 + timedelta(seconds=k), "operator_id": operator,
                "operator_role": "OPERATOR", "action": "NOTE", "ward_code": GROGOL,
                "incident_source": "POLICE", "incident_id": _id("INC", n), "agency": None,
                "text": "<" * MAX_TEXT})
    for k in range(MAX_ENTRIES):
        fold_action(book, {
            "action_id": str(uuid.UUID(int=(5 << 100) + k)), "occurred_at": T0,
            "operator_id": operator, "operator_role": "OPERATOR", "action": "NOTE",
            "ward_code": GROGOL, "incident_source": None, "incident_id": None, "agency": None,
            "text": "<" * MAX_TEXT})
    registry = WardAssetCounts(MAX_CABINETS * T.cabinet_fault_count, MAX_CONTAINERS)
    now = T0 + timedelta(hours=1)
    situation = summarize_ward(state, WARDS[GROGOL], registry, T, now, "CHANGE", 1, None)
    annotate(situation, state, book, T.sla, to_ms(now))
    size = len(encode_situation(situation))
    assert (len(situation["cases"]), {len(c["timeline"]) for c in situation["cases"]},
            len(situation["ward_timeline"]), situation["sla_overdue"]) == (
        MAX_LISTED_CASES, {MAX_LISTED_ENTRIES}, MAX_LISTED_ENTRIES, 2 * MAX_INCIDENTS)
    # dispatch (300 s) and on scene (900 s) of every fire are overdue; just raised: no ack due
    assert situation["reasons"][0] == "CRITICAL not acknowledged"
    assert [r for r in situation["reasons"] if "past their SLA" in r] == [
        f"and {MAX_INCIDENTS - MAX_SLA_REASONS} more incidents past their SLA"]
    assert size < SITUATION_BUDGET_BYTES
