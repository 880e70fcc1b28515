"""The chaos run's reference model (bench/reference_model.py) and its SYNTHETIC scenario.

Three checks that the yardstick itself is right before it judges a chaos run:
1. exact, hand-computed cases for each rule of docs/rules.md the model covers;
2. the generator's closed-form intent (what it meant every ward to end with) equals the model;
3. differential: the worker's own pure path (processors.enrich + state.apply + summarize_ward),
   fed the same scenario in a shuffled order with replays, ends where the model says.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pytest

from bench.chaos import KIND_SCHEMA, Scenario, generate
from bench.reference_model import (
    Asset,
    Event,
    Params,
    WardExpectation,
    deduplicate,
    expected_wards,
    rollup_totals,
)
from cityops.assets import generate_asset_registry
from core.reference_data import load_ward_records
from core.rejections import Rejection
from core.vocabulary import ASSET_REGISTRY_SEED
from processors.enrich import (
    EnrichmentRules,
    ReferenceData,
    enrich_incident,
    enrich_lighting,
    enrich_waste,
)
from processors.situation import WardAssetCounts, summarize_ward
from processors.state import WardState, apply
from processors.thresholds import Thresholds
from schemas.codec import CodecError, decode

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
WARD = "36.72.01.1001"
OTHER_WARD = "36.72.02.1002"
ASSETS = {
    "PJU-1": Asset(WARD, "LAMP", "CAB-A"), "PJU-2": Asset(WARD, "LAMP", "CAB-A"),
    "PJU-3": Asset(WARD, "LAMP", "CAB-A"), "PJU-4": Asset(WARD, "LAMP", "CAB-B"),
    "WC-1": Asset(WARD, "WASTE_CONTAINER"), "WC-2": Asset(WARD, "WASTE_CONTAINER"),
    "WC-3": Asset(OTHER_WARD, "WASTE_CONTAINER"),
}
_ids = iter(range(1, 10**6))


def _id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def incident(minute: float, incident_id: str, status: str, category: str = "FLOOD",
             severity: str = "MODERATE", ward: str = WARD) -> Event:
    return Event("incident", {
        "event_id": _id(), "occurred_at": T0 + timedelta(minutes=minute),
        "incident_id": incident_id, "category": category, "severity": severity,
        "status": status, "ward_code": ward,
    })


def lamp(minute: float, lamp_id: str, status: str, kind: str = "STATUS",
         cabinet: str | None = None) -> Event:
    return Event("lighting", {
        "event_id": _id(), "occurred_at": T0 + timedelta(minutes=minute), "lamp_id": lamp_id,
        "lamp_status": status, "report_kind": kind, "cabinet_id": cabinet, "ward_code": None,
    })


def waste(minute: float, container: str, kind: str = "FILL_LEVEL", fill: float | None = None,
          temperature: float | None = None) -> Event:
    return Event("waste", {
        "event_id": _id(), "occurred_at": T0 + timedelta(minutes=minute),
        "container_id": container, "report_kind": kind, "filling_level": fill,
        "temperature_celsius": temperature, "ward_code": None,
    })


def one(events: list[Event]) -> WardExpectation:
    wards = expected_wards(events, ASSETS, Params.load())
    assert list(wards) == [WARD]
    return wards[WARD]


# --------------------------------------------------------------------------- 1. exact rules


def test_incident_lifecycle_category_severity_and_response_times() -> None:
    w = one([
        incident(0, "A", "REPORTED", "FLOOD", "MODERATE"),
        incident(5, "A", "DISPATCHED", "FLOOD", "UNKNOWN"),    # UNKNOWN keeps MODERATE
        incident(9, "A", "ON_SCENE", "FIRE", "SEVERE"),        # latest category wins
        incident(1, "B", "REPORTED", "CRIME", "MINOR"),
        incident(2, "B", "RESOLVED", "CRIME", "MINOR"),
        incident(3, "B", "REPORTED", "CRIME", "MINOR"),        # late REPORTED: stays closed
        incident(4, "C", "UNKNOWN", "OTHER", "MINOR"),         # only UNKNOWN: not open
        incident(6, "D", "DISPATCHED", "MEDICAL", "EXTREME"),  # no REPORTED: no response time
        incident(7, "E", "REPORTED", "FLOOD", "MINOR"),
        incident(6, "E", "DISPATCHED", "FLOOD", "MINOR"),      # partner clocks: counts as 0
    ])
    assert w.incident_status == {"A": "ON_SCENE", "B": "RESOLVED", "C": None,
                                 "D": "DISPATCHED", "E": "DISPATCHED"}
    assert (w.open_incidents, w.open_incidents_by_category, w.open_incidents_by_severity) == (
        3, {"FIRE": 1, "FLOOD": 1, "MEDICAL": 1}, {"EXTREME": 1, "MINOR": 1, "SEVERE": 1})
    assert (w.dispatch_count, w.mean_dispatch_seconds) == (2, 150.0)  # (300 + 0) / 2
    assert (w.on_scene_count, w.mean_on_scene_seconds) == (1, 540.0)
    assert w.last_event_at == T0 + timedelta(minutes=9)


def test_severity_tie_takes_the_greater_symbol() -> None:
    w = one([incident(0, "A", "REPORTED", severity="MINOR"),
             incident(0.5, "A", "DISPATCHED", severity="EXTREME"),
             incident(0.5, "A", "ON_SCENE", severity="SEVERE")])
    assert w.open_incidents_by_severity == {"SEVERE": 1}


def test_duplicates_count_once_and_a_reused_id_is_refused() -> None:
    first = incident(0, "A", "REPORTED")
    assert one([first, first, first]).event_ids == {first.event_id}
    assert len(deduplicate([first, first])) == 1
    changed = Event("incident", {**first.record, "status": "RESOLVED"})
    with pytest.raises(ValueError, match="reused with different content"):
        deduplicate([first, changed])


def test_lamps_latest_status_worse_on_ties_unknown_keeps_previous() -> None:
    w = one([
        lamp(0, "PJU-1", "NO_POWER"), lamp(5, "PJU-1", "OK"),
        lamp(0, "PJU-2", "OK"), lamp(3, "PJU-2", "BROKEN_LANTERN"),
        lamp(3, "PJU-2", "DEFECTIVE_LAMP"),                   # tie: BROKEN_LANTERN is worse
        lamp(1, "PJU-3", "COLUMN_ISSUE"), lamp(4, "PJU-3", "UNKNOWN"),
    ])
    assert w.lamp_status == {"PJU-1": "OK", "PJU-2": "BROKEN_LANTERN", "PJU-3": "COLUMN_ISSUE"}
    assert w.lamps_out == 2


def test_cabinet_alert_needs_three_lamps_with_faults_in_the_last_10_minutes() -> None:
    base = [lamp(20, "PJU-1", "NO_POWER"), lamp(25, "PJU-2", "UNKNOWN", kind="FAULT"),
            lamp(15, "PJU-4", "NO_POWER", cabinet="CAB-A")]  # the event's cabinet wins
    assert one(base).cabinet_alerts == ["CAB-A"]  # PJU-4's fault exactly 10 min before the last
    assert one([*base, incident(26, "A", "REPORTED")]).cabinet_alerts == []  # 11 min before
    assert one([*base, lamp(24, "PJU-4", "OK")]).cabinet_alerts == ["CAB-A"]  # OK: no repair
    assert one([lamp(20, "PJU-1", "NO_POWER"), lamp(21, "PJU-2", "NO_POWER"),
                lamp(22, "PJU-4", "NO_POWER")]).cabinet_alerts == []  # two cabinets


def test_containers_collection_fill_and_fire_risk() -> None:
    w = one([
        waste(0, "WC-1", fill=0.95), waste(10, "WC-1", kind="COLLECTION"),
        waste(0, "WC-2", fill=0.5), waste(5, "WC-2", kind="COLLECTION"),
        waste(5, "WC-2", fill=0.92, temperature=61.0),  # a reading at the collection instant wins
    ])
    assert (w.container_fill, w.containers_full, w.containers_fire_risk) == (
        {"WC-1": 0.0, "WC-2": 0.92}, 1, 1)


def test_fire_risk_report_counts_for_two_hours_before_the_last_event() -> None:
    report = waste(0, "WC-1", kind="FIRE_RISK")
    assert one([report, incident(120, "A", "REPORTED")]).containers_fire_risk == 1
    assert one([report, incident(121, "A", "REPORTED")]).containers_fire_risk == 0


def test_the_registry_wins_over_a_partner_ward_code_and_events_must_be_placeable() -> None:
    moved = Event("waste", {**waste(0, "WC-3", fill=0.95).record, "ward_code": WARD})
    wards = expected_wards([moved], ASSETS, Params.load())
    assert {code: w.containers_full for code, w in wards.items()} == {OTHER_WARD: 1}
    with pytest.raises(ValueError, match="can't be placed"):
        expected_wards([lamp(0, "PJU-404", "OK")], ASSETS, Params.load())


def test_recent_ids_are_those_within_the_dedupe_horizon_of_the_last_event() -> None:
    horizon = Params.load().dedupe_horizon / timedelta(minutes=1)
    old, edge, last = (incident(0, "A", "REPORTED"), incident(1, "A", "DISPATCHED"),
                       incident(1 + horizon, "A", "RESOLVED"))
    w = one([old, edge, last])
    assert (w.event_ids, w.recent_event_ids) == (
        {old.event_id, edge.event_id, last.event_id}, {edge.event_id, last.event_id})


def test_spans_beyond_the_horizons_are_refused() -> None:
    with pytest.raises(ValueError, match="beyond the horizons"):
        one([incident(0, "A", "REPORTED"), incident(24 * 60, "A", "RESOLVED")])


def test_rollup_totals() -> None:
    wards = expected_wards([incident(0, "A", "REPORTED", "FIRE"),
                            incident(0, "B", "REPORTED", "FIRE", ward=OTHER_WARD),
                            lamp(1, "PJU-1", "NO_POWER"), waste(2, "WC-3", fill=0.9)],
                           ASSETS, Params.load())
    assert rollup_totals(wards.values()) == {
        "open_incidents": 2, "open_incidents_by_category": {"FIRE": 2}, "lamps_out": 1,
        "containers_full": 1, "cabinet_alerts": []}


# --------------------------------------------------------------------------- 2. + 3. scenario


@lru_cache(maxsize=1)
def _world() -> tuple[list[dict[str, Any]], list[dict[str, Any]], ReferenceData]:
    wards = load_ward_records()
    registry = generate_asset_registry(wards, seed=ASSET_REGISTRY_SEED)
    return wards, registry, ReferenceData.build(wards, registry)


NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def _scenario(events: int, seed: int) -> Scenario:
    wards, registry, _ = _world()
    return generate(events, seed, registry, [str(w["kelurahan_code"]) for w in wards], NOW)


def _assets() -> dict[str, Asset]:
    return {str(a["asset_id"]): Asset(str(a["ward_code"]), str(a["asset_kind"]),
                                      a.get("cabinet_id")) for a in _world()[1]}


@pytest.mark.parametrize(("events", "seed"), [(400, 1), (3000, 2), (20_000, 3)])
def test_generator_intent_equals_the_reference_model(events: int, seed: int) -> None:
    scenario = _scenario(events, seed)
    assert len(scenario.sends) == events
    valid = [Event(s.kind, decode(s.value).record) for s in scenario.sends if s.reason is None]
    expected = expected_wards(valid, _assets())
    got = {code: {"open_incidents_by_category": w.open_incidents_by_category,
                  "lamps_out": w.lamps_out, "containers_full": w.containers_full,
                  "cabinet_alerts": w.cabinet_alerts}
           for code, w in expected.items()}
    empty = {"open_incidents_by_category": {}, "lamps_out": 0, "containers_full": 0,
             "cabinet_alerts": []}
    assert got == {code: scenario.intended.get(code, empty) for code in expected}
    assert sum(len(w.cabinet_alerts) for w in expected.values()) == 2  # the planned outages
    assert len(valid) - len(deduplicate(valid)) == scenario.duplicates


ENRICH = {"incident": enrich_incident, "lighting": enrich_lighting, "waste": enrich_waste}


def test_worker_path_on_the_shuffled_scenario_agrees_with_the_reference_model() -> None:
    wards, _, reference = _world()
    scenario = _scenario(3000, 4)
    thresholds = Thresholds.load()
    rng = random.Random(4)
    replayed = [*scenario.sends, *rng.sample(scenario.sends, 300)]  # a crash replays input
    rng.shuffle(replayed)
    states: dict[str, WardState] = {}
    valid = []
    rejected: dict[str, int] = {}
    for send in replayed:
        try:
            record = decode(send.value, expected=KIND_SCHEMA[send.kind]).record
            enriched = ENRICH[send.kind](record, reference, EnrichmentRules(), NOW)
        except (CodecError, Rejection) as error:
            assert (getattr(error, "stage", "DECODE"), error.reason) == (send.stage, send.reason)
            rejected[error.reason] = rejected.get(error.reason, 0) + 1
            continue
        assert send.reason is None
        valid.append(Event(send.kind, record))
        state = states.setdefault(enriched["ward_code"], WardState())
        apply(state, send.kind, enriched, thresholds)
    assert sum(rejected.values()) == sum(1 for s in replayed if s.reason is not None)
    expected = expected_wards(valid, _assets())
    ward_records = {str(w["kelurahan_code"]): w for w in wards}
    assert sorted(states) == sorted(expected)
    for code, want in expected.items():
        state = WardState.from_dict(states[code].to_dict())  # as recovered from the changelog
        assert want.recent_event_ids <= set(state.seen) <= want.event_ids
        situation = summarize_ward(state, ward_records[code], WardAssetCounts(0, 0), thresholds,
                                   want.last_event_at or NOW, "CHANGE", 1, None)
        assert {k: situation[k] for k in want.situation_fields()} | {
            "dispatch_count": state.dispatch_count, "on_scene_count": state.on_scene_count,
        } == want.situation_fields(), code
